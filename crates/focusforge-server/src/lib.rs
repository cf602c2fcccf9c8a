//! The composition root: turns a [`Config`] into running services behind the
//! gateway. This is the one place that picks concrete backends.

pub mod config;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use focusforge_auth::{KeyMaterial, Minter, Verifier};
use focusforge_core::{Clock, SystemClock};
use focusforge_gateway::{Gateway, GatewayHandle, GatewayOptions};
use focusforge_grpc::{AuthInterceptor, TaskApi, UserApi};
use focusforge_proto::tasks::v1::task_service_server::TaskServiceServer;
use focusforge_proto::users::v1::user_service_server::UserServiceServer;
use focusforge_store::{SharedStore, SqliteStore};
use focusforge_tasks::Tasks;
use focusforge_users::Users;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;

pub use config::{Config, ConfigError, Overrides, SERVICES};

/// The embedded document store's file inside the data directory.
pub const STORE_FILE: &str = "store/focusforge.db";

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
        .map_err(|_| anyhow::anyhow!("bad user id {user:?}"))?;
    let keys = key_material(config)?;
    let minter = Minter::new(&keys, config.auth.issuer.as_deref())?;
    Ok(minter.mint(&user, ttl.as_secs())?)
}

/// A running FocusForge process: the gateway listener and its background work.
pub struct Running {
    pub local_addr: std::net::SocketAddr,
    gateway: GatewayHandle,
    background: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting calls, drains those in flight and stops background work.
    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
        for task in self.background {
            task.abort();
        }
    }

    /// Resolves when the gateway stops.
    pub async fn wait(&mut self) {
        self.gateway.wait().await;
    }
}

/// Starts the configured services and the gateway on an already bound
/// listener (tests bind `127.0.0.1:0`).
pub async fn start(config: &Config, listener: TcpListener) -> anyhow::Result<Running> {
    let keys = key_material(config)?;
    let verifier = Arc::new(Verifier::new(&keys, config.auth.issuer.as_deref())?);
    let options = GatewayOptions {
        cors_origins: config.cors_origins.clone(),
        connect_timeout: Duration::from_millis(config.connect_timeout_ms),
        max_message_bytes: config.max_message_bytes,
    };
    let mut gateway = Gateway::new(verifier.clone(), options);
    let mut background = Vec::new();

    if !config.services.is_empty() {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let path = config.data_dir.join(STORE_FILE);
        let sqlite = SqliteStore::open(&path, clock.clone())
            .with_context(|| format!("cannot open the document store at {}", path.display()))?;
        let store: SharedStore = Arc::new(sqlite);
        background.push(spawn_sweeper(
            store.clone(),
            Duration::from_secs(config.sweep_interval_secs),
        ));
        let (names, routes) = service_routes(config, store, clock, verifier).await?;
        gateway = gateway.local(&names, routes);
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
    })
}

/// The configured services as in-process routes, each verifying tokens itself,
/// plus their `grpc.health.v1.Health`. Returns the routed service names.
pub async fn service_routes(
    config: &Config,
    store: SharedStore,
    clock: Arc<dyn Clock>,
    verifier: Arc<Verifier>,
) -> anyhow::Result<(Vec<&'static str>, Routes)> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let auth = AuthInterceptor::new(verifier);
    let limit = config.max_message_bytes;
    let mut routes = Routes::new(health);
    let mut names = Vec::new();
    for (short, full) in SERVICES {
        if !config.services.iter().any(|s| s == short) {
            continue;
        }
        routes = match *short {
            "tasks" => routes.add_service(InterceptedService::new(
                TaskServiceServer::new(TaskApi(Tasks::new(store.clone(), clock.clone())))
                    .max_decoding_message_size(limit),
                auth.clone(),
            )),
            "users" => routes.add_service(InterceptedService::new(
                UserServiceServer::new(UserApi(Users::new(store.clone())))
                    .max_decoding_message_size(limit),
                auth.clone(),
            )),
            other => anyhow::bail!("service {other} has no wiring"),
        };
        reporter
            .set_service_status(*full, ServingStatus::Serving)
            .await;
        names.push(*full);
    }
    Ok((names, routes))
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
