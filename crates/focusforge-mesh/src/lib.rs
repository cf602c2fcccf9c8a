//! How services call services. A [`Mesh`] hands out a [`Conn`] per service:
//! the process's own routes when the service runs here (the call goes
//! through the service's tonic server, its interceptor included, with no
//! TCP and no HTTP/2 framing), else a channel to its upstream. Generated
//! tonic clients run over a `Conn` unchanged:
//! `TaskServiceClient::new(mesh.conn(TASKS)?)`.
//!
//! A [`Caller`] says who the call is for: the user's own bearer token,
//! forwarded, or a short-lived mesh token minted for a component acting for
//! the user (planner actions, jobs, timers). The called service verifies
//! either exactly as it verifies an outside call.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use focusforge_auth::{MeshKey, Principal};
use focusforge_core::UserId;
use tonic::body::Body;
use tonic::service::Routes;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

pub use tonic::transport::Channel;

/// Errors a connection can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type Boxed = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, BoxError>;

/// A connection to one service, in this process or remote. Cheap to clone.
#[derive(Clone)]
pub struct Conn(Boxed);

impl Conn {
    /// Over a tonic channel (a remote upstream, or a gateway). Each call
    /// carries the calling span's `traceparent`, so the callee's spans join
    /// the caller's trace.
    pub fn remote(channel: Channel) -> Self {
        Self(BoxCloneSyncService::new(
            channel
                .map_request(|mut req: http::Request<Body>| {
                    focusforge_telemetry::inject_current(req.headers_mut());
                    req
                })
                .map_err(|e| Box::new(e) as BoxError),
        ))
    }

    /// Over in-process routes.
    pub fn local(routes: Routes) -> Self {
        Self(BoxCloneSyncService::new(
            ServiceExt::<http::Request<Body>>::map_err(routes, |e: Infallible| -> BoxError {
                match e {}
            }),
        ))
    }

    fn late(routes: Arc<OnceLock<Routes>>) -> Self {
        Self(BoxCloneSyncService::new(Late(routes)))
    }
}

impl Service<http::Request<Body>> for Conn {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = <Boxed as Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        self.0.call(req)
    }
}

/// The process's routes, set once every service is built (services are
/// handed connections to each other while they are being built).
#[derive(Clone)]
struct Late(Arc<OnceLock<Routes>>);

impl Service<http::Request<Body>> for Late {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let routes = self.0.get().cloned();
        // The caller's deadline, enforced here as a server behind a network
        // hop would: in-process routes have no transport to do it.
        let timeout = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(focusforge_core::parse_grpc_timeout);
        Box::pin(async move {
            let Some(routes) = routes else {
                return Ok(tonic::Status::unavailable("the service is still starting").into_http());
            };
            let call = routes.oneshot(req);
            let response = match timeout {
                Some(t) => match tokio::time::timeout(t, call).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Ok(
                            tonic::Status::deadline_exceeded("deadline exceeded").into_http()
                        );
                    }
                },
                None => call.await,
            };
            match response {
                Ok(response) => Ok(response),
                Err(e) => match e {},
            }
        })
    }
}

/// Who a call between services is for.
#[derive(Clone)]
pub struct Caller {
    pub user: UserId,
    /// The component acting for the user, when the call did not come from
    /// the user's own token.
    pub acting: Option<String>,
    credential: Credential,
}

#[derive(Clone)]
enum Credential {
    /// A verified bearer token (the user's, or a mesh token), passed on.
    Token(String),
    /// A mesh token is minted for each call.
    Mint(Box<MeshKey>),
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("user", &self.user)
            .field("acting", &self.acting)
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// The holder of a verified bearer token.
    pub fn with_token(principal: Principal, token: String) -> Self {
        Self {
            user: principal.user,
            acting: principal.acting,
            credential: Credential::Token(token),
        }
    }

    /// `component` acting for `user`, with mesh tokens from `key`.
    pub fn acting(user: UserId, component: &str, key: MeshKey) -> Self {
        Self {
            user,
            acting: Some(component.to_owned()),
            credential: Credential::Mint(Box::new(key)),
        }
    }

    /// A request to another service on this caller's behalf.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        let token = match &self.credential {
            Credential::Token(t) => Some(t.clone()),
            Credential::Mint(key) => {
                let component = self.acting.as_deref().unwrap_or("focusforge");
                match key.mint(&self.user, component) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        // Sent without a token, the call fails UNAUTHENTICATED.
                        tracing::error!(error = %e, "cannot mint a mesh token");
                        None
                    }
                }
            }
        };
        if let Some(value) = token.and_then(|t| format!("Bearer {t}").parse().ok()) {
            req.metadata_mut().insert("authorization", value);
        }
        req
    }
}

/// Where each service is: this process, a remote upstream, or a fallback
/// (the gateway of another FocusForge). Cheap to clone.
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
}

struct Inner {
    local: BTreeSet<&'static str>,
    routes: Arc<OnceLock<Routes>>,
    remote: BTreeMap<String, Conn>,
    fallback: Option<Conn>,
    key: Option<MeshKey>,
}

