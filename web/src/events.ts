// One live event stream per signed-in page, shared by every screen: it
// resumes after the last event it saw when the connection drops.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Api } from "./api";
import type { Event } from "./gen/focusforge/events/v1/events_pb";

export type Listener = (e: Event) => void;
export type StreamState = "connecting" | "live" | "retrying";

export class EventFeed {
  private listeners = new Set<Listener>();
  private stateListeners = new Set<(s: StreamState) => void>();
  private abort = new AbortController();
  private lastId = "";
  state: StreamState = "connecting";

  constructor(private api: Api) {
    void this.run();
  }

  on(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  onState(l: (s: StreamState) => void): () => void {
    this.stateListeners.add(l);
    return () => this.stateListeners.delete(l);
  }

  close() {
    this.abort.abort();
  }

  private setState(s: StreamState) {
    this.state = s;
    for (const l of this.stateListeners) l(s);
  }

  private async run() {
    let wait = 500;
    while (!this.abort.signal.aborted) {
      try {
        this.setState("connecting");
        const stream = this.api.events.subscribe(
          { afterId: this.lastId },
          // Live once the server has answered, before its first event.
          { signal: this.abort.signal, onHeader: () => this.setState("live") },
        );
        for await (const res of stream) {
          if (this.state !== "live") this.setState("live");
          wait = 500;
          switch (res.kind.case) {
            case "event": {
              const e = res.kind.value;
              // Ticks are not stored: a resume goes on after the last stored event.
              this.lastId = e.id || this.lastId;
              for (const l of this.listeners) l(e);
              break;
            }
            case "lagged":
              this.lastId = res.kind.value.resumeAfterId;
              break;
            default:
              break;
          }
        }
      } catch (e) {
        if (this.abort.signal.aborted) return;
        const err = ConnectError.from(e);
        if (err.code === Code.Unauthenticated) return;
        // The events to resume after are gone: go on from now.
        if (err.code === Code.OutOfRange) this.lastId = "";
      }
      if (this.abort.signal.aborted) return;
      this.setState("retrying");
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 10_000);
    }
  }
}
