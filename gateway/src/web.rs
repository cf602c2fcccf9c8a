//! The browser app on the gateway's port: its built files served at `/`
//! (any path without a file of its own gets `index.html`, so the app's own
//! routes reload), and a sign-in helper for the embedded default that mints
//! a token only for a browser on the same machine.

use std::convert::Infallible;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use focusforge_auth::Minter;
use focusforge_core::UserId;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use tonic::body::Body;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_http::services::{ServeDir, ServeFile};

use crate::{ClientAddr, HttpRoute};

/// The path of the sign-in helper.
pub const DEV_TOKEN_PATH: &str = "/dev/token";

/// What the page may load: its own scripts and styles, calls to its own
/// origin, no framing.
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

type Files = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// Serves the files under `dir` for `GET` and `HEAD`.
fn files(dir: &Path) -> Files {
    let index = dir.join("index.html");
    let serve = ServeDir::new(dir)
        .append_index_html_on_directories(true)
        .fallback(ServeFile::new(index));
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<Body>| {
        let serve = serve.clone();
        async move {
            let hashed = req.uri().path().starts_with("/assets/");
            let Ok(res) = serve.oneshot(req).await;
            let mut res = res.map(Body::new);
            let headers = res.headers_mut();
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            // The bundler names assets by their content; the page itself
            // is looked at again every time.
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(if hashed {
                    "public, max-age=31536000, immutable"
                } else {
                    "no-cache"
                }),
            );
            Ok(res)
        }
    }))
}

/// The web app's files, or where they were looked for.
#[derive(Clone)]
pub(crate) enum App {
    Built(Files),
    Missing(Arc<Path>),
}

impl App {
    pub(crate) fn new(dir: &Path) -> Self {
        if dir.join("index.html").is_file() {
            tracing::info!(dir = %dir.display(), "serving the web app at /");
            Self::Built(files(dir))
        } else {
            tracing::info!(dir = %dir.display(), "no web app built there");
            Self::Missing(dir.into())
        }
    }

    /// Whether the app answers `req`: any `GET` or `HEAD` once built;
    /// before, only its root, with how to build it.
    pub(crate) fn answers<B>(&self, req: &Request<B>) -> bool {
        matches!(*req.method(), Method::GET | Method::HEAD)
            && match self {
                Self::Built(_) => true,
                Self::Missing(_) => matches!(req.uri().path(), "/" | "/index.html"),
            }
    }

    pub(crate) async fn call(self, req: Request<Body>) -> Response<Body> {
        match self {
            Self::Built(files) => {
                let Ok(res) = files.oneshot(req).await;
                res
            }
            Self::Missing(dir) => not_built(&dir),
        }
    }
}

/// The answer when no app is built: how to build it.
fn not_built(dir: &Path) -> Response<Body> {
    text(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        format!(
            "The web app is not built ({} has no index.html).\n\
             Build it with: (cd web && npm ci && npm run build)\n",
            dir.display()
        ),
    )
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut res = Response::new(Body::new(Full::new(Bytes::from(body))));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    text(status, "application/json", value.to_string())
}

/// How long a token from the helper lasts.
const DEV_TOKEN_TTL_SECS: u64 = 24 * 3600;
/// The largest sign-in request.
const DEV_TOKEN_BODY_LIMIT: usize = 4096;

/// The sign-in helper. `minter` is `Some` only on the embedded default's
/// generated dev secret; without it the route says so and mints nothing.
/// `GET` tells the page whether it may mint; `POST {"user": "ada"}`
/// answers `{"token": ...}`, and only to a client on loopback that named a
/// loopback host (so a page elsewhere cannot reach it by rebinding a name).
pub fn dev_token_route(minter: Option<Arc<Minter>>) -> HttpRoute {
    let service = tower::service_fn(move |req: Request<Body>| {
        let minter = minter.clone();
        async move { Ok::<_, Infallible>(dev_token(minter.as_deref(), req).await) }
    });
    HttpRoute {
        path: DEV_TOKEN_PATH.into(),
        service: BoxCloneSyncService::new(service),
    }
}

fn loopback_host(req: &Request<Body>) -> bool {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or_default();
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether the request's client (past trusted proxies) is on this host.
pub(crate) fn from_loopback<B>(req: &Request<B>) -> bool {
    req.extensions()
        .get::<ClientAddr>()
        .is_some_and(|c| c.0.is_loopback())
}

async fn dev_token(minter: Option<&Minter>, req: Request<Body>) -> Response<Body> {
    let local = from_loopback(&req) && loopback_host(&req);
    let available = minter.is_some() && local;
    match *req.method() {
        Method::GET | Method::HEAD => {
            return json(
                StatusCode::OK,
                &serde_json::json!({ "available": available }),
            );
        }
        Method::POST => {}
        _ => {
            return json(
                StatusCode::METHOD_NOT_ALLOWED,
                &serde_json::json!({ "error": "use GET or POST" }),
            );
        }
    }
    let Some(minter) = minter else {
        return json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({
                "error": "tokens come from the identity provider: this server does not run on a generated dev secret"
            }),
        );
    };
    if !local {
        return json(
            StatusCode::FORBIDDEN,
            &serde_json::json!({ "error": "dev tokens are minted only for a browser on this machine (open http://127.0.0.1:PORT/)" }),
        );
    }
    let body = match Limited::new(req.into_body(), DEV_TOKEN_BODY_LIMIT)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return json(
                StatusCode::PAYLOAD_TOO_LARGE,
                &serde_json::json!({ "error": format!("the request is larger than {DEV_TOKEN_BODY_LIMIT} bytes") }),
            );
        }
    };
    let user = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("user").and_then(|u| u.as_str()).map(str::to_owned));
    let Some(user) = user else {
        return json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "field": "user", "error": "send {\"user\": \"<id>\"}" }),
        );
    };
    let user = match UserId::parse(user.trim()) {
        Ok(u) => u,
        Err(e) => {
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "field": "user", "error": e.to_string() }),
            );
        }
    };
    match minter.mint(&user, DEV_TOKEN_TTL_SECS) {
        Ok(token) => json(
            StatusCode::OK,
            &serde_json::json!({
                "token": token,
                "user": user.as_str(),
                "expires_in": DEV_TOKEN_TTL_SECS,
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "dev token not minted");
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({ "error": "the token could not be minted" }),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_host(host: &str) -> Request<Body> {
        let mut req = Request::new(Body::empty());
        req.headers_mut()
            .insert(header::HOST, HeaderValue::from_str(host).expect("host"));
        req
    }

    #[test]
    fn only_loopback_names_count_as_this_machine() {
        for host in [
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:8080",
            "127.1.2.3",
        ] {
            assert!(loopback_host(&with_host(host)), "{host}");
        }
        for host in [
            "example.com",
            "localhost.example.com:80",
            "10.0.0.1:8080",
            "[fe80::1]:80",
            "",
        ] {
            assert!(!loopback_host(&with_host(host)), "{host}");
        }
    }
}