/// Builds a [`Mesh`].
#[derive(Default)]
pub struct MeshBuilder {
    local: BTreeSet<&'static str>,
    remote: BTreeMap<String, Conn>,
    fallback: Option<Conn>,
    key: Option<MeshKey>,
}

impl MeshBuilder {
    /// Services that run in this process; their routes come later through
    /// [`Mesh::serve_locally`].
    pub fn local(mut self, names: impl IntoIterator<Item = &'static str>) -> Self {
        self.local.extend(names);
        self
    }

    /// A service at a remote upstream.
    pub fn remote(mut self, name: &str, channel: Channel) -> Self {
        self.remote.insert(name.to_owned(), Conn::remote(channel));
        self
    }

    /// Where every other service is (a FocusForge gateway).
    pub fn fallback(mut self, channel: Channel) -> Self {
        self.fallback = Some(Conn::remote(channel));
        self
    }

    /// The key components mint mesh tokens with.
    pub fn key(mut self, key: MeshKey) -> Self {
        self.key = Some(key);
        self
    }

    pub fn build(self) -> Mesh {
        Mesh {
            inner: Arc::new(Inner {
                local: self.local,
                routes: Arc::new(OnceLock::new()),
                remote: self.remote,
                fallback: self.fallback,
                key: self.key,
            }),
        }
    }
}

impl Mesh {
    pub fn builder() -> MeshBuilder {
        MeshBuilder::default()
    }

    /// Sets the process's routes, once; later calls are ignored.
    pub fn serve_locally(&self, routes: Routes) {
        let _ = self.inner.routes.set(routes);
    }

    /// A connection to `service`, or `UNIMPLEMENTED` saying it is not
    /// deployed here.
    pub fn conn(&self, service: &str) -> Result<Conn, tonic::Status> {
        if self.inner.local.contains(service) {
            return Ok(Conn::late(self.inner.routes.clone()));
        }
        if let Some(conn) = self.inner.remote.get(service) {
            return Ok(conn.clone());
        }
        self.inner
            .fallback
            .clone()
            .ok_or_else(|| tonic::Status::unimplemented(format!("{service} is not deployed here")))
    }

    /// Whether `service` runs in this process.
    pub fn is_local(&self, service: &str) -> bool {
        self.inner.local.contains(service)
    }

    /// Whether calls to `service` have somewhere to go.
    pub fn reaches(&self, service: &str) -> bool {
        self.is_local(service)
            || self.inner.remote.contains_key(service)
            || self.inner.fallback.is_some()
    }

    /// `component` acting for `user`, with mesh tokens (`None` when this mesh
    /// has no key).
    pub fn acting(&self, user: UserId, component: &str) -> Option<Caller> {
        let key = self.inner.key.clone()?;
        Some(Caller::acting(user, component, key))
    }

    /// A connection to `service` and `component`'s caller acting for
    /// `user` on it: how a component (a planner action, a job) calls a
    /// service as the user.
    pub fn for_user(
        &self,
        service: &str,
        user: &UserId,
        component: &str,
    ) -> Result<(Conn, Caller), tonic::Status> {
        let conn = self.conn(service)?;
        let caller = self
            .acting(user.clone(), component)
            .ok_or_else(|| tonic::Status::internal("the mesh has no key to act for users"))?;
        Ok((conn, caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service that answers after ten seconds.
    #[derive(Clone)]
    struct Slow;

    impl tonic::server::NamedService for Slow {
        const NAME: &'static str = "test.v1.Slow";
    }

    impl Service<http::Request<Body>> for Slow {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
        >;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            Box::pin(async {
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                Ok(tonic::Status::ok("late").into_http())
            })
        }
    }

    fn grpc_status(res: &http::Response<Body>) -> Option<&str> {
        res.headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test(start_paused = true)]
    async fn an_in_process_call_ends_at_the_callers_deadline() {
        let mesh = Mesh::builder().local(["test.v1.Slow"]).build();
        let mut conn = mesh.conn("test.v1.Slow").expect("local");
        let req = |timeout: Option<&str>| {
            let mut b = http::Request::post("http://local/test.v1.Slow/Call");
            if let Some(t) = timeout {
                b = b.header("grpc-timeout", t);
            }
            b.body(Body::empty()).expect("request")
        };
        // Before the routes are set: UNAVAILABLE, not a hang.
        let early = conn.call(req(None)).await.expect("response");
        assert_eq!(grpc_status(&early), Some("14"));

        mesh.serve_locally(Routes::new(Slow));
        let cut = conn.call(req(Some("50m"))).await.expect("response");
        assert_eq!(grpc_status(&cut), Some("4"), "DEADLINE_EXCEEDED");
        let waited = conn.call(req(None)).await.expect("response");
        assert_eq!(grpc_status(&waited), Some("0"), "no deadline: the answer");
        assert!(mesh.conn("test.v1.Other").is_err(), "not deployed here");
    }
}
