//! Where routed calls go: in-process routes, or a remote server over one
//! multiplexed HTTP/2 connection that is re-established when it drops.

use std::convert::Infallible;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tonic::Status;
use tonic::body::Body;
use tonic::service::Routes;
use tower::ServiceExt;

pub enum Upstream {
    Local(Routes),
    Remote(Remote),
}

/// How a forwarded call failed before a response arrived.
pub enum CallError {
    /// The upstream could not be reached in time.
    Unreachable(Status),
    /// The deadline passed while the upstream was working.
    DeadlineExceeded,
}

impl Upstream {
    /// Forwards one call. The deadline bounds the whole call; connection
    /// failures are reported as unreachable as soon as they happen.
    pub async fn call(
        &self,
        req: Request<Body>,
        deadline: Option<Instant>,
    ) -> Result<Response<Body>, CallError> {
        match self {
            Upstream::Local(routes) => {
                let call = routes.clone().oneshot(req);
                let res: Result<Response<Body>, Infallible> = match deadline {
                    Some(at) => tokio::time::timeout_at(at, call)
                        .await
                        .map_err(|_| CallError::DeadlineExceeded)?,
                    None => call.await,
                };
                Ok(res.unwrap_or_else(|never| match never {}))
            }
            Upstream::Remote(remote) => remote.call(req, deadline).await,
        }
    }
}

pub struct Remote {
    service: String,
    scheme: Scheme,
    authority: Authority,
    connect_timeout: Duration,
    conn: tokio::sync::Mutex<Option<SendRequest<Body>>>,
}

impl Remote {
    pub fn new(service: &str, uri: &Uri, connect_timeout: Duration) -> Result<Self, String> {
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or("needs a scheme such as http://")?;
        if scheme != Scheme::HTTP {
            return Err("only http:// (HTTP/2 cleartext) upstreams are supported".into());
        }
        let authority = uri.authority().cloned().ok_or("needs a host and port")?;
        if authority.port_u16().is_none() {
            return Err("needs an explicit port".into());
        }
        Ok(Self {
            service: service.to_owned(),
            scheme,
            authority,
            connect_timeout,
            conn: tokio::sync::Mutex::new(None),
        })
    }

    fn unreachable(&self, why: impl std::fmt::Display) -> CallError {
        tracing::warn!(upstream = %self.authority, service = %self.service, error = %why, "upstream unreachable");
        CallError::Unreachable(Status::unavailable(format!(
            "upstream for {} is unreachable",
            self.service
        )))
    }

    /// A ready sender on a live connection, connecting if needed within the
    /// connect timeout and what is left of the deadline.
    async fn sender(&self, deadline: Option<Instant>) -> Result<SendRequest<Body>, CallError> {
        let budget = match deadline {
            Some(at) => at
                .saturating_duration_since(Instant::now())
                .min(self.connect_timeout),
            None => self.connect_timeout,
        };
        let until = Instant::now() + budget;
        let mut slot = tokio::time::timeout_at(until, self.conn.lock())
            .await
            .map_err(|_| self.unreachable("timed out waiting for a connection"))?;
        if let Some(sender) = slot.as_ref()
            && !sender.is_closed()
        {
            return Ok(sender.clone());
        }
        *slot = None;
        let addr = self.authority.as_str().to_owned();
        let stream = tokio::time::timeout_at(until, TcpStream::connect(addr))
            .await
            .map_err(|_| self.unreachable("connect timed out"))?
            .map_err(|e| self.unreachable(e))?;
        let _ = stream.set_nodelay(true);
        let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true)
            .handshake::<_, Body>(TokioIo::new(stream));
        let (sender, conn) = tokio::time::timeout_at(until, handshake)
            .await
            .map_err(|_| self.unreachable("handshake timed out"))?
            .map_err(|e| self.unreachable(e))?;
        let authority = self.authority.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(upstream = %authority, error = %e, "upstream connection closed");
            }
        });
        *slot = Some(sender.clone());
        Ok(sender)
    }

    async fn call(
        &self,
        mut req: Request<Body>,
        deadline: Option<Instant>,
    ) -> Result<Response<Body>, CallError> {
        let mut sender = self.sender(deadline).await?;
        let path = req.uri().path_and_query().cloned();
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = path;
        *req.uri_mut() = Uri::from_parts(parts).map_err(|e| self.unreachable(e))?;
        *req.version_mut() = http::Version::HTTP_2;
        let call = async {
            sender.ready().await.map_err(|e| self.unreachable(e))?;
            sender
                .send_request(req)
                .await
                .map_err(|e| self.unreachable(format!("{e:?}")))
        };
        let res = match deadline {
            Some(at) => tokio::time::timeout_at(at, call)
                .await
                .map_err(|_| CallError::DeadlineExceeded)??,
            None => call.await?,
        };
        Ok(res.map(Body::new))
    }
}
