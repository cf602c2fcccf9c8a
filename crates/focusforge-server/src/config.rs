//! Typed configuration, layered: defaults, then an optional TOML file, then
//! `FOCUSFORGE_*` environment variables, then command-line flags. Everything
//! is validated before anything starts; the first problem is reported as one
//! line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded default keeps its state.
    pub data_dir: PathBuf,
    /// Where the local models are (`scripts/fetch-models` puts them there).
    pub models_dir: PathBuf,
    /// The gateway's address: native gRPC and gRPC-web on one port.
    pub listen: String,
    /// Where `GET /metrics` is served, on a listener of its own (the
    /// chart's `0.0.0.0:9090`); empty: on the main port, to clients on this
    /// host only.
    pub metrics_listen: String,
    /// Short names of the services to run in this process.
    pub services: Vec<String>,
    /// `human` or `json`.
    pub log_format: String,
    /// A tracing filter such as `info` or `focusforge_gateway=debug,info`.
    pub log_level: String,
    /// An OTLP/gRPC collector the spans are exported to, e.g.
    /// `http://otel-collector:4317`; empty: none.
    pub otlp_endpoint: String,
    /// The `service.name` of the spans; empty: `focusforge`, or
    /// `focusforge-<service>` for a process running one service.
    pub service_name: String,
    /// Largest request message, in bytes.
    pub max_message_bytes: usize,
    /// Browser origins allowed by CORS; `*` for any.
    pub cors_origins: Vec<String>,
    /// TCP connect timeout to remote upstreams, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How often expired documents are swept, in seconds.
    pub sweep_interval_secs: u64,
    /// The built web app (`web/` after `npm run build`), served at `/`;
    /// empty serves none.
    pub web_dir: PathBuf,
    pub auth: AuthConfig,
    pub mongodb: MongoConfig,
    pub redis: RedisConfig,
    pub cache: CacheConfig,
    pub memory: MemoryConfig,
    pub llm: LlmConfig,
    pub openai: OpenAiSection,
    pub jobs: JobsConfig,
    pub events: EventsConfig,
    pub planner: PlannerConfig,
    pub connections: ConnectionsConfig,
    pub rate_limits: RateLimitsConfig,
    /// Remote upstreams by fully qualified service name.
    pub upstreams: BTreeMap<String, String>,
    /// Each service's own settings by short name (`[service.mood]`), read
    /// by the service; `FOCUSFORGE_SERVICE_<NAME>_<KEY>` sets one key.
    pub service: BTreeMap<String, toml::Table>,
    /// Things worth a warning once logging is up (unknown variables, ...).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret (at least 32 bytes). Without it and without a public key,
    /// a random secret is generated in the data directory.
    pub jwt_secret: Option<String>,
    /// RS256 public key (PEM file), the production option.
    pub jwt_public_key_file: Option<PathBuf>,
    /// RS256 private key (PEM file), only needed to mint tokens.
    pub jwt_private_key_file: Option<PathBuf>,
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// The `kid` of the configured key: `focusforge token` writes it, and a
    /// token naming another kid is not checked against the key.
    pub kid: Option<String>,
    /// HS256 secrets still accepted while tokens signed with them expire
    /// (key rotation); tokens are minted with `jwt_secret` only.
    pub previous_jwt_secrets: Vec<String>,
    /// RS256 public keys (PEM files) still accepted, likewise.
    pub previous_public_key_files: Vec<PathBuf>,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// An identity provider's JSON Web Key Set (RS256 keys by kid), fetched
    /// at start and every `jwks_refresh_secs`, and sooner when a token names
    /// a kid no key has (at most every 30 s).
    pub jwks_url: Option<String>,
    pub jwks_refresh_secs: u64,
    /// The secret (at least 32 bytes) of the mesh tokens components mint to
    /// act for a user. Every process of a mesh needs the same one. Without
    /// it, an HS256 deployment derives it from `jwt_secret` (or the dev
    /// secret); an RS256 one generates one in the data directory, which
    /// serves a single process only.
    pub mesh_secret: Option<String>,
    /// Whether the gateway lets in mesh tokens: on for the processes of a
    /// mesh whose services other processes' components call (a planner
    /// action, a job, a workflow step), off for a process alone and for a
    /// front gateway no component calls.
    pub accept_mesh_tokens: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_public_key_file: None,
            jwt_private_key_file: None,
            issuer: None,
            leeway_secs: focusforge_auth::DEFAULT_LEEWAY_SECS,
            kid: None,
            previous_jwt_secrets: Vec::new(),
            previous_public_key_files: Vec::new(),
            audience: None,
            jwks_url: None,
            jwks_refresh_secs: 600,
            mesh_secret: None,
            accept_mesh_tokens: false,
        }
    }
}

