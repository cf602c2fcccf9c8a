//! The integrations service (`focusforge.integrations.v1.IntegrationService`):
//! outside services linked to a user's account. Today: Spotify, for focus
//! music.
//!
//! - [`spotify`]: the Spotify Web API and accounts client (`reqwest`, both
//!   hosts configurable, `429` waited out within bounds).
//! - [`link`]: the link (OAuth 2 with PKCE, tokens sealed at rest and
//!   refreshed before they expire) and the calls made with it.
//! - [`api`]: the gRPC adapter, the OAuth callback over plain HTTP and the
//!   planner's integration executor; [`tools`]: the MCP tools
//!   `integrations.*`.

pub mod api;
pub mod link;
pub mod spotify;
pub mod tools;

use std::sync::Arc;

use async_trait::async_trait;
use focusforge_kit::{Built, Collection, Deps, Service};
use focusforge_mcp::Tool;
use focusforge_planner::ActionType;
use focusforge_proto::integrations::v1::integration_service_server::IntegrationServiceServer;
use serde::Deserialize;
use tonic::server::NamedService;

/// Where Spotify sends the user back to after granting access.
pub const SPOTIFY_CALLBACK_PATH: &str = "/integrations/v1/spotify/callback";

/// `[service.integrations]`; `FOCUSFORGE_SERVICE_INTEGRATIONS_<KEY>` in the
/// environment. Without `spotify_client_id` Spotify says it is not
/// configured and everything else works.
/// No `Debug`: it holds the token key.
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub spotify_client_id: String,
    pub spotify_redirect_uri: String,
    /// 32 bytes, base64.
    pub spotify_token_key: String,
    pub spotify_accounts_url: Option<String>,
    pub spotify_api_url: Option<String>,
    pub spotify_max_retry_wait_secs: Option<u64>,
}

impl Settings {
    pub fn spotify(&self) -> Option<spotify::SpotifySettings> {
        if self.spotify_client_id.trim().is_empty() {
            return None;
        }
        Some(spotify::SpotifySettings {
            client_id: self.spotify_client_id.clone(),
            redirect_uri: self.spotify_redirect_uri.clone(),
            token_key: self.spotify_token_key.clone(),
            accounts_url: self
                .spotify_accounts_url
                .clone()
                .unwrap_or_else(|| spotify::ACCOUNTS_URL.into()),
            api_url: self
                .spotify_api_url
                .clone()
                .unwrap_or_else(|| spotify::API_URL.into()),
            max_retry_wait_secs: self.spotify_max_retry_wait_secs.unwrap_or(5),
        })
    }
}

/// The kit module of the integrations service.
pub struct IntegrationService;

#[async_trait]
impl Service for IntegrationService {
    fn name(&self) -> &'static str {
        <IntegrationServiceServer<api::IntegrationApi> as NamedService>::NAME
    }

    fn short_name(&self) -> &'static str {
        "integrations"
    }

    fn collections(&self) -> Vec<Collection> {
        vec![Collection {
            name: link::LINKS,
            indexes: &[],
        }]
    }

    fn tools(&self) -> Vec<Tool> {
        tools::tools()
    }

    fn action_types(&self) -> Vec<ActionType> {
        vec![ActionType::Integration]
    }

    async fn build(&self, deps: &Deps) -> anyhow::Result<Built> {
        let settings: Settings = deps.settings(self.short_name())?;
        let link = link::Link::new(settings.spotify(), deps.store.clone(), deps.clock.clone())?;
        Ok(
            Built::grpc(IntegrationServiceServer::new(api::IntegrationApi {
                link: link.clone(),
            }))
            .executor(
                ActionType::Integration,
                Arc::new(api::IntegrationExecutor { link: link.clone() }),
            )
            .http(SPOTIFY_CALLBACK_PATH, api::callback_service(link)),
        )
    }
}
