import { useEffect, useState, type FormEvent } from "react";
import { ConnectError } from "@connectrpc/connect";
import { makeApi, problem, tokenUser, type Problem, type Session } from "../api";
import { Banner, Field } from "../ui";

/// Sign-in with a bearer token. On the embedded default, opened from this
/// machine, the server mints one for a user id; elsewhere the token comes
/// from the identity provider and is pasted here.
export function SignIn(props: { onSignedIn: (s: Session) => void; reason: string | null }) {
  const [dev, setDev] = useState<boolean | null>(null);
  const [user, setUser] = useState("");
  const [token, setToken] = useState("");
  const [userProblem, setUserProblem] = useState<Problem | null>(null);
  const [tokenProblem, setTokenProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    fetch("/dev/token", { headers: { accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : { available: false }))
      .then((b: { available?: boolean }) => setDev(Boolean(b.available)))
      .catch(() => setDev(false));
  }, []);

  // A token is kept only once the server has taken it.
  async function check(t: string): Promise<Session> {
    const api = makeApi(t, () => {});
    await api.users.getProfile({});
    return { token: t, user: tokenUser(t) ?? "you" };
  }

  async function mint(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setUserProblem(null);
    try {
      const res = await fetch("/dev/token", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ user: user.trim() }),
      });
      const body = (await res.json()) as { token?: string; error?: string; field?: string };
      if (!res.ok || !body.token) {
        const message = body.error ?? `The server said ${res.status}`;
        setUserProblem({ message, fields: body.field ? { [body.field]: message } : {} });
        return;
      }
      props.onSignedIn(await check(body.token));
    } catch (err) {
      setUserProblem(err instanceof ConnectError ? problem(err) : { message: String(err), fields: {} });
    } finally {
      setBusy(false);
    }
  }

  async function paste(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setTokenProblem(null);
    try {
      props.onSignedIn(await check(token.trim()));
    } catch (err) {
      const p = problem(err);
      setTokenProblem({ ...p, fields: { token: `The server refused this token: ${p.message}` } });
    } finally {
      setBusy(false);
    }
  }

  return (
    <main id="main" className="signin">
      <h1>Sign in to FocusForge</h1>
      {props.reason && (
        <p className="banner" role="alert">
          {props.reason}
        </p>
      )}
      {dev && (
        <form onSubmit={mint} aria-labelledby="dev-heading" className="card">
          <h2 id="dev-heading">Development sign-in</h2>
          <p>
            This server runs on its generated development key and you opened it from this machine, so it can sign
            you in as any user id.
          </p>
          <Field label="User id" name="user" problem={userProblem} hint="Letters, digits, dots, dashes, underscores">
            {(a) => (
              <input {...a} value={user} onChange={(e) => setUser(e.target.value)} autoComplete="username" required />
            )}
          </Field>
          <Banner problem={userProblem} fields={["user"]} />
          <button type="submit" disabled={busy}>
            Sign in
          </button>
        </form>
      )}
      <form onSubmit={paste} aria-labelledby="token-heading" className="card">
        <h2 id="token-heading">Sign in with a token</h2>
        <p>Paste the bearer token your identity provider issued (or `focusforge token --user NAME`).</p>
        <Field label="Token" name="token" problem={tokenProblem}>
          {(a) => <textarea {...a} rows={4} value={token} onChange={(e) => setToken(e.target.value)} required />}
        </Field>
        <button type="submit" disabled={busy}>
          Use this token
        </button>
      </form>
    </main>
  );
}
