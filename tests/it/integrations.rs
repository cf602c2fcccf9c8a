//! The integrations service against a local server that speaks Spotify's
//! accounts service and Web API as published (the token endpoint's form
//! grants and flat errors, paging objects with the 2026 `items` names,
//! player errors with their `reason`, `429` with `Retry-After`, `204` when
//! nothing plays): linking with PKCE through the gateway's callback and
//! through the RPC, playlists and their tracks, a focus playlist, devices,
//! play and pause, what plays now; an expired token refreshed before use, a
//! refused one refreshed once, a revoked grant unlinking; Premium and
//! device errors; rate limits waited out or reported; tokens sealed at rest
//! and never answered; isolation; not configured.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use chrono::Duration;
use focusforge_core::ManualClock;
use focusforge_proto::integrations::v1::integration_service_client::IntegrationServiceClient;
use focusforge_proto::integrations::v1::*;
use focusforge_proto::tasks::v1::CreateTaskRequest;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

use crate::calendar::{form, get, reply, serve, sha2_digest};
use crate::harness::{Server, authed, config};

const CLIENT_ID: &str = "spotify-cid";

/// A Spotify account of the fake.
#[derive(Clone)]
struct Account {
    id: &'static str,
    name: &'static str,
    premium: bool,
    playlists: Vec<Value>,
}

#[derive(Default)]
struct FakeSpotify {
    accounts: HashMap<&'static str, Account>,
    /// Authorization code -> (account, PKCE challenge).
    codes: HashMap<String, (&'static str, String)>,
    /// Live access tokens -> account.
    access: HashMap<String, &'static str>,
    /// Live refresh tokens -> account.
    refresh: HashMap<String, &'static str>,
    issued: u32,
    refreshes: u32,
    unauthorized: u32,
    /// The next API calls answer 429 with this Retry-After.
    limited: Vec<u64>,
    rate_limited: u32,
    active_device: bool,
    /// account -> (context, playing)
    player: HashMap<&'static str, (String, bool)>,
    plays: Vec<(String, Value, String)>,
    seen_tokens: Vec<String>,
}

fn playlist(id: &str, name: &str, owner: &str, tracks: i64) -> Value {
    json!({
        "collaborative": false,
        "description": "",
        "external_urls": {"spotify": format!("https://open.spotify.com/playlist/{id}")},
        "href": format!("https://api.spotify.com/v1/playlists/{id}"),
        "id": id,
        "images": [{"url": format!("https://i.scdn.co/image/{id}"), "height": 640, "width": 640}],
        "name": name,
        "owner": {"display_name": owner, "id": owner.to_lowercase(), "type": "user", "uri": format!("spotify:user:{}", owner.to_lowercase())},
        "public": false,
        "snapshot_id": "MTAs",
        "items": {"href": format!("https://api.spotify.com/v1/playlists/{id}/items"), "total": tracks},
        "type": "playlist",
        "uri": format!("spotify:playlist:{id}")
    })
}

impl FakeSpotify {
    fn new() -> Self {
        let mut f = FakeSpotify {
            active_device: true,
            ..Default::default()
        };
        f.accounts.insert(
            "jane",
            Account {
                id: "jane",
                name: "Jane",
                premium: true,
                playlists: vec![
                    playlist("37deepFocus", "Deep Focus", "Jane", 3),
                    playlist("2lofiBeats", "Lo-fi beats", "Jane", 120),
                    playlist("5roadTrip", "Road trip", "Jane", 42),
                ],
            },
        );
        f.accounts.insert(
            "bob",
            Account {
                id: "bob",
                name: "Bob",
                premium: false,
                playlists: vec![playlist("9bobsMix", "Bob's mix", "Bob", 10)],
            },
        );
        f
    }

