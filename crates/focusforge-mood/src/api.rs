//! The gRPC edge of the Mood service, the facts it reads from the Users and
//! Task services, and the planner's mood-tracking executor.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use focusforge_core::{Error, UserId, Violations};
use focusforge_grpc::convert::{changed_since, from_timestamp, mask_paths, timestamp};
use focusforge_grpc::sync::{SyncStream, sync_stream};
use focusforge_grpc::{caller, from_status, identity, into_status};
use focusforge_kit::{Caller, Mesh};
use focusforge_planner::{ActionSpec, Executor};
use focusforge_proto::events::v1::event::Payload;
use focusforge_proto::events::v1::{EventType, MoodEvent};
use focusforge_proto::mood::v1 as pb;
use focusforge_proto::mood::v1::mood_service_client::MoodServiceClient;
use focusforge_proto::mood::v1::mood_service_server::MoodService as MoodRpc;
use focusforge_proto::tasks::v1 as tasks_pb;
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

use crate::domain::{
    Completion, MoodEntry, MoodFilter, MoodPatch, Moods, NewMood, PATCH_PATHS, Patterns, UserFacts,
};

/// `focusforge.mood.v1.MoodService` over [`Moods`].
#[derive(Clone)]
pub struct MoodApi {
    pub moods: Moods,
    pub mesh: Mesh,
    pub events: focusforge_kit::Events,
}

type Reply<T> = Result<Response<T>, Status>;

pub fn to_pb(e: MoodEntry) -> pb::MoodEntry {
    pb::MoodEntry {
        id: e.id,
        score: i32::from(e.score),
        energy: e.energy.map(i32::from).unwrap_or_default(),
        emotions: e.emotions,
        tags: e.tags,
        note: e.note,
        at: Some(timestamp(e.at)),
        create_time: Some(timestamp(e.created_at)),
        update_time: Some(timestamp(e.updated_at)),
        version: e.version,
    }
}

fn patterns_pb(p: Patterns) -> pb::MoodPatterns {
    let bucket = |b: crate::domain::Bucket| pb::MoodBucket {
        key: b.key as i32,
        entries: b.entries as i32,
        average_score: b.average,
    };
    let effect = |t: crate::domain::TagEffect| pb::TagEffect {
        tag: t.tag,
        effect: t.effect,
        entries_with: t.with as i32,
        entries_without: t.without as i32,
        average_with: t.average_with,
        average_without: t.average_without,
    };
    let correlation = |c: crate::domain::Correlation| pb::Correlation {
        measure: c.measure.to_owned(),
        r: c.r,
        days: c.days as i32,
    };
    pb::MoodPatterns {
        entries: p.entries as i32,
        average_score: p.average,
        energy_entries: p.energy_entries as i32,
        average_energy: p.average_energy,
        time_zone: p.time_zone,
        by_hour: p.by_hour.into_iter().map(bucket).collect(),
        by_weekday: p.by_weekday.into_iter().map(bucket).collect(),
        better_with: p.better_with.into_iter().map(effect).collect(),
        worse_with: p.worse_with.into_iter().map(effect).collect(),
        tags_without_enough_entries: p.tags_without_enough_entries,
        emotions: p
            .emotions
            .into_iter()
            .map(|e| pb::EmotionCount {
                emotion: e.emotion,
                entries: e.entries as i32,
                average_score: e.average,
            })
            .collect(),
        with_task_completions: Some(correlation(p.with_task_completions)),
        with_minutes_worked: Some(correlation(p.with_minutes_worked)),
        with_focus_minutes: Some(correlation(p.with_focus_minutes)),
        truncated: p.truncated,
    }
}

/// A time from the wire, with the violation named after `field`.
fn time(field: &str, ts: Option<prost_types::Timestamp>) -> Result<Option<DateTime<Utc>>, Error> {
    let mut v = Violations::new();
    let t = from_timestamp(&mut v, field, ts);
    v.finish()?;
    Ok(t)
}

