//! The Calendar service (`focusforge.calendar.v1.CalendarService`).
//!
//! - [`event`]: events, their validation and recurrence expansion.
//! - [`domain`]: events and the per-user state in the document store;
//!   listings, free/busy, import, the feed token, writing a schedule.
//! - [`schedule`]: the auto-scheduler, a pure and deterministic function
//!   (its rule is in the module's docs).
//! - [`ics`]: iCalendar export and import.
//! - [`google`], [`link`]: the Google Calendar client, the link and
//!   two-way sync (tokens sealed at rest with `focusforge_auth::seal`).
//! - [`api`]: the gRPC adapter and the planner's calendar executor;
//!   [`feed`]: the feed and the OAuth callback over plain HTTP.
//! - [`tools`]: the MCP tools `calendar.*`.

pub mod api;
pub mod domain;
pub mod event;
pub mod feed;
pub mod google;
pub mod ics;
pub mod link;
pub mod schedule;
pub mod tools;

use std::sync::Arc;

use async_trait::async_trait;
use focusforge_kit::{Built, Collection, Deps, Service};
use focusforge_mcp::Tool;
use focusforge_planner::{ActionType, Executor};
use focusforge_proto::calendar::v1::calendar_service_server::CalendarServiceServer;
use serde::Deserialize;
use tonic::server::NamedService;

pub use domain::Calendar;

/// `[service.calendar]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The gateway's address as users reach it (`https://focus.example.com`),
    /// for feed URLs; without it a feed answer carries its path only.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Google Calendar's OAuth client; without it Google sync reports
    /// itself unconfigured and everything else works.
    #[serde(default)]
    pub google: Option<google::GoogleSettings>,
}

/// The kit module of the Calendar service.
pub struct CalendarService;

#[async_trait]
impl Service for CalendarService {
    fn name(&self) -> &'static str {
        <CalendarServiceServer<api::CalendarApi> as NamedService>::NAME
    }

    fn short_name(&self) -> &'static str {
        "calendar"
    }

    fn collections(&self) -> Vec<Collection> {
        vec![
            Collection {
                name: domain::EVENTS,
                indexes: &[
                    "body.first_ms",
                    "body.span_end_ms",
                    "body.kind",
                    "body.source",
                ],
            },
            Collection {
                name: domain::STATE,
                indexes: &[],
            },
        ]
    }

    fn tools(&self) -> Vec<Tool> {
        tools::tools()
    }

    fn action_types(&self) -> Vec<ActionType> {
        vec![ActionType::Calendar]
    }

    async fn build(&self, deps: &Deps) -> anyhow::Result<Built> {
        let settings: Settings = deps.settings(self.short_name())?;
        let cal = Calendar::new(deps.store.clone(), deps.clock.clone());
        let link = match settings.google {
            Some(g) => {
                let sealer = focusforge_auth::seal::Sealer::from_base64(&g.token_key)
                    .map_err(|e| e.context("[service.calendar.google] token_key"))?;
                Some(Arc::new(link::Link {
                    google: google::Google::new(g)?,
                    sealer,
                    cal: cal.clone(),
                }))
            }
            None => None,
        };
        let api = api::CalendarApi {
            cal: cal.clone(),
            mesh: deps.mesh.clone(),
            link: link.clone(),
            public_url: settings.public_url,
            events: deps.events.clone(),
        };
        Ok(Built::grpc(CalendarServiceServer::new(api))
            .http(api::FEED_PATH, feed::feed_service(cal))
            .http(api::CALLBACK_PATH, feed::callback_service(link)))
    }

    fn executors(&self, deps: &Deps) -> Vec<(ActionType, Arc<dyn Executor>)> {
        vec![(
            ActionType::Calendar,
            Arc::new(api::CalendarExecutor {
                mesh: deps.mesh.clone(),
            }),
        )]
    }
}
