//! The kit modules of the engine's services (chain, memory, tasks, users,
//! planner, jobs, MCP), whose wiring reads this binary's configuration.
//! Services in crates of their own (mood, ...) bring their module with them.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use focusforge_chain::{ChainSettings, Chains, Library};
use focusforge_embed::{Batcher, BatcherSettings, Embedder, MiniLm};
use focusforge_grpc::{
    ChainApi, EventApi, JobApi, McpApi, MemoryApi, PlannerApi, TaskApi, TaskEvents, UserApi,
};
use focusforge_kit::{Built, Collection, Deps, Service};
use focusforge_llm::{
    LanguageModel, LocalModel, MODEL_DIR as LLM_DIR, MODEL_FILE as LLM_FILE, OpenAiConfig,
    OpenAiModel, Sampling,
};
use focusforge_mcp::{Registry, Tool, tools};
use focusforge_memory::{Memories, MemoryPolicy, Semantic, Ttl};
use focusforge_planner::{ADVANCE_JOB, ActionType, Planner, TaskExecutor};
use focusforge_proto::chain::v1::chain_service_server::ChainServiceServer;
use focusforge_proto::events::v1::event_service_server::EventServiceServer;
use focusforge_proto::jobs::v1::job_service_server::JobServiceServer;
use focusforge_proto::mcp::v1::mcp_service_server::McpServiceServer;
use focusforge_proto::memory::v1::memory_service_server::MemoryServiceServer;
use focusforge_proto::planner::v1::planner_service_server::PlannerServiceServer;
use focusforge_proto::tasks::v1::task_service_server::TaskServiceServer;
use focusforge_proto::users::v1::user_service_server::UserServiceServer;
use focusforge_tasks::Tasks;
use focusforge_users::Users;
use focusforge_vector::VectorTable;
use tonic::server::NamedService;

use crate::Config;

/// What the engine's modules share: the configuration, the one embedding
/// model, and what the composition root picks up after building (the MCP
/// registry for `/mcp`, the vector tables to keep compact, the planner).
pub struct Shared {
    pub config: Config,
    embedder: tokio::sync::OnceCell<Arc<dyn Embedder>>,
    pub(crate) registry: OnceLock<Registry>,
    pub(crate) vector_tables: OnceLock<Vec<Arc<VectorTable>>>,
    pub(crate) planner: OnceLock<Planner>,
    pub(crate) tools: OnceLock<Vec<Tool>>,
}

impl Shared {
    pub fn new(config: Config) -> Arc<Self> {
        Arc::new(Self {
            config,
            embedder: tokio::sync::OnceCell::new(),
            registry: OnceLock::new(),
            vector_tables: OnceLock::new(),
            planner: OnceLock::new(),
            tools: OnceLock::new(),
        })
    }

    async fn embedder(&self) -> anyhow::Result<Arc<dyn Embedder>> {
        self.embedder
            .get_or_try_init(|| load_embedder(&self.config))
            .await
            .cloned()
    }

    fn planner(&self) -> anyhow::Result<Planner> {
        self.planner
            .get()
            .cloned()
            .context("the planner is opened with the backends")
    }
}

pub struct ChainService(pub Arc<Shared>);
pub struct MemoryService(pub Arc<Shared>);
pub struct TaskService;
pub struct UserService;
pub struct PlannerService(pub Arc<Shared>);
pub struct JobService;
pub struct McpService(pub Arc<Shared>);
pub struct EventService(pub Arc<Shared>);

#[async_trait]
impl Service for ChainService {
    fn name(&self) -> &'static str {
        <ChainServiceServer<ChainApi> as NamedService>::NAME
    }
    fn short_name(&self) -> &'static str {
        "chain"
    }
    fn tools(&self) -> Vec<Tool> {
        tools::ai::tools()
    }
    async fn build(&self, deps: &Deps) -> anyhow::Result<Built> {
        let embedder = self.0.embedder().await.ok();
        let chains = chains(&self.0.config, deps, embedder).await?;
        Ok(Built::grpc(ChainServiceServer::new(ChainApi {
            chains,
            mesh: deps.mesh.clone(),
        })))
    }
}

#[async_trait]
impl Service for MemoryService {
    fn name(&self) -> &'static str {
        <MemoryServiceServer<MemoryApi> as NamedService>::NAME
    }
    fn short_name(&self) -> &'static str {
        "memory"
    }
    fn collections(&self) -> Vec<Collection> {
        [
            "memory_short_term",
            "memory_working",
            "memory_long_term",
            "memory_semantic",
        ]
        .into_iter()
        .map(|name| Collection {
            name,
            indexes: &["body.kind"],
        })
        .collect()
    }
    fn tools(&self) -> Vec<Tool> {
        tools::memory::tools()
    }
    async fn build(&self, deps: &Deps) -> anyhow::Result<Built> {
        let config = &self.0.config;
        let semantic = semantic(config, self.0.embedder().await?).await?;
        let _ = self
            .0
            .vector_tables
            .set(vec![semantic.table.clone(), semantic.task_table.clone()]);
        Ok(Built::grpc(MemoryServiceServer::new(MemoryApi {
            memories: Memories::new(
                deps.store.clone(),
                deps.clock.clone(),
                memory_policy(&config.memory),
                Some(semantic),
            ),
            mesh: deps.mesh.clone(),
        })))
    }
}