#[tonic::async_trait]
impl MoodRpc for MoodApi {
    async fn log_mood(&self, req: Request<pb::LogMoodRequest>) -> Reply<pb::LogMoodResponse> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let new = NewMood {
            score: r.score,
            energy: r.energy,
            emotions: r.emotions,
            tags: r.tags,
            note: r.note,
            at: time("at", r.at).map_err(into_status)?,
            request_id: r.request_id,
        };
        let (entry, fresh) = self.moods.log_once(&user, new).await.map_err(into_status)?;
        if fresh {
            focusforge_grpc::events::publish(
                &self.events,
                &user,
                EventType::MoodLogged,
                Payload::Mood(MoodEvent {
                    mood_id: entry.id.clone(),
                    score: entry.score.into(),
                }),
            )
            .await;
        }
        Ok(Response::new(pb::LogMoodResponse {
            entry: Some(to_pb(entry)),
        }))
    }

    async fn get_mood(&self, req: Request<pb::GetMoodRequest>) -> Reply<pb::GetMoodResponse> {
        let user = caller(&req)?;
        let entry = self
            .moods
            .get(&user, &req.into_inner().id)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::GetMoodResponse {
            entry: Some(to_pb(entry)),
        }))
    }

    async fn list_moods(&self, req: Request<pb::ListMoodsRequest>) -> Reply<pb::ListMoodsResponse> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        let from = from_timestamp(&mut v, "start_time", r.start_time);
        let to = from_timestamp(&mut v, "end_time", r.end_time);
        v.finish().map_err(into_status)?;
        let page = self
            .moods
            .list(
                &user,
                MoodFilter {
                    from,
                    to,
                    tags: r.tags,
                },
                r.page_size,
                &r.page_token,
            )
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::ListMoodsResponse {
            entries: page.entries.into_iter().map(to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    type SyncMoodsStream = SyncStream<pb::SyncMoodsResponse>;

    async fn sync_moods(&self, req: Request<pb::SyncMoodsRequest>) -> Reply<Self::SyncMoodsStream> {
        let user = caller(&req)?;
        let since = changed_since(req.into_inner().changed_since).map_err(into_status)?;
        let batches = futures::StreamExt::map(self.moods.changes(&user, since), |batch| {
            batch.map(|entries| entries.into_iter().map(to_pb).collect())
        });
        Ok(Response::new(sync_stream(
            "mood entries",
            batches,
            |entries| pb::SyncMoodsResponse { entries },
        )))
    }

    async fn update_mood(
        &self,
        req: Request<pb::UpdateMoodRequest>,
    ) -> Reply<pb::UpdateMoodResponse> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        let paths = mask_paths(&mut v, &r.update_mask, PATCH_PATHS);
        let entry = r.entry.unwrap_or_default();
        if entry.id.is_empty() {
            v.add("entry.id", "is required");
        }
        let at = if paths.contains(&"at") {
            let at = from_timestamp(&mut v, "entry.at", entry.at);
            if at.is_none() && entry.at.is_none() {
                v.add("entry.at", "is required when the mask names it");
            }
            at
        } else {
            None
        };
        v.finish().map_err(into_status)?;
        let has = |p: &str| paths.contains(&p);
        let patch = MoodPatch {
            score: has("score").then_some(entry.score),
            energy: has("energy").then_some(entry.energy),
            emotions: has("emotions").then(|| entry.emotions.clone()),
            tags: has("tags").then(|| entry.tags.clone()),
            note: has("note").then(|| entry.note.clone()),
            at,
        };
        let updated = self
            .moods
            .update(&user, &entry.id, patch)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::UpdateMoodResponse {
            entry: Some(to_pb(updated)),
        }))
    }

    async fn delete_mood(
        &self,
        req: Request<pb::DeleteMoodRequest>,
    ) -> Reply<pb::DeleteMoodResponse> {
        let user = caller(&req)?;
        self.moods
            .delete(&user, &req.into_inner().id)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::DeleteMoodResponse {}))
    }

    async fn get_mood_patterns(
        &self,
        req: Request<pb::GetMoodPatternsRequest>,
    ) -> Reply<pb::GetMoodPatternsResponse> {
        let user = caller(&req)?;
        let facts = MeshFacts {
            mesh: self.mesh.clone(),
            caller: identity(&req)?,
        };
        let r = req.into_inner();
        let mut v = Violations::new();
        let from = from_timestamp(&mut v, "start_time", r.start_time);
        let to = from_timestamp(&mut v, "end_time", r.end_time);
        v.finish().map_err(into_status)?;
        let patterns = self
            .moods
            .patterns(&user, from, to, &facts)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::GetMoodPatternsResponse {
            patterns: Some(patterns_pb(patterns)),
        }))
    }
}

/// Completed tasks read for the patterns: five pages of the newest.
const COMPLETED_PAGES: usize = 5;

/// The user's time zone and completed tasks, from the Users and Task
/// services, as the caller.
struct MeshFacts {
    mesh: Mesh,
    caller: Caller,
}

#[async_trait]
impl UserFacts for MeshFacts {
    async fn time_zone(&self) -> Tz {
        focusforge_grpc::preferences_of(&self.mesh, &self.caller)
            .await
            .and_then(|p| p.timezone.parse().ok())
            .unwrap_or(chrono_tz::UTC)
    }

