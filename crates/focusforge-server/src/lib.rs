//! The composition root: turns a [`Config`] into running services behind the
//! gateway. This is the one place that picks concrete backends.

pub mod config;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use focusforge_auth::{KeyMaterial, Minter, Verifier};
use focusforge_cache::{
    BreakerSettings, CacheNames, MemoryCache, RedisCache, RedisSettings, ResilientCache,
};
use focusforge_chain::{ChainSettings, Chains, Library};
use focusforge_core::{Clock, SystemClock};
use focusforge_embed::{Batcher, BatcherSettings, Embedder, MiniLm};
use focusforge_gateway::{Gateway, GatewayHandle, GatewayOptions, HttpRoute, Metrics};
use focusforge_grpc::{
    AuthInterceptor, ChainApi, JobApi, McpApi, MemoryApi, PlannerApi, TaskApi, UserApi,
};
use focusforge_jobs::{
    EmbeddedQueue, Handlers, Jobs, Queue, RedisQueue, RedisQueueSettings, ResilientQueue, Worker,
    WorkerSettings,
};
use focusforge_llm::{
    LanguageModel, LocalModel, MODEL_DIR as LLM_DIR, MODEL_FILE as LLM_FILE, OpenAiConfig,
    OpenAiModel, Sampling,
};
use focusforge_mcp::{McpHttp, Mesh, Registry};
use focusforge_memory::{Memories, MemoryPolicy, Semantic, Ttl};
use focusforge_planner::{ADVANCE_JOB, Limits, Planner, PlannerSettings, TaskExecutor};
use focusforge_proto::chain::v1::chain_service_server::ChainServiceServer;
use focusforge_proto::jobs::v1::job_service_server::JobServiceServer;
use focusforge_proto::mcp::v1::mcp_service_server::McpServiceServer;
use focusforge_proto::memory::v1::memory_service_client::MemoryServiceClient;
use focusforge_proto::memory::v1::memory_service_server::MemoryServiceServer;
use focusforge_proto::planner::v1::planner_service_server::PlannerServiceServer;
use focusforge_proto::tasks::v1::task_service_server::TaskServiceServer;
use focusforge_proto::users::v1::user_service_server::UserServiceServer;
use focusforge_store::{MongoSettings, MongoStore, SharedStore, SqliteStore};
use focusforge_tasks::Tasks;
use focusforge_users::Users;
use focusforge_vector::VectorTable;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub use config::{Config, ConfigError, Overrides, SERVICES};

/// The embedded document store's file inside the data directory.
pub const STORE_FILE: &str = "store/focusforge.db";
/// The embedded job queue's file inside the data directory.
pub const JOBS_FILE: &str = "jobs/jobs.db";

/// Resolves the signing keys: a configured HS256 secret or RS256 key pair,
/// else the data directory's generated dev secret.
pub fn key_material(config: &Config) -> anyhow::Result<KeyMaterial> {
    let auth = &config.auth;
    if let Some(secret) = &auth.jwt_secret {
        return Ok(KeyMaterial::Hs256(secret.as_bytes().to_vec()));
    }
    if let Some(public) = &auth.jwt_public_key_file {
        let public_pem = std::fs::read(public)
            .with_context(|| format!("cannot read jwt public key {}", public.display()))?;
        let private_pem = match &auth.jwt_private_key_file {
            Some(p) => Some(
                std::fs::read(p)
                    .with_context(|| format!("cannot read jwt private key {}", p.display()))?,
            ),
            None => None,
        };
        return Ok(KeyMaterial::Rs256 {
            public_pem,
            private_pem,
        });
    }
    Ok(KeyMaterial::Hs256(
        focusforge_auth::load_or_create_dev_secret(&config.data_dir)?,
    ))
}

