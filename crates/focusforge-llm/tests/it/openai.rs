//! The OpenAI-compatible backend against a local server that follows the
//! published chat-completions format, errors and rate limits included.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use focusforge_llm::testing::{KEY, server};
use focusforge_llm::{
    GenerateRequest, LanguageModel, LlmError, Message, OpenAiConfig, OpenAiModel, Sampling, Schema,
};
use serde_json::{Value, json};

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
    let server = server().await;
    let addr = server.addr;
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
    let body = server.requests().pop().expect("a request");
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
    assert!(server.requests()[1].get("response_format").is_none());
}

#[tokio::test]
async fn errors_map_to_what_callers_can_act_on() {
    let addr = server().await.addr;
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
