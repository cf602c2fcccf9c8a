//! The FocusForge gateway: the one front door for browsers (gRPC-web, binary
//! and text, over HTTP/1.1 or HTTP/2), Connect clients (JSON or binary, unary
//! and server streaming, `curl` included) and gRPC clients (HTTP/2
//! cleartext).
//!
//! Each call is routed by its fully qualified service name, taken from the
//! request path, to an upstream: in-process [`tonic::service::Routes`] or a
//! remote server over HTTP/2. Bodies stream through without being decoded,
//! so a new service needs a route in the configuration and no gateway code.
//! Around the routing the gateway checks bearer tokens, adds and returns an
//! `x-request-id`, enforces the deadline of `grpc-timeout` (and passes the
//! remaining time on), limits message sizes, answers CORS preflights, and
//! serves health and reflection for everything it routes.

mod conn;
mod connect;
mod health;
mod limit;
mod metrics;
mod rate;
mod reflection;
mod serve;
mod service;
mod upstream;
mod web;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use focusforge_auth::ServiceVerifier;
use http::Uri;
use tonic::service::Routes;

pub use conn::{ClientAddr, ConnectionOptions, IpNet};
pub use focusforge_core::{format_grpc_timeout, parse_grpc_timeout};
pub use rate::{
    Caller, InFlight, Limited, MethodClass, Rate, RateLimitOptions, RateLimiter, SharedBudget,
};
pub use serve::{GatewayHandle, serve, serve_with_metrics};
pub use service::GatewayService;
pub use web::{DEV_TOKEN_PATH, dev_token_route};

use upstream::Upstream;

/// Renders the Prometheus text exposition served at `GET /metrics`.
#[derive(Clone)]
pub struct Metrics(pub Arc<dyn Fn() -> String + Send + Sync>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// A plain HTTP endpoint served on the gateway's port next to gRPC (the MCP
/// endpoint, say): requests whose path is `path` go to `service`.
#[derive(Clone)]
pub struct HttpRoute {
    pub path: String,
    pub service: tower::util::BoxCloneSyncService<
        http::Request<tonic::body::Body>,
        http::Response<tonic::body::Body>,
        std::convert::Infallible,
    >,
}

impl std::fmt::Debug for HttpRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpRoute({})", self.path)
    }
}

/// Tunables of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Origins browsers may call from; `*` allows any. Empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// How long to wait for a TCP connection to a remote upstream.
    pub connect_timeout: Duration,
    /// Largest gRPC message a client may send, in bytes.
    pub max_message_bytes: usize,
    /// Served at `GET /metrics` when set.
    pub metrics: Option<Metrics>,
    /// Plain HTTP endpoints, matched by exact path before gRPC.
    pub http_routes: Vec<HttpRoute>,
    /// Connection limits and timeouts.
    pub connections: ConnectionOptions,
    /// The built web app, served at `/` for `GET` and `HEAD`.
    pub web_dir: Option<PathBuf>,
    /// Per-caller budgets; `None` takes every call (a process inside a
    /// mesh, whose callers were limited at the front gateway).
    pub rate_limits: Option<Arc<RateLimiter>>,
    /// Calls in flight at once in the process (health excepted); past it a
    /// call is refused at once with `UNAVAILABLE`.
    pub max_in_flight: usize,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            cors_origins: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            max_message_bytes: 4 * 1024 * 1024,
            metrics: None,
            http_routes: Vec::new(),
            connections: ConnectionOptions::default(),
            web_dir: None,
            rate_limits: None,
            max_in_flight: 4096,
        }
    }
}

/// Errors in the gateway's configuration.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("upstream for {service}: {reason}")]
    BadUpstream { service: String, reason: String },
    #[error("bad cors origin {0:?}")]
    BadOrigin(String),
    #[error("reflection: {0}")]
    Reflection(String),
}

/// Collects the routes, then builds the [`GatewayService`].
pub struct Gateway {
    verifier: ServiceVerifier,
    options: GatewayOptions,
    routes: BTreeMap<String, Arc<Upstream>>,
    /// Names only health answers for (backends of a process, ...).
    components: BTreeMap<String, Arc<Upstream>>,
}

impl Gateway {
    /// `verifier` accepts user tokens and, in a mesh, the mesh tokens other
    /// processes' components call with.
    pub fn new(verifier: ServiceVerifier, options: GatewayOptions) -> Self {
        Self {
            verifier,
            options,
            routes: BTreeMap::new(),
            components: BTreeMap::new(),
        }
    }

    /// Routes the named services to in-process routes, which must also serve
    /// `grpc.health.v1.Health` for them and for the `components` (health
    /// names that are not services, such as the process's backends).
    pub fn local(mut self, services: &[&str], components: &[String], routes: Routes) -> Self {
        let upstream = Arc::new(Upstream::Local(routes));
        for name in services {
            self.routes.insert((*name).to_owned(), upstream.clone());
        }
        for name in components {
            self.components.insert(name.clone(), upstream.clone());
        }
        self
    }

    /// Routes a service to a remote server, e.g. `http://tasks:50051`.
    pub fn remote(mut self, service: &str, uri: &str) -> Result<Self, GatewayError> {
        let bad = |reason: String| GatewayError::BadUpstream {
            service: service.to_owned(),
            reason,
        };
        let uri: Uri = uri.parse().map_err(|e| bad(format!("{e}")))?;
        let upstream =
            upstream::Remote::new(service, &uri, self.options.connect_timeout).map_err(bad)?;
        self.routes
            .insert(service.to_owned(), Arc::new(Upstream::Remote(upstream)));
        Ok(self)
    }

    /// The fully qualified names of the routed services.
    pub fn services(&self) -> Vec<String> {
        self.routes.keys().cloned().collect()
    }

    pub fn build(self) -> Result<GatewayService, GatewayError> {
        GatewayService::new(self.verifier, self.options, self.routes, self.components)
    }
}
