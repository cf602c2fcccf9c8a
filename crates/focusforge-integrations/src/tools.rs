//! The MCP tools of the integrations service.

use focusforge_mcp::tools::missing;
use focusforge_mcp::{Caller, Category, Mesh, Tool, ToolError};
use focusforge_proto::integrations::v1 as pb;
use focusforge_proto::integrations::v1::integration_service_client::IntegrationServiceClient;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const INTEGRATIONS: &str = pb::integration_service_server::SERVICE_NAME;

fn client(mesh: &Mesh) -> Result<IntegrationServiceClient<focusforge_kit::Conn>, ToolError> {
    Ok(IntegrationServiceClient::new(mesh.conn(INTEGRATIONS)?))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PlaylistOut {
    pub id: String,
    pub name: String,
    pub owner: String,
    /// Tracks in it; -1 when Spotify does not say.
    pub tracks: i64,
    /// The user's focus playlist.
    pub focus: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PlaylistsOut {
    pub playlists: Vec<PlaylistOut>,
    pub total: i64,
}

async fn playlists(mesh: Mesh, caller: Caller, _i: NoInput) -> Result<PlaylistsOut, ToolError> {
    let r = client(&mesh)?
        .list_spotify_playlists(caller.request(pb::ListSpotifyPlaylistsRequest {
            page_size: 50,
            page_token: String::new(),
        }))
        .await?
        .into_inner();
    Ok(PlaylistsOut {
        total: r.total,
        playlists: r
            .playlists
            .into_iter()
            .map(|p| PlaylistOut {
                id: p.id,
                name: p.name,
                owner: p.owner_name,
                tracks: p.items,
                focus: p.focus,
            })
            .collect(),
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayInput {
    /// A playlist id from `integrations.spotify_playlists`; default the
    /// user's focus playlist.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub playlist_id: String,
    /// Default the active device.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub device_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PlayOut {
    pub playing: String,
    pub name: String,
}

async fn play(mesh: Mesh, caller: Caller, i: PlayInput) -> Result<PlayOut, ToolError> {
    let p = client(&mesh)?
        .play_focus_music(caller.request(pb::PlayFocusMusicRequest {
            playlist_id: i.playlist_id,
            device_id: i.device_id,
        }))
        .await?
        .into_inner()
        .playlist
        .ok_or_else(|| missing("playlist"))?;
    Ok(PlayOut {
        playing: p.uri,
        name: p.name,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseInput {
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub device_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PauseOut {
    pub paused: bool,
}

async fn pause(mesh: Mesh, caller: Caller, i: PauseInput) -> Result<PauseOut, ToolError> {
    client(&mesh)?
        .pause_music(caller.request(pb::PauseMusicRequest {
            device_id: i.device_id,
        }))
        .await?;
    Ok(PauseOut { paused: true })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NowPlayingOut {
    pub is_playing: bool,
    pub track: String,
    pub artists: Vec<String>,
    pub context_uri: String,
}

async fn now_playing(mesh: Mesh, caller: Caller, _i: NoInput) -> Result<NowPlayingOut, ToolError> {
    let r = client(&mesh)?
        .get_now_playing(caller.request(pb::GetNowPlayingRequest {}))
        .await?
        .into_inner();
    let t = r.track.unwrap_or_default();
    Ok(NowPlayingOut {
        is_playing: r.is_playing,
        track: t.name,
        artists: t.artists,
        context_uri: r.context_uri,
    })
}

/// `integrations.spotify_playlists`, `.spotify_play`, `.spotify_pause`,
/// `.spotify_now_playing`.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::new::<NoInput, PlaylistsOut, _, _>(
            "integrations.spotify_playlists",
            "List Spotify playlists",
            "The user's Spotify playlists (up to 50), marking their focus playlist.",
            Category::Integrations,
            INTEGRATIONS,
            playlists,
        ),
        Tool::new::<PlayInput, PlayOut, _, _>(
            "integrations.spotify_play",
            "Play focus music",
            "Starts a playlist (default the user's focus playlist) on the user's active Spotify device (Spotify Premium).",
            Category::Integrations,
            INTEGRATIONS,
            play,
        ),
        Tool::new::<PauseInput, PauseOut, _, _>(
            "integrations.spotify_pause",
            "Pause music",
            "Pauses the user's Spotify playback.",
            Category::Integrations,
            INTEGRATIONS,
            pause,
        ),
        Tool::new::<NoInput, NowPlayingOut, _, _>(
            "integrations.spotify_now_playing",
            "What is playing",
            "The track playing on the user's Spotify now, if any.",
            Category::Integrations,
            INTEGRATIONS,
            now_playing,
        ),
    ]
}
