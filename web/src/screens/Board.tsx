import { useCallback, useEffect, useState, type FormEvent } from "react";
import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { useApp } from "../App";
import { newRequestId, problem, type Problem } from "../api";
import { Banner, Field, minutes } from "../ui";
import {
  TaskPriority,
  TaskStatus,
  WorkBlockSchema,
  type Task,
} from "../gen/focusforge/tasks/v1/tasks_pb";
import { EventType } from "../gen/focusforge/events/v1/events_pb";
import type { FocusBlock } from "../gen/focusforge/chain/v1/chain_pb";
import { ProofVerdict } from "../gen/focusforge/chain/v1/chain_pb";

const PRIORITIES: [TaskPriority, string][] = [
  [TaskPriority.LOW, "Low"],
  [TaskPriority.MEDIUM, "Medium"],
  [TaskPriority.HIGH, "High"],
  [TaskPriority.URGENT, "Urgent"],
];
function PriorityField(props: { problem: Problem | null; value: TaskPriority; onChange: (p: TaskPriority) => void }) {
  return (
    <Field label="Priority" name="priority" problem={props.problem}>
      {(a) => (
        <select {...a} value={props.value} onChange={(e) => props.onChange(Number(e.target.value))}>
          {PRIORITIES.map(([v, n]) => (
            <option key={v} value={v}>
              {n}
            </option>
          ))}
        </select>
      )}
    </Field>
  );
}

const priorityName = (p: TaskPriority) => PRIORITIES.find(([v]) => v === p)?.[1] ?? "None";

const COLUMNS: [TaskStatus, string][] = [
  [TaskStatus.PENDING, "To do"],
  [TaskStatus.IN_PROGRESS, "In progress"],
  [TaskStatus.COMPLETED, "Done"],
];

type Draft = { title: string; description: string; estimatedMinutes: string; priority: TaskPriority; due: string };
const EMPTY: Draft = { title: "", description: "", estimatedMinutes: "", priority: TaskPriority.MEDIUM, due: "" };

type Breakdown = { state: "streaming" | "done" | "failed"; blocks: FocusBlock[]; arrivals: number; total: number; note: string };

