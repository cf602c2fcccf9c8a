//! The service kit. A FocusForge service is a [`Service`]: it names its
//! tonic server (the name is the server's `NamedService::NAME`), says which
//! store collections it owns, which MCP tools, planner action types and job
//! kinds it brings, and how it is built from the shared [`Deps`]. The
//! composition root holds one typed list of them ([`Kit`]); mounting, auth
//! interception, message limits and health are written once, here.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;

use async_trait::async_trait;
use focusforge_auth::ServiceVerifier;
use focusforge_cache::CacheNames;
use focusforge_core::Clock;
pub use focusforge_events::Events;
use focusforge_grpc::AuthInterceptor;
use focusforge_jobs::{Handler, Jobs};
use focusforge_mcp::Tool;
pub use focusforge_mesh::{Caller, Conn, Mesh};
use focusforge_planner::{ActionType, Executor};
pub use focusforge_store::Collection;
use focusforge_store::SharedStore;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;

/// What every service is built from.
#[derive(Clone)]
pub struct Deps {
    pub store: SharedStore,
    pub clock: Arc<dyn Clock>,
    pub caches: CacheNames,
    pub jobs: Jobs,
    /// The user event log the services publish to.
    pub events: Events,
    /// Clients of the other services, wherever they run.
    pub mesh: Mesh,
    /// This service's own settings (`[service.<name>]` in the configuration),
    /// `{}` when there are none.
    pub settings: serde_json::Value,
}

impl Deps {
    /// The service's settings as `T` (unknown keys are an error when `T`
    /// denies them); defaults when there are none.
    pub fn settings<T: serde::de::DeserializeOwned + Default>(
        &self,
        service: &str,
    ) -> anyhow::Result<T> {
        if self.settings.as_object().is_none_or(|m| m.is_empty()) {
            return Ok(T::default());
        }
        serde_json::from_value(self.settings.clone())
            .map_err(|e| anyhow::anyhow!("[service.{service}]: {e}"))
    }
}

type Mount = Box<dyn FnOnce(Routes, AuthInterceptor, usize) -> Routes + Send>;

/// A plain HTTP endpoint a service serves on the gateway's port (a feed
/// calendar apps poll, an OAuth callback): it authenticates its callers
/// itself.
pub type HttpService =
    tower::util::BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// A built service: its server and what it adds to the planner and the
/// workers.
pub struct Built {
    name: &'static str,
    mount: Mount,
    executors: Vec<(ActionType, Arc<dyn Executor>)>,
    jobs: Vec<(&'static str, Arc<dyn Handler>)>,
    http: Vec<(&'static str, HttpService)>,
}

impl Built {
    /// A service served by this generated tonic server.
    pub fn grpc<S>(server: S) -> Self
    where
        S: focusforge_proto::Server
            + NamedService
            + tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Self {
            name: S::NAME,
            mount: Box::new(move |routes: Routes, auth, limit| {
                routes.add_service(InterceptedService::new(
                    server.max_request_bytes(limit),
                    auth,
                ))
            }),
            executors: Vec::new(),
            jobs: Vec::new(),
            http: Vec::new(),
        }
    }

    /// Serves plain HTTP requests for exactly this path.
    pub fn http(mut self, path: &'static str, service: HttpService) -> Self {
        self.http.push((path, service));
        self
    }

    /// Runs planner actions of this type.
    pub fn executor(mut self, action: ActionType, executor: Arc<dyn Executor>) -> Self {
        self.executors.push((action, executor));
        self
    }

    /// Handles background jobs of this kind.
    pub fn job(mut self, kind: &'static str, handler: Arc<dyn Handler>) -> Self {
        self.jobs.push((kind, handler));
        self
    }
}

/// One service of the mesh.
#[async_trait]
pub trait Service: Send + Sync + 'static {
    /// Its full gRPC name: `<XServiceServer<_> as NamedService>::NAME`.
    fn name(&self) -> &'static str;
    /// Its name in `--services`: `mood`.
    fn short_name(&self) -> &'static str;
    /// The store collections it owns.
    fn collections(&self) -> Vec<Collection> {
        Vec::new()
    }
    /// Its MCP tools, listed whether or not this deployment runs it.
    fn tools(&self) -> Vec<Tool> {
        Vec::new()
    }
    /// The planner action types it runs.
    fn action_types(&self) -> Vec<ActionType> {
        Vec::new()
    }
    /// The job kinds it handles.
    fn job_kinds(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// Executors of its action types that call it through the mesh (or
    /// need only the shared backends), so a planner runs its actions in
    /// any process, whether or not the service runs there. An executor a
    /// built service adds with [`Built::executor`] takes precedence where
    /// the service runs.
    fn executors(&self, _deps: &Deps) -> Vec<(ActionType, Arc<dyn Executor>)> {
        Vec::new()
    }
    /// Builds it (called only when this process runs it).
    async fn build(&self, deps: &Deps) -> anyhow::Result<Built>;
}

/// The services of this build, in a fixed order.
#[derive(Clone, Default)]
pub struct Kit {
    services: Vec<Arc<dyn Service>>,
}

/// The services a process built, mounted on one set of routes.
pub struct Mounted {
    /// Their full names, in kit order.
    pub names: Vec<&'static str>,
    pub routes: Routes,
    pub reporter: tonic_health::server::HealthReporter,
    /// Executors by action type, of the services built.
    pub executors: HashMap<ActionType, Arc<dyn Executor>>,
    /// Job handlers by kind, of the services built.
    pub jobs: Vec<(&'static str, Arc<dyn Handler>)>,
    /// Plain HTTP endpoints of the services built, by path.
    pub http: Vec<(&'static str, HttpService)>,
}

impl Kit {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a service.
    ///
    /// # Panics
    /// On a second service with the same name or short name, or a second
    /// owner of an action type: the list is fixed at build time, so this is
    /// a programming error the tests catch.
    pub fn with(mut self, service: impl Service) -> Self {
        for s in &self.services {
            assert!(
                s.name() != service.name() && s.short_name() != service.short_name(),
                "service {} added twice",
                service.name()
            );
            for a in service.action_types() {
                assert!(
                    !s.action_types().contains(&a),
                    "{} actions claimed by {} and {}",
                    a.as_str(),
                    s.name(),
                    service.name()
                );
            }
        }
        self.services.push(Arc::new(service));
        self
    }

    pub fn services(&self) -> &[Arc<dyn Service>] {
        &self.services
    }

    /// The short names `--services` accepts, in kit order.
    pub fn short_names(&self) -> Vec<&'static str> {
        self.services.iter().map(|s| s.short_name()).collect()
    }

    /// The full name of a short name.
    pub fn full_name(&self, short: &str) -> Option<&'static str> {
        self.find(short).map(|s| s.name())
    }

