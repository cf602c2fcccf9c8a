import { useCallback, useEffect, useState, type FormEvent } from "react";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { useApp } from "../App";
import { newRequestId, problem, type Problem } from "../api";
import { Banner, Field } from "../ui";
import type { MoodEntry, MoodPatterns } from "../gen/focusforge/mood/v1/mood_pb";

const SCORES = ["", "Awful", "Low", "Okay", "Good", "Great"];
const WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const list = (s: string) =>
  s
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);

export function Mood() {
  const { api } = useApp();
  const [score, setScore] = useState("");
  const [energy, setEnergy] = useState("");
  const [emotions, setEmotions] = useState("");
  const [tags, setTags] = useState("");
  const [note, setNote] = useState("");
  const [p, setP] = useState<Problem | null>(null);
  const [entries, setEntries] = useState<MoodEntry[]>([]);
  const [patterns, setPatterns] = useState<MoodPatterns | null>(null);
  const [saved, setSaved] = useState<string | null>(null);

  const load = useCallback(async () => {
    const end = new Date();
    const start = new Date(end.getTime() - 30 * 86_400_000);
    try {
      const [l, pat] = await Promise.all([
        api.mood.listMoods({ startTime: timestampFromDate(start), endTime: timestampFromDate(end), pageSize: 20 }),
        api.mood.getMoodPatterns({ startTime: timestampFromDate(start), endTime: timestampFromDate(end) }),
      ]);
      setEntries(l.entries);
      setPatterns(pat.patterns ?? null);
    } catch (e) {
      setP(problem(e));
    }
  }, [api]);

  useEffect(() => {
    void load();
  }, [load]);

  async function log(e: FormEvent) {
    e.preventDefault();
    setP(null);
    setSaved(null);
    try {
      const r = await api.mood.logMood({
        score: score === "" ? 0 : Number(score),
        energy: energy === "" ? 0 : Number(energy),
        emotions: list(emotions),
        tags: list(tags),
        note,
        requestId: newRequestId(),
      });
      setSaved(`Logged: ${SCORES[r.entry?.score ?? 0] ?? r.entry?.score}.`);
      setScore("");
      setEnergy("");
      setEmotions("");
      setTags("");
      setNote("");
      await load();
    } catch (err) {
      setP(problem(err));
    }
  }

  const bestHours = patterns
    ? [...patterns.byHour].filter((b) => b.entries > 0).sort((a, b) => b.averageScore - a.averageScore).slice(0, 3)
    : [];
  const bestDays = patterns
    ? [...patterns.byWeekday].filter((b) => b.entries > 0).sort((a, b) => b.averageScore - a.averageScore).slice(0, 2)
    : [];
  return (
    <>
      <h1>Mood</h1>
      <section aria-labelledby="log-heading" className="card">
        <h2 id="log-heading">How are you?</h2>
        <form onSubmit={log} className="grid-form" noValidate>
          <Field label="Mood (1–5)" name="score" problem={p}>
            {(a) => (
              <select {...a} value={score} onChange={(e) => setScore(e.target.value)}>
                <option value="">Choose…</option>
                {[1, 2, 3, 4, 5].map((n) => (
                  <option key={n} value={n}>
                    {n} · {SCORES[n]}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field label="Energy (1–5)" name="energy" problem={p} hint="Optional">
            {(a) => (
              <select {...a} value={energy} onChange={(e) => setEnergy(e.target.value)}>
                <option value="">Not said</option>
                {[1, 2, 3, 4, 5].map((n) => (
                  <option key={n} value={n}>
                    {n}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field label="Emotions" name="emotions" problem={p} hint="Comma-separated, e.g. calm, curious">
            {(a) => <input {...a} value={emotions} onChange={(e) => setEmotions(e.target.value)} />}
          </Field>
          <Field label="Tags" name="tags" problem={p} hint="What went on: slept-well, coffee, meetings">
            {(a) => <input {...a} value={tags} onChange={(e) => setTags(e.target.value)} />}
          </Field>
          <Field label="Note" name="note" problem={p}>
            {(a) => <textarea {...a} rows={2} value={note} onChange={(e) => setNote(e.target.value)} />}
          </Field>
          <Banner problem={p} fields={["score", "energy", "emotions", "tags", "note"]} />
          <div className="actions">
            <button type="submit">Log mood</button>
          </div>
          {saved && (
            <p role="status" className="outcome">
              {saved}
            </p>
          )}
        </form>
      </section>
      <section aria-labelledby="patterns-heading" className="card" data-entries={patterns?.entries ?? 0}>
        <h2 id="patterns-heading">Patterns, last 30 days</h2>
        {!patterns || patterns.entries === 0 ? (
          <p className="muted">Log a few moods to see your patterns.</p>
        ) : (
          <dl className="facts">
            <dt>Entries</dt>
            <dd data-fact="entries">{patterns.entries}</dd>
            <dt>Average mood</dt>
            <dd data-fact="average">{patterns.averageScore.toFixed(1)} / 5</dd>
            {patterns.energyEntries > 0 && (
              <>
                <dt>Average energy</dt>
                <dd>{patterns.averageEnergy.toFixed(1)} / 5</dd>
              </>
            )}
            {bestHours.length > 0 && (
              <>
                <dt>Best hours</dt>
                <dd data-fact="hours">{bestHours.map((b) => `${String(b.key).padStart(2, "0")}:00 (${b.averageScore.toFixed(1)})`).join(", ")}</dd>
              </>
            )}
            {bestDays.length > 0 && (
              <>
                <dt>Best days</dt>
                <dd>{bestDays.map((b) => WEEKDAYS[b.key % 7] ?? b.key).join(", ")}</dd>
              </>
            )}
            {patterns.betterWith.length > 0 && (
              <>
                <dt>Better with</dt>
                <dd data-fact="better">{patterns.betterWith.map((t) => `${t.tag} (+${t.effect.toFixed(1)})`).join(", ")}</dd>
              </>
            )}
            {patterns.worseWith.length > 0 && (
              <>
                <dt>Worse with</dt>
                <dd data-fact="worse">{patterns.worseWith.map((t) => `${t.tag} (${t.effect.toFixed(1)})`).join(", ")}</dd>
              </>
            )}
            {patterns.tagsWithoutEnoughEntries.length > 0 && (
              <>
                <dt>Not enough entries yet</dt>
                <dd>{patterns.tagsWithoutEnoughEntries.join(", ")}</dd>
              </>
            )}
            {patterns.emotions.length > 0 && (
              <>
                <dt>Emotions</dt>
                <dd data-fact="emotions">{patterns.emotions.map((e) => `${e.emotion} ×${e.entries}`).join(", ")}</dd>
              </>
            )}
          </dl>
        )}
      </section>
      <section aria-labelledby="recent-heading" className="card">
        <h2 id="recent-heading">Recent entries</h2>
        {entries.length === 0 ? (
          <p className="muted">None yet.</p>
        ) : (
          <ul className="plain">
            {entries.map((m) => (
              <li key={m.id} data-mood={m.score}>
                <strong>
                  {m.score} · {SCORES[m.score]}
                </strong>{" "}
                <span className="muted">{m.at ? timestampDate(m.at).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : ""}</span>
                {m.tags.length > 0 && <span> · {m.tags.join(", ")}</span>}
                {m.note && <div>{m.note}</div>}
              </li>
            ))}
          </ul>
        )}
      </section>
    </>
  );
}
