//! A client of the Google Calendar API v3 and Google's OAuth 2 endpoints,
//! over the endpoints the calendar syncs with: `events.list` (with
//! `syncToken`), `events.insert`, `events.patch`, `events.delete`,
//! `freeBusy.query`, and the authorization-code (PKCE) and refresh-token
//! grants. Every base URL is configurable. Tokens never reach the logs:
//! errors carry the status and Google's error message only.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

/// `[service.calendar.google]`.
/// `Debug` leaves out the client secret and the token key.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GoogleSettings {
    pub client_id: String,
    pub client_secret: String,
    /// Where Google sends the user back to: the gateway's
    /// `/calendar/v1/google/callback`, as registered with Google.
    pub redirect_uri: String,
    /// 32 bytes, base64: seals the tokens at rest.
    pub token_key: String,
    #[serde(default = "default_auth_url")]
    pub auth_url: String,
    #[serde(default = "default_token_url")]
    pub token_url: String,
    #[serde(default = "default_api_url")]
    pub api_url: String,
}

impl std::fmt::Debug for GoogleSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleSettings")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uri", &self.redirect_uri)
            .field("token_key", &"<redacted>")
            .field("auth_url", &self.auth_url)
            .field("token_url", &self.token_url)
            .field("api_url", &self.api_url)
            .finish()
    }
}

fn default_auth_url() -> String {
    "https://accounts.google.com/o/oauth2/v2/auth".into()
}

fn default_token_url() -> String {
    "https://oauth2.googleapis.com/token".into()
}

fn default_api_url() -> String {
    "https://www.googleapis.com".into()
}

/// The scope the calendar needs: events read and write.
pub const SCOPE: &str = "https://www.googleapis.com/auth/calendar.events";
/// The largest response body read.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Days after `timeMin` a full listing covers (the auto-scheduler's
/// horizon at most, and a margin).
pub const LISTED_DAYS: i64 = 120;
/// An extended property marking the events FocusForge wrote.
pub const MARK: &str = "focusforge_event_id";

#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    /// The sync token expired: start over with a full sync.
    #[error("the sync token is no longer valid (410 Gone)")]
    Gone,
    /// The grant was revoked or the refresh token is bad.
    #[error("Google refused the credentials ({0}); link the calendar again")]
    Unauthorized(String),
    /// The event is not (or no longer) there.
    #[error("Google Calendar has no such event")]
    NotFound,
    #[error("Google Calendar: {0}")]
    Other(String),
}

/// No `Debug`: it holds the tokens.
#[derive(Clone)]
pub struct Tokens {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: Option<String>,
}

/// One event of a listing, as the calendar needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: String,
    pub cancelled: bool,
    pub summary: String,
    pub busy: bool,
    pub start: Option<Stamp>,
    pub end: Option<Stamp>,
    pub time_zone: Option<String>,
    /// Written by FocusForge (one of its focus blocks).
    pub ours: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    Date(NaiveDate),
    Time(DateTime<Utc>),
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<Item>,
    pub next_page_token: Option<String>,
    pub next_sync_token: Option<String>,
}

/// An event FocusForge writes to Google: a focus block.
#[derive(Debug, Clone, Copy)]
pub struct Written<'a> {
    pub summary: &'a str,
    pub description: &'a str,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub tz: &'a str,
    /// Its id here, kept in a private extended property.
    pub ours: &'a str,
}

#[derive(Clone)]
pub struct Google {
    http: reqwest::Client,
    pub settings: GoogleSettings,
}

fn short(text: &str) -> String {
    text.chars().take(300).collect()
}

/// PKCE: the S256 challenge of a verifier.
pub fn challenge(verifier: &str) -> String {
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

fn stamp(v: &Value) -> Option<Stamp> {
    if let Some(t) = v.get("dateTime").and_then(Value::as_str) {
        return DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| Stamp::Time(t.with_timezone(&Utc)));
    }
    v.get("date")
        .and_then(Value::as_str)
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .map(Stamp::Date)
}

