//! The Analytics service (`focusforge.analytics.v1.AnalyticsService`):
//! what the user's tasks, focus sessions, moods and points say over time.
//!
//! - [`report`]: the figures, from a user's facts alone; no I/O.
//! - [`facts`]: the facts, read from the Task, Focus, Mood and Gamification
//!   services' `Sync*` streams as the caller and kept per user in a bounded
//!   cache brought up to date at every call.
//! - [`api`]: the gRPC adapter; [`tools`]: the MCP tool `analytics.report`.
//!
//! It owns no collection: everything it says is derived from the services
//! that own the records.

pub mod api;
pub mod facts;
pub mod report;
pub mod tools;

use std::sync::Arc;

use async_trait::async_trait;
use focusforge_kit::{Built, Collection, Deps, Service};
use focusforge_mcp::Tool;
use focusforge_proto::analytics::v1::analytics_service_server::AnalyticsServiceServer;
use serde::Deserialize;
use tonic::server::NamedService;

/// `[service.analytics]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The most facts (tasks, sessions, moods, ledger entries) the process
    /// keeps over all users; the least recently used user goes first.
    pub cache_facts: u64,
    /// How often a user's facts are read in full again (dropping deleted
    /// records), in seconds.
    pub refresh_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cache_facts: 2_000_000,
            refresh_secs: 600,
        }
    }
}

impl Settings {
    pub fn check(&self) -> Result<(), String> {
        if !(1_000..=100_000_000).contains(&self.cache_facts) {
            return Err(format!(
                "[service.analytics] cache_facts must be 1000-100000000, got {}",
                self.cache_facts
            ));
        }
        if !(1..=86_400).contains(&self.refresh_secs) {
            return Err(format!(
                "[service.analytics] refresh_secs must be 1-86400, got {}",
                self.refresh_secs
            ));
        }
        Ok(())
    }
}

/// The kit module of the Analytics service.
pub struct AnalyticsService;

#[async_trait]
impl Service for AnalyticsService {
    fn name(&self) -> &'static str {
        <AnalyticsServiceServer<api::AnalyticsApi> as NamedService>::NAME
    }

    fn short_name(&self) -> &'static str {
        "analytics"
    }

    fn collections(&self) -> Vec<Collection> {
        Vec::new()
    }

    fn tools(&self) -> Vec<Tool> {
        tools::tools()
    }

    async fn build(&self, deps: &Deps) -> anyhow::Result<Built> {
        let settings: Settings = deps.settings(self.short_name())?;
        settings.check().map_err(anyhow::Error::msg)?;
        let cache = facts::FactCache::new(
            settings.cache_facts,
            chrono::Duration::seconds(settings.refresh_secs as i64),
            deps.clock.clone(),
        );
        Ok(Built::grpc(AnalyticsServiceServer::new(
            api::AnalyticsApi {
                cache,
                mesh: deps.mesh.clone(),
                clock: Arc::clone(&deps.clock),
            },
        )))
    }
}
