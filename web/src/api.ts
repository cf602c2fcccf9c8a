// The services, called through the gateway's gRPC-web transport on the
// page's own origin, with the signed-in user's bearer token.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import type { DescService } from "@bufbuild/protobuf";
import { BadRequestSchema } from "./gen/google/rpc/error_details_pb";
import { TaskService } from "./gen/focusforge/tasks/v1/tasks_pb";
import { ChainService } from "./gen/focusforge/chain/v1/chain_pb";
import { FocusService } from "./gen/focusforge/focus/v1/focus_pb";
import { EventService } from "./gen/focusforge/events/v1/events_pb";
import { MoodService } from "./gen/focusforge/mood/v1/mood_pb";
import { GamificationService } from "./gen/focusforge/gamification/v1/gamification_pb";
import { CalendarService } from "./gen/focusforge/calendar/v1/calendar_pb";
import { OrchestratorService } from "./gen/focusforge/orchestrator/v1/orchestrator_pb";
import { UserService } from "./gen/focusforge/users/v1/users_pb";

const TOKEN_KEY = "focusforge.token";

export type Session = { token: string; user: string };

export function savedSession(): Session | null {
  const raw = sessionStorage.getItem(TOKEN_KEY);
  if (!raw) return null;
  try {
    const s = JSON.parse(raw) as Session;
    return typeof s.token === "string" && typeof s.user === "string" ? s : null;
  } catch {
    return null;
  }
}

export function saveSession(s: Session | null) {
  if (s) sessionStorage.setItem(TOKEN_KEY, JSON.stringify(s));
  else sessionStorage.removeItem(TOKEN_KEY);
}

/// The user named by a token, read from its claims (the server checks the
/// signature; this only labels the page).
export function tokenUser(token: string): string | null {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const sub = (JSON.parse(json) as { sub?: unknown }).sub;
    return typeof sub === "string" ? sub : null;
  } catch {
    return null;
  }
}

export type Api = ReturnType<typeof makeApi>;

/// Clients for every service the app uses; `onUnauthenticated` runs when
/// the server refuses the token (expired, revoked, signed with another key).
export function makeApi(token: string, onUnauthenticated: () => void) {
  const auth: Interceptor = (next) => async (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    try {
      return await next(req);
    } catch (e) {
      if (ConnectError.from(e).code === Code.Unauthenticated) onUnauthenticated();
      throw e;
    }
  };
  const transport = createGrpcWebTransport({
    baseUrl: window.location.origin,
    interceptors: [auth],
  });
  const client = <T extends DescService>(s: T): Client<T> => createClient(s, transport);
  return {
    tasks: client(TaskService),
    chain: client(ChainService),
    focus: client(FocusService),
    events: client(EventService),
    mood: client(MoodService),
    points: client(GamificationService),
    calendar: client(CalendarService),
    workflows: client(OrchestratorService),
    users: client(UserService),
  };
}

/// What went wrong, as the user should read it: a message, and for a
/// request the server refused field by field, each field's reason.
export type Problem = { message: string; fields: Record<string, string>; code?: Code };

export function problem(e: unknown): Problem {
  const err = ConnectError.from(e);
  const fields: Record<string, string> = {};
  for (const bad of err.findDetails(BadRequestSchema)) {
    for (const v of bad.fieldViolations) {
      // `task.title` and `title` both name the title field of a form.
      const name = v.field.split(".").at(-1) ?? v.field;
      fields[name] = fields[name] ? `${fields[name]}; ${v.description}` : v.description;
    }
  }
  const message =
    err.code === Code.Unavailable
      ? "The server cannot be reached right now. Try again in a moment."
      : err.code === Code.DeadlineExceeded
        ? "That took too long. Try again."
        : err.rawMessage || Code[err.code];
  return { message, fields, code: err.code };
}

export function newRequestId(): string {
  return crypto.randomUUID();
}