/// What one client may hold open on the listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Connections open at once, in total (lowered to fit the process's
    /// descriptor limit).
    pub max: usize,
    /// Connections open at once from one client address.
    pub max_per_client: usize,
    /// A request head (and an HTTP/1.1 keep-alive wait, and any
    /// connection's first request) must come within this, in milliseconds.
    pub header_read_timeout_ms: u64,
    /// A connection with nothing in flight for this long is closed, in seconds.
    pub idle_timeout_secs: u64,
    /// HTTP/2 keep-alive ping interval and answer timeout, in seconds.
    pub http2_keepalive_interval_secs: u64,
    pub http2_keepalive_timeout_secs: u64,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` names
    /// the client; they are exempt from `max_per_client`.
    pub trusted_proxies: Vec<String>,
    /// Calls in flight at once in the process; past it a call is refused at
    /// once (`UNAVAILABLE` with a retry delay) instead of queueing.
    pub max_calls_in_flight: usize,
    /// A request body that makes no progress for this long is cut, in
    /// milliseconds.
    pub body_read_timeout_ms: u64,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        let d = focusforge_gateway::ConnectionOptions::default();
        Self {
            max: d.max_connections,
            max_per_client: d.max_connections_per_client,
            header_read_timeout_ms: d.header_read_timeout.as_millis() as u64,
            idle_timeout_secs: d.idle_timeout.as_secs(),
            http2_keepalive_interval_secs: d.http2_keepalive_interval.as_secs(),
            http2_keepalive_timeout_secs: d.http2_keepalive_timeout.as_secs(),
            trusted_proxies: Vec::new(),
            max_calls_in_flight: focusforge_gateway::GatewayOptions::default().max_in_flight,
            body_read_timeout_ms: d.body_read_timeout.as_millis() as u64,
        }
    }
}

/// A budget: `burst` calls at once, then `per_second`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateClassConfig {
    pub per_second: f64,
    pub burst: u32,
    /// `package.Service` or `package.Service/Method`.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// Per-caller rate limits at the gateway: one budget per verified user and
/// method class, one per client address for calls without a verified user.
/// With Redis configured the budgets are shared by every replica.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// Unset: on, except in a process that takes mesh tokens (its callers
    /// were limited at the front gateway).
    pub enabled: Option<bool>,
    /// The default class: every method not in another class.
    pub per_second: f64,
    pub burst: u32,
    /// Calls without a verified user, per client address.
    pub anonymous_per_second: f64,
    pub anonymous_burst: u32,
    /// Classes of their own by name; the default has `ai` (chains and
    /// workflows). Setting any class here replaces the defaults.
    pub classes: BTreeMap<String, RateClassConfig>,
    /// Callers remembered per process.
    pub max_keys: usize,
    /// Key prefix of the shared budgets in Redis.
    pub redis_prefix: String,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        let d = focusforge_gateway::RateLimitOptions::default();
        Self {
            enabled: None,
            per_second: d.default.per_second,
            burst: d.default.burst,
            anonymous_per_second: d.anonymous.per_second,
            anonymous_burst: d.anonymous.burst,
            classes: d
                .classes
                .into_iter()
                .map(|c| {
                    (
                        c.name,
                        RateClassConfig {
                            per_second: c.rate.per_second,
                            burst: c.rate.burst,
                            methods: c.methods,
                        },
                    )
                })
                .collect(),
            max_keys: d.max_keys,
            redis_prefix: "focusforge:rl:".into(),
        }
    }
}

impl RateLimitsConfig {
    fn ai_class(&mut self) -> Result<&mut RateClassConfig, ConfigError> {
        self.classes
            .get_mut("ai")
            .ok_or_else(|| err("FOCUSFORGE_RATE_LIMITS_AI_*: the ai class is not configured"))
    }

    /// Whether this process limits its callers.
    pub fn on(&self, accept_mesh_tokens: bool) -> bool {
        self.enabled.unwrap_or(!accept_mesh_tokens)
    }

    /// The gateway's options; the numbers are checked by `validate`.
    pub fn options(&self) -> focusforge_gateway::RateLimitOptions {
        use focusforge_gateway::{MethodClass, Rate};
        focusforge_gateway::RateLimitOptions {
            default: Rate {
                per_second: self.per_second,
                burst: self.burst,
            },
            anonymous: Rate {
                per_second: self.anonymous_per_second,
                burst: self.anonymous_burst,
            },
            classes: self
                .classes
                .iter()
                .map(|(name, c)| MethodClass {
                    name: name.clone(),
                    rate: Rate {
                        per_second: c.per_second,
                        burst: c.burst,
                    },
                    methods: c.methods.clone(),
                })
                .collect(),
            max_keys: self.max_keys,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let rate = |name: &str, per_second: f64, burst: u32| {
            if !(per_second.is_finite() && per_second > 0.0) {
                return Err(err(format!(
                    "rate_limits: {name} per_second must be a positive number, got {per_second}"
                )));
            }
            if burst == 0 {
                return Err(err(format!("rate_limits: {name} burst must be at least 1")));
            }
            Ok(())
        };
        rate("default", self.per_second, self.burst)?;
        rate("anonymous", self.anonymous_per_second, self.anonymous_burst)?;
        for (name, class) in &self.classes {
            rate(name, class.per_second, class.burst)?;
            if name == "default" || name == "anonymous" {
                return Err(err(format!(
                    "rate_limits.classes.{name}: the name is taken by a built-in class"
                )));
            }
            for m in &class.methods {
                let (service, method) = m.split_once('/').unwrap_or((m, "x"));
                if !service.contains('.') || method.is_empty() || method.contains('/') {
                    return Err(err(format!(
                        "rate_limits.classes.{name}.methods: {m:?} is not package.Service or package.Service/Method"
                    )));
                }
            }
        }
        if self.max_keys == 0 {
            return Err(err("rate_limits: max_keys must be at least 1"));
        }
        Ok(())
    }
}

impl ConnectionsConfig {
    /// The gateway's options; the addresses are checked by `validate`.
    pub fn options(&self) -> focusforge_gateway::ConnectionOptions {
        use std::time::Duration;
        focusforge_gateway::ConnectionOptions {
            max_connections: self.max,
            max_connections_per_client: self.max_per_client,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            http2_keepalive_interval: Duration::from_secs(self.http2_keepalive_interval_secs),
            http2_keepalive_timeout: Duration::from_secs(self.http2_keepalive_timeout_secs),
            trusted_proxies: self
                .trusted_proxies
                .iter()
                .filter_map(|p| p.parse().ok())
                .collect(),
            body_read_timeout: Duration::from_millis(self.body_read_timeout_ms),
        }
    }
}

/// The production document store. Without a URI, the embedded SQLite
/// store under `data_dir` is used.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MongoConfig {
    /// `mongodb://...` or `mongodb+srv://...`; driver options may ride along.
    pub uri: Option<String>,
    pub database: String,
    /// `majority` (the default for user data) or a number of nodes.
    pub write_concern: String,
    /// Bounds server selection and connecting, in milliseconds.
    pub timeout_ms: u64,
    pub max_pool_size: u32,
    pub retry_writes: bool,
}

impl Default for MongoConfig {
    fn default() -> Self {
        Self {
            uri: None,
            database: "focusforge".into(),
            write_concern: "majority".into(),
            timeout_ms: 5_000,
            max_pool_size: 32,
            retry_writes: true,
        }
    }
}

