//! The plan state machine.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use focusforge_core::AfterFailure;
pub use focusforge_core::{Priority, RetryPolicy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionType {
    TaskManagement,
    MoodTracking,
    Gamification,
    Integration,
    Memory,
    Notification,
    Calendar,
    Focus,
}

impl ActionType {
    pub const ALL: [ActionType; 8] = [
        ActionType::TaskManagement,
        ActionType::MoodTracking,
        ActionType::Gamification,
        ActionType::Integration,
        ActionType::Memory,
        ActionType::Notification,
        ActionType::Calendar,
        ActionType::Focus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::TaskManagement => "task_management",
            ActionType::MoodTracking => "mood_tracking",
            ActionType::Gamification => "gamification",
            ActionType::Integration => "integration",
            ActionType::Memory => "memory",
            ActionType::Notification => "notification",
            ActionType::Calendar => "calendar",
            ActionType::Focus => "focus",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for dependencies, its not-before time or a retry's delay.
    Pending,
    Ready,
    Running,
    Succeeded,
    /// Failed with an error that is not retried.
    Failed,
    Cancelled,
    /// Failed on its last allowed attempt.
    Dead,
}

impl Status {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Succeeded | Status::Failed | Status::Cancelled | Status::Dead
        )
    }

    fn failed_for_good(self) -> bool {
        matches!(self, Status::Failed | Status::Cancelled | Status::Dead)
    }
}

/// An action as planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionSpec {
    /// Unique within the plan; dependencies name it.
    pub key: String,
    pub action_type: ActionType,
    pub priority: Priority,
    pub params: serde_json::Value,
    pub not_before: Option<DateTime<Utc>>,
    /// Not before a time a dependency produced: a `${key.path}` reference to
    /// an RFC 3339 string in an ancestor's output, shifted by
    /// `not_before_offset_secs`. The action is cancelled when its
    /// dependencies succeeded and the reference has no time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_from: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_before_offset_secs: i64,
    pub depends_on: Vec<String>,
    pub retry: RetryPolicy,
    pub idempotency_key: Option<String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Most an offset from a dependency's time may shift it: a year.
const OFFSET_MAX_SECS: i64 = 366 * 24 * 3600;

impl ActionSpec {
    pub fn new(key: impl Into<String>, action_type: ActionType) -> Self {
        Self {
            key: key.into(),
            action_type,
            priority: Priority::default(),
            params: serde_json::Value::Null,
            not_before: None,
            not_before_from: None,
            not_before_offset_secs: 0,
            depends_on: Vec::new(),
            retry: RetryPolicy::default(),
            idempotency_key: None,
        }
    }
}

/// An action and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub spec: ActionSpec,
    pub status: Status,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// Set while a retry waits.
    pub retry_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Why it was cancelled.
    pub reason: Option<String>,
    /// When its current (or last) attempt started.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished one way or another.
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// What it produced; dependents can refer to it in their params.
    #[serde(default)]
    pub output: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("a plan needs at least one action")]
    Empty,
    #[error("action {0:?} appears more than once")]
    Duplicate(String),
    #[error("action {action:?} depends on unknown actions: {}", missing.join(", "))]
    UnknownDependency {
        action: String,
        missing: Vec<String>,
    },
    #[error("the dependencies form a cycle among actions: {}", .0.join(", "))]
    Cycle(Vec<String>),
    #[error("action {action:?}: {field}: {reason}")]
    Invalid {
        action: String,
        /// The field's path within the action, e.g. `retry.jitter`.
        field: String,
        reason: String,
    },
    #[error("no action {0:?} in this plan")]
    NotFound(String),
    #[error("action {0:?} is not running")]
    NotRunning(String),
}

/// Most actions running at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub global: usize,
    pub per_user: usize,
    pub per_type: HashMap<ActionType, usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            global: 64,
            per_user: 4,
            per_type: HashMap::new(),
        }
    }
}

