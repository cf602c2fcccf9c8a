//! The Orchestrator service (`focusforge.orchestrator.v1.OrchestratorService`):
//! the original design's Memory-Chain-Planner workflows, calling every
//! service through the mesh as the caller, so they run the same in one
//! process and across a mesh.
//!
//! - [`api`]: the workflows (create, complete, focus) and the gRPC adapter.
//! - [`day`]: OptimizeDay, its pure planner and the calls it gathers from.
//! - [`step`]: deadlines and the report of every step.
//! - [`replay`]: answers kept per idempotency key.
//! - [`tools`]: the MCP tools `workflows.*`.

pub mod api;
pub mod day;
pub mod replay;
pub mod step;
pub mod tools;

use async_trait::async_trait;
use focusforge_kit::{Built, Collection, Deps, Service};
use focusforge_mcp::Tool;
use focusforge_proto::orchestrator::v1::orchestrator_service_server::OrchestratorServiceServer;
use tonic::server::NamedService;

/// The kit module of the Orchestrator service.
pub struct OrchestratorService;

#[async_trait]
impl Service for OrchestratorService {
    fn name(&self) -> &'static str {
        <OrchestratorServiceServer<api::OrchestratorApi> as NamedService>::NAME
    }

    fn short_name(&self) -> &'static str {
        "orchestrator"
    }

    fn collections(&self) -> Vec<Collection> {
        vec![Collection {
            name: replay::COLLECTION,
            indexes: &[],
        }]
    }

    fn tools(&self) -> Vec<Tool> {
        tools::tools()
    }

    async fn build(&self, deps: &Deps) -> anyhow::Result<Built> {
        Ok(Built::grpc(OrchestratorServiceServer::new(
            api::OrchestratorApi {
                mesh: deps.mesh.clone(),
                store: deps.store.clone(),
                clock: deps.clock.clone(),
            },
        )))
    }
}
