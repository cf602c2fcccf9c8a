//! The gRPC edge of the domain services: a few lines per RPC that verify the
//! caller, convert messages into domain types and map domain errors into
//! statuses. All tonic types stop here.

mod auth;
mod chain;
pub mod convert;
mod error;
pub mod events;
mod jobs;
mod mcp;
mod memory;
mod planner;
pub mod sync;
mod tasks;
mod users;

pub use auth::{AuthInterceptor, caller, identity, service_caller};
pub use chain::{ChainApi, chain_task, deadline};
pub use error::{from_status, into_status};
pub use events::{EventApi, JobEvents, PlanEvents, ReminderExecutor, TaskEvents};
pub use jobs::JobApi;
pub use mcp::McpApi;
pub use memory::MemoryApi;
pub use planner::PlannerApi;
pub use tasks::TaskApi;
pub use users::{UserApi, preferences_of};
