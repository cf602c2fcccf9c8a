//! The listener: one port for native gRPC (HTTP/2 cleartext, prior
//! knowledge), gRPC-web and the Connect protocol over HTTP/1.1 or HTTP/2,
//! with CORS in front.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tonic::body::Body;
use tonic_web::GrpcWebLayer;
use tower::ServiceBuilder;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};

use crate::conn::{Activity, ConnectionOptions, IpNet, Tracked, Tracker};
use crate::connect::{Connect, Schema};
use crate::service::REQUEST_ID;
use crate::{GatewayError, GatewayService, HttpRoute, Metrics};

const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

fn cors(origins: &[String]) -> Result<Option<CorsLayer>, GatewayError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list = origins
            .iter()
            .map(|o| HeaderValue::from_str(o).map_err(|_| GatewayError::BadOrigin(o.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(list)
    };
    let expose = [
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "www-authenticate",
        "connect-content-encoding",
        "connect-accept-encoding",
    ]
    .map(HeaderName::from_static)
    .into_iter()
    .chain([REQUEST_ID]);
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::POST, Method::OPTIONS])
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(ExposeHeaders::list(expose))
            .max_age(Duration::from_secs(24 * 3600)),
    ))
}

/// The Prometheus text of the process: the services' own metrics, then the
/// gateway's.
#[derive(Clone)]
struct MetricsText {
    metrics: Metrics,
    tracker: Arc<Tracker>,
    gate: GatewayService,
    /// Served on the main port (to loopback clients) rather than on a
    /// listener of its own.
    here: bool,
}

impl MetricsText {
    fn render(&self) -> String {
        let mut text = (self.metrics.0)();
        text.push_str(&format!(
            "# HELP focusforge_gateway_connections Client connections open now.\n\
             # TYPE focusforge_gateway_connections gauge\n\
             focusforge_gateway_connections {}\n\
             # HELP focusforge_gateway_connections_refused_total Connections closed on accept at a connection limit.\n\
             # TYPE focusforge_gateway_connections_refused_total counter\n\
             focusforge_gateway_connections_refused_total {}\n\
             # HELP focusforge_gateway_connections_evicted_total Connections without a request closed to make room for a new one.\n\
             # TYPE focusforge_gateway_connections_evicted_total counter\n\
             focusforge_gateway_connections_evicted_total {}\n",
            self.tracker.open(),
            self.tracker.refused(),
            self.tracker.evicted()
        ));
        self.gate.render_rpc_metrics(&mut text);
        let in_flight = self.gate.in_flight();
        text.push_str(&format!(
            "# HELP focusforge_gateway_in_flight Calls in flight now.\n\
             # TYPE focusforge_gateway_in_flight gauge\n\
             focusforge_gateway_in_flight {}\n\
             # HELP focusforge_gateway_shed_total Calls refused at once because the in-flight limit was reached.\n\
             # TYPE focusforge_gateway_shed_total counter\n\
             focusforge_gateway_shed_total {}\n",
            in_flight.current(),
            in_flight.shed(),
        ));
        if let Some(limiter) = self.gate.limiter() {
            text.push_str(&format!(
                "# HELP focusforge_gateway_rate_limited_total Calls refused by a caller's rate limit.\n\
                 # TYPE focusforge_gateway_rate_limited_total counter\n\
                 focusforge_gateway_rate_limited_total {}\n\
                 # HELP focusforge_gateway_rate_limit_fallbacks_total Rate checks made per process because the shared store was away.\n\
                 # TYPE focusforge_gateway_rate_limit_fallbacks_total counter\n\
                 focusforge_gateway_rate_limit_fallbacks_total {}\n",
                limiter.rejected(),
                limiter.fallbacks(),
            ));
        }
        text
    }

    fn answer(&self) -> Response<Body> {
        Response::builder()
            .header("content-type", "text/plain; version=0.0.4")
            .body(Body::new(http_body_util::Full::new(bytes::Bytes::from(
                self.render(),
            ))))
            .unwrap_or_default()
    }
}

fn not_found() -> Response<Body> {
    Response::builder()
        .status(http::StatusCode::NOT_FOUND)
        .body(Body::empty())
        .unwrap_or_default()
}

