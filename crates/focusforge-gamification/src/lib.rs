//! The Gamification service (`focusforge.gamification.v1.GamificationService`).
//!
//! - [`domain`]: the wallet and its append-only ledger, the rules (points,
//!   levels, daily goal, streak milestones, achievements) and the store.
//! - [`streak`]: days in the user's time zone, rest days and freezes.
//! - [`api`]: the gRPC adapter; the facts it checks with the Users, Task and
//!   Focus services; the completion hook, the award job and the planner's
//!   gamification executor.
//! - [`tools`]: the MCP tools `gamification.progress`, `.store`, `.redeem`.

pub mod api;
pub mod domain;
pub mod streak;
pub mod tools;

use std::sync::Arc;

use async_trait::async_trait;
use focusforge_kit::{Built, Collection, Deps, Service};
use focusforge_mcp::Tool;
use focusforge_planner::{ActionType, Executor};
use focusforge_proto::gamification::v1::gamification_service_server::GamificationServiceServer;
use tonic::server::NamedService;

pub use api::{AWARD_JOB, Cause, TaskCompletions, award_or_later};
pub use domain::{Game, Settings};

/// The kit module of the Gamification service.
pub struct GamificationService;

#[async_trait]
impl Service for GamificationService {
    fn name(&self) -> &'static str {
        <GamificationServiceServer<api::GameApi> as NamedService>::NAME
    }

    fn short_name(&self) -> &'static str {
        "gamification"
    }

    fn collections(&self) -> Vec<Collection> {
        vec![
            Collection {
                name: domain::WALLETS,
                indexes: &[],
            },
            Collection {
                name: domain::LEDGER,
                indexes: &["body.key", "body.reason"],
            },
            Collection {
                name: domain::REWARDS,
                indexes: &[],
            },
        ]
    }

    fn tools(&self) -> Vec<Tool> {
        tools::tools()
    }

    fn action_types(&self) -> Vec<ActionType> {
        vec![ActionType::Gamification]
    }

    fn job_kinds(&self) -> Vec<&'static str> {
        vec![AWARD_JOB]
    }

    async fn build(&self, deps: &Deps) -> anyhow::Result<Built> {
        let settings: Settings = deps.settings(self.short_name())?;
        settings.check().map_err(anyhow::Error::msg)?;
        let game = Game::new(deps.store.clone(), deps.clock.clone(), settings);
        let api = api::GameApi {
            game,
            mesh: deps.mesh.clone(),
            events: deps.events.clone(),
        };
        Ok(Built::grpc(GamificationServiceServer::new(api)).job(
            AWARD_JOB,
            Arc::new(api::AwardJob {
                mesh: deps.mesh.clone(),
            }),
        ))
    }

    fn executors(&self, deps: &Deps) -> Vec<(ActionType, Arc<dyn Executor>)> {
        vec![(
            ActionType::Gamification,
            Arc::new(api::GameExecutor {
                mesh: deps.mesh.clone(),
            }),
        )]
    }
}
