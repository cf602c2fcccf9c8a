use std::pin::Pin;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use focusforge_chain::{
    Analysis, BlockStream, Breakdown, Chains, ContextSource, Info, NoContext, Options, Progress,
    ProofCheck, Ritual, RitualRequest, SimilarTask, TaskBrief, TaskInput, UserContext, Verdict,
};
use focusforge_core::{Error, UserId, Violations};
use focusforge_proto::chain::v1 as pb;
use focusforge_proto::chain::v1::chain_service_server::ChainService;
use focusforge_proto::memory::v1 as memory_pb;
use focusforge_proto::memory::v1::memory_service_client::MemoryServiceClient;
use focusforge_proto::mood::v1 as mood_pb;
use focusforge_proto::tasks::v1 as tasks_pb;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::convert::from_timestamp;
use focusforge_mesh::{Caller, Conn, Mesh};

use crate::{caller, identity, into_status};

/// `focusforge.chain.v1.ChainService` over the chains, reading the caller's
/// context from the Memory service through the mesh, as the caller.
#[derive(Clone)]
pub struct ChainApi {
    pub chains: Chains,
    pub mesh: Mesh,
}

type Reply<T> = Result<Response<T>, Status>;

/// The Memory service, called as the caller.
struct MemoryContext {
    client: MemoryServiceClient<Conn>,
    caller: Caller,
}

fn status_name(raw: i32) -> String {
    match tasks_pb::TaskStatus::try_from(raw) {
        Ok(tasks_pb::TaskStatus::Pending) => "pending",
        Ok(tasks_pb::TaskStatus::InProgress) => "in progress",
        Ok(tasks_pb::TaskStatus::Completed) => "completed",
        Ok(tasks_pb::TaskStatus::Unspecified) | Err(_) => "unknown",
    }
    .to_owned()
}

fn brief(t: tasks_pb::Task) -> TaskBrief {
    TaskBrief {
        status: status_name(t.status),
        completed_at: t
            .complete_time
            .and_then(|ts| chrono::DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32)),
        blocks: t.blocks.into_iter().map(|b| (b.title, b.minutes)).collect(),
        title: t.title,
    }
}

#[async_trait]
impl ContextSource for MemoryContext {
    async fn user_context(&self, query: &str) -> focusforge_core::Result<UserContext> {
        let mut req = self.caller.request(memory_pb::GetUserContextRequest {
            query: query.chars().take(2000).collect(),
            limit: 5,
        });
        req.set_timeout(Duration::from_secs(5));
        let ctx = self
            .client
            .clone()
            .get_user_context(req)
            .await
            .map_err(|s| Error::Unavailable(format!("memory service: {}", s.message())))?
            .into_inner();
        Ok(user_context(ctx))
    }
}

/// A context the caller fetched and handed over.
struct Given(memory_pb::GetUserContextResponse);

#[async_trait]
impl ContextSource for Given {
    async fn user_context(&self, _query: &str) -> focusforge_core::Result<UserContext> {
        Ok(user_context(self.0.clone()))
    }
}

/// The Memory service's answer as the chains read it.
pub fn user_context(ctx: memory_pb::GetUserContextResponse) -> UserContext {
    let prefs = ctx.preferences.unwrap_or_default();
    UserContext {
        focus_minutes: (prefs.focus_minutes > 0).then_some(prefs.focus_minutes),
        daily_goal_minutes: (prefs.daily_goal_minutes > 0).then_some(prefs.daily_goal_minutes),
        timezone: (!prefs.timezone.is_empty()).then_some(prefs.timezone),
        moods: ctx.moods.iter().map(mood_words).collect(),
        recent_tasks: ctx.recent_tasks.into_iter().map(brief).collect(),
        similar_tasks: ctx
            .similar_tasks
            .into_iter()
            .filter_map(|s| {
                s.task.map(|t| SimilarTask {
                    task: brief(t),
                    score: s.score,
                })
            })
            .collect(),
        insights: ctx.insights.into_iter().map(|m| m.content).collect(),
        memories: ctx
            .relevant_memories
            .into_iter()
            .filter_map(|h| h.memory.map(|m| m.content))
            .collect(),
        progress: ctx.progress.map(|p| Progress {
            completed_today: p.completed_today.max(0) as u32,
            streak_days: p.streak_days.max(0) as u32,
        }),
    }
}

/// The caller's deadline from the `grpc-timeout` header.
pub fn deadline(metadata: &MetadataMap) -> Option<Instant> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    Some(Instant::now() + focusforge_core::parse_grpc_timeout(raw)?)
}

/// A task as a chain request carries it: the title and description clipped
/// to what the chains take, since a stored task may be longer.
pub fn chain_task(title: &str, description: &str) -> pb::TaskInput {
    pb::TaskInput {
        title: title
            .trim()
            .chars()
            .take(focusforge_chain::TITLE_MAX)
            .collect(),
        description: description
            .chars()
            .take(focusforge_chain::TEXT_MAX)
            .collect(),
        ..Default::default()
    }
}