/// The shared cache. Without a URL, an in-process cache is used.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://...`.
    pub url: Option<String>,
    /// Bounds every Redis command, in milliseconds.
    pub timeout_ms: u64,
    pub pool_size: usize,
    /// After a failure, how long calls skip Redis before it is probed again.
    pub breaker_open_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            timeout_ms: 250,
            pool_size: 16,
            breaker_open_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Size bound of the in-process cache (also the fallback while Redis is away).
    pub max_bytes: u64,
    /// How long user context (profiles, ...) stays cached: a session.
    pub user_context_ttl_secs: u64,
    /// How long vector search results stay cached.
    pub vector_search_ttl_secs: u64,
    /// How long chain (model) answers stay cached.
    pub chain_results_ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            user_context_ttl_secs: 3_600,
            vector_search_ttl_secs: 300,
            chain_results_ttl_secs: 1_800,
        }
    }
}

/// The language model behind the chains.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// `local` (the GGUF model in the models directory), `openai` (an
    /// OpenAI-compatible server, see `[openai]`) or `none` (rules only).
    pub backend: String,
    /// Most tokens one answer may take.
    pub max_tokens: usize,
    /// 0 picks the most likely token.
    pub temperature: f32,
    pub top_p: f32,
    /// Longest a model call may take before the fallback answers.
    pub timeout_secs: u64,
    /// Most model calls one user may have running at once.
    pub per_user_concurrency: usize,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            backend: "local".into(),
            max_tokens: 400,
            temperature: 0.0,
            top_p: 0.9,
            timeout_secs: 60,
            per_user_concurrency: 2,
        }
    }
}

/// An OpenAI-compatible chat-completions server.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiSection {
    pub base_url: String,
    pub model: String,
    /// Never logged.
    pub api_key: Option<String>,
}

impl Default for OpenAiSection {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
            api_key: None,
        }
    }
}

impl std::fmt::Debug for OpenAiSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiSection")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Background jobs: the queue (Redis when `[redis] url` is set, with the
/// embedded file taking over while Redis is down; the embedded file alone
/// otherwise) and the workers of this process.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Jobs this process runs at once, whichever services it serves; 0
    /// runs none here (leave them to `focusforge worker` processes).
    pub workers: usize,
    /// How long a job's lease lasts without a heartbeat: a job whose worker
    /// died runs again this long after its last heartbeat (1-3600 s).
    pub visibility_secs: u64,
    /// Key prefix of the queue in Redis.
    pub redis_prefix: String,
    /// How long finished jobs are kept (1-365 days).
    pub retention_days: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            workers: 4,
            visibility_secs: 30,
            redis_prefix: "focusforge:jobs".into(),
            retention_days: 7,
        }
    }
}

/// The user event log (the embedded file beside the job queue) and its
/// subscribers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// How long events are kept for a subscriber to resume from (60 s to
    /// 30 days).
    pub retention_secs: u64,
    /// Events kept per user at most, newest first (100 to 1,000,000).
    pub per_user: usize,
    /// How long an idle subscription waits before a heartbeat (1-300 s).
    pub heartbeat_secs: u64,
    /// How often a stream ticks while the user's focus session runs
    /// (1-3600 s). Ticks are live only: not kept, not replayed on resume.
    pub tick_secs: u64,
    /// Key prefix of the log in Redis.
    pub redis_prefix: String,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            retention_secs: 86_400,
            per_user: 10_000,
            heartbeat_secs: 15,
            tick_secs: 60,
            redis_prefix: "focusforge:events".into(),
        }
    }
}

/// Limits of the planner, per process.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlannerConfig {
    /// Actions running at once.
    pub global_limit: usize,
    /// Actions of one user running at once.
    pub per_user_limit: usize,
    /// An action running longer than this fails (and is retried).
    pub action_timeout_secs: u64,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        Self {
            global_limit: 64,
            per_user_limit: 4,
            action_timeout_secs: 60,
        }
    }
}

/// The memory tiers' defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Default time to live of short-term memories (60 s - 24 h).
    pub short_term_ttl_secs: u64,
    /// Default time to live of working memories (60 s - 7 days).
    pub working_ttl_secs: u64,
    /// The shortest time to live a memory may ask for (1 s - 1 h).
    pub min_ttl_secs: u64,
    /// Most characters of one memory's content.
    pub max_content_chars: usize,
    /// Cosine similarity at which a new semantic memory is merged into an
    /// existing one (0.5-1.0).
    pub duplicate_similarity: f32,
    /// How often the vector tables are compacted and their old versions
    /// removed, in seconds; 0 never.
    pub maintenance_interval_secs: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            short_term_ttl_secs: 3_600,
            working_ttl_secs: 86_400,
            min_ttl_secs: 60,
            max_content_chars: 8_000,
            duplicate_similarity: 0.95,
            maintenance_interval_secs: 21_600,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut config = Self {
            data_dir: PathBuf::from("./data"),
            models_dir: PathBuf::from("./models"),
            listen: "127.0.0.1:8080".into(),
            metrics_listen: String::new(),
            services: Vec::new(),
            log_format: "human".into(),
            log_level: "info".into(),
            otlp_endpoint: String::new(),
            service_name: String::new(),
            max_message_bytes: 4 * 1024 * 1024,
            cors_origins: Vec::new(),
            connect_timeout_ms: 5_000,
            sweep_interval_secs: 60,
            web_dir: PathBuf::from("./web/dist"),
            auth: AuthConfig::default(),
            mongodb: MongoConfig::default(),
            redis: RedisConfig::default(),
            cache: CacheConfig::default(),
            memory: MemoryConfig::default(),
            llm: LlmConfig::default(),
            openai: OpenAiSection::default(),
            jobs: JobsConfig::default(),
            events: EventsConfig::default(),
            planner: PlannerConfig::default(),
            connections: ConnectionsConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            upstreams: BTreeMap::new(),
            service: BTreeMap::new(),
            warnings: Vec::new(),
        };
        // Every service of the build.
        config.services = crate::kit(&config)
            .short_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        config
    }
}