/// Serves `GET /metrics` alone on its own listener, HTTP/1.1, a few
/// connections at a time, until `stopped`.
async fn metrics_loop(
    listener: TcpListener,
    text: MetricsText,
    header_timeout: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    /// Scrapers are few; a flood waits at accept instead of costing memory.
    const MAX_CONNECTIONS: usize = 32;
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped.changed() => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let text = text.clone();
        let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let res = if req.method() == Method::GET && req.uri().path() == "/metrics" {
                text.answer()
            } else {
                not_found()
            };
            async move { Ok::<_, Infallible>(res) }
        });
        conns.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), svc);
            // A scrape is one request; a stuck one is cut.
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
            drop(permit);
        });
    }
    conns.abort_all();
}

/// Answers `GET /metrics` (Prometheus text) and the plain HTTP routes
/// before anything gRPC sees the request.
#[derive(Clone)]
struct MetricsRoute<S> {
    metrics: Option<MetricsText>,
    /// Shared: the service is cloned for every request.
    routes: Arc<[HttpRoute]>,
    web: Option<crate::web::App>,
    /// Admits the plain HTTP routes' requests and reports the limits.
    gate: GatewayService,
    inner: S,
}

impl<S, B> tower::Service<Request<B>> for MetricsRoute<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, S::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.method() == Method::GET && req.uri().path() == "/metrics" {
            let res = match &self.metrics {
                // With a listener of their own, metrics are not on this
                // port; without one, only a client on this host reads them.
                Some(text) if text.here && crate::web::from_loopback(&req) => text.answer(),
                _ => not_found(),
            };
            return Box::pin(async move { Ok(res) });
        }
        if let Some(route) = self.routes.iter().find(|r| r.path == req.uri().path()) {
            let service = route.service.clone();
            let gate = self.gate.clone();
            let call = crate::service::HttpCall::of(&req);
            let req = req.map(Body::new);
            return Box::pin(async move {
                use tower::ServiceExt;
                let permit = match gate.admit_http(call).await {
                    Ok(permit) => permit,
                    Err(refusal) => return Ok(refusal),
                };
                let Ok(res) = service.oneshot(req).await;
                // The place in flight is held until the answer has been sent.
                Ok(res.map(|body| Body::new(crate::rate::Holding::new(body, permit))))
            });
        }
        if let Some(web) = self.web.clone().filter(|web| web.answers(&req)) {
            let req = req.map(Body::new);
            return Box::pin(async move { Ok(web.call(req).await) });
        }
        let fut = self.inner.call(req);
        Box::pin(fut)
    }
}

/// A running gateway listener.
pub struct GatewayHandle {
    pub local_addr: SocketAddr,
    /// The metrics listener's address, when metrics have one.
    pub metrics_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    tracker: Arc<Tracker>,
}

impl GatewayHandle {
    /// Stops accepting, lets calls in flight finish (up to ten seconds), and
    /// returns when the listener is closed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.tracker.open()
    }

    /// Connections closed on accept because a limit was reached.
    pub fn refused_connections(&self) -> u64 {
        self.tracker.refused()
    }

    /// Resolves when the listener stops on its own or is shut down.
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}

/// Serves the gateway on `listener` until the handle shuts it down.
pub fn serve(
    listener: TcpListener,
    gateway: GatewayService,
) -> Result<GatewayHandle, GatewayError> {
    serve_with_metrics(listener, None, gateway)
}

/// [`serve`], with `GET /metrics` on a listener of its own when one is
/// given (and then not on the main port).
pub fn serve_with_metrics(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    gateway: GatewayService,
) -> Result<GatewayHandle, GatewayError> {
    let local_addr = listener
        .local_addr()
        .map_err(|e| GatewayError::BadUpstream {
            service: "listener".into(),
            reason: e.to_string(),
        })?;
    let cors = cors(&gateway.options().cors_origins)?;
    let tracker = Tracker::new(gateway.options().connections.clone());
    let metrics = gateway
        .options()
        .metrics
        .clone()
        .map(|metrics| MetricsText {
            metrics,
            tracker: tracker.clone(),
            gate: gateway.clone(),
            here: metrics_listener.is_none(),
        });
    let (stop, stopped) = watch::channel(false);
    let metrics_addr = match (metrics_listener, &metrics) {
        (Some(l), Some(text)) => {
            let addr = l.local_addr().ok();
            tokio::spawn(metrics_loop(
                l,
                text.clone(),
                gateway.options().connections.header_read_timeout,
                stopped.clone(),
            ));
            addr
        }
        _ => None,
    };
    let schema = Arc::new(Schema::new()?);
    // CORS covers everything on the port: gRPC-web and the plain HTTP
    // routes (browser MCP clients call /mcp).
    let stack = ServiceBuilder::new()
        .option_layer(cors)
        .service(MetricsRoute {
            metrics,
            routes: gateway.options().http_routes.clone().into(),
            web: gateway
                .options()
                .web_dir
                .as_deref()
                .map(crate::web::App::new),
            gate: gateway.clone(),
            inner: Connect {
                limit: gateway.options().max_message_bytes,
                schema,
                inner: ServiceBuilder::new()
                    .layer(GrpcWebLayer::new())
                    .service(gateway),
            },
        });
    let task = tokio::spawn(accept_loop(listener, stack, tracker.clone(), stopped));
    Ok(GatewayHandle {
        local_addr,
        metrics_addr,
        stop,
        task,
        tracker,
    })
}