    async fn completions(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> focusforge_core::Result<Vec<Completion>> {
        let conn = self
            .mesh
            .conn(tasks_pb::task_service_server::SERVICE_NAME)
            .map_err(|s| Error::Unavailable(s.message().to_owned()))?;
        let mut client = TaskServiceClient::new(conn);
        let mut out = Vec::new();
        let mut token = String::new();
        for _ in 0..COMPLETED_PAGES {
            let page = client
                .list_tasks(self.caller.request(tasks_pb::ListTasksRequest {
                    page_size: 200,
                    page_token: token.clone(),
                    statuses: vec![tasks_pb::TaskStatus::Completed as i32],
                    ..Default::default()
                }))
                .await
                .map_err(|s| Error::Unavailable(format!("task service: {}", s.message())))?
                .into_inner();
            for t in page.tasks {
                let ts = |t: Option<prost_types::Timestamp>| {
                    t.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
                };
                let Some(done) = ts(t.complete_time) else {
                    continue;
                };
                if done < from || done >= to {
                    continue;
                }
                let worked = ts(t.start_time)
                    .map(|s| (done - s).num_minutes())
                    .filter(|m| (1..=12 * 60).contains(m));
                let minutes = worked.unwrap_or(i64::from(t.estimated_minutes.max(0)));
                out.push(Completion {
                    at: done,
                    minutes: minutes as u32,
                });
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        Ok(out)
    }

    async fn focus_sessions(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> focusforge_core::Result<Vec<Completion>> {
        use focusforge_proto::focus::v1 as focus_pb;
        use focusforge_proto::focus::v1::focus_service_client::FocusServiceClient;
        let Ok(conn) = self.mesh.conn(focus_pb::focus_service_server::SERVICE_NAME) else {
            return Ok(Vec::new());
        };
        let mut client = FocusServiceClient::new(conn);
        let mut out = Vec::new();
        let mut token = String::new();
        for _ in 0..COMPLETED_PAGES {
            let page = client
                .list_sessions(self.caller.request(focus_pb::ListSessionsRequest {
                    start_time: Some(timestamp(from - chrono::Duration::hours(4))),
                    end_time: Some(timestamp(to)),
                    page_size: 100,
                    page_token: token.clone(),
                    ..Default::default()
                }))
                .await
                .map_err(|s| Error::Unavailable(format!("focus service: {}", s.message())))?
                .into_inner();
            for s in page.sessions {
                let completed = focus_pb::SessionState::try_from(s.state)
                    == Ok(focus_pb::SessionState::Completed);
                let focus =
                    focus_pb::SessionKind::try_from(s.kind) == Ok(focus_pb::SessionKind::Focus);
                let Some(end) = focusforge_mcp::tools::ts(s.end_time) else {
                    continue;
                };
                if completed && focus && end >= from && end < to {
                    out.push(Completion {
                        at: end,
                        minutes: (s.focused_seconds / 60).clamp(0, 240) as u32,
                    });
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        Ok(out)
    }
}

/// Mood-tracking actions: `params.op` is `log` (score, energy, emotions,
/// tags, note; the action's idempotency key is the request id, so a retried
/// action logs once). The output is the entry: `{id, score, energy, tags}`.
/// It calls the Mood service through the mesh, acting for the plan's user.
pub struct MoodExecutor {
    pub mesh: Mesh,
}

fn strings(params: &Value, field: &str) -> Result<Vec<String>, Error> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| {
                t.as_str().map(str::to_owned).ok_or_else(|| {
                    Error::invalid(format!("params.{field}"), "must be a list of strings")
                })
            })
            .collect(),
        Some(_) => Err(Error::invalid(format!("params.{field}"), "must be a list")),
    }
}

fn integer(params: &Value, field: &str) -> Result<i32, Error> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| Error::invalid(format!("params.{field}"), "must be an integer")),
    }
}

#[async_trait]
impl Executor for MoodExecutor {
    async fn execute(
        &self,
        user: &UserId,
        action: &ActionSpec,
        params: Value,
    ) -> Result<Value, Error> {
        let op = params.get("op").and_then(Value::as_str).unwrap_or("log");
        if op != "log" {
            return Err(Error::invalid("params.op", "must be log"));
        }
        let note = match params.get("note") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(Error::invalid("params.note", "must be a string")),
        };
        let request = pb::LogMoodRequest {
            score: integer(&params, "score")?,
            energy: integer(&params, "energy")?,
            emotions: strings(&params, "emotions")?,
            tags: strings(&params, "tags")?,
            note,
            at: None,
            request_id: action
                .idempotency_key
                .clone()
                .map(|k| format!("plan:{k}"))
                .unwrap_or_default(),
        };
        let (conn, caller) = self
            .mesh
            .for_user(pb::mood_service_server::SERVICE_NAME, user, "planner")
            .map_err(|s| from_status(&s))?;
        let entry = MoodServiceClient::new(conn)
            .log_mood(caller.request(request))
            .await
            .map_err(|s| from_status(&s))?
            .into_inner()
            .entry
            .unwrap_or_default();
        Ok(json!({
            "id": entry.id,
            "score": entry.score,
            "energy": entry.energy,
            "tags": entry.tags,
        }))
    }
}