/// Values given on the command line; `None` keeps the lower layers' value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub services: Option<String>,
    pub web_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

fn list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Config {
    /// Builds the configuration from all layers. `env` is the process
    /// environment (a parameter so tests need not mutate it).
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
        flags: &Overrides,
    ) -> Result<Self, ConfigError> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env.get("FOCUSFORGE_CONFIG").map(PathBuf::from));
        let mut cfg = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| err(format!("cannot read config file {}: {e}", path.display())))?;
                toml::from_str(&text)
                    .map_err(|e| err(format!("config file {}: {}", path.display(), e.message())))?
            }
            None => Config::default(),
        };
        cfg.apply_env(env)?;
        if let Some(d) = &flags.data_dir {
            cfg.data_dir.clone_from(d);
        }
        if let Some(l) = &flags.listen {
            cfg.listen.clone_from(l);
        }
        if let Some(s) = &flags.services {
            cfg.services = list(s);
        }
        if let Some(w) = &flags.web_dir {
            cfg.web_dir.clone_from(w);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        for (key, value) in env.iter().filter(|(k, _)| k.starts_with("FOCUSFORGE_")) {
            let number = |name: &str| {
                value
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| err(format!("{name} must be a whole number, got {value:?}")))
            };
            let float = |name: &str| {
                value
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| err(format!("{name} must be a number, got {value:?}")))
            };
            let small = |name: &str| {
                value
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| err(format!("{name} must be a whole number, got {value:?}")))
            };
            let boolean = |name: &str| match value.trim() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(err(format!("{name} must be true or false, got {value:?}"))),
            };
            match key.as_str() {
                "FOCUSFORGE_CONFIG" => {}
                "FOCUSFORGE_DATA_DIR" => self.data_dir = PathBuf::from(value),
                "FOCUSFORGE_MODELS_DIR" => self.models_dir = PathBuf::from(value),
                "FOCUSFORGE_LISTEN" => self.listen.clone_from(value),
                "FOCUSFORGE_METRICS_LISTEN" => self.metrics_listen.clone_from(value),
                "FOCUSFORGE_WEB_DIR" => self.web_dir = PathBuf::from(value),
                "FOCUSFORGE_SERVICES" => self.services = list(value),
                "FOCUSFORGE_LOG_FORMAT" => self.log_format.clone_from(value),
                "FOCUSFORGE_LOG_LEVEL" => self.log_level.clone_from(value),
                "FOCUSFORGE_OTLP_ENDPOINT" => self.otlp_endpoint.clone_from(value),
                "FOCUSFORGE_SERVICE_NAME" => self.service_name.clone_from(value),
                "FOCUSFORGE_MAX_MESSAGE_BYTES" => {
                    self.max_message_bytes = number(key)? as usize;
                }
                "FOCUSFORGE_CORS_ORIGINS" => self.cors_origins = list(value),
                "FOCUSFORGE_CONNECT_TIMEOUT_MS" => self.connect_timeout_ms = number(key)?,
                "FOCUSFORGE_SWEEP_INTERVAL_SECS" => self.sweep_interval_secs = number(key)?,
                "FOCUSFORGE_JWT_SECRET" => self.auth.jwt_secret = Some(value.clone()),
                "FOCUSFORGE_MESH_SECRET" => self.auth.mesh_secret = Some(value.clone()),
                "FOCUSFORGE_ACCEPT_MESH_TOKENS" => self.auth.accept_mesh_tokens = boolean(key)?,
                "FOCUSFORGE_JWT_PUBLIC_KEY_FILE" => {
                    self.auth.jwt_public_key_file = Some(PathBuf::from(value));
                }
                "FOCUSFORGE_JWT_PRIVATE_KEY_FILE" => {
                    self.auth.jwt_private_key_file = Some(PathBuf::from(value));
                }
                "FOCUSFORGE_JWT_ISSUER" => self.auth.issuer = Some(value.clone()),
                "FOCUSFORGE_JWT_LEEWAY_SECS" => self.auth.leeway_secs = number(key)?,
                "FOCUSFORGE_JWT_KID" => self.auth.kid = Some(value.clone()),
                "FOCUSFORGE_JWT_PREVIOUS_SECRETS" => self.auth.previous_jwt_secrets = list(value),
                "FOCUSFORGE_JWT_PREVIOUS_PUBLIC_KEY_FILES" => {
                    self.auth.previous_public_key_files =
                        list(value).into_iter().map(PathBuf::from).collect();
                }
                "FOCUSFORGE_JWT_AUDIENCE" => self.auth.audience = Some(value.clone()),
                "FOCUSFORGE_JWKS_URL" => self.auth.jwks_url = Some(value.clone()),
                "FOCUSFORGE_JWKS_REFRESH_SECS" => self.auth.jwks_refresh_secs = number(key)?,
                "FOCUSFORGE_MONGODB_URI" => self.mongodb.uri = Some(value.clone()),
                "FOCUSFORGE_MONGODB_DATABASE" => self.mongodb.database.clone_from(value),
                "FOCUSFORGE_MONGODB_WRITE_CONCERN" => self.mongodb.write_concern.clone_from(value),
                "FOCUSFORGE_MONGODB_TIMEOUT_MS" => self.mongodb.timeout_ms = number(key)?,
                "FOCUSFORGE_MONGODB_MAX_POOL_SIZE" => {
                    self.mongodb.max_pool_size = u32::try_from(number(key)?)
                        .map_err(|_| err("FOCUSFORGE_MONGODB_MAX_POOL_SIZE is too large"))?;
                }
                "FOCUSFORGE_MONGODB_RETRY_WRITES" => self.mongodb.retry_writes = boolean(key)?,
                "FOCUSFORGE_REDIS_URL" => self.redis.url = Some(value.clone()),
                "FOCUSFORGE_REDIS_TIMEOUT_MS" => self.redis.timeout_ms = number(key)?,
                "FOCUSFORGE_REDIS_POOL_SIZE" => self.redis.pool_size = number(key)? as usize,
                "FOCUSFORGE_REDIS_BREAKER_OPEN_MS" => self.redis.breaker_open_ms = number(key)?,
                "FOCUSFORGE_MEMORY_SHORT_TERM_TTL_SECS" => {
                    self.memory.short_term_ttl_secs = number(key)?;
                }
                "FOCUSFORGE_MEMORY_WORKING_TTL_SECS" => self.memory.working_ttl_secs = number(key)?,
                "FOCUSFORGE_MEMORY_MIN_TTL_SECS" => self.memory.min_ttl_secs = number(key)?,
                "FOCUSFORGE_MEMORY_DUPLICATE_SIMILARITY" => {
                    self.memory.duplicate_similarity = value
                        .trim()
                        .parse()
                        .map_err(|_| err(format!("{key} must be a number, got {value:?}")))?;
                }
                "FOCUSFORGE_MEMORY_MAINTENANCE_INTERVAL_SECS" => {
                    self.memory.maintenance_interval_secs = number(key)?;
                }
                "FOCUSFORGE_MEMORY_MAX_CONTENT_CHARS" => {
                    self.memory.max_content_chars = number(key)? as usize;
                }
                "FOCUSFORGE_CACHE_MAX_BYTES" => self.cache.max_bytes = number(key)?,
                "FOCUSFORGE_CACHE_USER_CONTEXT_TTL_SECS" => {
                    self.cache.user_context_ttl_secs = number(key)?;
                }
                "FOCUSFORGE_CACHE_VECTOR_SEARCH_TTL_SECS" => {
                    self.cache.vector_search_ttl_secs = number(key)?;
                }
                "FOCUSFORGE_CACHE_CHAIN_RESULTS_TTL_SECS" => {
                    self.cache.chain_results_ttl_secs = number(key)?;
                }
                "FOCUSFORGE_LLM_BACKEND" => self.llm.backend.clone_from(value),
                "FOCUSFORGE_LLM_MAX_TOKENS" => self.llm.max_tokens = number(key)? as usize,
                "FOCUSFORGE_LLM_TEMPERATURE" => {
                    self.llm.temperature = value
                        .trim()
                        .parse()
                        .map_err(|_| err(format!("{key} must be a number, got {value:?}")))?;
                }
                "FOCUSFORGE_LLM_TOP_P" => {
                    self.llm.top_p = value
                        .trim()
                        .parse()
                        .map_err(|_| err(format!("{key} must be a number, got {value:?}")))?;
                }
                "FOCUSFORGE_LLM_TIMEOUT_SECS" => self.llm.timeout_secs = number(key)?,
                "FOCUSFORGE_LLM_PER_USER_CONCURRENCY" => {
                    self.llm.per_user_concurrency = number(key)? as usize;
                }
                "FOCUSFORGE_OPENAI_BASE_URL" => self.openai.base_url.clone_from(value),
                "FOCUSFORGE_OPENAI_MODEL" => self.openai.model.clone_from(value),
                "FOCUSFORGE_OPENAI_API_KEY" => self.openai.api_key = Some(value.clone()),
                "FOCUSFORGE_JOBS_WORKERS" => self.jobs.workers = number(key)? as usize,
                "FOCUSFORGE_JOBS_VISIBILITY_SECS" => self.jobs.visibility_secs = number(key)?,
                "FOCUSFORGE_JOBS_REDIS_PREFIX" => self.jobs.redis_prefix.clone_from(value),
                "FOCUSFORGE_JOBS_RETENTION_DAYS" => self.jobs.retention_days = number(key)?,
                "FOCUSFORGE_EVENTS_RETENTION_SECS" => self.events.retention_secs = number(key)?,
                "FOCUSFORGE_EVENTS_PER_USER" => self.events.per_user = number(key)? as usize,
                "FOCUSFORGE_EVENTS_HEARTBEAT_SECS" => self.events.heartbeat_secs = number(key)?,
                "FOCUSFORGE_EVENTS_TICK_SECS" => self.events.tick_secs = number(key)?,
                "FOCUSFORGE_EVENTS_REDIS_PREFIX" => self.events.redis_prefix.clone_from(value),
                "FOCUSFORGE_PLANNER_GLOBAL_LIMIT" => {
                    self.planner.global_limit = number(key)? as usize;
                }
                "FOCUSFORGE_PLANNER_PER_USER_LIMIT" => {
                    self.planner.per_user_limit = number(key)? as usize;
                }
                "FOCUSFORGE_PLANNER_ACTION_TIMEOUT_SECS" => {
                    self.planner.action_timeout_secs = number(key)?;
                }
                "FOCUSFORGE_CONNECTIONS_MAX" => self.connections.max = number(key)? as usize,
                "FOCUSFORGE_CONNECTIONS_MAX_PER_CLIENT" => {
                    self.connections.max_per_client = number(key)? as usize;
                }
                "FOCUSFORGE_CONNECTIONS_HEADER_READ_TIMEOUT_MS" => {
                    self.connections.header_read_timeout_ms = number(key)?;
                }
                "FOCUSFORGE_CONNECTIONS_IDLE_TIMEOUT_SECS" => {
                    self.connections.idle_timeout_secs = number(key)?;
                }
                "FOCUSFORGE_CONNECTIONS_HTTP2_KEEPALIVE_INTERVAL_SECS" => {
                    self.connections.http2_keepalive_interval_secs = number(key)?;
                }
                "FOCUSFORGE_CONNECTIONS_HTTP2_KEEPALIVE_TIMEOUT_SECS" => {
                    self.connections.http2_keepalive_timeout_secs = number(key)?;
                }
                "FOCUSFORGE_CONNECTIONS_TRUSTED_PROXIES" => {
                    self.connections.trusted_proxies = list(value);
                }
                "FOCUSFORGE_CONNECTIONS_BODY_READ_TIMEOUT_MS" => {
                    self.connections.body_read_timeout_ms = number(key)?;
                }
                "FOCUSFORGE_CONNECTIONS_MAX_CALLS_IN_FLIGHT" => {
                    self.connections.max_calls_in_flight = number(key)? as usize;
                }
                "FOCUSFORGE_RATE_LIMITS_ENABLED" => {
                    self.rate_limits.enabled = Some(boolean(key)?);
                }
                "FOCUSFORGE_RATE_LIMITS_PER_SECOND" => {
                    self.rate_limits.per_second = float(key)?;
                }
                "FOCUSFORGE_RATE_LIMITS_BURST" => self.rate_limits.burst = small(key)?,
                "FOCUSFORGE_RATE_LIMITS_ANONYMOUS_PER_SECOND" => {
                    self.rate_limits.anonymous_per_second = float(key)?;
                }
                "FOCUSFORGE_RATE_LIMITS_ANONYMOUS_BURST" => {
                    self.rate_limits.anonymous_burst = small(key)?;
                }
                "FOCUSFORGE_RATE_LIMITS_AI_PER_SECOND" => {
                    let v = float(key)?;
                    self.rate_limits.ai_class()?.per_second = v;
                }
                "FOCUSFORGE_RATE_LIMITS_AI_BURST" => {
                    let v = small(key)?;
                    self.rate_limits.ai_class()?.burst = v;
                }
                "FOCUSFORGE_UPSTREAMS" => {
                    self.upstreams = list(value)
                        .into_iter()
                        .map(|pair| match pair.split_once('=') {
                            Some((svc, uri)) => Ok((svc.trim().to_owned(), uri.trim().to_owned())),
                            None => Err(err(format!(
                                "FOCUSFORGE_UPSTREAMS entries must be service=uri, got {pair:?}"
                            ))),
                        })
                        .collect::<Result<_, _>>()?;
                }
                other if other.starts_with("FOCUSFORGE_SERVICE_") => {
                    let rest = &other["FOCUSFORGE_SERVICE_".len()..];
                    let Some((service, setting)) = rest.split_once('_') else {
                        return Err(err(format!(
                            "{other}: expected FOCUSFORGE_SERVICE_<NAME>_<KEY>"
                        )));
                    };
                    // A number or boolean when it reads as one, else text.
                    let parsed = value
                        .parse::<i64>()
                        .map(toml::Value::Integer)
                        .or_else(|_| value.parse::<f64>().map(toml::Value::Float))
                        .or_else(|_| value.parse::<bool>().map(toml::Value::Boolean))
                        .unwrap_or_else(|_| toml::Value::String(value.clone()));
                    self.service
                        .entry(service.to_lowercase())
                        .or_default()
                        .insert(setting.to_lowercase(), parsed);
                }
                // Variables of later releases or other tools are not an error,
                // but a typo should not pass silently.
                other => self
                    .warnings
                    .push(format!("ignoring unknown environment variable {other}")),
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        let otlp = &self.otlp_endpoint;
        if !(otlp.is_empty() || otlp.starts_with("http://") || otlp.starts_with("https://")) {
            return Err(err(format!(
                "otlp_endpoint must be an http:// or https:// URL, got {:?}",
                self.otlp_endpoint
            )));
        }
        self.metrics_addr()?;
        self.rate_limits.validate()?;
        if self.connections.max_calls_in_flight == 0 {
            return Err(err("connections.max_calls_in_flight must be at least 1"));
        }
        let kit = crate::kit(self);
        kit.check(&self.services).map_err(err)?;
        for name in self.service.keys() {
            if kit.full_name(name).is_none() {
                return Err(err(format!(
                    "[service.{name}]: unknown service (known: {})",
                    kit.short_names().join(", ")
                )));
            }
        }
        if let Some(secret) = &self.auth.mesh_secret
            && secret.len() < 32
        {
            return Err(err("mesh_secret must be at least 32 bytes"));
        }
        if !matches!(self.log_format.as_str(), "human" | "json") {
            return Err(err(format!(
                "log_format must be human or json, got {:?}",
                self.log_format
            )));
        }
        if !focusforge_telemetry::valid_filter(&self.log_level) {
            return Err(err(format!(
                "log_level {:?} is not a valid filter",
                self.log_level
            )));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_message_bytes) {
            return Err(err("max_message_bytes must be between 1024 and 67108864"));
        }
        if !(1..=600_000).contains(&self.connect_timeout_ms) {
            return Err(err("connect_timeout_ms must be between 1 and 600000"));
        }
        let c = &self.connections;
        if !(1..=1_000_000).contains(&c.max) || !(1..=c.max).contains(&c.max_per_client) {
            return Err(err(
                "connections max must be 1-1000000 and max_per_client 1 to max",
            ));
        }
        if !(100..=600_000).contains(&c.header_read_timeout_ms) {
            return Err(err(
                "connections header_read_timeout_ms must be between 100 and 600000",
            ));
        }
        if !(100..=600_000).contains(&c.body_read_timeout_ms) {
            return Err(err(
                "connections body_read_timeout_ms must be between 100 and 600000",
            ));
        }
        if !(1..=86_400).contains(&c.idle_timeout_secs)
            || !(1..=3_600).contains(&c.http2_keepalive_interval_secs)
            || !(1..=3_600).contains(&c.http2_keepalive_timeout_secs)
        {
            return Err(err(
                "connections idle_timeout_secs must be 1-86400 and the http2 keepalive settings 1-3600",
            ));
        }
        for p in &c.trusted_proxies {
            p.parse::<focusforge_gateway::IpNet>()
                .map_err(|e| err(format!("connections trusted_proxies: {e}")))?;
        }
        if let Some(url) = &self.auth.jwks_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(err(format!(
                "auth jwks_url must be an http(s) URL, got {url:?}"
            )));
        }
        if !(30..=86_400).contains(&self.auth.jwks_refresh_secs) {
            return Err(err("auth jwks_refresh_secs must be 30-86400"));
        }
        for s in &self.auth.previous_jwt_secrets {
            if s.len() < 32 {
                return Err(err(
                    "auth previous_jwt_secrets must each be at least 32 bytes",
                ));
            }
        }
        if self.auth.leeway_secs > 300 {
            return Err(err("auth leeway_secs must be at most 300"));
        }
        if self.sweep_interval_secs == 0 {
            return Err(err("sweep_interval_secs must be at least 1"));
        }
        if let Some(secret) = &self.auth.jwt_secret {
            if secret.len() < 32 {
                return Err(err("jwt_secret must be at least 32 bytes"));
            }
            if self.auth.jwt_public_key_file.is_some() {
                return Err(err(
                    "set either jwt_secret (HS256) or jwt_public_key_file (RS256), not both",
                ));
            }
        }
        if let Some(uri) = &self.mongodb.uri
            && !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://"))
        {
            return Err(err(format!(
                "mongodb uri must start with mongodb:// or mongodb+srv://, got {uri:?}"
            )));
        }
        if self.mongodb.write_concern != "majority"
            && self.mongodb.write_concern.parse::<u32>().is_err()
        {
            return Err(err(format!(
                "mongodb write_concern must be majority or a number of nodes, got {:?}",
                self.mongodb.write_concern
            )));
        }
        if self.mongodb.database.is_empty() || self.mongodb.database.contains(['/', '.', ' ', '$'])
        {
            return Err(err(format!(
                "mongodb database name {:?} is not valid",
                self.mongodb.database
            )));
        }
        if !(1..=600_000).contains(&self.mongodb.timeout_ms)
            || !(1..=60_000).contains(&self.redis.timeout_ms)
        {
            return Err(err(
                "mongodb timeout_ms must be 1-600000 and redis timeout_ms 1-60000",
            ));
        }
        if self.mongodb.max_pool_size == 0 || self.redis.pool_size == 0 {
            return Err(err("pool sizes must be at least 1"));
        }
        if let Some(url) = &self.redis.url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(err(format!(
                "redis url must start with redis:// or rediss://, got {url:?}"
            )));
        }
        if self.jobs.workers > 256 {
            return Err(err("jobs workers must be at most 256"));
        }
        if !(1..=3_600).contains(&self.jobs.visibility_secs) {
            return Err(err("jobs visibility_secs must be between 1 and 3600"));
        }
        if !(1..=365).contains(&self.jobs.retention_days) {
            return Err(err("jobs retention_days must be between 1 and 365"));
        }
        if self.jobs.redis_prefix.is_empty() || self.jobs.redis_prefix.contains(char::is_whitespace)
        {
            return Err(err("jobs redis_prefix must be non-empty without spaces"));
        }
        if !(60..=2_592_000).contains(&self.events.retention_secs) {
            return Err(err("events retention_secs must be between 60 and 2592000"));
        }
        if !(100..=1_000_000).contains(&self.events.per_user) {
            return Err(err("events per_user must be between 100 and 1000000"));
        }
        if !(1..=300).contains(&self.events.heartbeat_secs) {
            return Err(err("events heartbeat_secs must be between 1 and 300"));
        }
        if !(1..=3600).contains(&self.events.tick_secs) {
            return Err(err("events tick_secs must be between 1 and 3600"));
        }
        if self.events.redis_prefix.is_empty()
            || self.events.redis_prefix.contains(char::is_whitespace)
        {
            return Err(err("events redis_prefix must be non-empty without spaces"));
        }
        if self.planner.global_limit == 0 || self.planner.per_user_limit == 0 {
            return Err(err("planner limits must be at least 1"));
        }
        if !(1..=86_400).contains(&self.planner.action_timeout_secs) {
            return Err(err(
                "planner action_timeout_secs must be between 1 and 86400",
            ));
        }
        if !(60..=86_400).contains(&self.memory.short_term_ttl_secs) {
            return Err(err(
                "memory short_term_ttl_secs must be between 60 and 86400",
            ));
        }
        if !(60..=604_800).contains(&self.memory.working_ttl_secs) {
            return Err(err("memory working_ttl_secs must be between 60 and 604800"));
        }
        if !(1..=3_600).contains(&self.memory.min_ttl_secs) {
            return Err(err("memory min_ttl_secs must be between 1 and 3600"));
        }
        if self.memory.maintenance_interval_secs > 30 * 86_400 {
            return Err(err(format!(
                "memory maintenance_interval_secs must be at most 30 days (2592000), got {}",
                self.memory.maintenance_interval_secs
            )));
        }
        if !(0.5..=1.0).contains(&self.memory.duplicate_similarity) {
            return Err(err(
                "memory duplicate_similarity must be between 0.5 and 1.0",
            ));
        }
        if !(1..=100_000).contains(&self.memory.max_content_chars) {
            return Err(err("memory max_content_chars must be between 1 and 100000"));
        }
        if !["local", "openai", "none"].contains(&self.llm.backend.as_str()) {
            return Err(err(format!(
                "llm backend must be local, openai or none, got {:?}",
                self.llm.backend
            )));
        }
        if !(16..=4096).contains(&self.llm.max_tokens) {
            return Err(err("llm max_tokens must be between 16 and 4096"));
        }
        if !(0.0..=2.0).contains(&self.llm.temperature) || !(0.0..=1.0).contains(&self.llm.top_p) {
            return Err(err("llm temperature must be 0-2 and top_p 0-1"));
        }
        if !(1..=600).contains(&self.llm.timeout_secs) {
            return Err(err("llm timeout_secs must be between 1 and 600"));
        }
        if !(1..=64).contains(&self.llm.per_user_concurrency) {
            return Err(err("llm per_user_concurrency must be between 1 and 64"));
        }
        if self.llm.backend == "openai"
            && !(self.openai.base_url.starts_with("http://")
                || self.openai.base_url.starts_with("https://"))
        {
            return Err(err("openai base_url must be an http(s) URL"));
        }
        if self.cache.max_bytes < 1024 * 1024 {
            return Err(err("cache max_bytes must be at least 1048576"));
        }
        for (service, uri) in &self.upstreams {
            if !service.contains('.') {
                return Err(err(format!(
                    "upstream key {service:?} must be a fully qualified service name"
                )));
            }
            if !uri.starts_with("http://") {
                return Err(err(format!(
                    "upstream for {service} must be an http:// uri, got {uri:?}"
                )));
            }
        }
        if self.services.is_empty() && self.upstreams.is_empty() {
            return Err(err("nothing to serve: no services and no upstreams"));
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            err(format!(
                "listen must be host:port such as 127.0.0.1:8080, got {:?}",
                self.listen
            ))
        })
    }

    /// What this process's spans are called.
    pub fn trace_service_name(&self) -> String {
        if !self.service_name.is_empty() {
            return self.service_name.clone();
        }
        match self.services.as_slice() {
            [one] => format!("focusforge-{one}"),
            [] => "focusforge-gateway".into(),
            _ => "focusforge".into(),
        }
    }

    /// The metrics listener's address, when metrics have one.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.metrics_listen.is_empty() {
            return Ok(None);
        }
        let addr: SocketAddr = self.metrics_listen.parse().map_err(|_| {
            err(format!(
                "metrics_listen must be host:port such as 0.0.0.0:9090, got {:?}",
                self.metrics_listen
            ))
        })?;
        if self
            .listen_addr()
            .is_ok_and(|l| l.port() == addr.port() && addr.port() != 0)
        {
            return Err(err("metrics_listen must be another port than listen"));
        }
        Ok(Some(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ff.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nlog_level = \"debug\"\ndata_dir = \"/from/file\"\n[upstreams]\n\"a.B\" = \"http://x:1\"\n",
        )
        .expect("write");
        let e = env(&[
            ("FOCUSFORGE_LISTEN", "127.0.0.1:9001"),
            ("FOCUSFORGE_DATA_DIR", "/from/env"),
        ]);
        let flags = Overrides {
            data_dir: Some("/from/flag".into()),
            ..Overrides::default()
        };
        let cfg = Config::load(Some(&file), &e, &flags).expect("load");
        assert_eq!(cfg.log_level, "debug", "file over default");
        assert_eq!(cfg.listen, "127.0.0.1:9001", "env over file");
        assert_eq!(cfg.data_dir, PathBuf::from("/from/flag"), "flag over env");
        assert_eq!(
            cfg.upstreams.get("a.B").map(String::as_str),
            Some("http://x:1")
        );
        assert_eq!(
            cfg.services,
            [
                "chain",
                "memory",
                "tasks",
                "users",
                "planner",
                "jobs",
                "mcp",
                "mood",
                "gamification",
                "focus",
                "calendar",
                "analytics",
                "integrations",
                "events",
                "orchestrator"
            ],
            "every service of the kit by default"
        );
    }

    #[test]
    fn the_openai_key_is_never_printed() {
        let mut cfg = Config::default();
        cfg.openai.api_key = Some("sk-secret-value".into());
        let printed = format!("{cfg:?}");
        assert!(!printed.contains("sk-secret-value") && printed.contains("redacted"));
    }

    #[test]
    fn bad_values_are_one_clear_line() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("FOCUSFORGE_LISTEN", "nope")], "listen must be host:port"),
            (
                &[("FOCUSFORGE_SERVICES", "tasks,chess")],
                "unknown service \"chess\"",
            ),
            (&[("FOCUSFORGE_LOG_FORMAT", "xml")], "log_format"),
            (
                &[("FOCUSFORGE_MAX_MESSAGE_BYTES", "12")],
                "max_message_bytes",
            ),
            (
                &[("FOCUSFORGE_MAX_MESSAGE_BYTES", "lots")],
                "must be a whole number",
            ),
            (&[("FOCUSFORGE_JWT_SECRET", "short")], "at least 32 bytes"),
            (&[("FOCUSFORGE_UPSTREAMS", "a.B")], "service=uri"),
            (&[("FOCUSFORGE_UPSTREAMS", "a.B=https://x:1")], "http://"),
            (&[("FOCUSFORGE_MONGODB_URI", "postgres://x")], "mongodb uri"),
            (
                &[("FOCUSFORGE_MONGODB_WRITE_CONCERN", "most")],
                "write_concern",
            ),
            (
                &[("FOCUSFORGE_MONGODB_RETRY_WRITES", "maybe")],
                "RETRY_WRITES",
            ),
            (&[("FOCUSFORGE_REDIS_URL", "localhost:6379")], "redis url"),
            (&[("FOCUSFORGE_LLM_BACKEND", "gpt5")], "llm backend"),
            (&[("FOCUSFORGE_LLM_MAX_TOKENS", "8")], "max_tokens"),
            (&[("FOCUSFORGE_LLM_TOP_P", "2")], "top_p"),
            (
                &[("FOCUSFORGE_LLM_PER_USER_CONCURRENCY", "0")],
                "per_user_concurrency",
            ),
            (
                &[
                    ("FOCUSFORGE_LLM_BACKEND", "openai"),
                    ("FOCUSFORGE_OPENAI_BASE_URL", "api.openai.com"),
                ],
                "openai base_url",
            ),
            (&[("FOCUSFORGE_REDIS_TIMEOUT_MS", "0")], "timeout_ms"),
            (
                &[("FOCUSFORGE_MEMORY_MAINTENANCE_INTERVAL_SECS", "99999999999")],
                "maintenance_interval_secs",
            ),
            (
                &[("FOCUSFORGE_MEMORY_SHORT_TERM_TTL_SECS", "5")],
                "short_term_ttl_secs",
            ),
        ];
        for (vars, expected) in cases {
            let e = Config::load(None, &env(vars), &Overrides::default()).expect_err("invalid");
            let msg = e.to_string();
            assert!(
                msg.contains(expected),
                "{msg:?} should mention {expected:?}"
            );
            assert!(!msg.contains('\n'), "one line: {msg:?}");
        }
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ff.toml");
        std::fs::write(&file, "lisen = \"x\"\n").expect("write");
        let e =
            Config::load(Some(&file), &BTreeMap::new(), &Overrides::default()).expect_err("bad");
        assert!(e.to_string().contains("unknown field"), "{e}");
        let missing = Config::load(
            Some(&dir.path().join("none.toml")),
            &BTreeMap::new(),
            &Overrides::default(),
        );
        assert!(
            missing
                .expect_err("missing")
                .to_string()
                .contains("cannot read config file")
        );
    }
}
