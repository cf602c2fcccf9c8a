//! The Focus service (`focusforge.focus.v1.FocusService`): pomodoro
//! sessions timed by the server.
//!
//! - [`domain`]: the session state machine, the one-open-session pointer,
//!   lists and stats; no wire types.
//! - [`api`]: the gRPC adapter, the timer job, and what a completed session
//!   sets off (points through Gamification, minutes on its task).
//! - [`tools`]: the MCP tools `focus.start`, `.pause`, `.resume`,
//!   `.complete`, `.current`, `.stats`.

pub mod api;
pub mod domain;
pub mod tools;

use async_trait::async_trait;
use focusforge_kit::{Built, Collection, Deps, Service};
use focusforge_mcp::Tool;
use focusforge_planner::{ActionType, Executor};
use focusforge_proto::focus::v1::focus_service_server::FocusServiceServer;
use std::sync::Arc;
use tonic::server::NamedService;

pub use api::{COMPLETED_JOB, TIMER_JOB};
pub use domain::{Focus, Settings};

/// The kit module of the Focus service.
pub struct FocusService;

#[async_trait]
impl Service for FocusService {
    fn name(&self) -> &'static str {
        <FocusServiceServer<api::FocusApi> as NamedService>::NAME
    }

    fn short_name(&self) -> &'static str {
        "focus"
    }

    fn collections(&self) -> Vec<Collection> {
        vec![
            Collection {
                name: domain::SESSIONS,
                indexes: &["body.started_at", "body.task_id"],
            },
            Collection {
                name: domain::CURRENT,
                indexes: &[],
            },
        ]
    }

    fn tools(&self) -> Vec<Tool> {
        tools::tools()
    }

    fn job_kinds(&self) -> Vec<&'static str> {
        vec![TIMER_JOB, COMPLETED_JOB]
    }

    fn action_types(&self) -> Vec<ActionType> {
        vec![ActionType::Focus]
    }

    fn executors(&self, deps: &Deps) -> Vec<(ActionType, Arc<dyn Executor>)> {
        vec![(
            ActionType::Focus,
            Arc::new(api::FocusExecutor {
                mesh: deps.mesh.clone(),
            }),
        )]
    }

    async fn build(&self, deps: &Deps) -> anyhow::Result<Built> {
        let settings: Settings = deps.settings(self.short_name())?;
        settings.check().map_err(anyhow::Error::msg)?;
        let focus = Focus::new(deps.store.clone(), deps.clock.clone(), settings);
        let effects = api::Effects {
            mesh: deps.mesh.clone(),
            jobs: deps.jobs.clone(),
            events: deps.events.clone(),
        };
        let (timer, completed) = api::handlers(&focus, &effects);
        Ok(
            Built::grpc(FocusServiceServer::new(api::FocusApi { focus, effects }))
                .job(TIMER_JOB, timer)
                .job(COMPLETED_JOB, completed),
        )
    }
}
