use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use focusforge_auth::ServiceVerifier;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response};
use tokio::time::Instant;
use tonic::body::Body;
use tonic::service::Routes;
use tonic::{Code, Status};
use tonic_health::pb::health_server::HealthServer;
use tower::ServiceExt;
use tracing::Instrument;

use crate::conn::ClientAddr;
use crate::health::GatewayHealth;
use crate::limit::{LimitBody, Tripped};
use crate::metrics::RpcMetrics;
use crate::rate::{Caller, InFlight, Limited, Permit, RateLimiter};
use crate::reflection::{self, HEALTH};
use crate::upstream::{CallError, Upstream};
use crate::{GatewayError, GatewayOptions};
use focusforge_core::parse_grpc_timeout;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Headers that describe one HTTP hop and must not be forwarded.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// The gateway's routing core as a tower service over gRPC requests. The
/// [`serve`](crate::serve) function puts gRPC-web translation and CORS in
/// front of it.
#[derive(Clone)]
pub struct GatewayService {
    inner: Arc<Inner>,
}

struct Inner {
    verifier: ServiceVerifier,
    options: GatewayOptions,
    routes: Arc<BTreeMap<String, Arc<Upstream>>>,
    /// Health and reflection, served by the gateway itself.
    own: Routes,
    limiter: Option<Arc<RateLimiter>>,
    in_flight: Arc<InFlight>,
    rpc: Arc<RpcMetrics>,
}

impl GatewayService {
    pub(crate) fn new(
        verifier: ServiceVerifier,
        options: GatewayOptions,
        routes: BTreeMap<String, Arc<Upstream>>,
        components: BTreeMap<String, Arc<Upstream>>,
    ) -> Result<Self, GatewayError> {
        let names: Vec<String> = routes.keys().cloned().collect();
        let mut checked = components;
        checked.extend(routes.iter().map(|(k, v)| (k.clone(), v.clone())));
        let routes = Arc::new(routes);
        let health = HealthServer::new(GatewayHealth::new(Arc::new(checked)));
        let own = reflection::add(Routes::new(health), &names)?;
        let limiter = options.rate_limits.clone();
        let in_flight = InFlight::new(options.max_in_flight);
        Ok(Self {
            inner: Arc::new(Inner {
                verifier,
                options,
                routes,
                own,
                limiter,
                in_flight,
                rpc: Arc::new(RpcMetrics::new()),
            }),
        })
    }

    pub fn options(&self) -> &GatewayOptions {
        &self.inner.options
    }

    pub(crate) fn limiter(&self) -> Option<&RateLimiter> {
        self.inner.limiter.as_deref()
    }

    pub(crate) fn in_flight(&self) -> &InFlight {
        &self.inner.in_flight
    }

    pub(crate) fn render_rpc_metrics(&self, out: &mut String) {
        self.inner.rpc.render(out);
    }

    /// Admits a plain HTTP request (MCP, the calendar feed, ...): a place in
    /// flight, and the budget of its verified user, or of its client address
    /// when it carries no token that verifies. The error is the answer.
    pub(crate) async fn admit_http(&self, call: HttpCall) -> Result<Permit, Response<Body>> {
        let Some(permit) = self.inner.in_flight.try_enter() else {
            return Err(http_refusal(
                http::StatusCode::SERVICE_UNAVAILABLE,
                Duration::from_millis(SHED_RETRY_MS),
                "the server is at its limit of calls in flight",
            ));
        };
        let Some(limiter) = &self.inner.limiter else {
            return Ok(permit);
        };
        let principal = call
            .authorization
            .as_deref()
            .and_then(|h| self.inner.verifier.verify_header(Some(h)).ok());
        let checked = match &principal {
            Some(p) if p.acting.is_some() => Ok(()),
            Some(p) => {
                limiter
                    .check(Caller::User(p.user.as_str()), &call.path)
                    .await
            }
            None => {
                limiter
                    .check(Caller::Address(call.client), &call.path)
                    .await
            }
        };
        match checked {
            Ok(()) => Ok(permit),
            Err(limited) => Err(http_refusal(
                http::StatusCode::TOO_MANY_REQUESTS,
                limited.retry_after,
                &format!("rate limit of the {} class reached", limited.class),
            )),
        }
    }
}

