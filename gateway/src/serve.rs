//! The listener: one port for native gRPC (HTTP/2 cleartext, prior
//! knowledge) and gRPC-web over HTTP/1.1 or HTTP/2, with CORS in front.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic_web::GrpcWebLayer;
use tower::ServiceBuilder;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};

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

/// Answers `GET /metrics` (Prometheus text) and the plain HTTP routes
/// before anything gRPC sees the request.
#[derive(Clone)]
struct MetricsRoute<S> {
    metrics: Option<Metrics>,
    /// Shared: the service is cloned for every request.
    routes: Arc<[HttpRoute]>,
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
        if let Some(metrics) = &self.metrics
            && req.method() == Method::GET
            && req.uri().path() == "/metrics"
        {
            let text = (metrics.0)();
            let res = Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(Body::new(http_body_util::Full::new(bytes::Bytes::from(
                    text,
                ))))
                .unwrap_or_default();
            return Box::pin(async move { Ok(res) });
        }
        if let Some(route) = self.routes.iter().find(|r| r.path == req.uri().path()) {
            let service = route.service.clone();
            let req = req.map(Body::new);
            return Box::pin(async move {
                use tower::ServiceExt;
                let Ok(res) = service.oneshot(req).await;
                Ok(res)
            });
        }
        let fut = self.inner.call(req);
        Box::pin(fut)
    }
}

/// A running gateway listener.
pub struct GatewayHandle {
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl GatewayHandle {
    /// Stops accepting, lets calls in flight finish (up to ten seconds), and
    /// returns when the listener is closed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
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
    let local_addr = listener
        .local_addr()
        .map_err(|e| GatewayError::BadUpstream {
            service: "listener".into(),
            reason: e.to_string(),
        })?;
    let cors = cors(&gateway.options().cors_origins)?;
    let metrics = gateway.options().metrics.clone();
    // CORS covers everything on the port: gRPC-web and the plain HTTP
    // routes (browser MCP clients call /mcp).
    let stack = ServiceBuilder::new()
        .option_layer(cors)
        .service(MetricsRoute {
            metrics,
            routes: gateway.options().http_routes.clone().into(),
            inner: ServiceBuilder::new()
                .layer(GrpcWebLayer::new())
                .service(gateway),
        });
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)));
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let svc = TowerToHyperService::new(stack.clone());
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    let conn = graceful.watch(conn.into_owned());
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                _ = stopped.changed() => break,
            }
        }
        drop(listener);
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("calls still in flight after the drain timeout were cut");
        }
    });
    Ok(GatewayHandle {
        local_addr,
        stop,
        task,
    })
}
