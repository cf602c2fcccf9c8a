//! The gRPC edge of the integrations service, its OAuth callback over plain
//! HTTP, and the planner's integration executor.

use std::convert::Infallible;

use async_trait::async_trait;
use bytes::Bytes;
use focusforge_core::{Error, UserId};
use focusforge_grpc::convert::timestamp;
use focusforge_grpc::{caller, into_status};
use focusforge_kit::HttpService;
use focusforge_planner::{ActionSpec, Executor};
use focusforge_proto::integrations::v1 as pb;
use focusforge_proto::integrations::v1::integration_service_server::IntegrationService as Rpc;
use http::{HeaderValue, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tonic::body::Body;

use crate::link::{FocusPlaylist, Link, LinkView, state_user};
use crate::spotify::{self, Paged};

type Reply<T> = Result<tonic::Response<T>, tonic::Status>;

#[derive(Clone)]
pub struct IntegrationApi {
    pub link: Link,
}

fn link_pb(v: LinkView) -> pb::SpotifyLink {
    pb::SpotifyLink {
        linked: v.linked,
        spotify_user: v.spotify_user,
        display_name: v.display_name,
        scopes: v.scopes,
        link_time: v.linked_at.map(timestamp),
        focus_playlist: v.focus_playlist.map(playlist_pb),
    }
}

fn playlist_pb(p: FocusPlaylist) -> pb::FocusPlaylist {
    pb::FocusPlaylist {
        id: p.id,
        name: p.name,
        uri: p.uri,
    }
}

fn track_pb(t: spotify::Track) -> pb::Track {
    pb::Track {
        name: t.name,
        uri: t.uri,
        artists: t.artists,
        album: t.album,
        duration_ms: t.duration_ms,
    }
}

/// A page size 1-50 (0: 20) and an offset token, checked.
fn page(size: i32, token: &str) -> Result<(u32, u32), Error> {
    let mut v = focusforge_core::Violations::new();
    v.range("page_size", size.into(), 0, 50);
    let offset = if token.is_empty() {
        Some(0)
    } else {
        token
            .strip_prefix('o')
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n <= 100_000)
    };
    if offset.is_none() {
        v.add("page_token", "is not a token of this list");
    }
    v.finish()?;
    Ok((
        if size == 0 { 20 } else { size as u32 },
        offset.unwrap_or(0),
    ))
}

fn next_token<T>(p: &Paged<T>, limit: u32, offset: u32) -> String {
    if p.more {
        format!("o{}", offset + limit)
    } else {
        String::new()
    }
}

#[tonic::async_trait]
impl Rpc for IntegrationApi {
    async fn begin_spotify_link(
        &self,
        req: tonic::Request<pb::BeginSpotifyLinkRequest>,
    ) -> Reply<pb::BeginSpotifyLinkResponse> {
        let user = caller(&req)?;
        let (url, state, expires) = self.link.begin(&user).await.map_err(into_status)?;
        Ok(tonic::Response::new(pb::BeginSpotifyLinkResponse {
            authorize_url: url,
            state,
            expire_time: Some(timestamp(expires)),
        }))
    }