/// Actions running now, counted the way [`Limits`] caps them (across
/// plans: the caller adds up what runs elsewhere).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Running {
    pub global: usize,
    /// Of this plan's user.
    pub user: usize,
    pub per_type: HashMap<ActionType, usize>,
}

/// What running an action came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded,
    /// `kind` is matched against the retry policy's non-retryable kinds.
    Failed {
        kind: String,
        message: String,
    },
}

/// One user's plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    actions: Vec<Action>,
}

const MAX_ACTIONS: usize = 1_000;

impl Plan {
    /// Checks the actions (unique keys, known dependencies, no cycle, valid
    /// retry policies) and starts them all pending.
    pub fn new(specs: Vec<ActionSpec>, now: DateTime<Utc>) -> Result<Self, PlanError> {
        if specs.is_empty() {
            return Err(PlanError::Empty);
        }
        if specs.len() > MAX_ACTIONS {
            return Err(PlanError::Invalid {
                action: String::new(),
                field: "actions".into(),
                reason: format!("at most {MAX_ACTIONS} actions a plan"),
            });
        }
        let mut index = HashMap::new();
        for (i, s) in specs.iter().enumerate() {
            if s.key.trim().is_empty() || s.key.len() > 128 {
                return Err(PlanError::Invalid {
                    action: s.key.clone(),
                    field: "key".into(),
                    reason: "must be 1-128 characters".into(),
                });
            }
            if index.insert(s.key.as_str(), i).is_some() {
                return Err(PlanError::Duplicate(s.key.clone()));
            }
            s.retry.validate().map_err(|e| PlanError::Invalid {
                action: s.key.clone(),
                field: format!("retry.{}", e.field),
                reason: e.reason,
            })?;
        }
        for s in &specs {
            let missing: Vec<String> = s
                .depends_on
                .iter()
                .filter(|d| !index.contains_key(d.as_str()))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(PlanError::UnknownDependency {
                    action: s.key.clone(),
                    missing,
                });
            }
        }
        let deps: Vec<Vec<usize>> = specs
            .iter()
            .map(|s| s.depends_on.iter().map(|d| index[d.as_str()]).collect())
            .collect();
        if let Some(cycle) = cyclic(&deps) {
            return Err(PlanError::Cycle(
                cycle.into_iter().map(|i| specs[i].key.clone()).collect(),
            ));
        }
        // Params may refer to the output of any action the action waits
        // for, directly or not: those have succeeded when it runs.
        for (i, s) in specs.iter().enumerate() {
            let mut refs = Vec::new();
            references(&s.params, &mut refs);
            if let Some(from) = &s.not_before_from {
                let Some((key, path)) = reference(from) else {
                    return Err(PlanError::Invalid {
                        action: s.key.clone(),
                        field: "not_before_from".into(),
                        reason: "must be a reference, \"${key.path}\"".into(),
                    });
                };
                refs.push((key, path.into_iter().map(str::to_owned).collect()));
            }
            let from_ref = s.not_before_from.is_some();
            if !(-OFFSET_MAX_SECS..=OFFSET_MAX_SECS).contains(&s.not_before_offset_secs) {
                return Err(PlanError::Invalid {
                    action: s.key.clone(),
                    field: "not_before_offset".into(),
                    reason: "must be within a year either way".into(),
                });
            }
            if refs.is_empty() {
                continue;
            }
            let mut ancestors = HashSet::new();
            let mut stack = deps[i].clone();
            while let Some(d) = stack.pop() {
                if ancestors.insert(specs[d].key.as_str()) {
                    stack.extend(&deps[d]);
                }
            }
            if let Some(at) = refs.iter().position(|r| !ancestors.contains(r.0.as_str())) {
                let bad = &refs[at];
                // The reference of `not_before_from` is the last one.
                let field = if from_ref && at + 1 == refs.len() {
                    "not_before_from"
                } else {
                    "params"
                };
                return Err(PlanError::Invalid {
                    action: s.key.clone(),
                    field: field.into(),
                    reason: format!(
                        "refers to the output of {:?}, which it does not depend on",
                        bad.0
                    ),
                });
            }
        }
        Ok(Self {
            actions: specs
                .into_iter()
                .map(|spec| Action {
                    spec,
                    status: Status::Pending,
                    attempts: 0,
                    created_at: now,
                    retry_at: None,
                    last_error: None,
                    reason: None,
                    started_at: None,
                    finished_at: None,
                    output: None,
                })
                .collect(),
        })
    }

    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    pub fn get(&self, key: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.spec.key == key)
    }

    fn position(&self, key: &str) -> Result<usize, PlanError> {
        self.actions
            .iter()
            .position(|a| a.spec.key == key)
            .ok_or_else(|| PlanError::NotFound(key.to_owned()))
    }

    /// Every action has finished one way or another.
    pub fn is_done(&self) -> bool {
        self.actions.iter().all(|a| a.status.is_terminal())
    }

    /// Moves pending actions to ready when their dependencies succeeded
    /// and their time has come; cancels those whose dependency failed for
    /// good.
    pub fn refresh(&mut self, now: DateTime<Utc>) {
        let index: HashMap<&str, usize> = self
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| (a.spec.key.as_str(), i))
            .collect();
        // Dependencies as positions, looked up once.
        let deps: Vec<Vec<usize>> = self
            .actions
            .iter()
            .map(|a| {
                a.spec
                    .depends_on
                    .iter()
                    .map(|d| index[d.as_str()])
                    .collect()
            })
            .collect();
        loop {
            let mut changed = false;
            for (i, deps) in deps.iter().enumerate() {
                if self.actions[i].status != Status::Pending {
                    continue;
                }
                if let Some(&dep) = deps
                    .iter()
                    .find(|&&d| self.actions[d].status.failed_for_good())
                {
                    let name = self.actions[dep].spec.key.clone();
                    let a = &mut self.actions[i];
                    a.status = Status::Cancelled;
                    a.finished_at = Some(now);
                    a.reason = Some(format!("dependency {name:?} did not succeed"));
                    changed = true;
                    continue;
                }
                let deps_done = deps
                    .iter()
                    .all(|&d| self.actions[d].status == Status::Succeeded);
                if !deps_done {
                    continue;
                }
                let from = match self.time_from(i) {
                    Ok(t) => t,
                    Err(reason) => {
                        let a = &mut self.actions[i];
                        a.status = Status::Cancelled;
                        a.finished_at = Some(now);
                        a.reason = Some(reason);
                        changed = true;
                        continue;
                    }
                };
                let a = &mut self.actions[i];
                let due = a.spec.not_before.is_none_or(|t| t <= now)
                    && from.is_none_or(|t| t <= now)
                    && a.retry_at.is_none_or(|t| t <= now);
                if due {
                    a.status = Status::Ready;
                    a.retry_at = None;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// The ready actions to start now, best first (priority, then
    /// not-before time, then plan order), as many as the limits allow; they
    /// are marked running. `running` is updated with them.
    pub fn start(
        &mut self,
        now: DateTime<Utc>,
        limits: &Limits,
        running: &mut Running,
    ) -> Vec<String> {
        self.refresh(now);
        let mut ready: Vec<usize> = (0..self.actions.len())
            .filter(|&i| self.actions[i].status == Status::Ready)
            .collect();
        ready.sort_by_key(|&i| {
            let a = &self.actions[i];
            (
                a.spec.priority,
                a.spec.not_before.unwrap_or(a.created_at),
                i,
            )
        });
        let mut started = Vec::new();
        for i in ready {
            if running.global >= limits.global || running.user >= limits.per_user {
                break;
            }
            let t = self.actions[i].spec.action_type;
            let of_type = running.per_type.entry(t).or_default();
            if limits.per_type.get(&t).is_some_and(|cap| *of_type >= *cap) {
                continue;
            }
            *of_type += 1;
            running.global += 1;
            running.user += 1;
            let a = &mut self.actions[i];
            a.status = Status::Running;
            a.attempts += 1;
            a.started_at = Some(now);
            started.push(a.spec.key.clone());
        }
        started
    }

    /// Records how a running action ended and returns its new status: a
    /// failure is retried after the policy's delay (`sample`, 0-1, draws
    /// the jitter) until it is not retryable or the attempts run out; then
    /// its dependents are cancelled. An action cancelled while it ran stays
    /// cancelled.
    pub fn finish(
        &mut self,
        key: &str,
        outcome: Outcome,
        now: DateTime<Utc>,
        sample: f64,
    ) -> Result<Status, PlanError> {
        let i = self.position(key)?;
        let a = &mut self.actions[i];
        match a.status {
            Status::Running => {}
            Status::Cancelled => return Ok(Status::Cancelled),
            _ => return Err(PlanError::NotRunning(key.to_owned())),
        }
        match outcome {
            Outcome::Succeeded => {
                a.status = Status::Succeeded;
                a.last_error = None;
            }
            Outcome::Failed { kind, message } => {
                a.last_error = Some(format!("{kind}: {message}"));
                match a.spec.retry.after_failure(a.attempts, &kind, sample) {
                    AfterFailure::Retry(delay) => {
                        a.status = Status::Pending;
                        a.retry_at =
                            Some(now + chrono::Duration::from_std(delay).unwrap_or_default());
                    }
                    AfterFailure::Failed => a.status = Status::Failed,
                    AfterFailure::Dead => a.status = Status::Dead,
                }
            }
        }
        if a.status.is_terminal() {
            a.finished_at = Some(now);
        }
        let status = a.status;
        self.refresh(now);
        Ok(status)
    }

    /// Cancels an action that has not finished, and every action that
    /// depends on it, directly or not, finishing them at `now`. Returns the
    /// keys cancelled.
    pub fn cancel(
        &mut self,
        key: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, PlanError> {
        let root = self.position(key)?;
        let mut cancelled = Vec::new();
        let mut queue = vec![root];
        let mut seen = HashSet::new();
        while let Some(i) = queue.pop() {
            if !seen.insert(i) {
                continue;
            }
            let a = &mut self.actions[i];
            if !a.status.is_terminal() {
                a.status = Status::Cancelled;
                a.finished_at = Some(now);
                a.reason = Some(if i == root {
                    reason.to_owned()
                } else {
                    format!("dependency {key:?} was cancelled")
                });
                cancelled.push(a.spec.key.clone());
            }
            let name = self.actions[i].spec.key.clone();
            queue.extend(
                (0..self.actions.len())
                    .filter(|&j| self.actions[j].spec.depends_on.contains(&name)),
            );
        }
        Ok(cancelled)
    }

    /// Records what a running action produced.
    pub fn set_output(&mut self, key: &str, output: serde_json::Value) -> Result<(), PlanError> {
        let i = self.position(key)?;
        self.actions[i].output = Some(output);
        Ok(())
    }

    /// Running actions that started before `cutoff`: their runner is
    /// presumed gone (a crash or restart) and they can be failed and retried.
    pub fn started_before(&self, cutoff: DateTime<Utc>) -> Vec<String> {
        self.actions
            .iter()
            .filter(|a| a.status == Status::Running && a.started_at.is_none_or(|t| t < cutoff))
            .map(|a| a.spec.key.clone())
            .collect()
    }

    /// The action's params with every `${key.path}` string replaced by that
    /// part of the named dependency's output (`${key}` for all of it).
    pub fn resolve_params(&self, key: &str) -> Result<serde_json::Value, PlanError> {
        let a = &self.actions[self.position(key)?];
        let mut params = a.spec.params.clone();
        substitute(&mut params, &|name, path| self.lookup(name, path)).map_err(|reference| {
            PlanError::Invalid {
                action: key.to_owned(),
                field: "params".into(),
                reason: format!("{reference} has no value in the dependency's output"),
            }
        })?;
        Ok(params)
    }

    /// The earliest time a pending action becomes due, if one waits.
    /// Only actions whose dependencies have succeeded count: the others
    /// become due when those finish, not at a time.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        let succeeded: HashSet<&str> = self
            .actions
            .iter()
            .filter(|a| a.status == Status::Succeeded)
            .map(|a| a.spec.key.as_str())
            .collect();
        self.actions
            .iter()
            .filter(|a| a.status == Status::Pending)
            .filter(|a| {
                a.spec
                    .depends_on
                    .iter()
                    .all(|d| succeeded.contains(d.as_str()))
            })
            .filter_map(|a| {
                let i = self.position(&a.spec.key).ok()?;
                let from = self.time_from(i).ok().flatten();
                [a.spec.not_before, from, a.retry_at]
                    .into_iter()
                    .flatten()
                    .max()
            })
            .min()
    }

    /// The time `not_before_from` names, shifted by the offset: `None`
    /// without one; an error saying why when the output has no time there.
    fn time_from(&self, i: usize) -> Result<Option<DateTime<Utc>>, String> {
        let spec = &self.actions[i].spec;
        let Some(from) = &spec.not_before_from else {
            return Ok(None);
        };
        let value = reference(from).and_then(|(key, path)| self.lookup(&key, &path));
        let time = value
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .ok_or_else(|| format!("{from} is not a time in the dependency's output"))?;
        chrono::Duration::try_seconds(spec.not_before_offset_secs)
            .and_then(|offset| time.with_timezone(&Utc).checked_add_signed(offset))
            .map(Some)
            .ok_or_else(|| format!("{from} shifted by the offset is not a time"))
    }

    fn lookup(&self, name: &str, path: &[&str]) -> Option<serde_json::Value> {
        let dep = self.get(name)?;
        let mut v = dep.output.as_ref()?;
        for seg in path {
            v = match v {
                serde_json::Value::Object(m) => m.get(*seg)?,
                serde_json::Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(v.clone())
    }
}

/// A `${key.path}` reference: the action key and the path segments.
fn reference(s: &str) -> Option<(String, Vec<&str>)> {
    let inner = s.strip_prefix("${")?.strip_suffix('}')?;
    let mut parts = inner.split('.');
    let key = parts.next().filter(|k| !k.is_empty())?;
    Some((key.to_owned(), parts.collect()))
}

fn references(v: &serde_json::Value, out: &mut Vec<(String, Vec<String>)>) {
    match v {
        serde_json::Value::String(s) => {
            if let Some((k, path)) = reference(s) {
                out.push((k, path.into_iter().map(str::to_owned).collect()));
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| references(i, out)),
        serde_json::Value::Object(m) => m.values().for_each(|i| references(i, out)),
        _ => {}
    }
}

/// Replaces references in place; on a dangling one returns it.
fn substitute(
    v: &mut serde_json::Value,
    lookup: &dyn Fn(&str, &[&str]) -> Option<serde_json::Value>,
) -> Result<(), String> {
    match v {
        serde_json::Value::String(s) => {
            if let Some((k, path)) = reference(s) {
                let found = lookup(&k, &path).ok_or_else(|| s.clone())?;
                *v = found;
            }
        }
        serde_json::Value::Array(items) => {
            for i in items {
                substitute(i, lookup)?;
            }
        }
        serde_json::Value::Object(m) => {
            for i in m.values_mut() {
                substitute(i, lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The actions on (or between) cycles of the dependency graph, if any:
/// what a topological sort cannot order, less what merely hangs below it.
fn cyclic(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    let n = deps.len();
    let mut dependents = vec![Vec::new(); n];
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut queue: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut left = vec![true; n];
    while let Some(i) = queue.pop() {
        left[i] = false;
        for &j in &dependents[i] {
            waiting[j] -= 1;
            if waiting[j] == 0 {
                queue.push(j);
            }
        }
    }
    if !left.iter().any(|&l| l) {
        return None;
    }
    // Peel off the leftovers nothing leftover depends on.
    loop {
        let leaf = (0..n).find(|&i| left[i] && !dependents[i].iter().any(|&j| left[j]));
        match leaf {
            Some(i) => left[i] = false,
            None => break,
        }
    }
    Some((0..n).filter(|&i| left[i]).collect())
}
