import { useCallback, useEffect, useState, type FormEvent } from "react";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { useApp } from "../App";
import { newRequestId, problem, type Problem } from "../api";
import { Banner, Field, mmss } from "../ui";
import { SessionState, type Session } from "../gen/focusforge/focus/v1/focus_pb";
import { EventType } from "../gen/focusforge/events/v1/events_pb";
import { TaskStatus, type Task } from "../gen/focusforge/tasks/v1/tasks_pb";
import type { Ritual } from "../gen/focusforge/orchestrator/v1/orchestrator_pb";

type Timer = {
  sessionId: string;
  state: "running" | "paused" | "completed" | "abandoned";
  remaining: number;
  elapsed: number;
  /// When `remaining` was told, by the page's clock.
  at: number;
  ticks: number;
};

function timerOf(s: Session): Timer {
  const now = Date.now();
  const end = s.plannedEndTime ? timestampDate(s.plannedEndTime).getTime() : now;
  const state =
    s.state === SessionState.PAUSED ? "paused" : s.state === SessionState.COMPLETED ? "completed" : s.state === SessionState.ABANDONED ? "abandoned" : "running";
  return { sessionId: s.id, state, remaining: Math.max(0, (end - now) / 1000), elapsed: Number(s.focusedSeconds), at: now, ticks: 0 };
}

/// A pomodoro timer: the focus service keeps the session, the live event
/// stream says how it goes (ticks, pauses, the end), the page counts the
/// seconds in between.
export function Focus() {
  const { api, feed } = useApp();
  const [tasks, setTasks] = useState<Task[]>([]);
  const [taskId, setTaskId] = useState("");
  const [planned, setPlanned] = useState("25");
  const [timer, setTimer] = useState<Timer | null>(null);
  const [ritual, setRitual] = useState<Ritual | null>(null);
  const [p, setP] = useState<Problem | null>(null);
  const [, setNow] = useState(0);

  const refresh = useCallback(async () => {
    try {
      const [cur, open] = await Promise.all([
        api.focus.getCurrentSession({}),
        api.tasks.listTasks({ pageSize: 100, statuses: [TaskStatus.PENDING, TaskStatus.IN_PROGRESS] }),
      ]);
      setTasks(open.tasks);
      if (cur.session) setTimer(timerOf(cur.session));
      if (cur.next && !cur.session) setPlanned(String(cur.next.plannedMinutes || 25));
    } catch (e) {
      setP(problem(e));
    }
  }, [api]);

  useEffect(() => {
    void refresh();
    return feed.on((e) => {
      if (e.payload.case !== "focus") return;
      const f = e.payload.value;
      const state =
        e.type === EventType.FOCUS_PAUSED
          ? "paused"
          : e.type === EventType.FOCUS_COMPLETED
            ? "completed"
            : e.type === EventType.FOCUS_ABANDONED
              ? "abandoned"
              : "running";
      setTimer((t) => {
        const same = t?.sessionId === f.sessionId;
        // An old session's story, replayed on connect, is not the timer.
        if (!same && state !== "running") return t;
        return {
          sessionId: f.sessionId,
          state,
          remaining: Number(f.remainingSeconds),
          elapsed: Number(f.elapsedSeconds),
          at: Date.now(),
          ticks: (same ? t.ticks : 0) + (e.type === EventType.FOCUS_TICK ? 1 : 0),
        };
      });
    });
  }, [feed, refresh]);

  useEffect(() => {
    if (timer?.state !== "running") return;
    const id = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(id);
  }, [timer?.state]);

  async function start(e: FormEvent) {
    e.preventDefault();
    setP(null);
    try {
      const r = await api.workflows.startFocusSession({
        taskId,
        plannedMinutes: planned.trim() === "" ? 0 : Number(planned),
        requestId: newRequestId(),
      });
      if (r.session) setTimer(timerOf(r.session));
      setRitual(r.ritual ?? null);
    } catch (err) {
      setP(problem(err));
    }
  }

  async function act(f: () => Promise<{ session?: Session }>) {
    setP(null);
    try {
      const r = await f();
      if (r.session) setTimer((t) => ({ ...timerOf(r.session as Session), ticks: t?.ticks ?? 0 }));
    } catch (err) {
      setP(problem(err));
    }
  }

  const running = timer?.state === "running";
  const shown = timer ? (running ? timer.remaining - (Date.now() - timer.at) / 1000 : timer.remaining) : 0;
  const active = timer && (timer.state === "running" || timer.state === "paused");
  const id = timer?.sessionId ?? "";
  return (
    <>
      <h1>Focus</h1>
      <Banner problem={p} fields={["task_id", "planned_minutes"]} />
      {timer && (
        <section aria-labelledby="timer-heading" className="card timer" data-timer-state={timer.state} data-ticks={timer.ticks}>
          <h2 id="timer-heading">
            {timer.state === "running"
              ? "Focusing"
              : timer.state === "paused"
                ? "Paused"
                : timer.state === "completed"
                  ? "Session complete"
                  : "Session abandoned"}
          </h2>
          <p className="clock" aria-label={`${mmss(shown)} left`}>
            {mmss(shown)}
          </p>
          <p className="muted" role="status">
            {timer.state === "completed"
              ? `Well done: ${Math.round(timer.elapsed / 60)} min of focus.`
              : `Server updates so far: ${timer.ticks}`}
          </p>
          {active && (
            <div className="actions">
              {running ? (
                <button type="button" onClick={() => void act(() => api.focus.pauseSession({ id, requestId: newRequestId() }))}>
                  Pause
                </button>
              ) : (
                <button type="button" onClick={() => void act(() => api.focus.resumeSession({ id, requestId: newRequestId() }))}>
                  Resume
                </button>
              )}
              <button type="button" className="secondary" onClick={() => void act(() => api.focus.completeSession({ id, requestId: newRequestId() }))}>
                Finish now
              </button>
              <button type="button" className="quiet" onClick={() => void act(() => api.focus.abandonSession({ id, requestId: newRequestId() }))}>
                Abandon
              </button>
            </div>
          )}
          {ritual && active && (
            <div className="ritual">
              <h3>{ritual.title}</h3>
              <ol>
                {ritual.steps.map((s, i) => (
                  <li key={i}>{s}</li>
                ))}
              </ol>
            </div>
          )}
        </section>
      )}
      {!active && (
        <section aria-labelledby="start-heading" className="card">
          <h2 id="start-heading">Start a focus session</h2>
          <form onSubmit={start} className="grid-form" noValidate>
            <Field label="Task" name="task_id" problem={p}>
              {(a) => (
                <select {...a} value={taskId} onChange={(e) => setTaskId(e.target.value)}>
                  <option value="">No task</option>
                  {tasks.map((t) => (
                    <option key={t.id} value={t.id}>
                      {t.title}
                    </option>
                  ))}
                </select>
              )}
            </Field>
            <Field label="Minutes" name="planned_minutes" problem={p}>
              {(a) => <input {...a} inputMode="numeric" value={planned} onChange={(e) => setPlanned(e.target.value)} />}
            </Field>
            <div className="actions">
              <button type="submit">Start focus session</button>
            </div>
          </form>
        </section>
      )}
    </>
  );
}
