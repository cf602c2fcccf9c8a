//! The composition root: turns a [`Config`] into running services behind the
//! gateway. This is the one place that picks concrete backends.

pub mod config;
mod services;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use focusforge_auth::{KeyMaterial, MeshKey, Minter, ServiceVerifier, Verifier};
use focusforge_cache::RedisBudget;
use focusforge_cache::{
    BreakerSettings, CacheNames, MemoryCache, RedisCache, RedisSettings, ResilientCache,
};
use focusforge_core::{Clock, SystemClock};
use focusforge_events::{EmbeddedLog, EventLog, Events, RedisLog, RedisLogSettings};
use focusforge_gateway::{
    Gateway, GatewayHandle, GatewayOptions, HttpRoute, Metrics, Rate, RateLimiter, SharedBudget,
};
use focusforge_jobs::{
    EmbeddedQueue, Handler, Handlers, Jobs, Queue, RedisQueue, RedisQueueSettings, ResilientQueue,
    Worker, WorkerSettings,
};
use focusforge_kit::{Deps, Kit, Mesh};
use focusforge_mcp::{McpHttp, Registry};
use focusforge_planner::{Executors, Limits, Planner, PlannerSettings};
use focusforge_store::{MongoSettings, MongoStore, SharedStore, SqliteStore};
use focusforge_vector::VectorTable;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub use config::{Config, ConfigError, Overrides};
pub use services::Shared;

/// The services of this build, in the order they are listed and mounted:
/// the one list `--services`, mounting, collections, MCP tools, planner
/// actions and job kinds come from.
pub fn kit(config: &Config) -> Kit {
    kit_with(Shared::new(config.clone()))
}

fn kit_with(shared: Arc<Shared>) -> Kit {
    Kit::new()
        .with(services::ChainService(shared.clone()))
        .with(services::MemoryService(shared.clone()))
        .with(services::TaskService)
        .with(services::UserService)
        .with(services::PlannerService(shared.clone()))
        .with(services::JobService)
        .with(services::McpService(shared.clone()))
        .with(focusforge_mood::MoodService)
        .with(focusforge_gamification::GamificationService)
        .with(focusforge_focus::FocusService)
        .with(focusforge_calendar::CalendarService)
        .with(focusforge_analytics::AnalyticsService)
        .with(focusforge_integrations::IntegrationService)
        .with(services::EventService(shared))
        .with(focusforge_orchestrator::OrchestratorService)
}

/// The embedded document store's file inside the data directory.
pub const STORE_FILE: &str = "store/focusforge.db";
/// The embedded job queue's file inside the data directory.
pub const JOBS_FILE: &str = "jobs/jobs.db";
/// The embedded event log's file inside the data directory.
pub const EVENTS_FILE: &str = "events/events.db";
/// How often a process looks for events other processes appended, to wake
/// its subscribers.
const EVENTS_WATCH: Duration = Duration::from_millis(25);

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
    Ok(minter(config, &keys)?.mint(&user, ttl.as_secs())?)
}

/// A minter of tokens the configured verifier takes: its key, issuer, kid
/// and audience.
fn minter(config: &Config, keys: &KeyMaterial) -> anyhow::Result<Minter> {
    let mut minter = Minter::new(keys, config.auth.issuer.as_deref())?;
    if let Some(kid) = &config.auth.kid {
        minter = minter.with_kid(kid);
    }
    if let Some(aud) = &config.auth.audience {
        minter = minter.with_audience(aud);
    }
    Ok(minter)
}

/// A minter for the web app's sign-in helper, only on the embedded
/// default's generated dev secret: a deployment with configured keys takes
/// its tokens from its identity provider.
fn dev_minter(config: &Config) -> anyhow::Result<Option<Arc<Minter>>> {
    let auth = &config.auth;
    if auth.jwt_secret.is_some() || auth.jwt_public_key_file.is_some() || auth.jwks_url.is_some() {
        return Ok(None);
    }
    let keys = key_material(config)?;
    Ok(Some(Arc::new(minter(config, &keys)?)))
}

/// Where a data directory keeps a generated mesh secret (RS256 deployments
/// without `auth.mesh_secret`).
pub const MESH_SECRET_FILE: &str = "auth/mesh-secret";

