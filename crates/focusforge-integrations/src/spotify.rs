//! A client of the Spotify Web API and Spotify's accounts service, over
//! what a focus app needs: the authorization code grant with PKCE and the
//! refresh grant (`/authorize`, `/api/token`), `GET /v1/me`,
//! `/v1/me/playlists`, `/v1/playlists/{id}/items`, `/v1/me/player/devices`,
//! `/v1/me/player/currently-playing`, `PUT /v1/me/player/play` and
//! `/pause`. Both hosts are configurable. A `429` is retried after its
//! `Retry-After` (at most `max_retry_wait`, three attempts); longer waits
//! are the caller's. Tokens never reach the logs or the errors: errors carry
//! the status, Spotify's message and its player `reason` only.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

/// Spotify's part of `[service.integrations]`: the keys `spotify_client_id`,
/// `spotify_redirect_uri`, `spotify_token_key`, `spotify_accounts_url`,
/// `spotify_api_url`, `spotify_max_retry_wait_secs`.
/// No `Debug`: it holds the token key.
#[derive(Clone, PartialEq, Eq)]
pub struct SpotifySettings {
    /// The app's client id from Spotify's developer dashboard.
    pub client_id: String,
    /// Where Spotify sends the user back to: the gateway's
    /// `/integrations/v1/spotify/callback`, as registered for the app
    /// (HTTPS, or a loopback address such as `http://127.0.0.1:8080/...`).
    pub redirect_uri: String,
    /// 32 bytes, base64: seals the tokens at rest.
    pub token_key: String,
    pub accounts_url: String,
    pub api_url: String,
    /// The longest `Retry-After` waited for before answering
    /// `RESOURCE_EXHAUSTED`, in seconds.
    pub max_retry_wait_secs: u64,
}

pub const ACCOUNTS_URL: &str = "https://accounts.spotify.com";
pub const API_URL: &str = "https://api.spotify.com";

/// What the link asks for: the user's playlists and their player.
pub const SCOPES: &str = "playlist-read-private playlist-read-collaborative user-read-playback-state user-modify-playback-state user-read-currently-playing";
/// The largest response body read.
const MAX_BODY: usize = 2 * 1024 * 1024;
/// Attempts of one call when Spotify answers 429.
const ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpotifyError {
    /// The access token was refused (expired or revoked): refresh and retry.
    #[error("Spotify refused the access token ({0})")]
    Unauthorized(String),
    /// The refresh token or code was refused: link again.
    #[error("Spotify refused the grant ({0}); link Spotify again")]
    InvalidGrant(String),
    /// Player commands need Spotify Premium.
    #[error("Spotify Premium is required to control playback ({0})")]
    PremiumRequired(String),
    /// Playback needs an active device.
    #[error("no active Spotify device: open Spotify on a device, or name one ({0})")]
    NoActiveDevice(String),
    #[error("Spotify refused the request: {0}")]
    Forbidden(String),
    #[error("Spotify has no such item ({0})")]
    NotFound(String),
    /// Rate limited for longer than the client waits; seconds to wait.
    #[error("Spotify's rate limit: retry in {0} s")]
    RateLimited(u64),
    #[error("Spotify: {0}")]
    Other(String),
}

