// Small building blocks every screen uses: a labelled field that shows the
// server's reason next to it, and a banner for everything else.
import { useId, type ReactNode } from "react";
import type { Problem } from "./api";

export function Field(props: {
  label: string;
  name: string;
  problem?: Problem | null;
  hint?: string;
  children: (attrs: {
    id: string;
    name: string;
    "aria-invalid": boolean;
    "aria-describedby"?: string;
  }) => ReactNode;
}) {
  const id = useId();
  const error = props.problem?.fields[props.name];
  const described = [props.hint ? `${id}-hint` : "", error ? `${id}-error` : ""].filter(Boolean).join(" ");
  return (
    <div className={error ? "field invalid" : "field"}>
      <label htmlFor={id}>{props.label}</label>
      {props.children({
        id,
        name: props.name,
        "aria-invalid": Boolean(error),
        "aria-describedby": described || undefined,
      })}
      {props.hint && (
        <span className="hint" id={`${id}-hint`}>
          {props.hint}
        </span>
      )}
      {error && (
        <span className="field-error" id={`${id}-error`} role="alert" data-field-error={props.name}>
          {error}
        </span>
      )}
    </div>
  );
}

/// The part of a problem no field shows.
export function Banner({ problem, fields = [] }: { problem: Problem | null; fields?: string[] }) {
  if (!problem) return null;
  const unshown = Object.keys(problem.fields).filter((f) => !fields.includes(f));
  if (Object.keys(problem.fields).length > 0 && unshown.length === 0) return null;
  return (
    <p className="banner" role="alert">
      {problem.message}
      {unshown.length > 0 && ` (${unshown.map((f) => `${f}: ${problem.fields[f]}`).join("; ")})`}
    </p>
  );
}

export function minutes(m: number): string {
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  const rest = m % 60;
  return rest ? `${h} h ${rest} min` : `${h} h`;
}

export function clock(d: Date): string {
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function mmss(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}