/// The key of the mesh tokens components mint to act for users: the
/// configured mesh secret, else one derived from the HS256 secret, else
/// (RS256) one generated in the data directory.
pub fn mesh_key(config: &Config) -> anyhow::Result<MeshKey> {
    if let Some(secret) = &config.auth.mesh_secret {
        return Ok(MeshKey::new(secret.as_bytes())?);
    }
    match key_material(config)? {
        KeyMaterial::Hs256(secret) => Ok(MeshKey::derived(&secret)?),
        KeyMaterial::Rs256 { .. } => Ok(MeshKey::new(&focusforge_auth::load_or_create_secret(
            &config.data_dir.join(MESH_SECRET_FILE),
        )?)?),
    }
}

/// Verifies user tokens with the configured keys and clock-skew leeway.
fn user_verifier(config: &Config) -> anyhow::Result<Arc<Verifier>> {
    let auth = &config.auth;
    let keys = key_material(config)?;
    let mut verifier = Verifier::new(&keys, auth.issuer.as_deref())?.with_leeway(auth.leeway_secs);
    if let Some(kid) = &auth.kid {
        verifier = verifier.with_kid(kid);
    }
    if let Some(aud) = &auth.audience {
        verifier = verifier.with_audience(aud);
    }
    for secret in &auth.previous_jwt_secrets {
        verifier.add_key(&KeyMaterial::Hs256(secret.as_bytes().to_vec()), None)?;
    }
    for file in &auth.previous_public_key_files {
        let public_pem = std::fs::read(file)
            .with_context(|| format!("cannot read jwt public key {}", file.display()))?;
        verifier.add_key(
            &KeyMaterial::Rs256 {
                public_pem,
                private_pem: None,
            },
            None,
        )?;
    }
    Ok(Arc::new(verifier))
}

/// How long a stopping process waits for running jobs; the rest run again
/// elsewhere once their lease runs out.
pub const WORKER_GRACE: Duration = Duration::from_secs(10);

/// A running FocusForge process: the gateway listener and its background work.
pub struct Running {
    pub local_addr: std::net::SocketAddr,
    /// Where `GET /metrics` is served when it has a listener of its own.
    pub metrics_addr: Option<std::net::SocketAddr>,
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
    /// The user event log.
    pub events: Events,
    /// The planner's executors, set from the services this process builds.
    pub executors: Arc<Executors>,
    store_reachable: Arc<AtomicBool>,
    /// Jobs this process's workers saw end for good, for `/metrics`.
    job_outcomes: Arc<JobOutcomes>,
}