export function Board() {
  const { api, feed } = useApp();
  const [tasks, setTasks] = useState<Task[]>([]);
  const [loadProblem, setLoadProblem] = useState<Problem | null>(null);
  const [draft, setDraft] = useState<Draft>(EMPTY);
  const [formProblem, setFormProblem] = useState<Problem | null>(null);
  const [breakdown, setBreakdown] = useState<Breakdown | null>(null);
  const [busy, setBusy] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      const res = await api.tasks.listTasks({ pageSize: 100 });
      setTasks(res.tasks);
      setLoadProblem(null);
    } catch (e) {
      setLoadProblem(problem(e));
    }
  }, [api]);

  useEffect(() => {
    void load();
    // Another tab, an agent over MCP or a workflow changed a task.
    return feed.on((e) => {
      if (
        [EventType.TASK_CREATED, EventType.TASK_UPDATED, EventType.TASK_STARTED, EventType.TASK_COMPLETED, EventType.TASK_DELETED].includes(e.type)
      ) {
        void load();
      }
    });
  }, [feed, load]);

  const minutesOf = (d: Draft) => (d.estimatedMinutes.trim() === "" ? 0 : Number(d.estimatedMinutes));

  async function breakDown() {
    setFormProblem(null);
    setBreakdown({ state: "streaming", blocks: [], arrivals: 0, total: 0, note: "" });
    try {
      const stream = api.chain.streamTaskBreakdown({
        task: {
          title: draft.title,
          description: draft.description,
          estimatedMinutes: minutesOf(draft),
          deadline: draft.due ? timestampFromDate(new Date(draft.due)) : undefined,
        },
      });
      let arrivals = 0;
      let streamed: FocusBlock[] = [];
      for await (const m of stream) {
        if (m.event.case === "block") {
          arrivals += 1;
          streamed = [...streamed, m.event.value];
          setBreakdown({ state: "streaming", blocks: streamed, arrivals, total: 0, note: "" });
        } else if (m.event.case === "result") {
          const r = m.event.value;
          const note = r.info?.fallbackUsed ? `Made by the rules (${r.info.fallbackReason || "no model"}).` : "";
          setBreakdown({ state: "done", blocks: r.blocks, arrivals, total: r.totalMinutes, note });
        }
      }
    } catch (e) {
      setFormProblem(problem(e));
      setBreakdown((b) => (b ? { ...b, state: "failed" } : null));
    }
  }

  async function add(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setFormProblem(null);
    try {
      const blocks =
        breakdown?.state === "done"
          ? breakdown.blocks.map((b, i) => create(WorkBlockSchema, { title: b.title, minutes: b.minutes, order: i }))
          : [];
      await api.tasks.createTask({
        title: draft.title,
        description: draft.description,
        estimatedMinutes: minutesOf(draft) || (breakdown?.state === "done" ? breakdown.total : 0),
        priority: draft.priority,
        dueTime: draft.due ? timestampFromDate(new Date(draft.due)) : undefined,
        blocks,
        requestId: newRequestId(),
      });
      setDraft(EMPTY);
      setBreakdown(null);
      await load();
    } catch (err) {
      setFormProblem(problem(err));
    } finally {
      setBusy(false);
    }
  }

  const formFields = ["title", "description", "estimated_minutes", "priority", "due_time", "deadline"];
  return (
    <>
      <h1>Tasks</h1>
      <section aria-labelledby="new-task" className="card">
        <h2 id="new-task">New task</h2>
        <form onSubmit={add} className="grid-form" noValidate>
          <Field label="Title" name="title" problem={formProblem}>
            {(a) => <input {...a} value={draft.title} onChange={(e) => setDraft({ ...draft, title: e.target.value })} />}
          </Field>
          <Field label="Estimated minutes" name="estimated_minutes" problem={formProblem} hint="Optional">
            {(a) => (
              <input
                {...a}
                inputMode="numeric"
                value={draft.estimatedMinutes}
                onChange={(e) => setDraft({ ...draft, estimatedMinutes: e.target.value })}
              />
            )}
          </Field>
          <PriorityField problem={formProblem} value={draft.priority} onChange={(priority) => setDraft({ ...draft, priority })} />
          <Field label="Due" name="due_time" problem={formProblem} hint="Optional">
            {(a) => <input {...a} type="datetime-local" value={draft.due} onChange={(e) => setDraft({ ...draft, due: e.target.value })} />}
          </Field>
          <Field label="Description" name="description" problem={formProblem}>
            {(a) => (
              <textarea {...a} rows={2} value={draft.description} onChange={(e) => setDraft({ ...draft, description: e.target.value })} />
            )}
          </Field>
          <Banner problem={formProblem} fields={formFields} />
          <div className="actions">
            <button type="button" className="secondary" onClick={() => void breakDown()} disabled={breakdown?.state === "streaming"}>
              Break it down with AI
            </button>
            <button type="submit" disabled={busy}>
              {breakdown?.state === "done" ? "Add task with these blocks" : "Add task"}
            </button>
          </div>
        </form>
        {breakdown && (
          <section
            aria-labelledby="breakdown-heading"
            className="breakdown"
            data-state={breakdown.state}
            data-arrivals={breakdown.arrivals}
          >
            <h3 id="breakdown-heading">
              Focus blocks {breakdown.state === "streaming" ? "(arriving…)" : breakdown.state === "done" ? `(${minutes(breakdown.total)} in all)` : "(stopped)"}
            </h3>
            <ol aria-live="polite">
              {breakdown.blocks.map((b, i) => (
                <li key={i} className="block">
                  <strong>{b.title}</strong> <span className="muted">{minutes(b.minutes)}</span>
                  {b.doneWhen && <div className="muted">Done when: {b.doneWhen}</div>}
                </li>
              ))}
            </ol>
            {breakdown.note && <p className="muted">{breakdown.note}</p>}
          </section>
        )}
      </section>
      <Banner problem={loadProblem} />
      {notice && (
        <p className="outcome" role="status" data-notice>
          {notice}
        </p>
      )}
      <div className="columns">
        {COLUMNS.map(([status, name]) => {
          const list = tasks.filter((t) => t.status === status);
          return (
            <section key={status} aria-labelledby={`col-${status}`} className="column" data-column={name}>
              <h2 id={`col-${status}`}>
                {name} <span className="count">({list.length})</span>
              </h2>
              {list.length === 0 && <p className="muted">Nothing here.</p>}
              {list.map((t) => (
                <TaskCard key={t.id} task={t} onChanged={load} notify={setNotice} />
              ))}
            </section>
          );
        })}
      </div>
    </>
  );
}