#[async_trait]
impl Service for TaskService {
    fn name(&self) -> &'static str {
        <TaskServiceServer<TaskApi> as NamedService>::NAME
    }
    fn short_name(&self) -> &'static str {
        "tasks"
    }
    fn collections(&self) -> Vec<Collection> {
        vec![
            Collection {
                name: "tasks",
                indexes: &["body.status", "body.priority", "body.due_at", "body.tags"],
            },
            Collection {
                name: "task_blocks",
                indexes: &["body.task_id"],
            },
        ]
    }
    fn tools(&self) -> Vec<Tool> {
        tools::tasks::tools()
    }
    fn action_types(&self) -> Vec<ActionType> {
        vec![ActionType::TaskManagement]
    }
    async fn build(&self, deps: &Deps) -> anyhow::Result<Built> {
        let tasks = Tasks::new(deps.store.clone(), deps.clock.clone())
            .with_hook(Arc::new(focusforge_gamification::TaskCompletions {
                mesh: deps.mesh.clone(),
                jobs: deps.jobs.clone(),
            }))
            .with_observer(Arc::new(TaskEvents(deps.events.clone())));
        Ok(
            Built::grpc(TaskServiceServer::new(TaskApi(tasks.clone()))).executor(
                ActionType::TaskManagement,
                Arc::new(TaskExecutor::new(tasks)),
            ),
        )
    }
}

#[async_trait]
impl Service for UserService {
    fn name(&self) -> &'static str {
        <UserServiceServer<UserApi> as NamedService>::NAME
    }
    fn short_name(&self) -> &'static str {
        "users"
    }
    fn collections(&self) -> Vec<Collection> {
        ["users", "user_profiles"]
            .into_iter()
            .map(|name| Collection { name, indexes: &[] })
            .collect()
    }
    async fn build(&self, deps: &Deps) -> anyhow::Result<Built> {
        Ok(Built::grpc(UserServiceServer::new(UserApi(Users::new(
            deps.store.clone(),
            Some(deps.caches.user_context.clone()),
        )))))
    }
}

#[async_trait]
impl Service for PlannerService {
    fn name(&self) -> &'static str {
        <PlannerServiceServer<PlannerApi> as NamedService>::NAME
    }
    fn short_name(&self) -> &'static str {
        "planner"
    }
    fn collections(&self) -> Vec<Collection> {
        vec![Collection {
            name: focusforge_planner::PLANS,
            indexes: &[],
        }]
    }
    fn tools(&self) -> Vec<Tool> {
        tools::planner::tools()
    }
    fn job_kinds(&self) -> Vec<&'static str> {
        vec![ADVANCE_JOB]
    }
    async fn build(&self, _: &Deps) -> anyhow::Result<Built> {
        let planner = self.0.planner()?;
        Ok(
            Built::grpc(PlannerServiceServer::new(PlannerApi(planner.clone())))
                .job(ADVANCE_JOB, planner.advance_handler()),
        )
    }
}

#[async_trait]
impl Service for JobService {
    fn name(&self) -> &'static str {
        <JobServiceServer<JobApi> as NamedService>::NAME
    }
    fn short_name(&self) -> &'static str {
        "jobs"
    }
    async fn build(&self, deps: &Deps) -> anyhow::Result<Built> {
        Ok(Built::grpc(JobServiceServer::new(JobApi(
            deps.jobs.clone(),
        ))))
    }
}

#[async_trait]
impl Service for McpService {
    fn name(&self) -> &'static str {
        <McpServiceServer<McpApi> as NamedService>::NAME
    }
    fn short_name(&self) -> &'static str {
        "mcp"
    }
    async fn build(&self, deps: &Deps) -> anyhow::Result<Built> {
        let tools = self.0.tools.get().cloned().unwrap_or_default();
        let registry = Registry::new(deps.mesh.clone(), tools);
        let _ = self.0.registry.set(registry.clone());
        Ok(Built::grpc(McpServiceServer::new(McpApi(registry))))
    }
}

