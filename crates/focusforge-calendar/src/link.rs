//! The Google Calendar link: OAuth 2 (authorization code with PKCE, refresh
//! before expiry), tokens sealed at rest, and the two-way sync: busy time
//! read incrementally with `syncToken` (a full resync on 410 Gone), focus
//! blocks written back as events.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use focusforge_core::{Error, Result, UserId};
use serde_json::Value;

use crate::domain::{Calendar, GoogleLink, PendingLink, State};
use crate::event::{EventFields, Kind, Source, When};
use crate::google::{Google, GoogleError, Item, Stamp, Written};
use focusforge_auth::seal::Sealer;

/// How long a started link may take to finish.
const PENDING_MINUTES: i64 = 10;
/// Pages of one listing read per sync (250 events each).
const MAX_PAGES: usize = 40;

pub struct Link {
    pub google: Google,
    pub sealer: Sealer,
    pub cal: Calendar,
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub full: bool,
    pub pulled: u32,
    pub removed: u32,
    pub pushed: u32,
    pub deleted: u32,
}

fn google_err(e: GoogleError) -> Error {
    match e {
        GoogleError::Unauthorized(m) => Error::FailedPrecondition(format!(
            "Google refused the calendar's credentials ({m}); link Google Calendar again"
        )),
        GoogleError::Gone => Error::Unavailable("Google's sync token expired".into()),
        GoogleError::NotFound => Error::Unavailable("Google Calendar lost an event".into()),
        GoogleError::Other(m) => Error::Unavailable(format!("Google Calendar: {m}")),
    }
}

fn not_linked() -> Error {
    Error::FailedPrecondition("Google Calendar is not linked; call BeginGoogleLink first".into())
}

/// The user a state names, if it is well formed.
pub fn state_user(state: &str) -> Option<UserId> {
    crate::domain::name_of(state).map(|(user, _)| user)
}

impl Link {
    /// The authorize URL and state of a new link.
    pub async fn begin(&self, user: &UserId, calendar_id: &str) -> Result<(String, String)> {
        let calendar_id = if calendar_id.is_empty() {
            "primary"
        } else {
            calendar_id
        };
        if calendar_id.len() > 255 {
            return Err(Error::invalid(
                "calendar_id",
                "must be at most 255 characters",
            ));
        }
        let state = crate::domain::named(user, &hex::encode(rand::random::<[u8; 16]>()));
        let verifier = hex::encode(rand::random::<[u8; 32]>());
        let sealed = self.sealer.seal(user.as_str(), &verifier)?;
        let expires = (self.cal.now() + Duration::minutes(PENDING_MINUTES)).timestamp_millis();
        self.cal
            .change_state(user, |s| {
                s.pending = Some(PendingLink {
                    state: state.clone(),
                    verifier: sealed.clone(),
                    calendar_id: calendar_id.to_owned(),
                    expires_ms: expires,
                });
                Ok(())
            })
            .await?;
        Ok((self.google.authorize_url(&state, &verifier), state))
    }

    /// Exchanges the code of a link begun with `state`.
    pub async fn complete(&self, user: &UserId, code: &str, state: &str) -> Result<()> {
        if code.is_empty() || code.len() > 2048 {
            return Err(Error::invalid("code", "must be 1-2048 characters"));
        }
        let now = self.cal.now();
        let pending = self
            .cal
            .state(user)
            .await?
            .pending
            .filter(|p| p.state == state && p.expires_ms > now.timestamp_millis())
            .ok_or_else(|| {
                Error::invalid(
                    "state",
                    "is not the state of a link in progress (or it expired); begin again",
                )
            })?;
        let verifier = self.sealer.open(user.as_str(), &pending.verifier)?;
        let tokens = self
            .google
            .exchange(code, &verifier)
            .await
            .map_err(google_err)?;
        let refresh = tokens.refresh_token.ok_or_else(|| {
            Error::FailedPrecondition(
                "Google returned no refresh token; link again with consent".into(),
            )
        })?;
        let link = GoogleLink {
            calendar_id: pending.calendar_id,
            refresh_token: self.sealer.seal(user.as_str(), &refresh)?,
            access_token: self.sealer.seal(user.as_str(), &tokens.access_token)?,
            access_expires_ms: (now + Duration::seconds(tokens.expires_in)).timestamp_millis(),
            sync_token: None,
            last_sync_ms: None,
            last_error: String::new(),
        };
        self.cal
            .change_state(user, |s| {
                s.pending = None;
                s.google = Some(link.clone());
                s.google_deletes.clear();
                Ok(())
            })
            .await?;
        // Blocks pushed to a calendar linked before go to this one anew.
        self.cal.forget_pushed(user).await?;
        tracing::info!(user = %user, "google calendar linked");
        Ok(())
    }