    fn tokens(&mut self, account: &'static str) -> Value {
        self.issued += 1;
        let access = format!("at-{account}-{}", self.issued);
        let refresh = format!("rt-{account}-{}", self.issued);
        self.access.insert(access.clone(), account);
        self.refresh.insert(refresh.clone(), account);
        json!({
            "access_token": access,
            "token_type": "Bearer",
            "scope": "playlist-read-private playlist-read-collaborative user-read-playback-state user-modify-playback-state user-read-currently-playing",
            "expires_in": 3600,
            "refresh_token": refresh
        })
    }
}

fn api_error(status: u16, message: &str, reason: Option<&str>) -> http::Response<Full<Bytes>> {
    let mut e = json!({"status": status, "message": message});
    if let Some(r) = reason {
        e["reason"] = json!(r);
    }
    reply(status, json!({ "error": e }))
}

async fn handle(
    fake: Arc<Mutex<FakeSpotify>>,
    req: Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let query = form(parts.uri.query().unwrap_or_default().as_bytes());
    let mut f = fake.lock().expect("fake");
    if path == "/api/token" {
        let form = form(&body);
        if parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            != Some("application/x-www-form-urlencoded")
        {
            return reply(400, json!({"error": "invalid_request"}));
        }
        if form.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
            return reply(
                400,
                json!({"error": "invalid_client", "error_description": "Invalid client"}),
            );
        }
        return match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                let code = form.get("code").cloned().unwrap_or_default();
                let Some((account, challenge)) = f.codes.remove(&code) else {
                    return reply(
                        400,
                        json!({"error": "invalid_grant", "error_description": "Invalid authorization code"}),
                    );
                };
                let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                if sha2_digest::digest(&verifier) != challenge {
                    return reply(
                        400,
                        json!({"error": "invalid_grant", "error_description": "code_verifier was incorrect"}),
                    );
                }
                let t = f.tokens(account);
                reply(200, t)
            }
            Some("refresh_token") => {
                let r = form.get("refresh_token").cloned().unwrap_or_default();
                let Some(account) = f.refresh.remove(&r) else {
                    return reply(
                        400,
                        json!({"error": "invalid_grant", "error_description": "Invalid refresh token"}),
                    );
                };
                f.refreshes += 1;
                let t = f.tokens(account);
                reply(200, t)
            }
            _ => reply(400, json!({"error": "unsupported_grant_type"})),
        };
    }
    let token = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    f.seen_tokens.push(token.clone());
    if !f.limited.is_empty() {
        let wait = f.limited.remove(0);
        f.rate_limited += 1;
        let mut r = api_error(429, "API rate limit exceeded", None);
        r.headers_mut()
            .insert("retry-after", http::HeaderValue::from(wait));
        return r;
    }
    let Some(account) = f.access.get(&token).copied() else {
        f.unauthorized += 1;
        return api_error(401, "The access token expired", None);
    };
    let a = f.accounts[account].clone();
    let page = |items: &[Value]| {
        let limit: usize = query
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(20);
        let offset: usize = query
            .get("offset")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        if limit == 0 || limit > 50 {
            return api_error(400, "Invalid limit", None);
        }
        let end = (offset + limit).min(items.len());
        let slice = items.get(offset..end).unwrap_or_default().to_vec();
        reply(
            200,
            json!({
                "href": "https://api.spotify.com/v1/...",
                "limit": limit, "offset": offset, "total": items.len(),
                "next": if end < items.len() { json!("https://api.spotify.com/v1/...next") } else { Value::Null },
                "previous": Value::Null,
                "items": slice
            }),
        )
    };
    match (parts.method.as_str(), path.as_str()) {
        ("GET", "/v1/me") => reply(
            200,
            json!({"account_id": format!("acc-{}", a.id), "display_name": a.name, "id": a.id,
                   "type": "user", "uri": format!("spotify:user:{}", a.id), "images": []}),
        ),
        ("GET", "/v1/me/playlists") => page(&a.playlists),
        ("GET", p) if p.starts_with("/v1/playlists/") && p.ends_with("/items") => {
            let id = &p["/v1/playlists/".len()..p.len() - "/items".len()];
            if !a.playlists.iter().any(|x| x["id"] == json!(id)) {
                return api_error(403, "Forbidden", None);
            }
            let items: Vec<Value> = (0..3)
                .map(|i| {
                    json!({
                        "added_at": "2026-01-05T10:00:00Z",
                        "is_local": false,
                        "item": {
                            "type": "track", "id": format!("t{i}"), "uri": format!("spotify:track:t{i}"),
                            "name": format!("Calm {i}"), "duration_ms": 200_000 + i,
                            "artists": [{"name": "Quiet Band", "id": "qb", "type": "artist"}],
                            "album": {"name": "Stillness", "images": []}
                        }
                    })
                })
                .chain(std::iter::once(json!({"added_at": null, "is_local": false, "item": null})))
                .collect();
            page(&items)
        }
        ("GET", "/v1/me/player/devices") => reply(
            200,
            json!({"devices": [{"id": "dev1", "is_active": f.active_device, "is_private_session": false,
                   "is_restricted": false, "name": "Desk speaker", "type": "Speaker", "volume_percent": 40,
                   "supports_volume": true}]}),
        ),
        ("GET", "/v1/me/player/currently-playing") => match f.player.get(account) {
            None => reply(204, Value::Null),
            Some((context, playing)) => reply(
                200,
                json!({
                    "timestamp": 1760000000000_i64,
                    "context": {"type": "playlist", "uri": context, "href": "...", "external_urls": {}},
                    "progress_ms": 43000, "is_playing": playing,
                    "item": {"type": "track", "name": "Calm 0", "uri": "spotify:track:t0", "duration_ms": 200000,
                             "artists": [{"name": "Quiet Band"}], "album": {"name": "Stillness", "images": []}},
                    "currently_playing_type": "track",
                    "actions": {"disallows": {"resuming": true}}
                }),
            ),
        },
        ("PUT", "/v1/me/player/play") => {
            if !a.premium {
                return api_error(
                    403,
                    "Player command failed: Premium required",
                    Some("PREMIUM_REQUIRED"),
                );
            }
            if !f.active_device && !query.contains_key("device_id") {
                return api_error(
                    404,
                    "Player command failed: No active device found",
                    Some("NO_ACTIVE_DEVICE"),
                );
            }
            let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let context = b["context_uri"].as_str().unwrap_or_default().to_owned();
            f.plays.push((
                account.to_owned(),
                b,
                query.get("device_id").cloned().unwrap_or_default(),
            ));
            f.player.insert(account, (context, true));
            reply(204, Value::Null)
        }
        ("PUT", "/v1/me/player/pause") => {
            if !a.premium {
                return api_error(
                    403,
                    "Player command failed: Premium required",
                    Some("PREMIUM_REQUIRED"),
                );
            }
            if let Some(p) = f.player.get_mut(account) {
                p.1 = false;
            }
            reply(204, Value::Null)
        }
        _ => api_error(404, "Service not found", None),
    }
}

