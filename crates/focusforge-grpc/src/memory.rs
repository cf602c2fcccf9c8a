use std::time::Duration;

use focusforge_core::{Error, Violations};
use focusforge_memory::{Found, Memories, Memory, MemoryFilter, NewMemory, SearchMode, Tier};
use focusforge_mesh::{Caller, Mesh};
use focusforge_proto::memory::v1 as pb;
use focusforge_proto::memory::v1::memory_service_server::MemoryService;
use focusforge_proto::mood::v1 as mood_pb;
use focusforge_proto::mood::v1::mood_service_client::MoodServiceClient;
use tonic::{Request, Response, Status};

use crate::convert::{enum_value, from_timestamp, opt_timestamp, timestamp};
use crate::{caller, identity, into_status};

/// `focusforge.memory.v1.MemoryService` over the memory domain.
#[derive(Clone)]
pub struct MemoryApi {
    pub memories: Memories,
    /// Where the Mood service is, for the context's recent moods.
    pub mesh: Mesh,
}

/// The caller's newest mood entries, or none when the Mood service is not
/// deployed or does not answer in time (the context is still useful).
async fn recent_moods(mesh: &Mesh, caller: Option<Caller>, limit: i32) -> Vec<mood_pb::MoodEntry> {
    let (Some(caller), Ok(conn)) = (
        caller,
        mesh.conn(mood_pb::mood_service_server::SERVICE_NAME),
    ) else {
        return Vec::new();
    };
    let mut req = caller.request(mood_pb::ListMoodsRequest {
        page_size: limit,
        ..Default::default()
    });
    req.set_timeout(std::time::Duration::from_secs(2));
    match MoodServiceClient::new(conn).list_moods(req).await {
        Ok(r) => r.into_inner().entries,
        Err(s) => {
            if s.code() != tonic::Code::Unimplemented {
                tracing::warn!(error = %s.message(), "user context without moods");
            }
            Vec::new()
        }
    }
}