fn item(v: &Value) -> Option<Item> {
    let id = v.get("id")?.as_str()?.to_owned();
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
    Some(Item {
        cancelled: s("status") == "cancelled",
        summary: s("summary").to_owned(),
        busy: s("transparency") != "transparent",
        start: v.get("start").and_then(stamp),
        end: v.get("end").and_then(stamp),
        time_zone: v
            .get("start")
            .and_then(|s| s.get("timeZone"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        ours: v
            .pointer(&format!("/extendedProperties/private/{MARK}"))
            .is_some(),
        id,
    })
}

impl Google {
    pub fn new(settings: GoogleSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self { http, settings })
    }

    pub fn authorize_url(&self, state: &str, verifier: &str) -> String {
        let mut url = match reqwest::Url::parse(&self.settings.auth_url) {
            Ok(u) => u,
            Err(_) => return String::new(),
        };
        url.query_pairs_mut()
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.settings.redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("scope", SCOPE)
            .append_pair("access_type", "offline")
            .append_pair("prompt", "consent")
            .append_pair("state", state)
            .append_pair("code_challenge", &challenge(verifier))
            .append_pair("code_challenge_method", "S256");
        url.to_string()
    }

    async fn read(resp: reqwest::Response) -> Result<(u16, Value), GoogleError> {
        let status = resp.status().as_u16();
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(GoogleError::Other(format!(
                "a {status} response over 4 MiB"
            )));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| GoogleError::Other(format!("reading the response: {e}")))?;
        if bytes.len() > MAX_BODY {
            return Err(GoogleError::Other(format!(
                "a {status} response over 4 MiB"
            )));
        }
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(
                |_| json!({ "error": { "message": short(&String::from_utf8_lossy(&bytes)) } }),
            )
        };
        Ok((status, v))
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

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, Value), GoogleError> {
        let resp = req
            .send()
            .await
            // Without the URL: its query may hold a sync token.
            .map_err(|e| {
                GoogleError::Other(format!(
                    "cannot reach Google: {}",
                    short(&e.without_url().to_string())
                ))
            })?;
        Self::read(resp).await
    }

    fn check(status: u16, v: &Value) -> Result<(), GoogleError> {
        match status {
            200..=299 => Ok(()),
            401 => Err(GoogleError::Unauthorized(Self::message(v))),
            404 => Err(GoogleError::NotFound),
            410 => Err(GoogleError::Gone),
            s => Err(GoogleError::Other(format!("{s}: {}", Self::message(v)))),
        }
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<Tokens, GoogleError> {
        let (status, v) = self
            .send(self.http.post(&self.settings.token_url).form(form))
            .await?;
        if status == 400 || status == 401 {
            return Err(GoogleError::Unauthorized(Self::message(&v)));
        }
        Self::check(status, &v)?;
        let access_token = v
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| GoogleError::Other("the token response has no access_token".into()))?
            .to_owned();
        Ok(Tokens {
            access_token,
            expires_in: v.get("expires_in").and_then(Value::as_i64).unwrap_or(3600),
            refresh_token: v
                .get("refresh_token")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    /// The authorization-code grant, with the PKCE verifier.
    pub async fn exchange(&self, code: &str, verifier: &str) -> Result<Tokens, GoogleError> {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.settings.redirect_uri),
            ("client_id", &self.settings.client_id),
            ("client_secret", &self.settings.client_secret),
            ("code_verifier", verifier),
        ])
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, GoogleError> {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &self.settings.client_id),
            ("client_secret", &self.settings.client_secret),
        ])
        .await
    }

    fn events_url(&self, calendar: &str) -> String {
        format!(
            "{}/calendar/v3/calendars/{}/events",
            self.settings.api_url.trim_end_matches('/'),
            urlencoding(calendar)
        )
    }

    /// One page of `events.list`: incremental with a sync token, else a
    /// full listing from `time_min`. Recurring events come as instances.
    pub async fn list(
        &self,
        access: &str,
        calendar: &str,
        sync_token: Option<&str>,
        time_min: DateTime<Utc>,
        page_token: Option<&str>,
    ) -> Result<Page, GoogleError> {
        let mut q: Vec<(&str, String)> = vec![
            ("singleEvents", "true".into()),
            ("maxResults", "250".into()),
        ];
        let t = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match sync_token {
            Some(tok) => q.push(("syncToken", tok.to_owned())),
            None => {
                // A bounded window: endless series expand to instances.
                q.push(("timeMin", t(time_min)));
                q.push(("timeMax", t(time_min + chrono::Duration::days(LISTED_DAYS))));
            }
        }
        if let Some(p) = page_token {
            q.push(("pageToken", p.to_owned()));
        }
        let (status, v) = self
            .send(
                self.http
                    .get(self.events_url(calendar))
                    .bearer_auth(access)
                    .query(&q),
            )
            .await?;
        Self::check(status, &v)?;
        Ok(Page {
            items: v
                .get("items")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(item).collect())
                .unwrap_or_default(),
            next_page_token: v
                .get("nextPageToken")
                .and_then(Value::as_str)
                .map(str::to_owned),
            next_sync_token: v
                .get("nextSyncToken")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    fn body(e: &Written<'_>) -> Value {
        let t = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        json!({
            "summary": e.summary,
            "description": e.description,
            "start": { "dateTime": t(e.start), "timeZone": e.tz },
            "end": { "dateTime": t(e.end), "timeZone": e.tz },
            "transparency": "opaque",
            "extendedProperties": { "private": { MARK: e.ours } },
        })
    }

    /// `events.insert`; the new event's id.
    pub async fn insert(
        &self,
        access: &str,
        calendar: &str,
        e: &Written<'_>,
    ) -> Result<String, GoogleError> {
        let (status, v) = self
            .send(
                self.http
                    .post(self.events_url(calendar))
                    .bearer_auth(access)
                    .json(&Self::body(e)),
            )
            .await?;
        Self::check(status, &v)?;
        v.get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| GoogleError::Other("events.insert answered without an id".into()))
    }

    /// `events.patch`.
    pub async fn patch(
        &self,
        access: &str,
        calendar: &str,
        id: &str,
        e: &Written<'_>,
    ) -> Result<(), GoogleError> {
        let (status, v) = self
            .send(
                self.http
                    .patch(format!("{}/{}", self.events_url(calendar), urlencoding(id)))
                    .bearer_auth(access)
                    .json(&Self::body(e)),
            )
            .await?;
        Self::check(status, &v)
    }

    /// `events.delete`; an event already gone counts as deleted.
    pub async fn delete(&self, access: &str, calendar: &str, id: &str) -> Result<(), GoogleError> {
        let (status, v) = self
            .send(
                self.http
                    .delete(format!("{}/{}", self.events_url(calendar), urlencoding(id)))
                    .bearer_auth(access),
            )
            .await?;
        match status {
            404 | 410 => Ok(()),
            _ => Self::check(status, &v),
        }
    }

    /// `freeBusy.query` for one calendar.
    pub async fn free_busy(
        &self,
        access: &str,
        calendar: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>, GoogleError> {
        let t = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (status, v) = self
            .send(
                self.http
                    .post(format!(
                        "{}/calendar/v3/freeBusy",
                        self.settings.api_url.trim_end_matches('/')
                    ))
                    .bearer_auth(access)
                    .json(&json!({
                        "timeMin": t(from),
                        "timeMax": t(to),
                        "items": [{ "id": calendar }],
                    })),
            )
            .await?;
        Self::check(status, &v)?;
        let busy = v
            .pointer(&format!(
                "/calendars/{}/busy",
                calendar.replace('~', "~0").replace('/', "~1")
            ))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(busy
            .iter()
            .filter_map(|b| {
                let s = DateTime::parse_from_rfc3339(b.get("start")?.as_str()?).ok()?;
                let e = DateTime::parse_from_rfc3339(b.get("end")?.as_str()?).ok()?;
                Some((s.with_timezone(&Utc), e.with_timezone(&Utc)))
            })
            .collect())
    }
}

/// Percent-encodes a path segment.
fn urlencoding(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_leaves_the_secrets_out() {
        let settings = GoogleSettings {
            client_id: "client-7".into(),
            client_secret: "s3cret-value".into(),
            redirect_uri: "http://127.0.0.1:8080/calendar/v1/google/callback".into(),
            token_key: "a2V5LWJ5dGVzLWtleS1ieXRlcy1rZXktYnl0ZXMtMzI=".into(),
            auth_url: default_auth_url(),
            token_url: default_token_url(),
            api_url: default_api_url(),
        };
        let shown = format!("{settings:?}");
        assert!(shown.contains("client-7"), "{shown}");
        assert!(!shown.contains("s3cret-value"), "{shown}");
        assert!(!shown.contains("a2V5LWJ5"), "{shown}");
    }
}