fn key() -> String {
    base64::engine::general_purpose::STANDARD.encode([42u8; 32])
}

async fn start(fake: Arc<Mutex<FakeSpotify>>) -> (Server, Arc<ManualClock>) {
    let url = serve(move |req| handle(fake.clone(), req)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    let table: toml::Table = toml::from_str(&format!(
        "spotify_client_id = \"{CLIENT_ID}\"\n\
         spotify_redirect_uri = \"https://focus.example.com/integrations/v1/spotify/callback\"\n\
         spotify_token_key = \"{}\"\n\
         spotify_accounts_url = \"{url}\"\n\
         spotify_api_url = \"{url}\"\n\
         spotify_max_retry_wait_secs = 2\n",
        key()
    ))
    .expect("settings");
    cfg.service.insert("integrations".into(), table);
    let clock = Arc::new(ManualClock::new(
        "2026-12-01T09:00:00Z".parse().expect("time"),
    ));
    (
        Server::start_with_clock(dir, cfg, clock.clone()).await,
        clock,
    )
}

async fn client(server: &Server) -> IntegrationServiceClient<Channel> {
    IntegrationServiceClient::new(server.channel().await)
}

/// Begins a link for `user` and lets the fake accept `account`'s grant;
/// returns the state and the authorize URL's parameters.
async fn begin(
    server: &Server,
    fake: &Arc<Mutex<FakeSpotify>>,
    user: &str,
    account: &'static str,
    code: &str,
) -> (String, BTreeMap<String, String>) {
    let r = client(server)
        .await
        .begin_spotify_link(authed(user, BeginSpotifyLinkRequest {}))
        .await
        .expect("begin")
        .into_inner();
    let (base, query) = r.authorize_url.split_once('?').expect("query");
    assert!(base.ends_with("/authorize"), "{base}");
    let params = form(query.as_bytes());
    fake.lock().expect("fake").codes.insert(
        code.to_owned(),
        (
            account,
            params.get("code_challenge").cloned().unwrap_or_default(),
        ),
    );
    assert_eq!(params.get("state"), Some(&r.state));
    (r.state, params)
}

fn status_of<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> tonic::Status {
    r.expect_err("refused")
}

#[tokio::test]
async fn spotify_links_plays_and_recovers_from_what_spotify_answers() {
    let fake = Arc::new(Mutex::new(FakeSpotify::new()));
    let (server, clock) = start(fake.clone()).await;
    let mut c = client(&server).await;

    // Before a link.
    let s = status_of(
        c.list_spotify_playlists(authed("alice", ListSpotifyPlaylistsRequest::default()))
            .await,
    );
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert!(s.message().contains("BeginSpotifyLink"), "{}", s.message());

    // The authorize URL asks for what the app needs, with PKCE.
    let (state, params) = begin(&server, &fake, "alice", "jane", "code-jane").await;
    assert_eq!(params.get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert_eq!(
        params.get("response_type").map(String::as_str),
        Some("code")
    );
    assert_eq!(
        params.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert_eq!(
        params.get("redirect_uri").map(String::as_str),
        Some("https://focus.example.com/integrations/v1/spotify/callback")
    );
    for scope in [
        "playlist-read-private",
        "user-modify-playback-state",
        "user-read-currently-playing",
    ] {
        assert!(params["scope"].split(' ').any(|s| s == scope), "{scope}");
    }
    // A wrong state is refused and changes nothing; Spotify's redirect with
    // the right one links.
    let (code, _, body) = get(
        &server,
        "/integrations/v1/spotify/callback?code=code-jane&state=bogus",
        &[],
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let (code, _, body) = get(
        &server,
        &format!("/integrations/v1/spotify/callback?code=code-jane&state={state}"),
        &[],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("linked"), "{body}");
    let link = c
        .get_spotify_link(authed("alice", GetSpotifyLinkRequest {}))
        .await
        .expect("link")
        .into_inner()
        .link
        .expect("link");
    assert!(link.linked);
    assert_eq!(
        (link.spotify_user.as_str(), link.display_name.as_str()),
        ("jane", "Jane")
    );
    assert!(link.scopes.contains(&"user-read-playback-state".to_owned()));
    // The same state cannot be used twice.
    let (code, _, _) = get(
        &server,
        &format!("/integrations/v1/spotify/callback?code=code-jane&state={state}"),
        &[],
    )
    .await;
    assert_eq!(code, 400);

    // Playlists, paged the way Spotify pages them.
    let p1 = c
        .list_spotify_playlists(authed(
            "alice",
            ListSpotifyPlaylistsRequest {
                page_size: 2,
                page_token: String::new(),
            },
        ))
        .await
        .expect("playlists")
        .into_inner();
    let names: Vec<_> = p1.playlists.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Deep Focus", "Lo-fi beats"]);
    assert_eq!((p1.total, p1.playlists[1].items), (3, 120));
    let p2 = c
        .list_spotify_playlists(authed(
            "alice",
            ListSpotifyPlaylistsRequest {
                page_size: 2,
                page_token: p1.next_page_token.clone(),
            },
        ))
        .await
        .expect("page two")
        .into_inner();
    assert_eq!(p2.playlists.len(), 1);
    assert!(p2.next_page_token.is_empty());
    let s = status_of(
        c.list_spotify_playlists(authed(
            "alice",
            ListSpotifyPlaylistsRequest {
                page_size: 51,
                page_token: String::new(),
            },
        ))
        .await,
    );
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("page_size"));

    // A short 429 is waited out; a long one is reported with its wait.
    fake.lock().expect("fake").limited = vec![1];
    let waited = std::time::Instant::now();
    c.list_spotify_playlists(authed("alice", ListSpotifyPlaylistsRequest::default()))
        .await
        .expect("after the wait");
    assert!(
        waited.elapsed() >= std::time::Duration::from_millis(900),
        "Retry-After honoured"
    );
    fake.lock().expect("fake").limited = vec![30];
    let s = status_of(
        c.list_spotify_playlists(authed("alice", ListSpotifyPlaylistsRequest::default()))
            .await,
    );
    assert_eq!(s.code(), Code::ResourceExhausted);
    assert!(s.message().contains("30 s"), "{}", s.message());
    assert_eq!(fake.lock().expect("fake").rate_limited, 2);

    // The focus playlist, its tracks (the 2026 `item` field; an
    // unavailable item left out), devices.
    let s = status_of(
        c.set_focus_playlist(authed(
            "alice",
            SetFocusPlaylistRequest {
                playlist_id: "9bobsMix".into(),
            },
        ))
        .await,
    );
    assert_eq!(s.code(), Code::NotFound, "another account's playlist");
    let s = status_of(
        c.set_focus_playlist(authed(
            "alice",
            SetFocusPlaylistRequest {
                playlist_id: "../me".into(),
            },
        ))
        .await,
    );
    assert_eq!(s.code(), Code::InvalidArgument);
    let link = c
        .set_focus_playlist(authed(
            "alice",
            SetFocusPlaylistRequest {
                playlist_id: "37deepFocus".into(),
            },
        ))
        .await
        .expect("focus playlist")
        .into_inner()
        .link
        .expect("link");
    let chosen = link.focus_playlist.expect("chosen");
    assert_eq!(
        (chosen.name.as_str(), chosen.uri.as_str()),
        ("Deep Focus", "spotify:playlist:37deepFocus")
    );
    let tracks = c
        .list_spotify_playlist_tracks(authed("alice", ListSpotifyPlaylistTracksRequest::default()))
        .await
        .expect("tracks")
        .into_inner();
    assert_eq!(tracks.tracks.len(), 3);
    assert_eq!(tracks.tracks[0].artists, ["Quiet Band"]);
    let devices = c
        .list_spotify_devices(authed("alice", ListSpotifyDevicesRequest {}))
        .await
        .expect("devices")
        .into_inner()
        .devices;
    assert_eq!(devices.len(), 1);
    assert!(devices[0].is_active);

    // Nothing plays (204), then the focus playlist plays, then pauses.
    let now = c
        .get_now_playing(authed("alice", GetNowPlayingRequest {}))
        .await
        .expect("now")
        .into_inner();
    assert!(!now.is_playing && now.track.is_none());
    let played = c
        .play_focus_music(authed("alice", PlayFocusMusicRequest::default()))
        .await
        .expect("play")
        .into_inner()
        .playlist
        .expect("playlist");
    assert_eq!(played.uri, "spotify:playlist:37deepFocus");
    {
        let f = fake.lock().expect("fake");
        let (account, body, device) = f.plays.last().expect("a play");
        assert_eq!((account.as_str(), device.as_str()), ("jane", ""));
        assert_eq!(
            body,
            &json!({"context_uri": "spotify:playlist:37deepFocus"})
        );
    }
    let now = c
        .get_now_playing(authed("alice", GetNowPlayingRequest {}))
        .await
        .expect("now")
        .into_inner();
    assert!(now.is_playing);
    assert_eq!(now.context_uri, "spotify:playlist:37deepFocus");
    assert_eq!(now.track.expect("track").name, "Calm 0");
    c.pause_music(authed("alice", PauseMusicRequest::default()))
        .await
        .expect("pause");
    let now = c
        .get_now_playing(authed("alice", GetNowPlayingRequest {}))
        .await
        .expect("now")
        .into_inner();
    assert!(!now.is_playing);

    // No active device: said so.
    fake.lock().expect("fake").active_device = false;
    let s = status_of(
        c.play_focus_music(authed("alice", PlayFocusMusicRequest::default()))
            .await,
    );
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert!(
        s.message().contains("no active Spotify device"),
        "{}",
        s.message()
    );
    c.play_focus_music(authed(
        "alice",
        PlayFocusMusicRequest {
            playlist_id: String::new(),
            device_id: "dev1".into(),
        },
    ))
    .await
    .expect("on a named device");
    fake.lock().expect("fake").active_device = true;

    // A token past its expiry is refreshed before it is used.
    let before = fake.lock().expect("fake").refreshes;
    let unauthorized = fake.lock().expect("fake").unauthorized;
    clock.advance(Duration::minutes(61));
    c.list_spotify_devices(authed("alice", ListSpotifyDevicesRequest {}))
        .await
        .expect("devices");
    {
        let f = fake.lock().expect("fake");
        assert_eq!(f.refreshes, before + 1, "refreshed before use");
        assert_eq!(f.unauthorized, unauthorized, "without a refused call");
    }
    // A token Spotify refuses is refreshed once and the call made again.
    fake.lock().expect("fake").access.clear();
    c.list_spotify_devices(authed("alice", ListSpotifyDevicesRequest {}))
        .await
        .expect("after a 401");
    {
        let f = fake.lock().expect("fake");
        assert_eq!(f.refreshes, before + 2);
        assert_eq!(f.unauthorized, unauthorized + 1);
    }

    // Bob links through the RPC; his account has no Premium.
    let (state, _) = begin(&server, &fake, "bob", "bob", "code-bob").await;
    let s = status_of(
        c.complete_spotify_link(authed(
            "bob",
            CompleteSpotifyLinkRequest {
                code: "wrong".into(),
                state: state.clone(),
            },
        ))
        .await,
    );
    assert_eq!(s.code(), Code::FailedPrecondition, "{}", s.message());
    let (state, _) = begin(&server, &fake, "bob", "bob", "code-bob").await;
    let s = status_of(
        c.complete_spotify_link(authed(
            "alice",
            CompleteSpotifyLinkRequest {
                code: "code-bob".into(),
                state: state.clone(),
            },
        ))
        .await,
    );
    assert_eq!(
        s.code(),
        Code::InvalidArgument,
        "bob's state is not alice's"
    );
    c.complete_spotify_link(authed(
        "bob",
        CompleteSpotifyLinkRequest {
            code: "code-bob".into(),
            state,
        },
    ))
    .await
    .expect("bob links");
    let bobs = c
        .list_spotify_playlists(authed("bob", ListSpotifyPlaylistsRequest::default()))
        .await
        .expect("bob's playlists")
        .into_inner();
    let names: Vec<_> = bobs.playlists.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Bob's mix"], "each user's own account");
    let s = status_of(
        c.play_focus_music(authed(
            "bob",
            PlayFocusMusicRequest {
                playlist_id: "9bobsMix".into(),
                device_id: String::new(),
            },
        ))
        .await,
    );
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert!(s.message().contains("Premium"), "{}", s.message());
    let alices = c
        .get_spotify_link(authed("alice", GetSpotifyLinkRequest {}))
        .await
        .expect("link")
        .into_inner()
        .link
        .expect("link");
    assert_eq!(alices.spotify_user, "jane", "bob's link left alice's alone");

    // Tokens: sealed at rest, never answered.
    let tokens: Vec<String> = {
        let f = fake.lock().expect("fake");
        f.access.keys().chain(f.refresh.keys()).cloned().collect()
    };
    assert!(!tokens.is_empty());
    let mut stored = Vec::new();
    for entry in walk(server.dir.path()) {
        stored.extend(std::fs::read(entry).unwrap_or_default());
    }
    let stored = String::from_utf8_lossy(&stored);
    for t in &tokens {
        assert!(
            !stored.contains(t.as_str()),
            "a token in the data directory"
        );
        assert!(!format!("{alices:?}").contains(t.as_str()));
    }

    // A revoked grant: the link is dropped and the user asked to link again.
    {
        let mut f = fake.lock().expect("fake");
        f.access.clear();
        f.refresh.clear();
    }
    let s = status_of(
        c.list_spotify_devices(authed("alice", ListSpotifyDevicesRequest {}))
            .await,
    );
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert!(
        s.message().contains("link Spotify again"),
        "{}",
        s.message()
    );
    let link = c
        .get_spotify_link(authed("alice", GetSpotifyLinkRequest {}))
        .await
        .expect("link")
        .into_inner()
        .link
        .expect("link");
    assert!(!link.linked);

    // Unlink.
    c.unlink_spotify(authed("bob", UnlinkSpotifyRequest {}))
        .await
        .expect("unlink");
    let s = status_of(
        c.list_spotify_devices(authed("bob", ListSpotifyDevicesRequest {}))
            .await,
    );
    assert_eq!(s.code(), Code::FailedPrecondition);
    server.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn without_a_client_id_spotify_says_what_to_configure_and_the_rest_works() {
    let server = Server::start().await;
    let mut c = client(&server).await;
    for s in [
        status_of(
            c.begin_spotify_link(authed("alice", BeginSpotifyLinkRequest {}))
                .await,
        ),
        status_of(
            c.list_spotify_playlists(authed("alice", ListSpotifyPlaylistsRequest::default()))
                .await,
        ),
        status_of(
            c.play_focus_music(authed("alice", PlayFocusMusicRequest::default()))
                .await,
        ),
    ] {
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.message().contains("spotify_client_id"), "{}", s.message());
    }
    let (code, _, _) = get(
        &server,
        "/integrations/v1/spotify/callback?code=x&state=y",
        &[],
    )
    .await;
    assert_eq!(code, 404);
    server
        .tasks()
        .await
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "still works".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("tasks work");
    let s = status_of(
        c.get_spotify_link(tonic::Request::new(GetSpotifyLinkRequest {}))
            .await,
    );
    assert_eq!(s.code(), Code::Unauthenticated);
    server.stop().await;
}