async fn accept_loop<S>(
    listener: TcpListener,
    stack: S,
    tracker: Arc<Tracker>,
    mut stopped: watch::Receiver<bool>,
) where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let opts = tracker.options().clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(opts.http2_keepalive_interval))
        .keep_alive_timeout(opts.http2_keepalive_timeout);
    let trusted: Arc<[IpNet]> = opts.trusted_proxies.clone().into();
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors, say: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let activity = Activity::new();
                let slot = match tracker.admit(peer.ip(), activity.clone()) {
                    Ok(slot) => slot,
                    Err(why) => {
                        tracing::debug!(%peer, ?why, open = tracker.open(), "connection refused");
                        drop(stream);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let svc = TowerToHyperService::new(Tracked {
                    inner: stack.clone(),
                    activity: activity.clone(),
                    peer: peer.ip(),
                    trusted: trusted.clone(),
                    body_timeout: opts.body_read_timeout,
                });
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .into_owned();
                let stopped = stopped.clone();
                let opts = opts.clone();
                conns.spawn(async move {
                    tokio::select! {
                        () = watch_connection(conn, activity, stopped, &opts, peer) => {}
                        // Its place went to a newer connection.
                        () = slot.evicted() => {
                            tracing::debug!(%peer, "connection closed to make room");
                        }
                    }
                    drop(slot);
                });
            }
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::warn!("calls still in flight after the drain timeout were cut");
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

/// How long a connection asked to close may take before it is dropped,
/// when nothing is in flight on it.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Drives one connection to its end, closing it when the server stops, when
/// its first request does not come within the header timeout, or when it
/// has been idle for the idle timeout.
async fn watch_connection<C>(
    conn: C,
    activity: Arc<Activity>,
    mut stopped: watch::Receiver<bool>,
    opts: &ConnectionOptions,
    peer: SocketAddr,
) where
    C: GracefulConnection,
{
    let mut conn = std::pin::pin!(conn);
    let started = Instant::now();
    let mut closing: Option<Instant> = None;
    loop {
        let next_check = match closing {
            Some(since) => since + CLOSE_GRACE,
            None if activity.requests() == 0 => started + opts.header_read_timeout,
            None => match activity.idle_since() {
                Some(since) => since + opts.idle_timeout,
                // Busy: look again in a while.
                None => Instant::now() + opts.idle_timeout,
            },
        };
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stopped.changed(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                // Calls in flight finish; the drain timeout bounds them.
                closing = Some(Instant::now() + DRAIN_TIMEOUT);
            }
            _ = tokio::time::sleep_until(next_check) => {
                let now = Instant::now();
                match closing {
                    Some(_) if activity.idle_since().is_some() => {
                        tracing::debug!(%peer, "connection dropped: it did not close when asked");
                        return;
                    }
                    Some(_) => closing = Some(now),
                    None => {
                        let idle = match activity.idle_since() {
                            Some(_) if activity.requests() == 0 => true,
                            Some(since) => now >= since + opts.idle_timeout,
                            None => false,
                        };
                        if idle {
                            tracing::debug!(%peer, requests = activity.requests(), "closing an idle connection");
                            conn.as_mut().graceful_shutdown();
                            closing = Some(now);
                        }
                    }
                }
            }
        }
    }
}

/// A hyper connection that can be asked to finish.
trait GracefulConnection:
    std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S, B> GracefulConnection for auto::UpgradeableConnection<'static, I, S, TokioExecutor>
where
    S: hyper::service::Service<Request<hyper::body::Incoming>, Response = Response<B>>,
    S::Future: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    TokioExecutor: auto::HttpServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        auto::UpgradeableConnection::graceful_shutdown(self);
    }
}