/// What admitting a plain HTTP request looks at, taken from it up front.
pub(crate) struct HttpCall {
    pub authorization: Option<String>,
    pub path: String,
    pub client: std::net::IpAddr,
}

impl HttpCall {
    pub(crate) fn of<B>(req: &Request<B>) -> Self {
        Self {
            authorization: req
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            path: req.uri().path().to_owned(),
            client: client_of(req),
        }
    }
}

/// How long a shed call is told to wait before retrying.
const SHED_RETRY_MS: u64 = 100;

fn client_of<B>(req: &Request<B>) -> std::net::IpAddr {
    req.extensions()
        .get::<ClientAddr>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0)
}

/// Whole seconds for `retry-after`, rounded up, at least one.
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

fn http_refusal(status: http::StatusCode, wait: Duration, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "error": message,
        "retry_after_ms": wait.as_millis() as u64,
    })
    .to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("retry-after", retry_after_secs(wait).max(1))
        .body(Body::new(http_body_util::Full::new(bytes::Bytes::from(
            body,
        ))))
        .unwrap_or_default()
}

/// A gRPC refusal with `google.rpc.RetryInfo` saying when to come back.
fn retry_status(code: Code, message: String, wait: Duration) -> Response<Body> {
    use tonic_types::{ErrorDetails, StatusExt};
    let status =
        Status::with_error_details(code, message, ErrorDetails::with_retry_info(Some(wait)));
    let mut res = status.into_http();
    if let Ok(v) = HeaderValue::from_str(&retry_after_secs(wait).max(1).to_string()) {
        res.headers_mut().insert("retry-after", v);
    }
    res
}

fn limited_reply(limited: &Limited) -> Response<Body> {
    retry_status(
        Code::ResourceExhausted,
        format!(
            "rate limit of the {} class reached: retry in {} ms",
            limited.class,
            limited.retry_after.as_millis().max(1)
        ),
        limited.retry_after,
    )
}

/// `/pkg.Service/Method` -> `pkg.Service`
fn service_name(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/')).then_some(service)
}

fn is_own(service: &str) -> bool {
    service == HEALTH || service.starts_with("grpc.reflection.")
}

fn reply(status: Status) -> Response<Body> {
    status.into_http()
}

/// A client's request id if it is short and printable, else a new one.
fn request_id(req: &Request<Body>) -> HeaderValue {
    req.headers()
        .get(&REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.to_str().is_ok())
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or(HeaderValue::from_static("invalid"))
        })
}

impl Inner {
    async fn handle(&self, req: Request<Body>) -> (Response<Body>, Option<Permit>) {
        let path = req.uri().path().to_owned();
        let Some(service) = service_name(req.uri().path()).map(str::to_owned) else {
            return (reply(Status::unimplemented("not a grpc method path")), None);
        };
        if is_own(&service) {
            let res = self
                .own
                .clone()
                .oneshot(req)
                .await
                .unwrap_or_else(|never| match never {});
            return (res, None);
        }
        let Some(permit) = self.in_flight.try_enter() else {
            tracing::debug!(max = self.in_flight.max(), "call shed");
            let res = retry_status(
                Code::Unavailable,
                format!(
                    "the server is at its limit of {} calls in flight: retry shortly",
                    self.in_flight.max()
                ),
                Duration::from_millis(SHED_RETRY_MS),
            );
            return (res, None);
        };
        (self.route(req, path, service).await, Some(permit))
    }