    async fn complete_spotify_link(
        &self,
        req: tonic::Request<pb::CompleteSpotifyLinkRequest>,
    ) -> Reply<pb::CompleteSpotifyLinkResponse> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let view = self
            .link
            .complete(&user, &r.code, &r.state)
            .await
            .map_err(into_status)?;
        Ok(tonic::Response::new(pb::CompleteSpotifyLinkResponse {
            link: Some(link_pb(view)),
        }))
    }

    async fn get_spotify_link(
        &self,
        req: tonic::Request<pb::GetSpotifyLinkRequest>,
    ) -> Reply<pb::GetSpotifyLinkResponse> {
        let user = caller(&req)?;
        let view = self.link.view(&user).await.map_err(into_status)?;
        Ok(tonic::Response::new(pb::GetSpotifyLinkResponse {
            link: Some(link_pb(view)),
        }))
    }

    async fn unlink_spotify(
        &self,
        req: tonic::Request<pb::UnlinkSpotifyRequest>,
    ) -> Reply<pb::UnlinkSpotifyResponse> {
        let user = caller(&req)?;
        self.link.unlink(&user).await.map_err(into_status)?;
        Ok(tonic::Response::new(pb::UnlinkSpotifyResponse {}))
    }

    async fn list_spotify_playlists(
        &self,
        req: tonic::Request<pb::ListSpotifyPlaylistsRequest>,
    ) -> Reply<pb::ListSpotifyPlaylistsResponse> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let (limit, offset) = page(r.page_size, &r.page_token).map_err(into_status)?;
        let focus = self
            .link
            .view(&user)
            .await
            .map_err(into_status)?
            .focus_playlist
            .map(|p| p.id);
        let p = self
            .link
            .playlists(&user, limit, offset)
            .await
            .map_err(into_status)?;
        let next_page_token = next_token(&p, limit, offset);
        Ok(tonic::Response::new(pb::ListSpotifyPlaylistsResponse {
            total: p.total,
            next_page_token,
            playlists: p
                .items
                .into_iter()
                .map(|x| pb::Playlist {
                    focus: focus.as_deref() == Some(x.id.as_str()),
                    id: x.id,
                    name: x.name,
                    uri: x.uri,
                    owner_id: x.owner_id,
                    owner_name: x.owner_name,
                    collaborative: x.collaborative,
                    items: x.items.unwrap_or(-1),
                    image_url: x.image_url,
                })
                .collect(),
        }))
    }

    async fn list_spotify_playlist_tracks(
        &self,
        req: tonic::Request<pb::ListSpotifyPlaylistTracksRequest>,
    ) -> Reply<pb::ListSpotifyPlaylistTracksResponse> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let (limit, offset) = page(r.page_size, &r.page_token).map_err(into_status)?;
        let id = if r.playlist_id.is_empty() {
            self.link
                .view(&user)
                .await
                .map_err(into_status)?
                .focus_playlist
                .map(|p| p.id)
                .ok_or_else(|| {
                    into_status(Error::invalid(
                        "playlist_id",
                        "is required while no focus playlist is chosen",
                    ))
                })?
        } else {
            r.playlist_id
        };
        let p = self
            .link
            .playlist_items(&user, &id, limit, offset)
            .await
            .map_err(into_status)?;
        let next_page_token = next_token(&p, limit, offset);
        Ok(tonic::Response::new(
            pb::ListSpotifyPlaylistTracksResponse {
                total: p.total,
                next_page_token,
                tracks: p.items.into_iter().map(track_pb).collect(),
            },
        ))
    }

    async fn set_focus_playlist(
        &self,
        req: tonic::Request<pb::SetFocusPlaylistRequest>,
    ) -> Reply<pb::SetFocusPlaylistResponse> {
        let user = caller(&req)?;
        let view = self
            .link
            .set_focus_playlist(&user, &req.into_inner().playlist_id)
            .await
            .map_err(into_status)?;
        Ok(tonic::Response::new(pb::SetFocusPlaylistResponse {
            link: Some(link_pb(view)),
        }))
    }

    async fn list_spotify_devices(
        &self,
        req: tonic::Request<pb::ListSpotifyDevicesRequest>,
    ) -> Reply<pb::ListSpotifyDevicesResponse> {
        let user = caller(&req)?;
        let devices = self.link.devices(&user).await.map_err(into_status)?;
        Ok(tonic::Response::new(pb::ListSpotifyDevicesResponse {
            devices: devices
                .into_iter()
                .map(|d| pb::Device {
                    id: d.id,
                    name: d.name,
                    r#type: d.kind,
                    is_active: d.is_active,
                    is_restricted: d.is_restricted,
                    volume_percent: d.volume_percent.unwrap_or(-1),
                })
                .collect(),
        }))
    }

    async fn play_focus_music(
        &self,
        req: tonic::Request<pb::PlayFocusMusicRequest>,
    ) -> Reply<pb::PlayFocusMusicResponse> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let p = self
            .link
            .play(&user, &r.playlist_id, &r.device_id)
            .await
            .map_err(into_status)?;
        Ok(tonic::Response::new(pb::PlayFocusMusicResponse {
            playlist: Some(playlist_pb(p)),
        }))
    }

    async fn pause_music(
        &self,
        req: tonic::Request<pb::PauseMusicRequest>,
    ) -> Reply<pb::PauseMusicResponse> {
        let user = caller(&req)?;
        self.link
            .pause(&user, &req.into_inner().device_id)
            .await
            .map_err(into_status)?;
        Ok(tonic::Response::new(pb::PauseMusicResponse {}))
    }

    async fn get_now_playing(
        &self,
        req: tonic::Request<pb::GetNowPlayingRequest>,
    ) -> Reply<pb::GetNowPlayingResponse> {
        let user = caller(&req)?;
        let n = self.link.now_playing(&user).await.map_err(into_status)?;
        Ok(tonic::Response::new(pb::GetNowPlayingResponse {
            is_playing: n.is_playing,
            track: n.track.map(track_pb),
            context_uri: n.context_uri,
            progress_ms: n.progress_ms,
        }))
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Body::new(http_body_util::Full::new(Bytes::from(
        body.to_owned(),
    ))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn callback(link: Link, req: Request<Body>) -> Response<Body> {
    if !link.configured() {
        return text(StatusCode::NOT_FOUND, "Spotify is not configured here\n");
    }
    let query = req.uri().query().unwrap_or_default();
    if query.len() > 4096 {
        return text(StatusCode::BAD_REQUEST, "the query is too long\n");
    }
    let pairs: Vec<(String, String)> = url_pairs(query);
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if let Some(e) = param("error") {
        return text(
            StatusCode::BAD_REQUEST,
            &format!(
                "Spotify did not link: {}\n",
                e.chars().take(100).collect::<String>()
            ),
        );
    }
    let (Some(code), Some(state)) = (param("code"), param("state")) else {
        return text(StatusCode::BAD_REQUEST, "code and state are required\n");
    };
    let Some(user) = state_user(&state) else {
        return text(
            StatusCode::BAD_REQUEST,
            "unknown state; start linking again\n",
        );
    };
    match link.complete(&user, &code, &state).await {
        Ok(_) => text(
            StatusCode::OK,
            "Spotify is linked to FocusForge. You can close this page.\n",
        ),
        Err(e) => text(
            StatusCode::BAD_REQUEST,
            &format!("Spotify could not be linked: {e}\n"),
        ),
    }
}

/// The pairs of a query string, percent-decoded.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://callback/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

pub fn callback_service(link: Link) -> HttpService {
    HttpService::new(tower::service_fn(move |req: Request<Body>| {
        let link = link.clone();
        async move { Ok::<_, Infallible>(callback(link, req).await) }
    }))
}

/// Integration actions: `params.op` is `play_focus_music` (optional
/// `playlist_id`, `device_id`) or `pause_music` (optional `device_id`),
/// for the plan's user. The output says what played.
pub struct IntegrationExecutor {
    pub link: Link,
}

#[async_trait]
impl Executor for IntegrationExecutor {
    async fn execute(
        &self,
        user: &UserId,
        _action: &ActionSpec,
        params: Value,
    ) -> Result<Value, Error> {
        let p = &params;
        let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
        match s("op") {
            "play_focus_music" => {
                let played = self
                    .link
                    .play(user, s("playlist_id"), s("device_id"))
                    .await?;
                Ok(json!({ "playing": played.uri, "name": played.name }))
            }
            "pause_music" => {
                self.link.pause(user, s("device_id")).await?;
                Ok(json!({ "paused": true }))
            }
            other => Err(Error::invalid(
                "params.op",
                format!("must be play_focus_music or pause_music, got {other:?}"),
            )),
        }
    }
}