/// No `Debug`: it holds the tokens.
#[derive(Clone)]
pub struct Tokens {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: Option<String>,
    pub scope: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Me {
    pub id: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Playlist {
    pub id: String,
    pub name: String,
    pub uri: String,
    pub owner_id: String,
    pub owner_name: String,
    pub collaborative: bool,
    /// Items in it, when Spotify says.
    pub items: Option<i64>,
    pub image_url: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Track {
    pub name: String,
    pub uri: String,
    pub artists: Vec<String>,
    pub album: String,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Device {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub is_active: bool,
    pub is_restricted: bool,
    pub volume_percent: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct NowPlaying {
    pub is_playing: bool,
    pub track: Option<Track>,
    pub context_uri: String,
    pub progress_ms: i64,
}

/// A page of a paging object and whether another follows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub more: bool,
}

#[derive(Clone)]
pub struct Spotify {
    http: reqwest::Client,
    pub settings: SpotifySettings,
}

fn short(text: &str) -> String {
    text.chars().take(300).collect()
}

/// PKCE: the S256 challenge of a verifier.
pub fn challenge(verifier: &str) -> String {
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

fn s(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn track(v: &Value) -> Option<Track> {
    if v.is_null() {
        return None;
    }
    Some(Track {
        name: s(v, "name"),
        uri: s(v, "uri"),
        artists: v
            .get("artists")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|x| s(x, "name")).collect())
            .unwrap_or_default(),
        album: v.get("album").map(|a| s(a, "name")).unwrap_or_default(),
        duration_ms: v.get("duration_ms").and_then(Value::as_i64).unwrap_or(0),
    })
}

fn playlist(v: &Value) -> Playlist {
    let owner = v.get("owner").cloned().unwrap_or(Value::Null);
    // `items` since 2026; `tracks` before.
    let count = v
        .get("items")
        .or_else(|| v.get("tracks"))
        .and_then(|c| c.get("total"))
        .and_then(Value::as_i64);
    Playlist {
        id: s(v, "id"),
        name: s(v, "name"),
        uri: s(v, "uri"),
        owner_id: s(&owner, "id"),
        owner_name: s(&owner, "display_name"),
        collaborative: v
            .get("collaborative")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        items: count,
        image_url: v
            .pointer("/images/0/url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    }
}

fn paged<T>(v: &Value, f: impl Fn(&Value) -> Option<T>) -> Paged<T> {
    Paged {
        items: v
            .get("items")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(&f).collect())
            .unwrap_or_default(),
        total: v.get("total").and_then(Value::as_i64).unwrap_or(0),
        more: v.get("next").is_some_and(|n| !n.is_null()),
    }
}

/// A path segment Spotify ids are made of (base62), so an id never
/// changes the path.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Spotify {
    pub fn new(settings: SpotifySettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .pool_idle_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        for url in [&settings.accounts_url, &settings.api_url] {
            reqwest::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("[service.integrations] Spotify URL {url:?}: {e}"))?;
        }
        Ok(Self { http, settings })
    }

    pub fn authorize_url(&self, state: &str, verifier: &str) -> String {
        let base = format!(
            "{}/authorize",
            self.settings.accounts_url.trim_end_matches('/')
        );
        let Ok(mut url) = reqwest::Url::parse(&base) else {
            return String::new();
        };
        url.query_pairs_mut()
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", &self.settings.redirect_uri)
            .append_pair("state", state)
            .append_pair("scope", SCOPES)
            .append_pair("code_challenge_method", "S256")
            .append_pair("code_challenge", &challenge(verifier));
        url.to_string()
    }

    async fn read(resp: reqwest::Response) -> Result<(u16, Option<u64>, Value), SpotifyError> {
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(SpotifyError::Other(format!(
                "a {status} response over 2 MiB"
            )));
        }
        let bytes = resp.bytes().await.map_err(|e| {
            SpotifyError::Other(format!("reading the response: {}", e.without_url()))
        })?;
        if bytes.len() > MAX_BODY {
            return Err(SpotifyError::Other(format!(
                "a {status} response over 2 MiB"
            )));
        }
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(
                |_| json!({ "error": { "message": short(&String::from_utf8_lossy(&bytes)) } }),
            )
        };
        Ok((status, retry_after, v))
    }

    fn message(v: &Value) -> String {
        let m = v
            .pointer("/error/message")
            .or_else(|| v.get("error_description"))
            .or_else(|| v.get("error"))
            .and_then(Value::as_str)
            .unwrap_or("no message");
        short(m)
    }

    fn error(status: u16, v: &Value) -> SpotifyError {
        let reason = v
            .pointer("/error/reason")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let m = Self::message(v);
        match (status, reason) {
            (401, _) => SpotifyError::Unauthorized(m),
            (403, "PREMIUM_REQUIRED") => SpotifyError::PremiumRequired(m),
            (404, "NO_ACTIVE_DEVICE") => SpotifyError::NoActiveDevice(m),
            (403, _) => SpotifyError::Forbidden(m),
            (404, _) => SpotifyError::NotFound(m),
            (s, "") => SpotifyError::Other(format!("{s}: {m}")),
            (s, r) => SpotifyError::Other(format!("{s} {r}: {m}")),
        }
    }

    /// Sends a request, waiting out `429`s within the limits.
    async fn send(
        &self,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(u16, Value), SpotifyError> {
        let mut backoff = 1;
        for attempt in 1..=ATTEMPTS {
            let resp = make().send().await.map_err(|e| {
                SpotifyError::Other(format!(
                    "cannot reach Spotify: {}",
                    short(&e.without_url().to_string())
                ))
            })?;
            let (status, retry_after, v) = Self::read(resp).await?;
            if status != 429 {
                return Ok((status, v));
            }
            // Without Retry-After: 1 s, then 2 s.
            let wait = retry_after.unwrap_or(backoff);
            backoff *= 2;
            if wait > self.settings.max_retry_wait_secs || attempt == ATTEMPTS {
                return Err(SpotifyError::RateLimited(wait.max(1)));
            }
            tracing::debug!(wait, attempt, "spotify rate limit");
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
        Err(SpotifyError::RateLimited(1))
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<Tokens, SpotifyError> {
        let url = format!(
            "{}/api/token",
            self.settings.accounts_url.trim_end_matches('/')
        );
        let (status, v) = self.send(|| self.http.post(&url).form(form)).await?;
        // Only a refused grant means the user must link again; any other
        // refusal (the client id, the request) is this deployment's.
        if (400..500).contains(&status) {
            let m = Self::message(&v);
            return Err(match v.get("error").and_then(Value::as_str) {
                Some("invalid_grant") => SpotifyError::InvalidGrant(m),
                Some(other) => {
                    SpotifyError::Other(format!("the token endpoint: {status} {other}: {m}"))
                }
                None => SpotifyError::Other(format!("the token endpoint: {status}: {m}")),
            });
        }
        if !(200..300).contains(&status) {
            return Err(Self::error(status, &v));
        }
        let access_token = v
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| SpotifyError::Other("the token response has no access_token".into()))?
            .to_owned();
        Ok(Tokens {
            access_token,
            expires_in: v
                .get("expires_in")
                .and_then(Value::as_i64)
                .unwrap_or(3600)
                .clamp(60, 86_400),
            refresh_token: v
                .get("refresh_token")
                .and_then(Value::as_str)
                .map(str::to_owned),
            scope: s(&v, "scope"),
        })
    }

    /// The authorization-code grant, with the PKCE verifier.
    pub async fn exchange(&self, code: &str, verifier: &str) -> Result<Tokens, SpotifyError> {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.settings.redirect_uri),
            ("client_id", &self.settings.client_id),
            ("code_verifier", verifier),
        ])
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, SpotifyError> {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &self.settings.client_id),
        ])
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.api_url.trim_end_matches('/'))
    }

    async fn get(
        &self,
        access: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, SpotifyError> {
        let url = self.url(path);
        let (status, v) = self
            .send(|| self.http.get(&url).bearer_auth(access).query(query))
            .await?;
        match status {
            200..=299 => Ok(v),
            s => Err(Self::error(s, &v)),
        }
    }

    pub async fn me(&self, access: &str) -> Result<Me, SpotifyError> {
        let v = self.get(access, "/v1/me", &[]).await?;
        Ok(Me {
            id: s(&v, "id"),
            display_name: s(&v, "display_name"),
        })
    }

    /// One page of the user's playlists (`limit` 1-50).
    pub async fn playlists(
        &self,
        access: &str,
        limit: u32,
        offset: u32,
    ) -> Result<Paged<Playlist>, SpotifyError> {
        let v = self
            .get(
                access,
                "/v1/me/playlists",
                &[("limit", limit.to_string()), ("offset", offset.to_string())],
            )
            .await?;
        Ok(paged(&v, |p| Some(playlist(p))))
    }

    /// One page of a playlist's tracks (`limit` 1-50); episodes and
    /// unavailable items are left out.
    pub async fn playlist_items(
        &self,
        access: &str,
        id: &str,
        limit: u32,
        offset: u32,
    ) -> Result<Paged<Track>, SpotifyError> {
        let v = self
            .get(
                access,
                &format!("/v1/playlists/{id}/items"),
                &[("limit", limit.to_string()), ("offset", offset.to_string())],
            )
            .await?;
        // `item` since 2026; `track` before.
        Ok(paged(&v, |e| {
            let t = e.get("item").or_else(|| e.get("track"))?;
            (s(t, "type") != "episode").then(|| track(t)).flatten()
        }))
    }

    pub async fn devices(&self, access: &str) -> Result<Vec<Device>, SpotifyError> {
        let v = self.get(access, "/v1/me/player/devices", &[]).await?;
        Ok(v.get("devices")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|d| Device {
                        id: s(d, "id"),
                        name: s(d, "name"),
                        kind: s(d, "type"),
                        is_active: d.get("is_active").and_then(Value::as_bool).unwrap_or(false),
                        is_restricted: d
                            .get("is_restricted")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                        volume_percent: d.get("volume_percent").and_then(Value::as_i64),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// What plays now; nothing (204) is a stopped player.
    pub async fn currently_playing(&self, access: &str) -> Result<NowPlaying, SpotifyError> {
        let v = self
            .get(access, "/v1/me/player/currently-playing", &[])
            .await?;
        if v.is_null() {
            return Ok(NowPlaying::default());
        }
        Ok(NowPlaying {
            is_playing: v
                .get("is_playing")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            track: v.get("item").and_then(track),
            context_uri: v.get("context").map(|c| s(c, "uri")).unwrap_or_default(),
            progress_ms: v.get("progress_ms").and_then(Value::as_i64).unwrap_or(0),
        })
    }

    async fn put(
        &self,
        access: &str,
        path: &str,
        device: &str,
        body: Option<Value>,
    ) -> Result<(), SpotifyError> {
        let url = self.url(path);
        let query: Vec<(&str, &str)> = if device.is_empty() {
            Vec::new()
        } else {
            vec![("device_id", device)]
        };
        let (status, v) = self
            .send(|| {
                let req = self.http.put(&url).bearer_auth(access).query(&query);
                match &body {
                    Some(b) => req.json(b),
                    None => req.header(reqwest::header::CONTENT_LENGTH, "0"),
                }
            })
            .await?;
        match status {
            200..=299 => Ok(()),
            s => Err(Self::error(s, &v)),
        }
    }

    /// Starts a playlist (or album) on a device, or on the active one.
    pub async fn play(
        &self,
        access: &str,
        device: &str,
        context_uri: &str,
    ) -> Result<(), SpotifyError> {
        self.put(
            access,
            "/v1/me/player/play",
            device,
            Some(json!({ "context_uri": context_uri })),
        )
        .await
    }

    pub async fn pause(&self, access: &str, device: &str) -> Result<(), SpotifyError> {
        self.put(access, "/v1/me/player/pause", device, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn player_errors_are_told_apart_by_reason() {
        let body =
            |reason: &str| json!({"error": {"status": 403, "message": "m", "reason": reason}});
        assert!(matches!(
            Spotify::error(403, &body("PREMIUM_REQUIRED")),
            SpotifyError::PremiumRequired(_)
        ));
        assert!(matches!(
            Spotify::error(
                404,
                &json!({"error": {"status": 404, "message": "m", "reason": "NO_ACTIVE_DEVICE"}})
            ),
            SpotifyError::NoActiveDevice(_)
        ));
        assert!(matches!(
            Spotify::error(403, &body("UNKNOWN")),
            SpotifyError::Forbidden(_)
        ));
        assert!(matches!(
            Spotify::error(401, &json!({"error": {"status": 401, "message": "The access token expired"}})),
            SpotifyError::Unauthorized(m) if m == "The access token expired"
        ));
        assert!(matches!(
            Spotify::error(502, &Value::Null),
            SpotifyError::Other(_)
        ));
    }

    #[test]
    fn playlists_read_the_2026_names_and_the_older_ones() {
        let new = json!({"id": "a", "name": "A", "items": {"href": "h", "total": 7}, "owner": {"id": "jane"}});
        let old = json!({"id": "b", "name": "B", "tracks": {"href": "h", "total": 3}});
        assert_eq!(playlist(&new).items, Some(7));
        assert_eq!(playlist(&new).owner_id, "jane");
        assert_eq!(playlist(&old).items, Some(3));
        assert_eq!(playlist(&json!({"id": "c"})).items, None);
    }

    #[test]
    fn ids_cannot_change_a_path() {
        assert!(valid_id("37i9dQZF1DX8NTLI2TtZa6"));
        for bad in ["", "../me", "a/b", "a?b", "é", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }
}