/// Mints a token for `user` with the configured keys.
pub fn mint_token(config: &Config, user: &str, ttl: Duration) -> anyhow::Result<String> {
    let user = focusforge_core::UserId::parse(user)
        .map_err(|e| anyhow::anyhow!("bad user id {user:?}: {e}"))?;
    let keys = key_material(config)?;
    let minter = Minter::new(&keys, config.auth.issuer.as_deref())?;
    Ok(minter.mint(&user, ttl.as_secs())?)
}

/// How long a stopping process waits for running jobs; the rest run again
/// elsewhere once their lease runs out.
pub const WORKER_GRACE: Duration = Duration::from_secs(10);

/// A running FocusForge process: the gateway listener and its background work.
pub struct Running {
    pub local_addr: std::net::SocketAddr,
    gateway: GatewayHandle,
    background: Vec<JoinHandle<()>>,
    worker: Option<Worker>,
}

impl Running {
    /// Stops accepting calls, drains those in flight and stops background work.
    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
        if let Some(worker) = self.worker {
            worker.shutdown(WORKER_GRACE).await;
        }
        for task in self.background {
            task.abort();
        }
    }

    /// Resolves when the gateway stops.
    pub async fn wait(&mut self) {
        self.gateway.wait().await;
    }
}

/// The backends this process uses, chosen by configuration.
#[derive(Clone)]
pub struct Backends {
    pub clock: Arc<dyn Clock>,
    pub store: SharedStore,
    /// `sqlite` or `mongodb`.
    pub store_kind: &'static str,
    mongo: Option<MongoStore>,
    pub cache: Arc<ResilientCache>,
    pub caches: CacheNames,
    /// The job queue and the planner that runs on it.
    pub jobs: Jobs,
    pub planner: Planner,
    store_reachable: Arc<AtomicBool>,
}