    fn find(&self, short: &str) -> Option<&Arc<dyn Service>> {
        self.services.iter().find(|s| s.short_name() == short)
    }

    /// Checks a `--services` list: every name known, else an error naming
    /// the known ones.
    pub fn check(&self, shorts: &[String]) -> Result<(), String> {
        for s in shorts {
            if self.find(s).is_none() {
                return Err(format!(
                    "unknown service {s:?} (known: {})",
                    self.short_names().join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Every collection of every service, for the store's indexes.
    pub fn collections(&self) -> Vec<Collection> {
        self.services.iter().flat_map(|s| s.collections()).collect()
    }

    /// Every tool of every service.
    pub fn tools(&self) -> Vec<Tool> {
        self.services.iter().flat_map(|s| s.tools()).collect()
    }

    /// Which service runs each action type.
    pub fn action_owners(&self) -> BTreeMap<ActionType, &'static str> {
        self.services
            .iter()
            .flat_map(|s| s.action_types().into_iter().map(|a| (a, s.name())))
            .collect()
    }

    /// Builds the services named in `shorts` (kit order), handing each its
    /// settings, and mounts them behind one auth interceptor with the
    /// message limit, each reported SERVING on the health service.
    pub async fn mount(
        &self,
        shorts: &[String],
        deps: &Deps,
        settings: &BTreeMap<String, serde_json::Value>,
        verifier: ServiceVerifier,
        max_message_bytes: usize,
    ) -> anyhow::Result<Mounted> {
        self.check(shorts).map_err(anyhow::Error::msg)?;
        let (reporter, health) = tonic_health::server::health_reporter();
        let auth = AuthInterceptor::new(verifier);
        let mut routes = Routes::new(health);
        let mut names = Vec::new();
        let mut executors = HashMap::new();
        let mut jobs = Vec::new();
        let mut http = Vec::new();
        for service in &self.services {
            if !shorts.iter().any(|s| s == service.short_name()) {
                continue;
            }
            let deps = Deps {
                settings: settings
                    .get(service.short_name())
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({})),
                ..deps.clone()
            };
            let built = service
                .build(&deps)
                .await
                .map_err(|e| e.context(format!("starting {}", service.name())))?;
            anyhow::ensure!(
                built.name == service.name(),
                "{} built a server named {}",
                service.name(),
                built.name
            );
            routes = (built.mount)(routes, auth.clone(), max_message_bytes);
            executors.extend(built.executors);
            jobs.extend(built.jobs);
            http.extend(built.http);
            reporter
                .set_service_status(service.name(), tonic_health::ServingStatus::Serving)
                .await;
            names.push(service.name());
        }
        for service in &self.services {
            for (action, executor) in service.executors(deps) {
                executors.entry(action).or_insert(executor);
            }
        }
        Ok(Mounted {
            names,
            routes,
            reporter,
            executors,
            jobs,
            http,
        })
    }
}
