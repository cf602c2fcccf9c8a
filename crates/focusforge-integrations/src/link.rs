//! The user's Spotify link: one document per user in `integration_links`
//! (the link in progress, with its sealed PKCE verifier, and the linked
//! account with its sealed tokens and the focus playlist), the OAuth flow,
//! access tokens refreshed a minute before they expire (and once more when
//! Spotify refuses one), and the calls a focus app makes with them.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use focusforge_auth::seal::{Sealer, name_of, named};
use focusforge_core::{Clock, Error, Result, UserId};
use focusforge_store::{NewDocument, SharedStore, StoreError};
use serde::{Deserialize, Serialize};

use crate::spotify::{self, Device, NowPlaying, Paged, Playlist, Spotify, SpotifyError, Track};

pub const LINKS: &str = "integration_links";
const SPOTIFY_DOC: &str = "spotify";
/// How long a started link may take to finish.
const PENDING_MINUTES: i64 = 10;
/// Pages of playlists looked through to find one by id (50 each).
const PLAYLIST_PAGES: u32 = 10;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Doc {
    #[serde(default)]
    pending: Option<Pending>,
    #[serde(default)]
    linked: Option<Linked>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    state: String,
    /// Sealed.
    verifier: String,
    expires_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Linked {
    spotify_user: String,
    display_name: String,
    /// Sealed, like `refresh`.
    access: String,
    refresh: String,
    access_expires_ms: i64,
    scope: String,
    linked_ms: i64,
    #[serde(default)]
    focus_playlist: Option<FocusPlaylist>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FocusPlaylist {
    pub id: String,
    pub name: String,
    pub uri: String,
}

/// What a user may see of their link: never a token.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkView {
    pub linked: bool,
    pub spotify_user: String,
    pub display_name: String,
    pub scopes: Vec<String>,
    pub linked_at: Option<DateTime<Utc>>,
    pub focus_playlist: Option<FocusPlaylist>,
}

/// Spotify for this deployment: `None` settings mean not configured.
#[derive(Clone)]
pub struct Link {
    inner: Option<Arc<Configured>>,
    store: SharedStore,
    clock: Arc<dyn Clock>,
}

struct Configured {
    spotify: Spotify,
    sealer: Sealer,
}

fn not_configured() -> Error {
    Error::FailedPrecondition(
        "Spotify is not configured here: set spotify_client_id, spotify_redirect_uri and spotify_token_key in [service.integrations] (FOCUSFORGE_SERVICE_INTEGRATIONS_SPOTIFY_CLIENT_ID, ..._SPOTIFY_REDIRECT_URI, ..._SPOTIFY_TOKEN_KEY)".into(),
    )
}

fn not_linked() -> Error {
    Error::FailedPrecondition("Spotify is not linked; call BeginSpotifyLink first".into())
}

pub fn spotify_err(e: SpotifyError) -> Error {
    match e {
        SpotifyError::Unauthorized(_) | SpotifyError::InvalidGrant(_) => {
            Error::FailedPrecondition(format!("{e}; link Spotify again with BeginSpotifyLink"))
        }
        SpotifyError::PremiumRequired(_) | SpotifyError::NoActiveDevice(_) => {
            Error::FailedPrecondition(e.to_string())
        }
        SpotifyError::Forbidden(_) => Error::FailedPrecondition(e.to_string()),
        SpotifyError::NotFound(_) => Error::NotFound("Spotify playlist or device".into()),
        SpotifyError::RateLimited(_) => Error::ResourceExhausted(e.to_string()),
        SpotifyError::Other(_) => Error::Unavailable(e.to_string()),
    }
}

fn store_err(e: StoreError) -> Error {
    e.into_domain("spotify link")
}

fn ms_time(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// The user a state names, if it is well formed.
pub fn state_user(state: &str) -> Option<UserId> {
    name_of(state).map(|(user, _)| user)
}

impl Link {
    pub fn new(
        settings: Option<spotify::SpotifySettings>,
        store: SharedStore,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let inner = match settings {
            None => None,
            Some(s) => {
                anyhow::ensure!(
                    !s.client_id.trim().is_empty(),
                    "[service.integrations] spotify_client_id is empty"
                );
                check_redirect(&s.redirect_uri)?;
                let sealer = Sealer::from_base64(&s.token_key)
                    .map_err(|e| e.context("[service.integrations] spotify_token_key"))?;
                Some(Arc::new(Configured {
                    spotify: Spotify::new(s)?,
                    sealer,
                }))
            }
        };
        Ok(Link {
            inner,
            store,
            clock,
        })
    }

    pub fn configured(&self) -> bool {
        self.inner.is_some()
    }

    fn cfg(&self) -> Result<&Configured> {
        self.inner.as_deref().ok_or_else(not_configured)
    }

    async fn doc(&self, user: &UserId) -> Result<Doc> {
        Ok(self
            .store
            .get(LINKS, user, SPOTIFY_DOC)
            .await
            .map_err(store_err)?
            .and_then(|d| serde_json::from_value(d.body).ok())
            .unwrap_or_default())
    }

    async fn change(
        &self,
        user: &UserId,
        mut f: impl FnMut(&mut Doc) -> Result<()>,
    ) -> Result<Doc> {
        let new = NewDocument {
            id: SPOTIFY_DOC.into(),
            user_id: user.clone(),
            body: serde_json::to_value(Doc::default()).map_err(Error::internal)?,
            expires_at: None,
        };
        match self.store.insert(LINKS, new).await {
            Ok(_) | Err(StoreError::AlreadyExists) => {}
            Err(e) => return Err(store_err(e)),
        }
        let mut out = Doc::default();
        focusforge_store::modify(
            self.store.as_ref(),
            LINKS,
            user,
            SPOTIFY_DOC,
            "spotify link",
            None,
            |d| {
                let mut doc: Doc = serde_json::from_value(d.body.clone()).unwrap_or_default();
                f(&mut doc)?;
                out = doc.clone();
                Ok(Some(serde_json::to_value(&doc).map_err(Error::internal)?))
            },
        )
        .await?;
        Ok(out)
    }

    /// The authorize URL and state of a new link.
    pub async fn begin(&self, user: &UserId) -> Result<(String, String, DateTime<Utc>)> {
        let cfg = self.cfg()?;
        let state = named(user, &hex::encode(rand::random::<[u8; 16]>()));
        // 64 characters of [0-9a-f]: within PKCE's 43-128 unreserved ones.
        let verifier = hex::encode(rand::random::<[u8; 32]>());
        let sealed = cfg.sealer.seal(user.as_str(), &verifier)?;
        let expires = self.clock.now() + Duration::minutes(PENDING_MINUTES);
        self.change(user, |d| {
            d.pending = Some(Pending {
                state: state.clone(),
                verifier: sealed.clone(),
                expires_ms: expires.timestamp_millis(),
            });
            Ok(())
        })
        .await?;
        Ok((cfg.spotify.authorize_url(&state, &verifier), state, expires))
    }

    /// Exchanges the code of a link begun with `state`.
    pub async fn complete(&self, user: &UserId, code: &str, state: &str) -> Result<LinkView> {
        let cfg = self.cfg()?;
        if code.is_empty() || code.len() > 2048 {
            return Err(Error::invalid("code", "must be 1-2048 characters"));
        }
        let now = self.clock.now();
        let pending = self
            .doc(user)
            .await?
            .pending
            .filter(|p| same(&p.state, state) && p.expires_ms > now.timestamp_millis())
            .ok_or_else(|| {
                Error::invalid(
                    "state",
                    "is not the state of a link in progress (or it expired); begin again",
                )
            })?;
        let verifier = cfg.sealer.open(user.as_str(), &pending.verifier)?;
        let tokens = cfg
            .spotify
            .exchange(code, &verifier)
            .await
            .map_err(spotify_err)?;
        let refresh = tokens.refresh_token.clone().ok_or_else(|| {
            Error::Unavailable("Spotify returned no refresh token; link again".into())
        })?;
        let me = cfg
            .spotify
            .me(&tokens.access_token)
            .await
            .map_err(spotify_err)?;
        let linked = Linked {
            spotify_user: me.id,
            display_name: me.display_name,
            access: cfg.sealer.seal(user.as_str(), &tokens.access_token)?,
            refresh: cfg.sealer.seal(user.as_str(), &refresh)?,
            access_expires_ms: (now + Duration::seconds(tokens.expires_in)).timestamp_millis(),
            scope: tokens.scope,
            linked_ms: now.timestamp_millis(),
            focus_playlist: None,
        };
        let doc = self
            .change(user, |d| {
                if !d.pending.as_ref().is_some_and(|p| same(&p.state, state)) {
                    return Err(Error::invalid(
                        "state",
                        "was used or replaced meanwhile; begin again",
                    ));
                }
                let playlist = d.linked.as_ref().and_then(|l| l.focus_playlist.clone());
                d.pending = None;
                d.linked = Some(Linked {
                    focus_playlist: playlist,
                    ..linked.clone()
                });
                Ok(())
            })
            .await?;
        tracing::info!(user = %user, "spotify linked");
        Ok(view(&doc))
    }

    pub async fn view(&self, user: &UserId) -> Result<LinkView> {
        self.cfg()?;
        Ok(view(&self.doc(user).await?))
    }

    pub async fn unlink(&self, user: &UserId) -> Result<()> {
        self.cfg()?;
        self.change(user, |d| {
            d.linked = None;
            d.pending = None;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// A valid access token: the stored one, or a refreshed one when it
    /// expires within a minute or `force`. Concurrent refreshes of one link
    /// settle on the stored refresh token: a write or an unlink applies
    /// only while the link still holds the token that was used, and a
    /// refresh refused because another one rotated the token meanwhile
    /// takes that one's result.
    async fn access(&self, user: &UserId, force: bool) -> Result<String> {
        let cfg = self.cfg()?;
        let linked = self.doc(user).await?.linked.ok_or_else(not_linked)?;
        let now = self.clock.now();
        if !force && linked.access_expires_ms > (now + Duration::minutes(1)).timestamp_millis() {
            return cfg.sealer.open(user.as_str(), &linked.access);
        }
        let used = linked.refresh.clone();
        let refresh = cfg.sealer.open(user.as_str(), &used)?;
        let tokens = match cfg.spotify.refresh(&refresh).await {
            Ok(t) => t,
            Err(e @ SpotifyError::InvalidGrant(_)) => {
                if let Some(now_linked) = self.doc(user).await?.linked
                    && now_linked.refresh != used
                {
                    return cfg.sealer.open(user.as_str(), &now_linked.access);
                }
                // The grant is gone: keep nothing that cannot work.
                self.change(user, |d| {
                    if d.linked.as_ref().is_some_and(|l| l.refresh == used) {
                        d.linked = None;
                    }
                    Ok(())
                })
                .await?;
                tracing::info!(user = %user, "spotify grant refused; unlinked");
                return Err(spotify_err(e));
            }
            Err(e) => return Err(spotify_err(e)),
        };
        let sealed = cfg.sealer.seal(user.as_str(), &tokens.access_token)?;
        let resealed = match &tokens.refresh_token {
            Some(r) => Some(cfg.sealer.seal(user.as_str(), r)?),
            None => None,
        };
        let expires = (now + Duration::seconds(tokens.expires_in)).timestamp_millis();
        self.change(user, |d| {
            if let Some(l) = d.linked.as_mut().filter(|l| l.refresh == used) {
                l.access.clone_from(&sealed);
                l.access_expires_ms = expires;
                if let Some(r) = &resealed {
                    l.refresh.clone_from(r);
                }
            }
            Ok(())
        })
        .await?;
        Ok(tokens.access_token)
    }

    /// Runs a call with a valid token; a refused token is refreshed and the
    /// call made once more.
    async fn with_access<T, F, Fut>(&self, user: &UserId, call: F) -> Result<T>
    where
        F: Fn(Spotify, String) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, SpotifyError>>,
    {
        let spotify = self.cfg()?.spotify.clone();
        let token = self.access(user, false).await?;
        match call(spotify.clone(), token).await {
            Err(SpotifyError::Unauthorized(_)) => {
                let token = self.access(user, true).await?;
                call(spotify, token).await.map_err(spotify_err)
            }
            r => r.map_err(spotify_err),
        }
    }

    pub async fn playlists(
        &self,
        user: &UserId,
        limit: u32,
        offset: u32,
    ) -> Result<Paged<Playlist>> {
        self.with_access(
            user,
            |s, t| async move { s.playlists(&t, limit, offset).await },
        )
        .await
    }

    pub async fn playlist_items(
        &self,
        user: &UserId,
        id: &str,
        limit: u32,
        offset: u32,
    ) -> Result<Paged<Track>> {
        check_id("playlist_id", id)?;
        let id = id.to_owned();
        self.with_access(user, |s, t| {
            let id = id.clone();
            async move { s.playlist_items(&t, &id, limit, offset).await }
        })
        .await
    }

    /// Remembers one of the user's playlists as their focus playlist.
    pub async fn set_focus_playlist(&self, user: &UserId, id: &str) -> Result<LinkView> {
        check_id("playlist_id", id)?;
        let mut found = None;
        for page in 0..PLAYLIST_PAGES {
            let p = self.playlists(user, 50, page * 50).await?;
            found = p.items.into_iter().find(|p| p.id == id);
            if found.is_some() || !p.more {
                break;
            }
        }
        let p = found
            .ok_or_else(|| Error::NotFound("playlist among the user's Spotify playlists".into()))?;
        let chosen = FocusPlaylist {
            id: p.id,
            name: p.name,
            uri: p.uri,
        };
        let doc = self
            .change(user, |d| {
                let l = d.linked.as_mut().ok_or_else(not_linked)?;
                l.focus_playlist = Some(chosen.clone());
                Ok(())
            })
            .await?;
        Ok(view(&doc))
    }

    pub async fn devices(&self, user: &UserId) -> Result<Vec<Device>> {
        self.with_access(user, |s, t| async move { s.devices(&t).await })
            .await
    }

    pub async fn now_playing(&self, user: &UserId) -> Result<NowPlaying> {
        self.with_access(user, |s, t| async move { s.currently_playing(&t).await })
            .await
    }

    /// Starts a playlist (the focus playlist by default) on a device (the
    /// active one by default); returns the playlist started.
    pub async fn play(
        &self,
        user: &UserId,
        playlist_id: &str,
        device: &str,
    ) -> Result<FocusPlaylist> {
        self.cfg()?;
        if !device.is_empty() {
            check_id("device_id", device)?;
        }
        let playlist = if playlist_id.is_empty() {
            self.doc(user)
                .await?
                .linked
                .ok_or_else(not_linked)?
                .focus_playlist
                .ok_or_else(|| {
                    Error::FailedPrecondition(
                        "no focus playlist chosen: name a playlist_id or call SetFocusPlaylist"
                            .into(),
                    )
                })?
        } else {
            check_id("playlist_id", playlist_id)?;
            FocusPlaylist {
                id: playlist_id.to_owned(),
                name: String::new(),
                uri: format!("spotify:playlist:{playlist_id}"),
            }
        };
        let (uri, device) = (playlist.uri.clone(), device.to_owned());
        self.with_access(user, |s, t| {
            let (uri, device) = (uri.clone(), device.clone());
            async move { s.play(&t, &device, &uri).await }
        })
        .await?;
        Ok(playlist)
    }

    pub async fn pause(&self, user: &UserId, device: &str) -> Result<()> {
        if !device.is_empty() {
            check_id("device_id", device)?;
        }
        let device = device.to_owned();
        self.with_access(user, |s, t| {
            let device = device.clone();
            async move { s.pause(&t, &device).await }
        })
        .await
    }
}

/// Compares two secrets in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn check_id(field: &str, id: &str) -> Result<()> {
    if spotify::valid_id(id) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must be a Spotify id (1-64 letters and digits)",
        ))
    }
}

/// The redirect URI must be an absolute http(s) URL.
fn check_redirect(uri: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        uri.starts_with("https://") || uri.starts_with("http://"),
        "[service.integrations] spotify_redirect_uri must be an http(s) URL, got {uri:?}"
    );
    Ok(())
}

fn view(doc: &Doc) -> LinkView {
    match &doc.linked {
        None => LinkView::default(),
        Some(l) => LinkView {
            linked: true,
            spotify_user: l.spotify_user.clone(),
            display_name: l.display_name.clone(),
            scopes: l.scope.split_whitespace().map(str::to_owned).collect(),
            linked_at: ms_time(l.linked_ms),
            focus_playlist: l.focus_playlist.clone(),
        },
    }
}