function TaskCard({ task, onChanged, notify }: { task: Task; onChanged: () => Promise<void>; notify: (m: string) => void }) {
  const { api } = useApp();
  const [mode, setMode] = useState<"view" | "edit" | "complete">("view");
  const [p, setP] = useState<Problem | null>(null);
  const [edit, setEdit] = useState({ title: task.title, description: task.description, estimatedMinutes: String(task.estimatedMinutes || ""), priority: task.priority });
  const [proof, setProof] = useState("");
  const [link, setLink] = useState("");
  const [busy, setBusy] = useState(false);

  async function act(f: () => Promise<unknown>) {
    setBusy(true);
    setP(null);
    try {
      await f();
      await onChanged();
      return true;
    } catch (e) {
      setP(problem(e));
      return false;
    } finally {
      setBusy(false);
    }
  }

  async function save(e: FormEvent) {
    e.preventDefault();
    const minutesValue = edit.estimatedMinutes.trim() === "" ? 0 : Number(edit.estimatedMinutes);
    const paths: string[] = [];
    if (edit.title !== task.title) paths.push("title");
    if (edit.description !== task.description) paths.push("description");
    if (minutesValue !== task.estimatedMinutes) paths.push("estimated_minutes");
    if (edit.priority !== task.priority) paths.push("priority");
    if (paths.length === 0) return setMode("view");
    const ok = await act(() =>
      api.tasks.updateTask({
        task: { id: task.id, title: edit.title, description: edit.description, estimatedMinutes: minutesValue, priority: edit.priority },
        updateMask: create(FieldMaskSchema, { paths }),
        expectedVersion: task.version,
      }),
    );
    if (ok) setMode("view");
  }

  async function complete(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setP(null);
    try {
      const r = await api.workflows.completeTaskEnhanced({ taskId: task.id, proof, link });
      if (r.completed) {
        notify(
          `“${task.title}” completed: +${r.pointsAwarded} points (balance ${r.balance}, level ${r.level}, streak ${r.streakDays} day${r.streakDays === 1 ? "" : "s"}). ${r.motivation}`,
        );
        setMode("view");
        await onChanged();
      } else {
        const verdict = r.verdict === ProofVerdict.REJECTED ? "Not accepted" : "Needs more";
        const reasons = [r.notCompletedReason, ...r.reasons].filter(Boolean).join(" ");
        setP({ message: `${verdict}: ${reasons}`, fields: { proof: `${verdict}: ${reasons}` } });
      }
    } catch (err) {
      setP(problem(err));
    } finally {
      setBusy(false);
    }
  }

  const due = task.dueTime ? timestampDate(task.dueTime) : null;
  return (
    <article className="task" aria-label={task.title} data-task={task.title}>
      {mode === "edit" ? (
        <form onSubmit={save} noValidate>
          <Field label="Title" name="title" problem={p}>
            {(a) => <input {...a} value={edit.title} onChange={(e) => setEdit({ ...edit, title: e.target.value })} />}
          </Field>
          <Field label="Description" name="description" problem={p}>
            {(a) => <textarea {...a} rows={2} value={edit.description} onChange={(e) => setEdit({ ...edit, description: e.target.value })} />}
          </Field>
          <Field label="Estimated minutes" name="estimated_minutes" problem={p}>
            {(a) => <input {...a} inputMode="numeric" value={edit.estimatedMinutes} onChange={(e) => setEdit({ ...edit, estimatedMinutes: e.target.value })} />}
          </Field>
          <PriorityField problem={p} value={edit.priority} onChange={(priority) => setEdit({ ...edit, priority })} />
          <Banner problem={p} fields={["title", "description", "estimated_minutes", "priority"]} />
          <div className="actions">
            <button type="submit" disabled={busy}>
              Save
            </button>
            <button type="button" className="quiet" onClick={() => setMode("view")}>
              Cancel
            </button>
          </div>
        </form>
      ) : (
        <>
          <h3>{task.title}</h3>
          <p className="meta">
            {priorityName(task.priority)} priority
            {task.estimatedMinutes > 0 && ` · ${minutes(task.estimatedMinutes)}`}
            {due && ` · due ${due.toLocaleString([], { dateStyle: "medium", timeStyle: "short" })}`}
            {task.focusMinutes > 0 && ` · ${minutes(task.focusMinutes)} focused`}
          </p>
          {task.description && <p>{task.description}</p>}
          {task.blocks.length > 0 && (
            <ol className="blocks">
              {task.blocks.map((b) => (
                <li key={b.id || b.order} className={b.done ? "done" : ""}>
                  {b.title} <span className="muted">{minutes(b.minutes)}</span>
                </li>
              ))}
            </ol>
          )}
          {task.status === TaskStatus.COMPLETED && task.completionProof && (
            <p className="muted">Proof: {task.completionProof}</p>
          )}
          <Banner problem={p} />
          {mode === "complete" ? (
            <form onSubmit={complete} noValidate>
              <Field label="What did you do?" name="proof" problem={p} hint="Say what is finished; a link to it helps">
                {(a) => <textarea {...a} rows={3} value={proof} onChange={(e) => setProof(e.target.value)} />}
              </Field>
              <Field label="Link" name="link" problem={p} hint="Optional: https://…">
                {(a) => <input {...a} type="url" value={link} onChange={(e) => setLink(e.target.value)} />}
              </Field>
              <div className="actions">
                <button type="submit" disabled={busy}>
                  Check and complete
                </button>
                <button type="button" className="quiet" onClick={() => setMode("view")}>
                  Cancel
                </button>
              </div>
            </form>
          ) : (
            task.status !== TaskStatus.COMPLETED && (
              <div className="actions">
                {task.status === TaskStatus.PENDING && (
                  <button type="button" disabled={busy} onClick={() => void act(() => api.tasks.startTask({ id: task.id }))}>
                    Start
                  </button>
                )}
                {task.status === TaskStatus.IN_PROGRESS && (
                  <button type="button" disabled={busy} onClick={() => setMode("complete")}>
                    Complete…
                  </button>
                )}
                <button type="button" className="secondary" onClick={() => setMode("edit")}>
                  Edit
                </button>
                <button type="button" className="quiet" disabled={busy} onClick={() => void act(() => api.tasks.deleteTask({ id: task.id }))}>
                  Delete
                </button>
              </div>
            )
          )}
        </>
      )}
    </article>
  );
}