    async fn route(&self, mut req: Request<Body>, path: String, service: String) -> Response<Body> {
        let header = req.headers().get(AUTHORIZATION).map(|v| v.to_str());
        let verified = match header {
            Some(Err(_)) => Err("malformed authorization header".to_owned()),
            Some(Ok(v)) => self
                .verifier
                .verify_header(Some(v))
                .map_err(|e| e.to_string()),
            None => self.verifier.verify_header(None).map_err(|e| e.to_string()),
        };
        let principal = match verified {
            Ok(principal) => principal,
            Err(reason) => {
                // Failed attempts spend the address's budget, so guessing
                // tokens is as slow as any anonymous call.
                if let Some(limiter) = &self.limiter
                    && let Err(limited) =
                        limiter.check(Caller::Address(client_of(&req)), &path).await
                {
                    return limited_reply(&limited);
                }
                tracing::info!(%reason, "unauthenticated");
                return reply(Status::unauthenticated(reason));
            }
        };
        // Components calling for a user inside the mesh were limited where
        // the user's call came in.
        if let Some(limiter) = &self.limiter
            && principal.acting.is_none()
            && let Err(limited) = limiter
                .check(Caller::User(principal.user.as_str()), &path)
                .await
        {
            tracing::info!(class = %limited.class, "rate limited");
            return limited_reply(&limited);
        }

        let Some(upstream) = self.routes.get(&service).cloned() else {
            return reply(Status::unimplemented(format!(
                "service {service} is not available here"
            )));
        };

        let deadline = match req.headers().get(GRPC_TIMEOUT).map(|v| v.to_str()) {
            None => None,
            Some(Ok(v)) => match parse_grpc_timeout(v) {
                Some(d) => Some(Instant::now() + d),
                None => return reply(Status::invalid_argument("malformed grpc-timeout header")),
            },
            Some(Err(_)) => {
                return reply(Status::invalid_argument("malformed grpc-timeout header"));
            }
        };
        for name in HOP_BY_HOP {
            req.headers_mut().remove(name);
        }

        // The upstream's spans join this call's trace.
        focusforge_telemetry::inject_current(req.headers_mut());
        let tripped = Tripped::default();
        let limit = self.options.max_message_bytes;
        let req = req.map(|b| Body::new(LimitBody::new(b, limit, tripped.clone())));
        let res = upstream.call(req, deadline).await;
        if let Some(reason) = tripped.get() {
            return reply(Status::invalid_argument(reason.clone()));
        }
        match res {
            Ok(res) => {
                let res = name_unimplemented(res, &path);
                match deadline {
                    // A stream's answer outlives its headers: the deadline
                    // holds until its last message.
                    Some(at) => res.map(|b| Body::new(DeadlineBody::new(b, at))),
                    None => res,
                }
            }
            Err(CallError::Unreachable(status)) => reply(status),
            Err(CallError::DeadlineExceeded) => {
                reply(Status::deadline_exceeded("deadline exceeded"))
            }
        }
    }
}

impl tower::Service<Request<Body>> for GatewayService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let path = req.uri().path().to_owned();
        let id = request_id(&req);
        req.headers_mut().insert(REQUEST_ID, id.clone());
        let span = tracing::info_span!(
            "rpc",
            request_id = %id.to_str().unwrap_or_default(),
            method = %req.uri().path(),
            trace_id = tracing::field::Empty,
            otel.name = %req.uri().path(),
            otel.kind = "server",
        );
        focusforge_telemetry::adopt_parent(&span, req.headers());
        Box::pin(
            async move {
                let started = Instant::now();
                let (mut res, permit) = inner.handle(req).await;
                res.headers_mut().insert(REQUEST_ID, id);
                // A trailers-only answer has its status in the headers; any
                // other is logged when its trailers pass.
                let status = grpc_status(res.headers());
                let log = CallLog {
                    span: tracing::Span::current(),
                    started,
                    status,
                    done: false,
                    permit,
                    rpc: inner.rpc.clone(),
                    path,
                };
                Ok(res.map(|inner| Body::new(Logged { inner, log })))
            }
            .instrument(span),
        )
    }
}

