import { createContext, useContext, useEffect, useMemo, useRef, useState } from "react";
import { makeApi, saveSession, savedSession, type Api, type Session } from "./api";
import { EventFeed, type StreamState } from "./events";
import { SignIn } from "./screens/SignIn";
import { Board } from "./screens/Board";
import { Focus } from "./screens/Focus";
import { Mood } from "./screens/Mood";
import { Rewards } from "./screens/Rewards";
import { Calendar } from "./screens/Calendar";

type Ctx = { api: Api; feed: EventFeed; user: string };
const AppContext = createContext<Ctx | null>(null);

export function useApp(): Ctx {
  const ctx = useContext(AppContext);
  if (!ctx) throw new Error("useApp outside the signed-in app");
  return ctx;
}

const SCREENS = [
  { id: "board", name: "Tasks", view: Board },
  { id: "focus", name: "Focus", view: Focus },
  { id: "mood", name: "Mood", view: Mood },
  { id: "rewards", name: "Points & store", view: Rewards },
  { id: "calendar", name: "Calendar", view: Calendar },
] as const;
type ScreenId = (typeof SCREENS)[number]["id"];

function screenFromHash(): ScreenId {
  const id = window.location.hash.replace(/^#\/?/, "");
  return SCREENS.find((s) => s.id === id)?.id ?? "board";
}

export function App() {
  const [session, setSession] = useState<Session | null>(savedSession);
  const [signedOutReason, setSignedOutReason] = useState<string | null>(null);

  const signIn = (s: Session) => {
    saveSession(s);
    setSignedOutReason(null);
    setSession(s);
  };
  const signOut = (reason: string | null) => {
    saveSession(null);
    setSignedOutReason(reason);
    setSession(null);
  };

  if (!session) return <SignIn onSignedIn={signIn} reason={signedOutReason} />;
  return (
    <SignedIn
      key={session.token}
      session={session}
      onSignOut={() => signOut(null)}
      onRefused={() => signOut("Your sign-in was refused by the server (it may have expired). Sign in again.")}
    />
  );
}

function SignedIn(props: { session: Session; onSignOut: () => void; onRefused: () => void }) {
  const { session, onRefused } = props;
  const refused = useRef(onRefused);
  refused.current = onRefused;
  const api = useMemo(() => makeApi(session.token, () => refused.current()), [session.token]);
  const [feed, setFeed] = useState<EventFeed | null>(null);
  const [stream, setStream] = useState<StreamState>("connecting");
  const [screen, setScreen] = useState<ScreenId>(screenFromHash);

  useEffect(() => {
    const f = new EventFeed(api);
    const off = f.onState(setStream);
    setFeed(f);
    return () => {
      off();
      f.close();
    };
  }, [api]);

  useEffect(() => {
    const onHash = () => setScreen(screenFromHash());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  const current = SCREENS.find((s) => s.id === screen) ?? SCREENS[0];
  const View = current.view;
  return (
    <>
      <header className="top">
        <span className="brand">FocusForge</span>
        <nav aria-label="Screens">
          <ul>
            {SCREENS.map((s) => (
              <li key={s.id}>
                <a href={`#/${s.id}`} aria-current={s.id === screen ? "page" : undefined}>
                  {s.name}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span className="who">
          <span className={`live ${stream}`} data-stream={stream}>
            {stream === "live" ? "Live" : stream === "retrying" ? "Reconnecting…" : "Connecting…"}
          </span>
          <span data-user={session.user}>{session.user}</span>
          <button type="button" className="quiet" onClick={props.onSignOut}>
            Sign out
          </button>
        </span>
      </header>
      <main id="main">
        {feed && (
          <AppContext.Provider value={{ api, feed, user: session.user }}>
            <View />
          </AppContext.Provider>
        )}
      </main>
    </>
  );
}
