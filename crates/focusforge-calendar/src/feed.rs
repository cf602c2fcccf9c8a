//! The plain HTTP endpoints on the gateway's port: the iCalendar feed that
//! calendar apps subscribe to (authenticated by the secret token in its URL,
//! with `ETag` / `If-None-Match` so an unchanged feed costs a 304), and the
//! OAuth callback Google redirects the user to.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use focusforge_kit::HttpService;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use tonic::body::Body;

use crate::api::export;
use crate::domain::Calendar;
use crate::link::{Link, state_user};

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Body::new(http_body_util::Full::new(Bytes::from(
        body.to_owned(),
    ))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A query parameter, percent-decoded.
fn param(req: &Request<Body>, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    url_pairs(q).find(|(k, _)| k == name).map(|(_, v)| v)
}

fn url_pairs(q: &str) -> impl Iterator<Item = (String, String)> + '_ {
    q.split('&').filter_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        Some((decode(k)?, decode(v)?))
    })
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'%' => return None,
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

async fn feed(cal: Calendar, req: Request<Body>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // A wrong or revoked token looks like no feed at all.
    let user = match param(&req, "token") {
        Some(t) => cal.feed_user(&t).await,
        None => None,
    };
    let Some(user) = user else {
        return text(StatusCode::NOT_FOUND, "no such feed\n");
    };
    let (ics, etag) = match export(&cal, &user).await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "calendar feed failed");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the calendar is unavailable, try again later\n",
            );
        }
    };
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut r = if unchanged {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if req.method() == Method::HEAD {
        Response::new(Body::empty())
    } else {
        Response::new(Body::new(http_body_util::Full::new(Bytes::from(ics))))
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/calendar; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("inline; filename=\"focusforge.ics\""),
    );
    r
}

async fn callback(link: Option<Arc<Link>>, req: Request<Body>) -> Response<Body> {
    let Some(link) = link else {
        return text(
            StatusCode::NOT_FOUND,
            "Google Calendar is not configured here\n",
        );
    };
    if let Some(e) = param(&req, "error") {
        return text(
            StatusCode::BAD_REQUEST,
            &format!(
                "Google did not link the calendar: {}\n",
                e.chars().take(100).collect::<String>()
            ),
        );
    }
    let (Some(code), Some(state)) = (param(&req, "code"), param(&req, "state")) else {
        return text(StatusCode::BAD_REQUEST, "code and state are required\n");
    };
    let Some(user) = state_user(&state) else {
        return text(
            StatusCode::BAD_REQUEST,
            "unknown state; start linking again\n",
        );
    };
    match link.complete(&user, &code, &state).await {
        Ok(()) => text(
            StatusCode::OK,
            "Google Calendar is linked to FocusForge. You can close this page.\n",
        ),
        Err(e) => text(
            StatusCode::BAD_REQUEST,
            &format!("Google Calendar could not be linked: {e}\n"),
        ),
    }
}

pub fn feed_service(cal: Calendar) -> HttpService {
    HttpService::new(tower::service_fn(move |req: Request<Body>| {
        let cal = cal.clone();
        async move { Ok::<_, Infallible>(feed(cal, req).await) }
    }))
}

pub fn callback_service(link: Option<Arc<Link>>) -> HttpService {
    HttpService::new(tower::service_fn(move |req: Request<Body>| {
        let link = link.clone();
        async move { Ok::<_, Infallible>(callback(link, req).await) }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded_and_bad_escapes_refused() {
        let pairs: Vec<_> = url_pairs("token=a%2Eb&x=1+2&bad=%zz&cut=%4").collect();
        assert_eq!(
            pairs,
            vec![("token".into(), "a.b".into()), ("x".into(), "1 2".into())]
        );
    }
}