/// The streak the Gamification service keeps (the one streak every answer
/// reports), or `None` where it is not deployed or does not answer in time.
async fn game_streak(mesh: &Mesh, caller: Option<Caller>) -> Option<i32> {
    use focusforge_proto::gamification::v1 as game_pb;
    use game_pb::gamification_service_client::GamificationServiceClient;
    let caller = caller?;
    let conn = mesh
        .conn(game_pb::gamification_service_server::SERVICE_NAME)
        .ok()?;
    let mut req = caller.request(game_pb::GetProgressRequest {});
    req.set_timeout(std::time::Duration::from_secs(2));
    match GamificationServiceClient::new(conn).get_progress(req).await {
        Ok(r) => r.into_inner().progress?.streak.map(|s| s.current_days),
        Err(s) => {
            if s.code() != tonic::Code::Unimplemented {
                tracing::warn!(error = %s.message(), "user context with the task streak");
            }
            None
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn tier(v: &mut Violations, field: &str, raw: i32) -> Option<Tier> {
    match enum_value::<pb::MemoryTier>(v, field, raw)? {
        pb::MemoryTier::Unspecified => {
            v.add(field, "must be specified");
            None
        }
        pb::MemoryTier::ShortTerm => Some(Tier::ShortTerm),
        pb::MemoryTier::Working => Some(Tier::Working),
        pb::MemoryTier::LongTerm => Some(Tier::LongTerm),
        pb::MemoryTier::Semantic => Some(Tier::Semantic),
    }
}

fn required_tier(raw: i32) -> Result<Tier, Error> {
    let mut v = Violations::new();
    let t = tier(&mut v, "tier", raw);
    v.finish()?;
    t.ok_or_else(|| Error::invalid("tier", "must be specified"))
}

fn to_pb(m: Memory) -> pb::Memory {
    pb::Memory {
        id: m.id,
        user_id: m.user_id.to_string(),
        tier: match m.tier {
            Tier::ShortTerm => pb::MemoryTier::ShortTerm,
            Tier::Working => pb::MemoryTier::Working,
            Tier::LongTerm => pb::MemoryTier::LongTerm,
            Tier::Semantic => pb::MemoryTier::Semantic,
        } as i32,
        kind: m.kind,
        content: m.content,
        tags: m.tags,
        metadata: m.metadata.into_iter().collect(),
        create_time: Some(timestamp(m.created_at)),
        expire_time: opt_timestamp(m.expires_at),
        update_time: Some(timestamp(m.updated_at)),
        times_remembered: i32::try_from(m.times_remembered).unwrap_or(i32::MAX),
    }
}

fn new_memory(memories: &Memories, req: pb::RememberRequest) -> Result<(Tier, NewMemory), Error> {
    let mut v = Violations::new();
    let t = tier(&mut v, "tier", req.tier);
    v.check(req.ttl_seconds >= 0, "ttl_seconds", "must not be negative");
    let ttl = u64::try_from(req.ttl_seconds)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    let new = NewMemory {
        kind: req.kind,
        content: req.content,
        tags: req.tags,
        metadata: req.metadata.into_iter().collect(),
        ttl,
    };
    if !v.is_empty() {
        // Report the domain's violations with ours, not one round trip later.
        memories.check_new(&mut v, &new);
    }
    v.finish()?;
    let t = t.ok_or_else(|| Error::invalid("tier", "must be specified"))?;
    Ok((t, new))
}

fn search_mode(raw: i32) -> Result<SearchMode, Error> {
    let mut v = Violations::new();
    let mode = enum_value::<pb::SearchMode>(&mut v, "mode", raw);
    v.finish()?;
    Ok(match mode {
        Some(pb::SearchMode::Keyword) => SearchMode::Keyword,
        Some(pb::SearchMode::Hybrid) => SearchMode::Hybrid,
        Some(pb::SearchMode::Semantic | pb::SearchMode::Unspecified) | None => SearchMode::Semantic,
    })
}

fn rank(r: usize) -> i32 {
    i32::try_from(r).unwrap_or(i32::MAX)
}

fn hit_to_pb(f: Found) -> pb::SearchHit {
    let parts = f.parts;
    pb::SearchHit {
        memory: Some(to_pb(f.memory)),
        score: f.score,
        explanation: Some(pb::ScoreExplanation {
            vector: parts.vector.map(|v| pb::VectorScore {
                rank: rank(v.rank),
                cosine: v.cosine,
            }),
            keyword: parts.keyword.map(|k| pb::KeywordScore {
                rank: rank(k.rank),
                bm25: k.bm25,
                matched_terms: k.matched_terms,
            }),
            fused_score: parts.fused.unwrap_or_default(),
        }),
    }
}

fn filter(req: &pb::ListMemoriesRequest) -> Result<(Tier, MemoryFilter), Error> {
    let mut v = Violations::new();
    let t = tier(&mut v, "tier", req.tier);
    let f = MemoryFilter {
        kind: (!req.kind.is_empty()).then(|| req.kind.clone()),
        tag: (!req.tag.is_empty()).then(|| req.tag.clone()),
        created_after: from_timestamp(&mut v, "start_time", req.start_time),
        created_before: from_timestamp(&mut v, "end_time", req.end_time),
    };
    v.finish()?;
    let t = t.ok_or_else(|| Error::invalid("tier", "must be specified"))?;
    Ok((t, f))
}

#[tonic::async_trait]
impl MemoryService for MemoryApi {
    async fn remember(&self, req: Request<pb::RememberRequest>) -> Reply<pb::RememberResponse> {
        let user = caller(&req)?;
        let (t, new) = new_memory(&self.memories, req.into_inner()).map_err(into_status)?;
        let memory = self
            .memories
            .remember(&user, t, new)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::RememberResponse {
            memory: Some(to_pb(memory)),
        }))
    }

    async fn recall_memory(
        &self,
        req: Request<pb::RecallMemoryRequest>,
    ) -> Reply<pb::RecallMemoryResponse> {
        let user = caller(&req)?;
        let memory = self
            .memories
            .recall(&user, &req.get_ref().id)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::RecallMemoryResponse {
            memory: Some(to_pb(memory)),
        }))
    }

    async fn forget_memory(
        &self,
        req: Request<pb::ForgetMemoryRequest>,
    ) -> Reply<pb::ForgetMemoryResponse> {
        let user = caller(&req)?;
        self.memories
            .forget(&user, &req.get_ref().id)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::ForgetMemoryResponse {}))
    }

    async fn forget_tier(
        &self,
        req: Request<pb::ForgetTierRequest>,
    ) -> Reply<pb::ForgetTierResponse> {
        let user = caller(&req)?;
        let t = required_tier(req.get_ref().tier).map_err(into_status)?;
        let n = self
            .memories
            .forget_tier(&user, t)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::ForgetTierResponse {
            forgotten_count: i64::try_from(n).unwrap_or(i64::MAX),
        }))
    }

    async fn search_memories(
        &self,
        req: Request<pb::SearchMemoriesRequest>,
    ) -> Reply<pb::SearchMemoriesResponse> {
        let user = caller(&req)?;
        let req = req.into_inner();
        let mode = search_mode(req.mode).map_err(into_status)?;
        let found = self
            .memories
            .search(&user, &req.query, req.top_k, mode)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::SearchMemoriesResponse {
            hits: found.into_iter().map(hit_to_pb).collect(),
        }))
    }

    async fn record_task_insight(
        &self,
        req: Request<pb::RecordTaskInsightRequest>,
    ) -> Reply<pb::RecordTaskInsightResponse> {
        let user = caller(&req)?;
        let req = req.into_inner();
        let insight = self
            .memories
            .record_task_insight(
                &user,
                &req.task_id,
                req.insight,
                req.metadata.into_iter().collect(),
            )
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::RecordTaskInsightResponse {
            insight: Some(to_pb(insight)),
        }))
    }

    async fn get_user_context(
        &self,
        req: Request<pb::GetUserContextRequest>,
    ) -> Reply<pb::GetUserContextResponse> {
        let user = caller(&req)?;
        let who = identity(&req).ok();
        let req = req.into_inner();
        let limit = if req.limit <= 0 { 5 } else { req.limit.min(20) };
        let (ctx, moods, streak) = tokio::join!(
            self.memories.user_context(&user, &req.query, req.limit),
            recent_moods(&self.mesh, who.clone(), limit),
            game_streak(&self.mesh, who),
        );
        let ctx = ctx.map_err(into_status)?;
        Ok(Response::new(pb::GetUserContextResponse {
            preferences: Some(crate::users::preferences_to_pb(ctx.preferences)),
            moods,
            recent_tasks: ctx
                .recent_tasks
                .into_iter()
                .map(crate::tasks::to_pb)
                .collect(),
            similar_tasks: ctx
                .similar_tasks
                .into_iter()
                .map(|(task, score)| pb::SimilarTask {
                    task: Some(crate::tasks::to_pb(task)),
                    score,
                })
                .collect(),
            insights: ctx.insights.into_iter().map(to_pb).collect(),
            progress: Some(pb::Progress {
                completed_today: ctx.progress.completed_today as i32,
                streak_days: streak.unwrap_or(ctx.progress.streak_days as i32),
            }),
            relevant_memories: ctx.relevant_memories.into_iter().map(hit_to_pb).collect(),
        }))
    }

    async fn list_memories(
        &self,
        req: Request<pb::ListMemoriesRequest>,
    ) -> Reply<pb::ListMemoriesResponse> {
        let user = caller(&req)?;
        let req = req.into_inner();
        let (t, f) = filter(&req).map_err(into_status)?;
        let page = self
            .memories
            .list(&user, t, f, req.page_size, &req.page_token)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::ListMemoriesResponse {
            memories: page.memories.into_iter().map(to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}
