//! The tools, one module per service: typed inputs and outputs (their JSON
//! Schemas come from these types) and handlers that call the owning service
//! through the mesh. Each service's kit module lists its own; a service
//! outside this crate (mood, ...) defines its tools with [`Tool::new`] beside
//! its other wiring.

use chrono::{DateTime, Utc};
use focusforge_proto::chain::v1 as chain;
use focusforge_proto::chain::v1::chain_service_client::ChainServiceClient;
use focusforge_proto::common::v1 as common;
use focusforge_proto::memory::v1 as memory_pb;
use focusforge_proto::memory::v1::memory_service_client::MemoryServiceClient;
use focusforge_proto::planner::v1 as planner_pb;
use focusforge_proto::planner::v1::planner_service_client::PlannerServiceClient;
use focusforge_proto::tasks::v1 as tasks_pb;
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) use focusforge_mesh::Conn;

pub use crate::registry::{Caller, Category, Mesh, Tool, ToolError};

pub mod ai;
pub mod memory;
pub mod planner;
pub mod tasks;

pub const CHAIN: &str = focusforge_proto::chain::v1::chain_service_server::SERVICE_NAME;
pub const TASKS: &str = focusforge_proto::tasks::v1::task_service_server::SERVICE_NAME;
pub const MEMORY: &str = focusforge_proto::memory::v1::memory_service_server::SERVICE_NAME;
pub const PLANNER: &str = focusforge_proto::planner::v1::planner_service_server::SERVICE_NAME;

pub fn ts(t: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    std::time::SystemTime::try_from(t?).ok().map(DateTime::from)
}

pub fn pb_ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    std::time::SystemTime::from(t).into()
}

pub fn missing(what: &str) -> ToolError {
    ToolError::Upstream(tonic::Status::internal(format!(
        "the service returned no {what}"
    )))
}

/// A client of `service` through the mesh.
pub fn client<C>(mesh: &Mesh, service: &str, new: impl FnOnce(Conn) -> C) -> Result<C, ToolError> {
    Ok(new(mesh.conn(service)?))
}

/// The tools of the engine's services (chain, tasks, memory, planner).
pub fn all() -> Vec<Tool> {
    let mut tools = ai::tools();
    tools.extend(tasks::tools());
    tools.extend(memory::tools());
    tools.extend(planner::tools());
    tools
}
