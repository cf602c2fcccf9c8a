//! `grpc.health.v1.Health` at the gateway: the empty service name is the
//! gateway itself; any routed service is answered by asking that service's
//! own upstream, so a check through the gateway reflects the real server.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request as HttpRequest, Response as HttpResponse};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus as PbStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::upstream::{CallError, Upstream};

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct GatewayHealth {
    routes: Arc<BTreeMap<String, Arc<Upstream>>>,
}

impl GatewayHealth {
    pub fn new(routes: Arc<BTreeMap<String, Arc<Upstream>>>) -> Self {
        Self { routes }
    }

    async fn status_of(&self, service: &str) -> Result<PbStatus, Status> {
        if service.is_empty() {
            return Ok(PbStatus::Serving);
        }
        let upstream = self
            .routes
            .get(service)
            .ok_or_else(|| Status::not_found(format!("unknown service {service}")))?;
        let mut client = HealthClient::new(UpstreamChannel(upstream.clone()));
        let req = HealthCheckRequest {
            service: service.to_owned(),
        };
        Ok(match client.check(req).await {
            Ok(res) => PbStatus::try_from(res.into_inner().status).unwrap_or(PbStatus::Unknown),
            Err(e) => {
                tracing::debug!(service, error = %e, "upstream health check failed");
                PbStatus::NotServing
            }
        })
    }
}

#[tonic::async_trait]
impl Health for GatewayHealth {
    async fn check(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let status = self.status_of(&req.get_ref().service).await?;
        Ok(Response::new(HealthCheckResponse {
            status: status as i32,
        }))
    }

    type WatchStream = ReceiverStream<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = req.into_inner().service;
        let first = self.status_of(&service).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let this = self.clone();
        tokio::spawn(async move {
            let mut last = None;
            let mut status = first;
            loop {
                if last != Some(status) {
                    let msg = HealthCheckResponse {
                        status: status as i32,
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                    last = Some(status);
                }
                tokio::select! {
                    () = tokio::time::sleep(WATCH_INTERVAL) => {}
                    () = tx.closed() => return,
                }
                status = this
                    .status_of(&service)
                    .await
                    .unwrap_or(PbStatus::ServiceUnknown);
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// An upstream as a tower service, so a generated client can call it.
#[derive(Clone)]
struct UpstreamChannel(Arc<Upstream>);

impl tower::Service<HttpRequest<Body>> for UpstreamChannel {
    type Response = HttpResponse<Body>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse<Body>, Status>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HttpRequest<Body>) -> Self::Future {
        let upstream = self.0.clone();
        Box::pin(async move {
            match upstream
                .call(req, Some(Instant::now() + CHECK_TIMEOUT))
                .await
            {
                Ok(res) => Ok(res),
                Err(CallError::Unreachable(status)) => Err(status),
                Err(CallError::DeadlineExceeded) => {
                    Err(Status::deadline_exceeded("health check timed out"))
                }
            }
        })
    }
}