/// The chains: the configured model, the chain cache, the example library
/// (matched by `embedder`, or by shared words without one).
async fn chains(
    config: &Config,
    deps: &Deps,
    embedder: Option<Arc<dyn Embedder>>,
) -> anyhow::Result<Chains> {
    let model: Option<Arc<dyn LanguageModel>> = match config.llm.backend.as_str() {
        "local" => {
            let path = config.models_dir.join(LLM_DIR).join(LLM_FILE);
            let model = tokio::task::spawn_blocking(move || LocalModel::load(&path))
                .await
                .context("loading the language model")??;
            tracing::info!(
                model = model.name(),
                "chains: local language model on candle"
            );
            Some(Arc::new(model))
        }
        "openai" => {
            let model = OpenAiModel::new(OpenAiConfig {
                base_url: config.openai.base_url.clone(),
                model: config.openai.model.clone(),
                api_key: config.openai.api_key.clone(),
                timeout: Duration::from_secs(config.llm.timeout_secs),
            })?;
            tracing::info!(base_url = %config.openai.base_url, model = model.name(), "chains: OpenAI-compatible model");
            Some(Arc::new(model))
        }
        _ => {
            tracing::info!("chains: no language model; rule-based answers");
            None
        }
    };
    let settings = ChainSettings {
        max_tokens: config.llm.max_tokens,
        sampling: Sampling {
            temperature: config.llm.temperature,
            top_p: config.llm.top_p,
            ..Sampling::default()
        },
        model_timeout: Duration::from_secs(config.llm.timeout_secs),
        per_user_concurrency: config.llm.per_user_concurrency,
    };
    if embedder.is_none() {
        tracing::warn!("chains: no embedding model; library examples are matched by words");
    }
    let library = Library::new(embedder);
    library.warm().await;
    tracing::info!(examples = library.len(), "chains: example library ready");
    Ok(Chains::new(
        model,
        Some(deps.caches.chain_results.clone()),
        deps.clock.clone(),
        settings,
    )
    .with_library(library))
}

/// The embedding model, batched.
async fn load_embedder(config: &Config) -> anyhow::Result<Arc<dyn Embedder>> {
    let dir = config.models_dir.join("all-MiniLM-L6-v2");
    let model = tokio::task::spawn_blocking(move || MiniLm::load(&dir))
        .await
        .context("loading the embedding model")??;
    Ok(Arc::new(Batcher::new(model, BatcherSettings::default())))
}

/// The semantic memories' vector tables, for `embedder`'s vectors.
async fn semantic(config: &Config, embedder: Arc<dyn Embedder>) -> anyhow::Result<Semantic> {
    let dims = embedder.dimensions();
    let open = |name: &str| {
        let path = config.data_dir.join("vectors").join(name);
        async move {
            VectorTable::open(&path.to_string_lossy(), dims)
                .await
                .with_context(|| format!("cannot open the vector table at {}", path.display()))
                .map(Arc::new)
        }
    };
    let table = open("memory_semantic.lance").await?;
    let task_table = open("task_embeddings.lance").await?;
    tracing::info!(dir = %config.data_dir.join("vectors").display(), dims, "semantic memory: all-MiniLM-L6-v2 on candle, lance");
    Ok(Semantic {
        embedder,
        table,
        task_table,
    })
}

fn memory_policy(config: &crate::config::MemoryConfig) -> MemoryPolicy {
    let defaults = MemoryPolicy::default();
    MemoryPolicy {
        short_term: Ttl {
            default: Duration::from_secs(config.short_term_ttl_secs),
            min: Duration::from_secs(config.min_ttl_secs),
            ..defaults.short_term
        },
        working: Ttl {
            default: Duration::from_secs(config.working_ttl_secs),
            min: Duration::from_secs(config.min_ttl_secs),
            ..defaults.working
        },
        max_content_chars: config.max_content_chars,
        duplicate_similarity: config.duplicate_similarity,
    }
}

#[async_trait]
impl Service for EventService {
    fn name(&self) -> &'static str {
        <EventServiceServer<EventApi> as NamedService>::NAME
    }
    fn short_name(&self) -> &'static str {
        "events"
    }
    fn action_types(&self) -> Vec<ActionType> {
        vec![ActionType::Notification]
    }
    fn executors(&self, deps: &Deps) -> Vec<(ActionType, Arc<dyn focusforge_planner::Executor>)> {
        vec![(
            ActionType::Notification,
            Arc::new(focusforge_grpc::ReminderExecutor {
                events: deps.events.clone(),
                store: deps.store.clone(),
            }),
        )]
    }
    async fn build(&self, deps: &Deps) -> anyhow::Result<Built> {
        Ok(Built::grpc(EventServiceServer::new(EventApi {
            events: deps.events.clone(),
            heartbeat: Duration::from_secs(self.0.config.events.heartbeat_secs),
            tick: Duration::from_secs(self.0.config.events.tick_secs),
            mesh: deps.mesh.clone(),
        })))
    }
}