/// A mood entry as the chains read it: "3/5, energy 2/5, tired, anxious
/// (work): the note".
fn mood_words(m: &mood_pb::MoodEntry) -> String {
    let mut text = format!("{}/5", m.score);
    if m.energy > 0 {
        text.push_str(&format!(", energy {}/5", m.energy));
    }
    for e in &m.emotions {
        text.push_str(", ");
        text.push_str(e);
    }
    if !m.tags.is_empty() {
        text.push_str(&format!(" ({})", m.tags.join(", ")));
    }
    if !m.note.is_empty() {
        text.push_str(": ");
        text.push_str(&m.note);
    }
    text
}

fn task_input(task: Option<pb::TaskInput>) -> Result<TaskInput, Error> {
    let Some(t) = task else {
        return Err(Error::invalid("task", "is required"));
    };
    let mut v = Violations::new();
    let deadline = from_timestamp(&mut v, "task.deadline", t.deadline);
    v.range(
        "task.available_minutes",
        t.available_minutes.into(),
        0,
        1440,
    );
    v.check(
        t.estimated_minutes == 0 || (5..=1440).contains(&t.estimated_minutes),
        "task.estimated_minutes",
        "must be 0 (not said) or between 5 and 1440",
    );
    v.finish()?;
    Ok(TaskInput {
        title: t.title,
        description: t.description,
        deadline,
        available_minutes: t.available_minutes.max(0) as u32,
        estimated_minutes: t.estimated_minutes.max(0) as u32,
    })
}

fn info(i: Info) -> pb::ChainInfo {
    pb::ChainInfo {
        backend: i.backend,
        fallback_used: i.fallback_used,
        fallback_reason: i.fallback_reason,
        cached: i.cached,
        latency: prost_types::Duration::try_from(i.took).ok(),
        context_used: i.context_used,
        failed_rule: i.failed_rule,
        repaired: i.repaired,
        failures: i.failures,
    }
}

fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn block(b: focusforge_chain::Block) -> pb::FocusBlock {
    pb::FocusBlock {
        title: b.title,
        minutes: int(b.minutes),
        done_when: b.done_when,
    }
}

fn breakdown(b: Breakdown, i: Info) -> pb::BreakDownTaskResponse {
    pb::BreakDownTaskResponse {
        total_minutes: int(b.total_minutes()),
        blocks: b.blocks.into_iter().map(block).collect(),
        info: Some(info(i)),
    }
}

impl ChainApi {
    fn source<T>(
        &self,
        req: &Request<T>,
        given: Option<memory_pb::GetUserContextResponse>,
    ) -> Box<dyn ContextSource> {
        if let Some(ctx) = given {
            return Box::new(Given(ctx));
        }
        let conn = self
            .mesh
            .conn(memory_pb::memory_service_server::SERVICE_NAME);
        match (conn, identity(req)) {
            (Ok(conn), Ok(caller)) => Box::new(MemoryContext {
                client: MemoryServiceClient::new(conn),
                caller,
            }),
            _ => Box::new(NoContext),
        }
    }

    /// What every call starts with: the caller, where their context comes
    /// from, and the call's options.
    fn begin<T>(
        &self,
        req: &mut Request<T>,
        no_cache: bool,
        given: impl FnOnce(&mut T) -> Option<memory_pb::GetUserContextResponse>,
    ) -> Result<(UserId, Box<dyn ContextSource>, Options), Status> {
        let given = given(req.get_mut());
        let options = Options {
            no_cache,
            deadline: deadline(req.metadata()),
            stream: None,
        };
        Ok((caller(req)?, self.source(req, given), options))
    }
}

type EventStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamTaskBreakdownResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ChainService for ChainApi {
    async fn break_down_task(
        &self,
        mut req: Request<pb::BreakDownTaskRequest>,
    ) -> Reply<pb::BreakDownTaskResponse> {
        let no_cache = req.get_ref().no_cache;
        let (user, source, options) = self.begin(&mut req, no_cache, |r| r.context.take())?;
        let r = req.into_inner();
        let task = task_input(r.task).map_err(into_status)?;
        let (b, i) = self
            .chains
            .break_down(&user, source.as_ref(), task, r.granularity, options)
            .await
            .map_err(into_status)?;
        Ok(Response::new(breakdown(b, i)))
    }

    type StreamTaskBreakdownStream = EventStream;

    async fn stream_task_breakdown(
        &self,
        mut req: Request<pb::StreamTaskBreakdownRequest>,
    ) -> Reply<Self::StreamTaskBreakdownStream> {
        let no_cache = req.get_ref().no_cache;
        let (user, source, mut options) = self.begin(&mut req, no_cache, |r| r.context.take())?;
        let r = req.into_inner();
        let task = task_input(r.task).map_err(into_status)?;
        let (events, rx) = mpsc::channel(16);
        let (text_tx, mut text_rx) = mpsc::unbounded_channel::<String>();
        options.stream = Some(text_tx);
        let chains = self.chains.clone();
        let forward = events.clone();
        let blocks = tokio::spawn(async move {
            let mut parser = BlockStream::new();
            let mut sent = 0usize;
            while let Some(piece) = text_rx.recv().await {
                for b in parser.push(&piece) {
                    let event = pb::StreamTaskBreakdownResponse {
                        event: Some(pb::stream_task_breakdown_response::Event::Block(block(b))),
                    };
                    if forward.send(Ok(event)).await.is_err() {
                        return sent;
                    }
                    sent += 1;
                }
            }
            sent
        });
        tokio::spawn(async move {
            let result = chains
                .break_down(&user, source.as_ref(), task, r.granularity, options)
                .await;
            // Every streamed block goes out before the result. An answer
            // that was not generated piece by piece (the rules, the cache)
            // is sent block by block too, so a client reads one shape:
            // blocks, then the result.
            let streamed = blocks.await.unwrap_or(0);
            let event = match result {
                Ok((b, i)) => {
                    let result = breakdown(b, i);
                    if streamed == 0 {
                        for b in &result.blocks {
                            let event = pb::StreamTaskBreakdownResponse {
                                event: Some(pb::stream_task_breakdown_response::Event::Block(
                                    b.clone(),
                                )),
                            };
                            if events.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(pb::StreamTaskBreakdownResponse {
                        event: Some(pb::stream_task_breakdown_response::Event::Result(result)),
                    })
                }
                Err(e) => Err(into_status(e)),
            };
            let _ = events.send(event).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn analyze_task(
        &self,
        mut req: Request<pb::AnalyzeTaskRequest>,
    ) -> Reply<pb::AnalyzeTaskResponse> {
        let no_cache = req.get_ref().no_cache;
        let (user, source, options) = self.begin(&mut req, no_cache, |r| r.context.take())?;
        let task = task_input(req.into_inner().task).map_err(into_status)?;
        let (a, i): (Analysis, Info) = self
            .chains
            .analyze(&user, source.as_ref(), task, options)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::AnalyzeTaskResponse {
            complexity: int(a.complexity),
            estimated_minutes: int(a.estimated_minutes),
            skills: a.skills,
            risks: a.risks,
            first_step: a.first_step,
            info: Some(info(i)),
        }))
    }

    async fn motivate(&self, mut req: Request<pb::MotivateRequest>) -> Reply<pb::MotivateResponse> {
        let no_cache = req.get_ref().no_cache;
        let (user, source, options) = self.begin(&mut req, no_cache, |r| r.context.take())?;
        let r = req.into_inner();
        let (m, i) = self
            .chains
            .motivate(&user, source.as_ref(), r.task_title, options)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::MotivateResponse {
            message: m.message,
            streak_days: int(m.streak_days),
            completed_today: int(m.completed_today),
            info: Some(info(i)),
        }))
    }

    async fn validate_proof(
        &self,
        mut req: Request<pb::ValidateProofRequest>,
    ) -> Reply<pb::ValidateProofResponse> {
        let no_cache = req.get_ref().no_cache;
        let (user, source, options) = self.begin(&mut req, no_cache, |r| r.context.take())?;
        let r = req.into_inner();
        let task = task_input(r.task).map_err(into_status)?;
        let (p, i): (ProofCheck, Info) = self
            .chains
            .check_proof(&user, source.as_ref(), task, r.proof, r.link, options)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::ValidateProofResponse {
            verdict: match p.verdict {
                Verdict::Accepted => pb::ProofVerdict::Accepted,
                Verdict::NeedsMore => pb::ProofVerdict::NeedsMore,
                Verdict::Rejected => pb::ProofVerdict::Rejected,
            } as i32,
            confidence: int(p.confidence),
            reasons: p.reasons,
            info: Some(info(i)),
        }))
    }

    async fn suggest_ritual(
        &self,
        mut req: Request<pb::SuggestRitualRequest>,
    ) -> Reply<pb::SuggestRitualResponse> {
        let no_cache = req.get_ref().no_cache;
        let (user, source, options) = self.begin(&mut req, no_cache, |r| r.context.take())?;
        let r = req.into_inner();
        let (ritual, i): (Ritual, Info) = self
            .chains
            .suggest_ritual(
                &user,
                source.as_ref(),
                RitualRequest {
                    task_title: r.task_title,
                    mood: r.mood,
                    hour: r.hour_of_day,
                },
                options,
            )
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::SuggestRitualResponse {
            title: ritual.title,
            steps: ritual.steps,
            minutes: int(ritual.minutes),
            info: Some(info(i)),
        }))
    }
}
