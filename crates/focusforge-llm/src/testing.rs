//! A local server that speaks the OpenAI chat-completions API as published
//! (request and answer shapes, error bodies, 401, 429 with `Retry-After`,
//! 500), for tests of the OpenAI-compatible backend. Structured requests get
//! the smallest value valid against their JSON schema. The model name picks
//! a behaviour: `rate-limited`, `broken`, `slow` (3 s), `say:TEXT` (every
//! string of the answer is TEXT), `keep-draft` (answers with the JSON draft
//! the prompt offers after `Draft: `, as a model that keeps it would),
//! `keep-draft-plus:TEXT` (the draft with TEXT added to its first block's
//! title),
//! `sloppy` (the smallest valid value first, then, asked to repair it, the
//! draft), anything else answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

/// The API key the server accepts.
pub const KEY: &str = "sk-test-0123456789";

/// The smallest value of a JSON Schema (as OpenAI renders structured
/// output), with `text` for free strings.
fn sample(schema: &Value, text: &str) -> Value {
    match schema["type"].as_str() {
        Some("object") => {
            let mut out = serde_json::Map::new();
            for (k, v) in schema["properties"].as_object().into_iter().flatten() {
                out.insert(k.clone(), sample(v, text));
            }
            Value::Object(out)
        }
        Some("array") => {
            let n = schema["minItems"].as_u64().unwrap_or(1);
            Value::Array((0..n).map(|_| sample(&schema["items"], text)).collect())
        }
        Some("integer") => json!(schema["minimum"].as_u64().unwrap_or(0)),
        Some("string") => match schema["enum"].as_array() {
            Some(options) => options[0].clone(),
            // A phrase: its first allowed word, then the text without what
            // a phrase may not hold.
            None => match schema["pattern"].as_str() {
                Some(pattern) => {
                    let plain: String = text
                        .chars()
                        .filter(|c| crate::schema::is_plain(&c.to_string()))
                        .collect();
                    let first = pattern
                        .strip_prefix("^(?:")
                        .and_then(|p| p.split(['|', ')']).next());
                    json!(match first {
                        Some(w) => format!("{w} {plain}"),
                        None => plain,
                    })
                }
                None => json!(text),
            },
        },
        _ => Value::Null,
    }
}

fn error(status: StatusCode, message: &str, kind: &str, code: &str) -> Response<Full<Bytes>> {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        "application/json"
            .parse()
            .unwrap_or_else(|_| unreachable!()),
    );
    r
}

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Value>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/v1/chat/completions" || req.method() != hyper::Method::POST {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "Unknown request URL",
            "invalid_request_error",
            "unknown_url",
        ));
    }
    let authorized = req
        .headers()
        .get("authorization")
        .is_some_and(|v| v == format!("Bearer {KEY}").as_str());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !authorized {
        return Ok(error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided",
            "invalid_request_error",
            "invalid_api_key",
        ));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body",
            "invalid_request_error",
            "invalid_json",
        ));
    };
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(body.clone());
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    if body["messages"].as_array().is_none_or(Vec::is_empty) {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "messages must not be empty",
            "invalid_request_error",
            "invalid_value",
        ));
    }
    match model.as_str() {
        "rate-limited" => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit reached for requests",
                "requests",
                "rate_limit_exceeded",
            );
            r.headers_mut().insert(
                "retry-after",
                "1".parse().unwrap_or_else(|_| unreachable!()),
            );
            return Ok(r);
        }
        "broken" => {
            return Ok(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server had an error while processing your request",
                "server_error",
                "server_error",
            ));
        }
        "slow" => tokio::time::sleep(Duration::from_secs(3)).await,
        _ => {}
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let repairing = messages.iter().any(|m| m["role"] == "assistant");
    let draft = || {
        messages
            .iter()
            .filter(|m| m["role"] == "user")
            .filter_map(|m| m["content"].as_str())
            .filter_map(|c| c.rsplit_once("Draft: ").map(|(_, d)| d.trim().to_owned()))
            .next_back()
    };
    let keep_draft = model == "keep-draft" || (model == "sloppy" && repairing);
    let spoiled = |more: &str| {
        let mut v: Value = serde_json::from_str(&draft()?).ok()?;
        let title = format!("{}{more}", v["blocks"][0]["title"].as_str()?);
        v["blocks"][0]["title"] = json!(title);
        Some(v.to_string())
    };
    let content = match body["response_format"]["json_schema"]["schema"].as_object() {
        Some(_) if keep_draft && draft().is_some() => draft().unwrap_or_default(),
        Some(_) if model.starts_with("keep-draft-plus:") => {
            spoiled(&model["keep-draft-plus:".len()..]).unwrap_or_default()
        }
        Some(_) => sample(
            &body["response_format"]["json_schema"]["schema"],
            model.strip_prefix("say:").unwrap_or("from the test server"),
        )
        .to_string(),
        None => "Hello from the test server".to_owned(),
    };
    let answer = json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_800_000_000,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}
    });
    let mut r = Response::new(Full::new(Bytes::from(answer.to_string())));
    r.headers_mut().insert(
        "content-type",
        "application/json"
            .parse()
            .unwrap_or_else(|_| unreachable!()),
    );
    Ok(r)
}

/// A running server.
pub struct OpenAiServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl OpenAiServer {
    /// Its base URL, for `OpenAiConfig::base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The request bodies it accepted, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Starts the server on a free loopback port.
pub async fn server() -> OpenAiServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let bodies = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(req, seen.clone()));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    OpenAiServer { addr, seen: bodies }
}
