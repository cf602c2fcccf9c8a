import { useCallback, useEffect, useState } from "react";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { useApp } from "../App";
import { problem, type Problem } from "../api";
import { Banner, clock } from "../ui";
import { EventKind, type AutoScheduleResponse, type Occurrence } from "../gen/focusforge/calendar/v1/calendar_pb";
import type { OptimizeDayResponse } from "../gen/focusforge/orchestrator/v1/orchestrator_pb";
import { EventType } from "../gen/focusforge/events/v1/events_pb";

const DAY = 86_400_000;

function startOfDay(d: Date): Date {
  const s = new Date(d);
  s.setHours(0, 0, 0, 0);
  return s;
}

/// The coming seven days with meetings and auto-scheduled focus blocks,
/// and today's plan.
export function Calendar() {
  const { api, feed } = useApp();
  const [from] = useState(() => startOfDay(new Date()));
  const [occurrences, setOccurrences] = useState<Occurrence[]>([]);
  const [schedule, setSchedule] = useState<AutoScheduleResponse | null>(null);
  const [plan, setPlan] = useState<OptimizeDayResponse | null>(null);
  const [p, setP] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);

  const load = useCallback(async () => {
    try {
      const r = await api.calendar.listEvents({
        startTime: timestampFromDate(from),
        endTime: timestampFromDate(new Date(from.getTime() + 7 * DAY)),
        pageSize: 500,
      });
      setOccurrences(r.occurrences);
    } catch (e) {
      setP(problem(e));
    }
  }, [api, from]);

  useEffect(() => {
    void load();
    return feed.on((e) => {
      if (e.type === EventType.CALENDAR_CHANGED) void load();
    });
  }, [feed, load]);

  async function run<T>(f: () => Promise<T>, then: (t: T) => void) {
    setBusy(true);
    setP(null);
    try {
      then(await f());
      await load();
    } catch (e) {
      setP(problem(e));
    } finally {
      setBusy(false);
    }
  }

  const days = Array.from({ length: 7 }, (_, i) => new Date(from.getTime() + i * DAY));
  return (
    <>
      <h1>Calendar</h1>
      <div className="actions">
        <button type="button" disabled={busy} onClick={() => void run(() => api.calendar.autoSchedule({ horizonDays: 7 }), setSchedule)}>
          Schedule my tasks
        </button>
        <button
          type="button"
          className="secondary"
          disabled={busy}
          onClick={() => void run(() => api.workflows.optimizeDay({ day: timestampFromDate(new Date()), apply: false }), setPlan)}
        >
          Plan my day
        </button>
      </div>
      <Banner problem={p} />
      {schedule && (
        <p role="status" className="outcome" data-scheduled={schedule.placements.length}>
          {schedule.placements.length === 0
            ? "Nothing to schedule: add tasks with an estimate first."
            : `${schedule.added} new, ${schedule.kept} kept, ${schedule.moved} moved focus blocks.`}
          {schedule.unscheduled.length > 0 &&
            ` Not placed: ${schedule.unscheduled.map((u) => `${u.taskTitle} (${u.detail})`).join("; ")}.`}
        </p>
      )}
      <section aria-labelledby="week-heading">
        <h2 id="week-heading">
          {days[0].toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" })} –{" "}
          {days[6].toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" })}
        </h2>
        <div className="week">
          {days.map((d) => {
            const here = occurrences
              .filter((o) => o.startTime && startOfDay(timestampDate(o.startTime)).getTime() === d.getTime())
              .sort((a, b) => Number(a.startTime?.seconds ?? 0n) - Number(b.startTime?.seconds ?? 0n));
            return (
              <section key={d.getTime()} className="day" aria-label={d.toLocaleDateString([], { weekday: "long", day: "numeric", month: "long" })}>
                <h3>{d.toLocaleDateString([], { weekday: "short", day: "numeric" })}</h3>
                {here.length === 0 && <p className="muted">Free</p>}
                <ul className="plain">
                  {here.map((o) => (
                    <li
                      key={`${o.eventId}-${o.startTime?.seconds}`}
                      className={o.kind === EventKind.FOCUS_BLOCK ? "slot focus-block" : "slot"}
                      data-kind={o.kind === EventKind.FOCUS_BLOCK ? "focus" : "event"}
                    >
                      <span className="time">
                        {o.allDay ? "All day" : `${clock(timestampDate(o.startTime!))}–${clock(timestampDate(o.endTime!))}`}
                      </span>
                      <span>{o.title}</span>
                    </li>
                  ))}
                </ul>
              </section>
            );
          })}
        </div>
      </section>
      {plan && (
        <section aria-labelledby="plan-heading" className="card" data-plan-items={plan.items.length}>
          <h2 id="plan-heading">Today’s plan{plan.applied ? " (in your calendar)" : " (preview)"}</h2>
          {plan.lowMood && <p className="muted">Lighter work first: your last mood was low.</p>}
          {plan.items.length === 0 ? (
            <p className="muted">Nothing to place today.</p>
          ) : (
            <ol className="plain plan">
              {plan.items.map((i, n) => (
                <li key={n} data-plan-kind={i.kind}>
                  <span className="time">
                    {i.startTime && clock(timestampDate(i.startTime))}–{i.endTime && clock(timestampDate(i.endTime))}
                  </span>{" "}
                  <strong>{i.taskTitle || i.kind}</strong>
                  {i.reason && <div className="muted">{i.reason}</div>}
                </li>
              ))}
            </ol>
          )}
          {plan.notPlaced.length > 0 && <p className="muted">Not placed: {plan.notPlaced.join(", ")}</p>}
          {!plan.applied && plan.items.length > 0 && (
            <button
              type="button"
              disabled={busy}
              onClick={() => void run(() => api.workflows.optimizeDay({ day: timestampFromDate(new Date()), apply: true }), setPlan)}
            >
              Put it in my calendar
            </button>
          )}
        </section>
      )}
    </>
  );
}
