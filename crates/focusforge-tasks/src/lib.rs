//! The tasks domain: a user's tasks, their work blocks and lifecycle
//! (pending -> in progress -> completed). Validation lives here, storage goes
//! through the document store port, and nothing here knows about gRPC.

mod model;
mod progress;
mod service;

pub use model::{NewTask, Priority, Status, Task, TaskFilter, TaskPatch, WorkBlock};
pub use progress::{Progress, STREAK_MAX_DAYS, day_start};
pub use service::{CompletionHook, TaskChange, TaskObserver, TaskPage, Tasks};

/// The collection tasks live in.
pub const COLLECTION: &str = "tasks";

/// Limits every task obeys; the contract documents the same numbers.
pub mod limits {
    pub const TITLE: usize = 500;
    pub const DESCRIPTION: usize = 10_000;
    pub const PROOF: usize = 10_000;
    pub const ESTIMATED_MINUTES: i64 = 7 * 24 * 60;
    pub const BLOCK_MINUTES: i64 = 480;
    pub const BLOCKS: usize = 100;
    pub const BLOCK_ID: usize = 64;
    pub const BLOCK_ORDER: i64 = 10_000;
    pub const TAGS: usize = 32;
    pub const TAG: usize = 64;
    pub const ESTIMATED_POMODOROS: i64 = 100;
    /// Minutes one focus session may add to a task.
    pub const SESSION_MINUTES: i64 = 240;
    /// Sessions a task remembers having counted, so a repeated record of
    /// one of them changes nothing.
    pub const SESSIONS_REMEMBERED: usize = 200;
    pub const PAGE_SIZE_DEFAULT: usize = 50;
    pub const PAGE_SIZE_MAX: i64 = 200;
}
