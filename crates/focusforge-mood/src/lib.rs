//! The Mood service (`focusforge.mood.v1.MoodService`).
//!
//! - [`domain`]: entries, their limits and the patterns over them; no wire
//!   types.
//! - [`api`]: the gRPC adapter, and the user facts (time zone, completed
//!   tasks) it reads from the Users and Task services through the mesh.
//! - [`tools`]: the MCP tools `mood.log` and `mood.analyze_patterns`.
//! - [`MoodService`]: the kit module that ties them together, with the
//!   `mood_logs` collection and the planner's mood-tracking actions.

pub mod api;
pub mod domain;
pub mod tools;

use std::sync::Arc;

use async_trait::async_trait;
use focusforge_kit::{Built, Collection, Deps, Service};
use focusforge_mcp::Tool;
use focusforge_planner::{ActionType, Executor};
use focusforge_proto::mood::v1::mood_service_server::MoodServiceServer;
use tonic::server::NamedService;

pub use domain::{COLLECTION, Moods, Settings};

/// The kit module of the Mood service.
pub struct MoodService;

#[async_trait]
impl Service for MoodService {
    fn name(&self) -> &'static str {
        <MoodServiceServer<api::MoodApi> as NamedService>::NAME
    }

    fn short_name(&self) -> &'static str {
        "mood"
    }

    fn collections(&self) -> Vec<Collection> {
        vec![Collection {
            name: COLLECTION,
            indexes: &["body.at", "body.tags"],
        }]
    }

    fn tools(&self) -> Vec<Tool> {
        tools::tools()
    }

    fn action_types(&self) -> Vec<ActionType> {
        vec![ActionType::MoodTracking]
    }

    async fn build(&self, deps: &Deps) -> anyhow::Result<Built> {
        let settings: Settings = deps.settings(self.short_name())?;
        settings.check().map_err(anyhow::Error::msg)?;
        let moods = Moods::new(deps.store.clone(), deps.clock.clone(), settings);
        let api = api::MoodApi {
            moods,
            mesh: deps.mesh.clone(),
            events: deps.events.clone(),
        };
        Ok(Built::grpc(MoodServiceServer::new(api)))
    }

    fn executors(&self, deps: &Deps) -> Vec<(ActionType, Arc<dyn Executor>)> {
        vec![(
            ActionType::MoodTracking,
            Arc::new(api::MoodExecutor {
                mesh: deps.mesh.clone(),
            }),
        )]
    }
}