    /// A valid access token, refreshed when it expires within a minute.
    async fn access(&self, user: &UserId, link: &GoogleLink) -> Result<String> {
        let now = self.cal.now();
        if link.access_expires_ms > (now + Duration::minutes(1)).timestamp_millis() {
            return self.sealer.open(user.as_str(), &link.access_token);
        }
        let refresh = self.sealer.open(user.as_str(), &link.refresh_token)?;
        let tokens = self.google.refresh(&refresh).await.map_err(google_err)?;
        let sealed = self.sealer.seal(user.as_str(), &tokens.access_token)?;
        let resealed = match &tokens.refresh_token {
            Some(r) => Some(self.sealer.seal(user.as_str(), r)?),
            None => None,
        };
        let expires = (now + Duration::seconds(tokens.expires_in)).timestamp_millis();
        self.cal
            .change_state(user, |s| {
                if let Some(g) = s.google.as_mut() {
                    g.access_token.clone_from(&sealed);
                    g.access_expires_ms = expires;
                    if let Some(r) = &resealed {
                        g.refresh_token.clone_from(r);
                    }
                }
                Ok(())
            })
            .await?;
        Ok(tokens.access_token)
    }

    pub async fn unlink(&self, user: &UserId) -> Result<()> {
        self.cal.forget_pushed(user).await?;
        let busy = self
            .cal
            .by_field(user, "source", Value::from("google"))
            .await?;
        for e in busy {
            self.cal.drop_google(user, &e.external_id).await?;
        }
        self.cal
            .change_state(user, |s| {
                s.google = None;
                s.pending = None;
                s.google_deletes.clear();
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// One two-way sync; its failure is recorded on the link.
    pub async fn sync(&self, user: &UserId, tz: Tz) -> Result<Report> {
        let state = self.cal.state(user).await?;
        let link = state.google.clone().ok_or_else(not_linked)?;
        let result = self.sync_once(user, tz, &state, &link).await;
        let now = self.cal.now().timestamp_millis();
        let (token, error) = match &result {
            Ok((_, token)) => (Some(token.clone()), String::new()),
            Err(e) => (None, e.to_string()),
        };
        self.cal
            .change_state(user, |s| {
                if let Some(g) = s.google.as_mut() {
                    if let Some(t) = &token {
                        g.sync_token.clone_from(t);
                        g.last_sync_ms = Some(now);
                    }
                    g.last_error.clone_from(&error);
                }
                Ok(())
            })
            .await?;
        result.map(|(r, _)| r)
    }

    async fn sync_once(
        &self,
        user: &UserId,
        tz: Tz,
        state: &State,
        link: &GoogleLink,
    ) -> Result<(Report, Option<String>)> {
        let access = self.access(user, link).await?;
        let cal = &link.calendar_id;
        let mut report = Report::default();
        let mut sync_token = link.sync_token.clone();
        let since = self.cal.now() - Duration::days(1);
        'listing: loop {
            report.full = sync_token.is_none();
            let mut page_token: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let page = match self
                    .google
                    .list(
                        &access,
                        cal,
                        sync_token.as_deref(),
                        since,
                        page_token.as_deref(),
                    )
                    .await
                {
                    Ok(p) => p,
                    Err(GoogleError::Gone) if sync_token.is_some() => {
                        // Start over: forget what was read and list it all.
                        tracing::info!(user = %user, "google sync token expired: full resync");
                        for e in self
                            .cal
                            .by_field(user, "source", Value::from("google"))
                            .await?
                        {
                            if self.cal.drop_google(user, &e.external_id).await? {
                                report.removed += 1;
                            }
                        }
                        sync_token = None;
                        continue 'listing;
                    }
                    Err(e) => return Err(google_err(e)),
                };
                for item in page.items {
                    self.pull(user, tz, item, &mut report).await?;
                }
                match (page.next_page_token, page.next_sync_token) {
                    (Some(next), _) => page_token = Some(next),
                    (None, next) => {
                        sync_token = next;
                        break 'listing;
                    }
                }
            }
            return Err(Error::Unavailable(format!(
                "the Google calendar has more than {} events to read in one sync",
                MAX_PAGES * 250
            )));
        }
        self.push(user, &access, cal, state, &mut report).await?;
        Ok((report, sync_token))
    }

    async fn pull(&self, user: &UserId, tz: Tz, item: Item, report: &mut Report) -> Result<()> {
        if item.ours {
            return Ok(());
        }
        if item.cancelled {
            if self.cal.drop_google(user, &item.id).await? {
                report.removed += 1;
            }
            return Ok(());
        }
        let zone = item
            .time_zone
            .as_deref()
            .and_then(|z| z.parse::<Tz>().ok())
            .unwrap_or(tz);
        let when = match (item.start, item.end) {
            (Some(Stamp::Time(s)), Some(Stamp::Time(e))) if e > s => {
                When::Timed { start: s, end: e }
            }
            (Some(Stamp::Date(s)), Some(Stamp::Date(e))) if e > s => {
                When::AllDay { start: s, end: e }
            }
            (Some(Stamp::Date(s)), _) => When::AllDay {
                start: s,
                end: s.succ_opt().unwrap_or(s),
            },
            (Some(Stamp::Time(s)), _) => When::Timed {
                start: s,
                end: s + Duration::minutes(1),
            },
            (None, _) => return Ok(()),
        };
        let fields = EventFields {
            title: if item.summary.trim().is_empty() {
                "(busy)".into()
            } else {
                item.summary
                    .chars()
                    .take(crate::event::limits::TITLE)
                    .collect()
            },
            description: String::new(),
            location: String::new(),
            when,
            tz: zone.name().to_owned(),
            rrule: String::new(),
            exdates: Vec::new(),
            busy: item.busy,
        };
        self.cal.put_google(user, &item.id, fields).await?;
        report.pulled += 1;
        Ok(())
    }

    async fn push(
        &self,
        user: &UserId,
        access: &str,
        cal: &str,
        state: &State,
        report: &mut Report,
    ) -> Result<()> {
        let mut deleted = Vec::new();
        for id in &state.google_deletes {
            self.google
                .delete(access, cal, id)
                .await
                .map_err(google_err)?;
            deleted.push(id.clone());
            report.deleted += 1;
        }
        if !deleted.is_empty() {
            self.cal
                .change_state(user, |s| {
                    s.google_deletes.retain(|g| !deleted.contains(g));
                    Ok(())
                })
                .await?;
        }
        let horizon = self.cal.now() - Duration::days(1);
        let blocks = self
            .cal
            .by_field(user, "kind", Value::from(Kind::FocusBlock.as_str()))
            .await?;
        for e in blocks {
            if e.source != Source::Local || e.pushed_sequence == Some(e.sequence) {
                continue;
            }
            let (start, end) = e.fields.first();
            if end < horizon {
                continue;
            }
            let written = Written {
                summary: &e.fields.title,
                description: &e.fields.description,
                start,
                end,
                tz: &e.fields.tz,
                ours: &e.id,
            };
            let google_id = if e.external_id.is_empty() || e.pushed_sequence.is_none() {
                self.google
                    .insert(access, cal, &written)
                    .await
                    .map_err(google_err)?
            } else {
                match self
                    .google
                    .patch(access, cal, &e.external_id, &written)
                    .await
                {
                    Ok(()) => e.external_id.clone(),
                    // Deleted in Google (or another calendar linked since):
                    // write it again.
                    Err(GoogleError::NotFound | GoogleError::Gone) => self
                        .google
                        .insert(access, cal, &written)
                        .await
                        .map_err(google_err)?,
                    Err(other) => return Err(google_err(other)),
                }
            };
            self.cal
                .mark_pushed(user, &e.id, &google_id, e.sequence)
                .await?;
            report.pushed += 1;
        }
        Ok(())
    }

    /// Busy time in Google's own free/busy view of the linked calendar.
    pub async fn free_busy(
        &self,
        user: &UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
        let state = self.cal.state(user).await?;
        let link = state.google.ok_or_else(not_linked)?;
        let access = self.access(user, &link).await?;
        self.google
            .free_busy(&access, &link.calendar_id, from, to)
            .await
            .map_err(google_err)
    }
}
