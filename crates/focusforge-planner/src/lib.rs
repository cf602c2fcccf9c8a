//! Action plans. A plan is a DAG of actions, each with a type, a priority,
//! a not-before time, dependencies and a retry policy. [`Plan`] is the state
//! machine: it validates the graph, says which actions are ready, picks the
//! next ones to run under concurrency limits (priority, then not-before,
//! then age), and applies outcomes: success, a retry after backoff, or a
//! failure for good that cancels the dependents.

mod executor;
mod plan;
mod service;

pub use executor::{Executor, Executors, TaskExecutor};
pub use focusforge_core::{RetryError, RetryPolicy};
pub use plan::{
    Action, ActionSpec, ActionType, Limits, Outcome, Plan, PlanError, Priority, Running, Status,
};
pub use service::{
    ADVANCE_JOB, ActionFilter, ActionObserver, ActionView, PLANS, PlanView, Planner,
    PlannerSettings, plan_error,
};