/// A service answers a method it does not have with a bare
/// `UNIMPLEMENTED`; say which method of which service it was.
fn name_unimplemented(mut res: Response<Body>, path: &str) -> Response<Body> {
    if grpc_status(res.headers()) == Some(Code::Unimplemented as i32)
        && res
            .headers()
            .get("grpc-message")
            .is_none_or(|m| m.is_empty())
    {
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or_default();
        let method: String = method.chars().take(100).collect();
        let message = format!("method {method} is not a method of {service}");
        // Percent-encoded as gRPC requires; names from a matched path are
        // plain, but the method part is the client's.
        let encoded: String = message
            .bytes()
            .map(|b| {
                if (0x20..0x7f).contains(&b) && b != b'%' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&encoded) {
            res.headers_mut().insert("grpc-message", v);
        }
    }
    res
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The name of a gRPC status code as the gRPC specification writes it.
pub(crate) fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// The one log line of a call, written when its response ends.
struct CallLog {
    span: tracing::Span,
    started: Instant,
    status: Option<i32>,
    done: bool,
    /// The call's place in flight, given back when its answer ends.
    permit: Option<Permit>,
    rpc: Arc<RpcMetrics>,
    path: String,
}

impl CallLog {
    fn finish(&mut self, trailers: Option<&HeaderMap>) {
        if self.done {
            return;
        }
        self.done = true;
        self.permit = None;
        if let Some(code) = trailers.and_then(grpc_status) {
            self.status = Some(code);
        }
        let elapsed = self.started.elapsed();
        self.rpc.record(&self.path, self.status, elapsed);
        let elapsed_us = elapsed.as_micros() as u64;
        let _enter = self.span.enter();
        match self.status {
            Some(code) => tracing::info!(
                grpc_status = code,
                code = %code_name(code),
                elapsed_us,
                "rpc"
            ),
            // The response stream ended without a status: the client went
            // away or the connection broke.
            None => tracing::info!(code = %"INCOMPLETE", elapsed_us, "rpc"),
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body cut off at the call's deadline, ending with
    /// `DEADLINE_EXCEEDED` trailers if the upstream has not ended it by then.
    struct DeadlineBody {
        #[pin]
        inner: Body,
        #[pin]
        sleep: tokio::time::Sleep,
        done: bool,
    }
}

impl DeadlineBody {
    fn new(inner: Body, at: Instant) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep_until(at),
            done: false,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Pending => {}
            Poll::Ready(frame) => {
                if frame
                    .as_ref()
                    .is_none_or(|f| f.as_ref().is_ok_and(|f| f.is_trailers()))
                {
                    *this.done = true;
                }
                return Poll::Ready(frame);
            }
        }
        if this.sleep.poll(cx).is_pending() {
            return Poll::Pending;
        }
        *this.done = true;
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("4"));
        trailers.insert(
            "grpc-message",
            HeaderValue::from_static("deadline%20exceeded"),
        );
        Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }
}

pin_project_lite::pin_project! {
    /// A response body that logs its call when it ends or is dropped.
    struct Logged {
        #[pin]
        inner: Body,
        log: CallLog,
    }

    impl PinnedDrop for Logged {
        fn drop(this: Pin<&mut Self>) {
            this.project().log.finish(None);
        }
    }
}

impl http_body::Body for Logged {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        let this = self.project();
        let out = this.inner.poll_frame(cx);
        match &out {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.log.finish(Some(trailers));
                }
            }
            Poll::Ready(None) => this.log.finish(None),
            _ => {}
        }
        out
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_come_from_the_path() {
        assert_eq!(
            service_name("/focusforge.tasks.v1.TaskService/GetTask"),
            Some("focusforge.tasks.v1.TaskService")
        );
        assert_eq!(service_name("/x/"), None);
        assert_eq!(service_name("/x"), None);
        assert_eq!(service_name("x/y"), None);
        assert_eq!(service_name("/a/b/c"), None);
        assert_eq!(service_name("//m"), None);
    }
}