impl Backends {
    /// Opens the configured document store and cache. MongoDB and Redis are
    /// connected lazily: a server that is down at start-up makes the process
    /// degraded (and says so), not dead.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (store, store_kind, mongo): (SharedStore, _, _) = match &config.mongodb.uri {
            Some(uri) => {
                let settings = MongoSettings {
                    uri: uri.clone(),
                    database: config.mongodb.database.clone(),
                    write_concern: config.mongodb.write_concern.clone(),
                    retry_writes: config.mongodb.retry_writes,
                    max_pool_size: config.mongodb.max_pool_size,
                    timeout: Duration::from_millis(config.mongodb.timeout_ms),
                };
                let mongo = MongoStore::connect(&settings, clock.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot use the mongodb configuration: {e}"))?;
                match mongo.ensure_indexes().await {
                    Ok(()) => {
                        tracing::info!(database = %settings.database, "document store: mongodb")
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "document store: mongodb, unreachable at start-up; indexes are created on first use"
                    ),
                }
                (Arc::new(mongo.clone()), "mongodb", Some(mongo))
            }
            None => {
                let path = config.data_dir.join(STORE_FILE);
                let sqlite = SqliteStore::open(&path, clock.clone()).with_context(|| {
                    format!("cannot open the document store at {}", path.display())
                })?;
                tracing::info!(path = %path.display(), "document store: embedded sqlite");
                (Arc::new(sqlite), "sqlite", None)
            }
        };
        let redis = match &config.redis.url {
            Some(url) => Some(
                RedisCache::new(&RedisSettings {
                    url: url.clone(),
                    pool_size: config.redis.pool_size,
                    timeout: Duration::from_millis(config.redis.timeout_ms),
                })
                .map_err(|e| anyhow::anyhow!("cannot use the redis configuration: {e}"))?,
            ),
            None => None,
        };
        let cache = Arc::new(ResilientCache::new(
            redis,
            MemoryCache::new(config.cache.max_bytes),
            BreakerSettings {
                open_for: Duration::from_millis(config.redis.breaker_open_ms),
                ..BreakerSettings::default()
            },
        ));
        tracing::info!(backend = cache.status().backend, "cache");
        let caches = CacheNames::new(
            cache.clone(),
            Duration::from_secs(config.cache.user_context_ttl_secs),
            Duration::from_secs(config.cache.vector_search_ttl_secs),
            Duration::from_secs(config.cache.chain_results_ttl_secs),
        );
        let embedded = EmbeddedQueue::open(&config.data_dir.join(JOBS_FILE))
            .map_err(|e| anyhow::anyhow!("cannot open the job queue: {e}"))?;
        let queue: Arc<dyn Queue> = match &config.redis.url {
            Some(url) => Arc::new(ResilientQueue::new(
                RedisQueue::new(&RedisQueueSettings {
                    url: url.clone(),
                    pool_size: config.redis.pool_size,
                    timeout: Duration::from_millis(config.redis.timeout_ms.max(1_000)),
                    prefix: config.jobs.redis_prefix.clone(),
                })
                .map_err(|e| anyhow::anyhow!("cannot use the redis configuration: {e}"))?,
                embedded,
            )),
            None => Arc::new(embedded),
        };
        tracing::info!(backend = queue.backend(), "job queue");
        let jobs = Jobs::new(queue, clock.clone());
        let planner = Planner::new(
            store.clone(),
            jobs.clone(),
            Arc::new(TaskExecutor::new(Tasks::new(store.clone(), clock.clone()))),
            clock.clone(),
            PlannerSettings {
                limits: Limits {
                    global: config.planner.global_limit,
                    per_user: config.planner.per_user_limit,
                    per_type: std::collections::HashMap::new(),
                },
                action_timeout: Duration::from_secs(config.planner.action_timeout_secs),
            },
        );
        Ok(Self {
            clock,
            store,
            store_kind,
            mongo,
            cache,
            caches,
            jobs,
            planner,
            store_reachable: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Health names of the backends: `focusforge.store.<kind>` and
    /// `focusforge.cache.<backend>`; SERVING while reachable and not degraded.
    pub fn components(&self) -> Vec<String> {
        vec![
            format!("focusforge.store.{}", self.store_kind),
            format!("focusforge.cache.{}", self.cache.status().backend),
        ]
    }

    /// Checks the backends once and reports through `reporter`.
    async fn check(&self, reporter: &HealthReporter) {
        let reachable = match &self.mongo {
            Some(mongo) => match mongo.ping().await {
                Ok(()) => true,
                Err(e) => {
                    if self.store_reachable.load(Ordering::Relaxed) {
                        tracing::warn!(error = %e, "mongodb unreachable");
                    }
                    false
                }
            },
            None => true,
        };
        if reachable && !self.store_reachable.swap(true, Ordering::Relaxed) {
            tracing::info!("mongodb reachable again");
        }
        self.store_reachable.store(reachable, Ordering::Relaxed);
        self.cache.probe().await;
        let components = self.components();
        let serving = |ok: bool| {
            if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            }
        };
        reporter
            .set_service_status(&components[0], serving(reachable))
            .await;
        reporter
            .set_service_status(&components[1], serving(!self.cache.status().degraded))
            .await;
    }

    /// Prometheus text for `GET /metrics`.
    pub fn metrics(&self) -> String {
        let cache = self.cache.status();
        format!(
            "# HELP focusforge_cache_fallbacks_total Cache calls served in process because Redis was unavailable.\n\
             # TYPE focusforge_cache_fallbacks_total counter\n\
             focusforge_cache_fallbacks_total {}\n\
             # HELP focusforge_cache_degraded 1 while Redis is configured but unavailable.\n\
             # TYPE focusforge_cache_degraded gauge\n\
             focusforge_cache_degraded{{backend=\"{}\"}} {}\n\
             # HELP focusforge_store_reachable 1 while the document store answers.\n\
             # TYPE focusforge_store_reachable gauge\n\
             focusforge_store_reachable{{backend=\"{}\"}} {}\n",
            cache.fallbacks,
            cache.backend,
            u8::from(cache.degraded),
            self.store_kind,
            u8::from(self.store_reachable.load(Ordering::Relaxed)),
        )
    }
}

/// Starts `workers` job workers on the backends' queue, running the
/// planner's jobs.
pub fn spawn_worker(config: &Config, backends: &Backends, workers: usize) -> Worker {
    let mut handlers = Handlers::new();
    handlers.register(ADVANCE_JOB, backends.planner.advance_handler());
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    Worker::spawn(
        backends.jobs.clone(),
        handlers,
        WorkerSettings {
            name: format!("{host}-{}", std::process::id()),
            concurrency: workers,
            visibility: Duration::from_secs(config.jobs.visibility_secs),
            retention: Duration::from_secs(config.jobs.retention_days * 86_400),
            ..WorkerSettings::default()
        },
    )
}

/// The configured connection limits, the total lowered to leave room under
/// the process's descriptor limit for the backends' own files and sockets.
fn connection_options(config: &Config) -> focusforge_gateway::ConnectionOptions {
    /// Descriptors kept for the store, Lance, logs and upstream connections.
    const RESERVED: usize = 256;
    let mut options = config.connections.options();
    if let Some(limit) = open_files_limit() {
        let room = limit.saturating_sub(RESERVED).max(16);
        if options.max_connections > room {
            tracing::warn!(
                configured = options.max_connections,
                open_files_limit = limit,
                using = room,
                "connections max lowered to fit the open files limit"
            );
            options.max_connections = room;
            options.max_connections_per_client = options.max_connections_per_client.min(room);
        }
    }
    options
}

/// The soft limit on open files (Linux: `/proc/self/limits`).
fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Starts the configured services and the gateway on an already bound
/// listener (tests bind `127.0.0.1:0`).
pub async fn start(config: &Config, listener: TcpListener) -> anyhow::Result<Running> {
    let keys = key_material(config)?;
    let verifier = Arc::new(
        Verifier::new(&keys, config.auth.issuer.as_deref())?.with_leeway(config.auth.leeway_secs),
    );
    let mut options = GatewayOptions {
        cors_origins: config.cors_origins.clone(),
        connect_timeout: Duration::from_millis(config.connect_timeout_ms),
        max_message_bytes: config.max_message_bytes,
        metrics: None,
        http_routes: Vec::new(),
        connections: connection_options(config),
    };
    let mut background = Vec::new();
    let mut local = None;
    let mut worker = None;

    if !config.services.is_empty() {
        let backends = Backends::open(config).await?;
        background.push(spawn_sweeper(
            backends.store.clone(),
            Duration::from_secs(config.sweep_interval_secs),
        ));
        let local_addr = listener.local_addr().ok();
        let ServiceRoutes {
            names,
            routes,
            reporter,
            vector_tables,
            mcp,
        } = service_routes(config, &backends, verifier.clone(), local_addr).await?;
        if config.memory.maintenance_interval_secs > 0 && !vector_tables.is_empty() {
            background.push(spawn_vector_maintenance(
                vector_tables,
                Duration::from_secs(config.memory.maintenance_interval_secs),
            ));
        }
        backends.check(&reporter).await;
        background.push(spawn_monitor(backends.clone(), reporter));
        let for_metrics = backends.clone();
        options.metrics = Some(Metrics(Arc::new(move || for_metrics.metrics())));
        if config.jobs.workers > 0 {
            worker = Some(spawn_worker(config, &backends, config.jobs.workers));
        }
        if let Some(registry) = mcp {
            options.http_routes.push(HttpRoute {
                path: MCP_PATH.into(),
                service: tower::util::BoxCloneSyncService::new(McpHttp::new(
                    registry,
                    verifier.clone(),
                )),
            });
        }
        local = Some((names, backends.components(), routes));
    }
    let mut gateway = Gateway::new(verifier, options);
    if let Some((names, components, routes)) = local {
        gateway = gateway.local(&names, &components, routes);
    }
    for (service, uri) in &config.upstreams {
        if gateway.services().contains(service) {
            continue; // served in this process
        }
        gateway = gateway.remote(service, uri)?;
    }

    let service = gateway.build()?;
    let handle = focusforge_gateway::serve(listener, service)?;
    tracing::info!(
        addr = %handle.local_addr,
        data_dir = %config.data_dir.display(),
        services = ?config.services,
        upstreams = config.upstreams.len(),
        "focusforge is serving"
    );
    Ok(Running {
        local_addr: handle.local_addr,
        gateway: handle,
        background,
        worker,
    })
}

/// The configured services as in-process routes, each verifying tokens itself,
/// plus their `grpc.health.v1.Health`. Returns the routed service names and
/// the health reporter (which also carries the backends' status).
/// `local_addr` is where this process serves, for services that call each
/// other (the chains read the Memory service there when it runs here).
pub async fn service_routes(
    config: &Config,
    backends: &Backends,
    verifier: Arc<Verifier>,
    local_addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<ServiceRoutes> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let auth = AuthInterceptor::new(verifier);
    let limit = config.max_message_bytes;
    let store = &backends.store;
    let mut routes = Routes::new(health);
    let mut names = Vec::new();
    let mut vector_tables = Vec::new();
    let mut mcp = None;
    // One embedding model for every service that needs one.
    let embedder = tokio::sync::OnceCell::<Arc<dyn Embedder>>::new();
    let embedder = || embedder.get_or_try_init(|| load_embedder(config));
    for (short, full) in SERVICES {
        if !config.services.iter().any(|s| s == short) {
            continue;
        }
        routes = match *short {
            "chain" => routes.add_service(InterceptedService::new(
                ChainServiceServer::new(
                    chain_api(config, backends, local_addr, embedder().await.ok().cloned()).await?,
                )
                .max_decoding_message_size(limit),
                auth.clone(),
            )),
            "memory" => {
                let semantic = semantic(config, embedder().await?.clone()).await?;
                vector_tables.extend([semantic.table.clone(), semantic.task_table.clone()]);
                routes.add_service(InterceptedService::new(
                    MemoryServiceServer::new(MemoryApi(Memories::new(
                        store.clone(),
                        backends.clock.clone(),
                        memory_policy(&config.memory),
                        Some(semantic),
                    )))
                    .max_decoding_message_size(limit),
                    auth.clone(),
                ))
            }
            "tasks" => routes.add_service(InterceptedService::new(
                TaskServiceServer::new(TaskApi(Tasks::new(store.clone(), backends.clock.clone())))
                    .max_decoding_message_size(limit),
                auth.clone(),
            )),
            "users" => routes.add_service(InterceptedService::new(
                UserServiceServer::new(UserApi(Users::new(
                    store.clone(),
                    Some(backends.caches.user_context.clone()),
                )))
                .max_decoding_message_size(limit),
                auth.clone(),
            )),
            "planner" => routes.add_service(InterceptedService::new(
                PlannerServiceServer::new(PlannerApi(backends.planner.clone()))
                    .max_decoding_message_size(limit),
                auth.clone(),
            )),
            "jobs" => routes.add_service(InterceptedService::new(
                JobServiceServer::new(JobApi(backends.jobs.clone()))
                    .max_decoding_message_size(limit),
                auth.clone(),
            )),
            "mcp" => {
                let registry = mcp_registry(config, &gateway_url(config, local_addr))?;
                mcp = Some(registry.clone());
                routes.add_service(InterceptedService::new(
                    McpServiceServer::new(McpApi(registry)).max_decoding_message_size(limit),
                    auth.clone(),
                ))
            }
            other => anyhow::bail!("service {other} has no wiring"),
        };
        reporter
            .set_service_status(*full, ServingStatus::Serving)
            .await;
        names.push(*full);
    }
    Ok(ServiceRoutes {
        names,
        routes,
        reporter,
        vector_tables,
        mcp,
    })
}

/// The services a process runs, ready for the gateway.
pub struct ServiceRoutes {
    /// Their fully qualified names.
    pub names: Vec<&'static str>,
    pub routes: Routes,
    pub reporter: HealthReporter,
    /// The vector tables this process writes, kept compact in the background.
    pub vector_tables: Vec<Arc<VectorTable>>,
    /// The MCP tools, when this process serves them, for the `/mcp` endpoint.
    pub mcp: Option<Registry>,
}

/// This process's gateway, where its services call each other.
fn gateway_url(config: &Config, local_addr: Option<std::net::SocketAddr>) -> String {
    match local_addr {
        Some(a) => format!("http://{a}"),
        None => format!("http://{}", config.listen),
    }
}

/// Where MCP clients talk to FocusForge over Streamable HTTP.
pub const MCP_PATH: &str = "/mcp";

/// The tool registry, calling the services through the gateway at `base`
/// (this process's, which routes to remote upstreams too, or another).
pub fn mcp_registry(config: &Config, base: &str) -> anyhow::Result<Registry> {
    let channel = tonic::transport::Endpoint::from_shared(base.to_owned())?
        .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
        .connect_lazy();
    Ok(Registry::new(
        Mesh { channel },
        focusforge_mcp::tools::all(),
    ))
}

/// The chains: the configured model, the chain cache, and a client of the
/// Memory service (in this process, or the configured upstream).
/// The chains; `embedder` finds the example library's nearest breakdowns
/// (without it, shared words do).
async fn chain_api(
    config: &Config,
    backends: &Backends,
    local_addr: Option<std::net::SocketAddr>,
    embedder: Option<Arc<dyn Embedder>>,
) -> anyhow::Result<ChainApi> {
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
    let memory_uri = match config.upstreams.get("focusforge.memory.v1.MemoryService") {
        Some(uri) => Some(uri.clone()),
        None if config.services.iter().any(|s| s == "memory") => {
            local_addr.map(|a| format!("http://{a}"))
        }
        None => None,
    };
    let memory = match memory_uri {
        Some(uri) => Some(MemoryServiceClient::new(
            tonic::transport::Endpoint::from_shared(uri)?
                .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
                .connect_lazy(),
        )),
        None => None,
    };
    if embedder.is_none() {
        tracing::warn!("chains: no embedding model; library examples are matched by words");
    }
    let library = Library::new(embedder);
    library.warm().await;
    tracing::info!(examples = library.len(), "chains: example library ready");
    Ok(ChainApi {
        chains: Chains::new(
            model,
            Some(backends.caches.chain_results.clone()),
            backends.clock.clone(),
            settings,
        )
        .with_library(library),
        memory,
    })
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

fn memory_policy(config: &config::MemoryConfig) -> MemoryPolicy {
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

const MONITOR_INTERVAL: Duration = Duration::from_secs(2);

fn spawn_monitor(backends: Backends, reporter: HealthReporter) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(MONITOR_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            backends.check(&reporter).await;
        }
    })
}

/// How long a vector table keeps an old version for readers that opened it.
const VECTOR_VERSIONS_KEPT: Duration = Duration::from_secs(3_600);

/// Compacts the vector tables and removes their old versions, every `every`
/// (the first time one interval after start).
fn spawn_vector_maintenance(tables: Vec<Arc<VectorTable>>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for table in &tables {
                match table.optimize(VECTOR_VERSIONS_KEPT).await {
                    Ok(done)
                        if done.fragments_before == done.fragments_after
                            && done.versions_removed == 0 => {}
                    Ok(done) => tracing::info!(
                        table = table.uri(),
                        fragments_before = done.fragments_before,
                        fragments_after = done.fragments_after,
                        versions_removed = done.versions_removed,
                        bytes_removed = done.bytes_removed,
                        "compacted a vector table"
                    ),
                    Err(e) => {
                        tracing::warn!(table = table.uri(), error = %e, "compacting a vector table failed")
                    }
                }
            }
        }
    })
}

fn spawn_sweeper(store: SharedStore, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store.purge_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(removed = n, "swept expired documents"),
                Err(e) => tracing::warn!(error = %e, "sweeping expired documents failed"),
            }
        }
    })
}