/// Jobs that ended for good, counted by kind and final state; then told to
/// the next observer (the user's event stream).
#[derive(Default)]
struct JobOutcomes(std::sync::Mutex<BTreeMap<(String, &'static str), u64>>);

impl JobOutcomes {
    fn render(&self) -> String {
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::from(
            "# HELP focusforge_jobs_finished_total Background jobs this process ran that ended for good, by kind and state.\n\
             # TYPE focusforge_jobs_finished_total counter\n",
        );
        for ((kind, state), n) in counts.iter() {
            out.push_str(&format!(
                "focusforge_jobs_finished_total{{kind=\"{kind}\",state=\"{state}\"}} {n}\n"
            ));
        }
        out
    }
}

struct CountedJobs {
    outcomes: Arc<JobOutcomes>,
    then: Arc<dyn focusforge_jobs::JobObserver>,
}

#[async_trait::async_trait]
impl focusforge_jobs::JobObserver for CountedJobs {
    async fn finished(&self, job: &focusforge_jobs::Job, state: focusforge_jobs::JobState) {
        {
            let mut counts = self.outcomes.0.lock().unwrap_or_else(|e| e.into_inner());
            // Kinds are those of the handlers registered here: a bounded set.
            *counts
                .entry((job.spec.kind.clone(), state.as_str()))
                .or_default() += 1;
        }
        self.then.finished(job, state).await;
    }
}

impl Backends {
    /// Opens the configured document store and cache. MongoDB and Redis are
    /// connected lazily: a server that is down at start-up makes the process
    /// degraded (and says so), not dead.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        Self::open_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Backends::open`] on a given clock: every service, the store's
    /// timestamps and the job queue read it (tests drive a manual one).
    pub async fn open_with_clock(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let kit = kit(config);
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
                    .map_err(|e| anyhow::anyhow!("cannot use the mongodb configuration: {e}"))?
                    .with_collections(kit.collections());
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
        let log: Arc<dyn EventLog> = match &config.redis.url {
            Some(url) => Arc::new(
                RedisLog::new(RedisLogSettings {
                    url: url.clone(),
                    pool_size: config.redis.pool_size,
                    timeout: Duration::from_millis(config.redis.timeout_ms.max(1_000)),
                    prefix: config.events.redis_prefix.clone(),
                    retention: Duration::from_secs(config.events.retention_secs),
                    per_user: config.events.per_user,
                })
                .map_err(|e| anyhow::anyhow!("cannot use the redis configuration: {e}"))?,
            ),
            None => Arc::new(
                EmbeddedLog::open(&config.data_dir.join(EVENTS_FILE))
                    .map_err(|e| anyhow::anyhow!("cannot open the event log: {e}"))?,
            ),
        };
        tracing::info!(backend = log.backend(), "event log");
        let events = Events::new(log, clock.clone());
        let executors = Arc::new(Executors::new(kit.action_owners()));
        let planner = Planner::new(
            store.clone(),
            jobs.clone(),
            executors.clone(),
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
        planner.observe(Arc::new(focusforge_grpc::PlanEvents(events.clone())));
        Ok(Self {
            clock,
            store,
            store_kind,
            mongo,
            cache,
            caches,
            jobs,
            planner,
            events,
            executors,
            store_reachable: Arc::new(AtomicBool::new(true)),
            job_outcomes: Arc::default(),
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
        ) + &self.job_outcomes.render()
    }
}

/// Starts `workers` job workers on the backends' queue, running the jobs
/// of the services built here.
pub fn spawn_worker(
    config: &Config,
    backends: &Backends,
    jobs: &[(&'static str, Arc<dyn Handler>)],
    skip_kinds: &[String],
    workers: usize,
) -> Worker {
    let mut handlers = Handlers::new();
    for (kind, handler) in jobs {
        handlers.register(kind, handler.clone());
    }
    handlers.observe(Arc::new(CountedJobs {
        outcomes: backends.job_outcomes.clone(),
        then: Arc::new(focusforge_grpc::JobEvents(backends.events.clone())),
    }));
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    Worker::spawn(
        backends.jobs.clone(),
        handlers,
        WorkerSettings {
            name: format!("{host}-{}", std::process::id()),
            concurrency: workers,
            visibility: Duration::from_secs(config.jobs.visibility_secs),
            retention: Duration::from_secs(config.jobs.retention_days * 86_400),
            skip_kinds: skip_kinds.to_vec(),
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

/// The gateway's rate limits: shared through Redis when it is configured.
fn rate_limiter(config: &Config) -> anyhow::Result<Option<Arc<RateLimiter>>> {
    if !config.rate_limits.on(config.auth.accept_mesh_tokens) {
        return Ok(None);
    }
    let shared = match &config.redis.url {
        Some(url) => {
            let timeout = Duration::from_millis(config.redis.timeout_ms);
            let pool = focusforge_cache::redis_pool(url, config.redis.pool_size, timeout)
                .map_err(|e| anyhow::anyhow!("cannot use the redis configuration: {e}"))?;
            let budget = RedisBudget::new(pool, &config.rate_limits.redis_prefix, timeout);
            Some(Arc::new(SharedBudgets(budget)) as Arc<dyn SharedBudget>)
        }
        None => None,
    };
    Ok(Some(Arc::new(RateLimiter::new(
        config.rate_limits.options(),
        shared,
    ))))
}

/// Rate-limit budgets in Redis, for the gateway.
struct SharedBudgets(RedisBudget);

impl SharedBudget for SharedBudgets {
    fn take<'a>(
        &'a self,
        key: &'a str,
        rate: Rate,
    ) -> futures::future::BoxFuture<'a, Result<Option<Duration>, String>> {
        Box::pin(async move {
            self.0
                .take(key, rate.interval_us(), rate.burst)
                .await
                .map_err(|e| e.to_string())
        })
    }
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
    start_with_clock(config, listener, Arc::new(SystemClock)).await
}

/// [`start`] on a given clock.
pub async fn start_with_clock(
    config: &Config,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    let verifier = user_verifier(config)?;
    let mut background = Vec::new();
    if let Some(url) = &config.auth.jwks_url {
        background.push(tokio::spawn(focusforge_auth::jwks::keep_loaded(
            url.clone(),
            Duration::from_secs(config.auth.jwks_refresh_secs),
            verifier.clone(),
        )));
    }
    let mut options = GatewayOptions {
        cors_origins: config.cors_origins.clone(),
        connect_timeout: Duration::from_millis(config.connect_timeout_ms),
        max_message_bytes: config.max_message_bytes,
        metrics: None,
        http_routes: vec![focusforge_gateway::dev_token_route(dev_minter(config)?)],
        connections: connection_options(config),
        web_dir: (!config.web_dir.as_os_str().is_empty()).then(|| config.web_dir.clone()),
        rate_limits: rate_limiter(config)?,
        max_in_flight: config.connections.max_calls_in_flight,
    };
    let mut local = None;
    let mut worker = None;

    if !config.services.is_empty() {
        let backends = Backends::open_with_clock(config, clock).await?;
        background.push(spawn_sweeper(
            backends.store.clone(),
            Duration::from_secs(config.sweep_interval_secs),
        ));
        background.push(backends.events.watch(EVENTS_WATCH));
        background.push(backends.events.sweep(
            Duration::from_secs(config.sweep_interval_secs),
            Duration::from_secs(config.events.retention_secs),
            config.events.per_user,
        ));
        let ServiceRoutes {
            names,
            routes,
            reporter,
            vector_tables,
            mcp,
            jobs,
            other_kinds,
            http,
            ..
        } = service_routes(config, &backends, verifier.clone()).await?;
        for (path, service) in http {
            options.http_routes.push(HttpRoute {
                path: path.into(),
                service,
            });
        }
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
            worker = Some(spawn_worker(
                config,
                &backends,
                &jobs,
                &other_kinds,
                config.jobs.workers,
            ));
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
    // A process of a mesh is called by the other processes' components
    // with mesh tokens; a process alone, or a front gateway, refuses them.
    let mesh = if config.auth.accept_mesh_tokens {
        Some(mesh_key(config)?)
    } else {
        None
    };
    let mut gateway = Gateway::new(
        focusforge_auth::ServiceVerifier {
            users: verifier,
            mesh,
        },
        options,
    );
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
    let metrics_listener = match config.metrics_addr()? {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?,
        ),
        None => None,
    };
    let handle = focusforge_gateway::serve_with_metrics(listener, metrics_listener, service)?;
    tracing::info!(
        addr = %handle.local_addr,
        data_dir = %config.data_dir.display(),
        services = ?config.services,
        upstreams = config.upstreams.len(),
        metrics = ?handle.metrics_addr,
        "focusforge is serving"
    );
    Ok(Running {
        local_addr: handle.local_addr,
        metrics_addr: handle.metrics_addr,
        gateway: handle,
        background,
        worker,
    })
}

/// The mesh of a process running `local` (full names): those in process,
/// the configured upstreams for the others, and `fallback` (a FocusForge
/// gateway) for the rest.
pub fn mesh(
    config: &Config,
    key: MeshKey,
    local: impl IntoIterator<Item = &'static str>,
    fallback: Option<&str>,
) -> anyhow::Result<Mesh> {
    let channel = |uri: &str| -> anyhow::Result<_> {
        Ok(tonic::transport::Endpoint::from_shared(uri.to_owned())?
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .connect_lazy())
    };
    let mut builder = Mesh::builder().local(local).key(key);
    for (service, uri) in &config.upstreams {
        builder = builder.remote(service, channel(uri)?);
    }
    if let Some(uri) = fallback {
        builder = builder.fallback(channel(uri)?);
    }
    Ok(builder.build())
}

/// Each configured service's settings as JSON, for the kit.
fn service_settings(config: &Config) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    config
        .service
        .iter()
        .map(|(name, table)| Ok((name.clone(), serde_json::to_value(table)?)))
        .collect()
}

/// Builds `shorts` of the kit on the backends and mounts them on one set of
/// in-process routes, which the mesh then calls directly.
async fn build_services(
    config: &Config,
    backends: &Backends,
    verifier: Arc<Verifier>,
    shorts: &[String],
) -> anyhow::Result<ServiceRoutes> {
    let shared = Shared::new(config.clone());
    let _ = shared.planner.set(backends.planner.clone());
    let kit = kit_with(shared.clone());
    let _ = shared.tools.set(kit.tools());
    let local: Vec<&'static str> = shorts.iter().filter_map(|s| kit.full_name(s)).collect();
    let key = mesh_key(config)?;
    let mesh = mesh(config, key.clone(), local, None)?;
    let deps = Deps {
        store: backends.store.clone(),
        clock: backends.clock.clone(),
        caches: backends.caches.clone(),
        jobs: backends.jobs.clone(),
        events: backends.events.clone(),
        mesh: mesh.clone(),
        settings: serde_json::Value::Null,
    };
    let mounted = kit
        .mount(
            shorts,
            &deps,
            &service_settings(config)?,
            ServiceVerifier {
                users: verifier,
                mesh: Some(key),
            },
            config.max_message_bytes,
        )
        .await?;
    mesh.serve_locally(mounted.routes.clone());
    backends.executors.set(mounted.executors);
    Ok(ServiceRoutes {
        names: mounted.names,
        routes: mounted.routes,
        reporter: mounted.reporter,
        vector_tables: shared.vector_tables.get().cloned().unwrap_or_default(),
        mcp: shared.registry.get().cloned(),
        // The kinds of the services this process does not run are left to
        // the processes that do.
        other_kinds: kit
            .services()
            .iter()
            .flat_map(|s| s.job_kinds())
            .filter(|k| !mounted.jobs.iter().any(|(mine, _)| mine == k))
            .map(str::to_owned)
            .collect(),
        jobs: mounted.jobs,
        http: mounted.http,
        mesh,
    })
}

/// The configured services as in-process routes, each verifying tokens itself,
/// plus their `grpc.health.v1.Health`. Returns the routed service names and
/// the health reporter (which also carries the backends' status).
pub async fn service_routes(
    config: &Config,
    backends: &Backends,
    verifier: Arc<Verifier>,
) -> anyhow::Result<ServiceRoutes> {
    build_services(config, backends, verifier, &config.services).await
}

/// A worker process: the configured services that run planner actions or
/// handle jobs, built in process (not served) so their executors and
/// handlers run here, and `workers` job workers.
pub async fn start_worker(
    config: &Config,
    backends: &Backends,
    workers: usize,
) -> anyhow::Result<Worker> {
    let kit = kit(config);
    let shorts: Vec<String> = kit
        .services()
        .iter()
        .filter(|s| !s.action_types().is_empty() || !s.job_kinds().is_empty())
        .map(|s| s.short_name().to_owned())
        .filter(|s| config.services.contains(s))
        .collect();
    let built = build_services(config, backends, user_verifier(config)?, &shorts).await?;
    Ok(spawn_worker(
        config,
        backends,
        &built.jobs,
        &built.other_kinds,
        workers,
    ))
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
    /// The job handlers of the services built.
    pub jobs: Vec<(&'static str, Arc<dyn Handler>)>,
    /// The job kinds of the services not built here.
    pub other_kinds: Vec<String>,
    /// The plain HTTP endpoints of the services built.
    pub http: Vec<(&'static str, focusforge_kit::HttpService)>,
    /// How these services reach each other and the rest of the mesh.
    pub mesh: Mesh,
}

/// Where MCP clients talk to FocusForge over Streamable HTTP.
pub const MCP_PATH: &str = "/mcp";

/// The tool registry of this build, calling the services through the
/// gateway at `base` (another FocusForge, or this process's own).
pub fn mcp_registry(config: &Config, base: &str) -> anyhow::Result<Registry> {
    let mesh = mesh(config, mesh_key(config)?, [], Some(base))?;
    Ok(Registry::new(mesh, kit(config).tools()))
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
