//! The checks JSON-RPC 2.0 and MCP put on a message before any method
//! runs, answered with their error codes: `-32700` for a body that is not
//! JSON, `-32600` for something that is not a valid request, `-32602` for
//! `tools/call` params without a tool name or with arguments that are not
//! an object.

use http::{Response, StatusCode};
use serde_json::{Value, json};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const INVALID_PARAMS: i64 = -32602;

/// A message refused before it reached the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub status: StatusCode,
    pub code: i64,
    pub message: String,
    pub id: Value,
}

impl Failure {
    pub fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            id: Value::Null,
        }
    }

    fn with_id(mut self, id: &Value) -> Self {
        self.id = id.clone();
        self
    }

    pub fn into_response(self) -> Response<tonic::body::Body> {
        let body = json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "error": {"code": self.code, "message": self.message},
        });
        Response::builder()
            .status(self.status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(tonic::body::Body::new(http_body_util::Full::new(
                bytes::Bytes::from(body.to_string()),
            )))
            .unwrap_or_default()
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(StatusCode::BAD_REQUEST, INVALID_REQUEST, message)
}

/// A parse error's message: what serde_json saw, bounded.
fn parse_message(e: &serde_json::Error) -> String {
    let mut text = format!("parse error: {e}");
    text.truncate(200);
    text
}

/// Checks one POSTed message; `Ok` means the server may have it.
pub fn check(body: &[u8]) -> Result<(), Failure> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, PARSE_ERROR, parse_message(&e)))?;
    let msg = match value {
        Value::Object(map) => map,
        Value::Array(_) => {
            return Err(invalid(
                "invalid request: batches are not supported; send one message per request",
            ));
        }
        _ => return Err(invalid("invalid request: a message must be a JSON object")),
    };
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let id_ok = matches!(id, Value::Null | Value::String(_))
        || id.as_i64().is_some()
        || id.as_u64().is_some();
    if !id_ok {
        return Err(invalid(
            "invalid request: id must be a string or an integer",
        ));
    }
    if msg.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid(r#"invalid request: jsonrpc must be "2.0""#).with_id(&id));
    }
    let Some(method) = msg.get("method") else {
        // A client's answer to a server request carries a result or an error.
        if msg.contains_key("result") || msg.contains_key("error") {
            return Ok(());
        }
        return Err(invalid("invalid request: method is required").with_id(&id));
    };
    let Some(method) = method.as_str() else {
        return Err(invalid("invalid request: method must be a string").with_id(&id));
    };
    let params = msg.get("params");
    let params_bad = |what: &str| {
        Failure::new(
            StatusCode::OK,
            INVALID_PARAMS,
            format!("invalid params: {what}"),
        )
        .with_id(&id)
    };
    match params {
        None | Some(Value::Object(_)) => {}
        Some(Value::Array(_)) => return Err(params_bad("params must be an object")),
        Some(_) => {
            return Err(invalid("invalid request: params must be an object").with_id(&id));
        }
    }
    if method == "tools/call" {
        let params = params.and_then(Value::as_object);
        match params.and_then(|p| p.get("name")) {
            Some(Value::String(name)) if !name.is_empty() => {}
            Some(Value::String(_)) | None => {
                return Err(params_bad("params.name, the tool to call, is required"));
            }
            Some(_) => return Err(params_bad("params.name must be a string")),
        }
        match params.and_then(|p| p.get("arguments")) {
            None | Some(Value::Object(_)) | Some(Value::Null) => {}
            Some(_) => return Err(params_bad("params.arguments must be an object")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> Option<(i64, StatusCode)> {
        check(body.as_bytes()).err().map(|f| (f.code, f.status))
    }

    #[test]
    fn each_kind_of_bad_message_gets_its_code() {
        let bad_request = Some((INVALID_REQUEST, StatusCode::BAD_REQUEST));
        let bad_params = Some((INVALID_PARAMS, StatusCode::OK));
        assert_eq!(
            code("{not json"),
            Some((PARSE_ERROR, StatusCode::BAD_REQUEST))
        );
        assert_eq!(code(""), Some((PARSE_ERROR, StatusCode::BAD_REQUEST)));
        assert_eq!(
            code(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
            bad_request
        );
        assert_eq!(code("42"), bad_request);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1}"#), bad_request);
        assert_eq!(
            code(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#),
            bad_request
        );
        assert_eq!(code(r#"{"id":1,"method":"ping"}"#), bad_request);
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#),
            bad_request
        );
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":7}"#), bad_request);
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#),
            bad_request
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#),
            bad_params
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#),
            bad_params
        );
        assert_eq!(
            code(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"tasks.list","arguments":"{}"}}"#
            ),
            bad_params
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":3}}"#),
            bad_params
        );
    }

    #[test]
    fn good_messages_pass() {
        for ok in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"tasks.list","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
        ] {
            assert_eq!(check(ok.as_bytes()), Ok(()), "{ok}");
        }
    }

    #[test]
    fn the_id_is_echoed_when_it_can_be_read() {
        let f = check(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}"#)
            .expect_err("no name");
        assert_eq!(f.id, json!(7));
    }
}
