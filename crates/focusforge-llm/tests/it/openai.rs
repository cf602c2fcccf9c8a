//! The OpenAI-compatible backend against a local server that follows the
//! published chat-completions format, errors and rate limits included.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use focusforge_llm::{
    GenerateRequest, LanguageModel, LlmError, Message, OpenAiConfig, OpenAiModel, Sampling, Schema,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

const KEY: &str = "sk-test-0123456789";

/// The smallest value of a JSON Schema (as OpenAI renders structured output).
fn sample(schema: &Value) -> Value {
    match schema["type"].as_str() {
        Some("object") => {
            let mut out = serde_json::Map::new();
            for (k, v) in schema["properties"].as_object().into_iter().flatten() {
                out.insert(k.clone(), sample(v));
            }
            Value::Object(out)
        }
        Some("array") => {
            let n = schema["minItems"].as_u64().unwrap_or(1);
            Value::Array((0..n).map(|_| sample(&schema["items"])).collect())
        }
        Some("integer") => json!(schema["minimum"].as_u64().unwrap_or(0)),
        Some("string") => match schema["enum"].as_array() {
            Some(options) => options[0].clone(),
            None => json!("from the test server"),
        },
        _ => Value::Null,
    }
}

fn error(status: StatusCode, message: &str, kind: &str, code: &str) -> Response<Full<Bytes>> {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
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
    seen.lock().expect("lock").push(body.clone());
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
            r.headers_mut()
                .insert("retry-after", "1".parse().expect("header"));
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
    let content = match body["response_format"]["json_schema"]["schema"].as_object() {
        Some(_) => sample(&body["response_format"]["json_schema"]["schema"]).to_string(),
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
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    Ok(r)
}

/// Starts the server; returns its address and the request bodies it saw.
async fn server() -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
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
    (addr, bodies)
}

fn model(addr: SocketAddr, name: &str, key: &str) -> OpenAiModel {
    OpenAiModel::new(OpenAiConfig {
        base_url: format!("http://{addr}/v1"),
        model: name.into(),
        api_key: Some(key.into()),
        timeout: Duration::from_secs(10),
    })
    .expect("client")
}

fn request(schema: Option<Schema>) -> GenerateRequest {
    GenerateRequest {
        messages: vec![
            Message::system("Be brief."),
            Message::user("Plan my morning"),
        ],
        max_tokens: 64,
        sampling: Sampling::default(),
        schema,
        deadline: None,
    }
}

#[tokio::test]
async fn structured_requests_carry_the_schema_and_answers_validate() {
    let (addr, seen) = server().await;
    let schema = Schema::object([
        ("steps", Schema::array(Schema::string(40), 2, 4)),
        ("mood", Schema::one_of(&["calm", "busy"])),
        ("minutes", Schema::integer(5, 60)),
    ]);
    let m = model(addr, "gpt-4o-mini", KEY);
    assert_eq!(m.name(), "openai:gpt-4o-mini");
    let g = m
        .generate(request(Some(schema.clone())), None)
        .await
        .expect("generate");
    let value: Value = serde_json::from_str(&g.text).expect("json");
    schema.validate(&value).expect("valid");
    assert_eq!((g.prompt_tokens, g.completion_tokens), (21, 9));
    let body = seen.lock().expect("lock").pop().expect("a request");
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(body["messages"][1]["role"], "user");
    assert_eq!(body["max_tokens"], 64);
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(body["response_format"]["json_schema"]["strict"], true);
    assert_eq!(
        body["response_format"]["json_schema"]["schema"],
        schema.to_json_schema()
    );

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let g = m
        .generate(request(None), Some(tx))
        .await
        .expect("free text");
    assert_eq!(g.text, "Hello from the test server");
    assert_eq!(
        rx.recv().await.as_deref(),
        Some("Hello from the test server")
    );
    assert!(
        seen.lock().expect("lock")[0]
            .get("response_format")
            .is_none()
    );
}

#[tokio::test]
async fn errors_map_to_what_callers_can_act_on() {
    let (addr, _) = server().await;
    let err = model(addr, "gpt-4o-mini", "sk-wrong")
        .generate(request(None), None)
        .await
        .expect_err("bad key");
    match err {
        LlmError::Refused(m) => {
            assert!(m.contains("Incorrect API key"), "{m}");
            assert!(!m.contains("sk-wrong"), "the key is never echoed");
        }
        other => panic!("{other:?}"),
    }
    let err = model(addr, "rate-limited", KEY)
        .generate(request(None), None)
        .await
        .expect_err("429");
    assert!(matches!(err, LlmError::RateLimited), "{err:?}");
    let err = model(addr, "broken", KEY)
        .generate(request(None), None)
        .await
        .expect_err("500");
    assert!(matches!(err, LlmError::Unavailable(_)), "{err:?}");

    let mut slow = request(None);
    slow.deadline = Some(Instant::now() + Duration::from_millis(300));
    let started = Instant::now();
    let err = model(addr, "slow", KEY)
        .generate(slow, None)
        .await
        .expect_err("deadline");
    assert!(matches!(err, LlmError::DeadlineExceeded), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "gave up at the deadline"
    );

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let err = model(closed, "gpt-4o-mini", KEY)
        .generate(request(None), None)
        .await
        .expect_err("unreachable");
    assert!(matches!(err, LlmError::Unavailable(_)), "{err:?}");
}

#[test]
fn the_key_is_never_printed() {
    let config = OpenAiConfig {
        base_url: "https://api.openai.com/v1".into(),
        model: "gpt-4o".into(),
        api_key: Some(KEY.into()),
        timeout: Duration::from_secs(30),
    };
    let printed = format!("{config:?}");
    assert!(
        !printed.contains(KEY) && printed.contains("redacted"),
        "{printed}"
    );
}
