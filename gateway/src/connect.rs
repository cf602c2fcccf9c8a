//! The Connect protocol (<https://connectrpc.com/docs/protocol>) on the
//! gateway's port: unary and server-streaming calls, with JSON or binary
//! messages, are translated to gRPC and handed to the same routing core as
//! gRPC and gRPC-web calls, so they get the same token checks, deadlines,
//! message limits, request ids and errors.
//!
//! Requests are told apart by content type: `application/json` and
//! `application/proto` are unary Connect calls, `application/connect+json`
//! and `application/connect+proto` streaming ones; everything else passes
//! through untouched. JSON is the canonical protobuf JSON mapping, read and
//! written through the contracts' descriptors. Messages are not compressed
//! (`identity` only; a client asking for another encoding is told so).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, SerializeOptions};
use serde_json::{Map, Value, json};
use tonic::body::Body;
use tonic::{Code, Status};
use tower::ServiceExt;

use crate::GatewayError;
use focusforge_core::format_grpc_timeout;

const PROTOCOL_VERSION: &str = "connect-protocol-version";
const TIMEOUT_MS: &str = "connect-timeout-ms";
const STREAM_ENCODING: &str = "connect-content-encoding";
/// Envelope flags of the streaming protocol.
const COMPRESSED: u8 = 0x01;
const END_STREAM: u8 = 0x02;
/// Longest client-facing text taken from a decoder's error.
const REASON_MAX: usize = 300;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Codec {
    Json,
    Proto,
}

#[derive(Clone, Copy, Debug)]
struct Kind {
    codec: Codec,
    streaming: bool,
}

impl Kind {
    fn of<B>(req: &Request<B>) -> Option<Self> {
        if req.method() != Method::POST {
            return None;
        }
        let value = req.headers().get(CONTENT_TYPE)?.to_str().ok()?;
        let base = value.split(';').next()?.trim().to_ascii_lowercase();
        let (codec, streaming) = match base.as_str() {
            "application/json" => (Codec::Json, false),
            "application/proto" => (Codec::Proto, false),
            "application/connect+json" => (Codec::Json, true),
            "application/connect+proto" => (Codec::Proto, true),
            _ => return None,
        };
        Some(Self { codec, streaming })
    }

    fn content_type(self) -> &'static str {
        match (self.streaming, self.codec) {
            (false, Codec::Json) => "application/json",
            (false, Codec::Proto) => "application/proto",
            (true, Codec::Json) => "application/connect+json",
            (true, Codec::Proto) => "application/connect+proto",
        }
    }
}

/// The contracts' descriptors: methods by path and message types by name.
pub(crate) struct Schema {
    pool: DescriptorPool,
}

impl Schema {
    pub(crate) fn new() -> Result<Self, GatewayError> {
        // Not the global pool: other crates of the process may have put
        // the same types there under other file names.
        let mut pool = DescriptorPool::new();
        for set in [
            focusforge_proto::FILE_DESCRIPTOR_SET,
            tonic_types::pb::FILE_DESCRIPTOR_SET,
        ] {
            pool.decode_file_descriptor_set(set)
                .map_err(|e| GatewayError::Reflection(e.to_string()))?;
        }
        Ok(Self { pool })
    }

    /// `/pkg.Service/Method` -> its descriptor.
    fn method(&self, path: &str) -> Option<MethodDescriptor> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        self.pool
            .get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)
    }

    /// A `google.rpc.Status` detail as JSON, when its type is known.
    fn debug(&self, any: &prost_types::Any) -> Option<Value> {
        let name = type_name(&any.type_url);
        let desc = self.pool.get_message_by_name(name)?;
        let msg = DynamicMessage::decode(desc, any.value.as_slice()).ok()?;
        serde_json::to_value(&msg).ok()
    }
}

fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// Translates Connect calls in front of `inner`, which serves gRPC (and
/// whatever else reaches the port).
#[derive(Clone)]
pub(crate) struct Connect<S> {
    pub(crate) inner: S,
    pub(crate) schema: Arc<Schema>,
    /// Largest request message in bytes, as sent (JSON or binary).
    pub(crate) limit: usize,
}

impl<S, B> tower::Service<Request<B>> for Connect<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let req = req.map(Body::new);
        let Some(kind) = Kind::of(&req) else {
            return Box::pin(self.inner.call(req));
        };
        let call = Call {
            kind,
            schema: self.schema.clone(),
            method: self.schema.method(req.uri().path()),
        };
        let inner = self.inner.clone();
        let limit = self.limit;
        Box::pin(async move { Ok(call.run(inner, req, limit).await) })
    }
}

/// One Connect call being translated.
struct Call {
    kind: Kind,
    schema: Arc<Schema>,
    method: Option<MethodDescriptor>,
}

impl Call {
    async fn run<S>(self, inner: S, req: Request<Body>, limit: usize) -> Response<Body>
    where
        S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    {
        let (parts, body) = req.into_parts();
        let grpc = match self.request(&parts, body, limit).await {
            Ok(grpc) => grpc,
            Err(status) => return self.failed(&status, HeaderMap::new()),
        };
        let Ok(res) = inner.oneshot(grpc).await;
        let (parts, body) = res.into_parts();
        let metadata = metadata(&parts.headers, "");
        if self.kind.streaming {
            self.stream(parts.headers, body, metadata)
        } else {
            self.unary(parts.headers, body, metadata).await
        }
    }

    /// The gRPC request for a Connect one, or why there is none.
    async fn request(
        &self,
        parts: &http::request::Parts,
        body: Body,
        limit: usize,
    ) -> Result<Request<Body>, Status> {
        let headers = &parts.headers;
        if let Some(v) = headers.get(PROTOCOL_VERSION)
            && v != "1"
        {
            return Err(Status::invalid_argument(format!(
                "{PROTOCOL_VERSION} must be 1, got {:?}",
                clip(&String::from_utf8_lossy(v.as_bytes()))
            )));
        }
        let encoding = if self.kind.streaming {
            STREAM_ENCODING
        } else {
            "content-encoding"
        };
        if let Some(v) = headers.get(encoding)
            && v != "identity"
        {
            return Err(Status::unimplemented(format!(
                "{encoding} {:?} is not supported: send identity",
                clip(&String::from_utf8_lossy(v.as_bytes()))
            )));
        }
        let timeout = match headers.get(TIMEOUT_MS).map(|v| v.to_str()) {
            None => None,
            Some(Ok(v)) => Some(connect_timeout(v).ok_or_else(|| {
                Status::invalid_argument(format!("malformed {TIMEOUT_MS} header"))
            })?),
            Some(Err(_)) => {
                return Err(Status::invalid_argument(format!(
                    "malformed {TIMEOUT_MS} header"
                )));
            }
        };
        if let Some(method) = &self.method
            && method.is_server_streaming() != self.kind.streaming
        {
            let want = if method.is_server_streaming() {
                "application/connect+json or application/connect+proto"
            } else {
                "application/json or application/proto"
            };
            return Err(Status::unimplemented(format!(
                "{} is called with {want}",
                method.full_name()
            )));
        }
        if self.kind.codec == Codec::Json && self.method.is_none() {
            return Err(Status::unimplemented(format!(
                "no method {}",
                clip(parts.uri.path())
            )));
        }

        // Envelopes add five bytes to each message; one message is all a
        // unary or server-streaming call sends.
        let bound = if self.kind.streaming {
            limit + 5
        } else {
            limit
        };
        let raw = match Limited::new(body, bound).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(Status::invalid_argument(format!(
                    "request message is over the limit of {limit} bytes"
                )));
            }
            Err(e) => return Err(Status::cancelled(format!("request body: {e}"))),
        };
        let messages = if self.kind.streaming {
            envelopes(raw)?
        } else {
            vec![raw]
        };
        let mut framed = BytesMut::new();
        for message in messages {
            let message = self.to_grpc(message)?;
            framed.put_u8(0);
            framed.put_u32(message.len() as u32);
            framed.put_slice(&message);
        }

        let mut out = Request::builder()
            .method(Method::POST)
            .uri(parts.uri.clone())
            .version(Version::HTTP_2);
        for (name, value) in headers {
            let n = name.as_str();
            let dropped = matches!(
                n,
                "content-type" | "content-length" | "content-encoding" | "accept-encoding" | "te"
            ) || n.starts_with("connect-")
                || n.starts_with("grpc-");
            if !dropped {
                out = out.header(name, value);
            }
        }
        out = out
            .header(CONTENT_TYPE, "application/grpc")
            .header("te", "trailers");
        if let Some(timeout) = timeout {
            out = out.header("grpc-timeout", format_grpc_timeout(timeout));
        }
        let mut out = out
            .body(Body::new(Full::new(framed.freeze())))
            .map_err(|e| Status::invalid_argument(format!("bad request: {e}")))?;
        // The client's address and what else the listener learned.
        out.extensions_mut().extend(parts.extensions.clone());
        Ok(out)
    }

    /// The method, when its messages need translating from or to JSON.
    fn json_method(&self) -> Option<&MethodDescriptor> {
        self.method
            .as_ref()
            .filter(|_| self.kind.codec == Codec::Json)
    }

    /// A request message in protobuf binary.
    fn to_grpc(&self, message: Bytes) -> Result<Bytes, Status> {
        let Some(method) = self.json_method() else {
            return Ok(message);
        };
        let input = method.input();
        if message.iter().all(u8::is_ascii_whitespace) {
            return Ok(Bytes::new());
        }
        let mut de = serde_json::Deserializer::from_slice(&message);
        let parsed = DynamicMessage::deserialize(input.clone(), &mut de).and_then(|m| {
            de.end()?;
            Ok(m)
        });
        match parsed {
            Ok(m) => Ok(m.encode_to_vec().into()),
            Err(e) => Err(Status::invalid_argument(format!(
                "body is not a {} in JSON: {}",
                input.full_name(),
                clip(&e.to_string())
            ))),
        }
    }

    /// A response message in the call's codec.
    fn to_connect(&self, message: Bytes) -> Result<Bytes, Status> {
        let Some(method) = self.json_method() else {
            return Ok(message);
        };
        let msg = DynamicMessage::decode(method.output(), message)
            .map_err(|e| Status::internal(format!("response message: {e}")))?;
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::new(&mut out);
        msg.serialize_with_options(&mut ser, &SerializeOptions::new())
            .map_err(|e| Status::internal(format!("response message: {e}")))?;
        Ok(out.into())
    }

    async fn unary(&self, headers: HeaderMap, body: Body, metadata: HeaderMap) -> Response<Body> {
        if let Some(status) = Status::from_header_map(&headers)
            && status.code() != Code::Ok
        {
            return self.failed(&status, metadata);
        }
        let collected = match body.collect().await {
            Ok(c) => c,
            Err(status) => return self.failed(&status, metadata),
        };
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let raw = collected.to_bytes();
        let mut metadata = metadata;
        metadata.extend(self::metadata(&trailers, "trailer-"));
        match Status::from_header_map(&trailers) {
            Some(status) if status.code() != Code::Ok => return self.failed(&status, metadata),
            Some(_) => {}
            None => {
                let status = Status::internal("the service ended the call without a status");
                return self.failed(&status, metadata);
            }
        }
        let message = match frames(raw).map(|mut m| m.pop()) {
            Ok(Some(m)) => m,
            Ok(None) => Bytes::new(),
            Err(status) => return self.failed(&status, metadata),
        };
        let message = match self.to_connect(message) {
            Ok(m) => m,
            Err(status) => return self.failed(&status, metadata),
        };
        let mut res = Response::new(Body::new(Full::new(message)));
        *res.headers_mut() = metadata;
        res.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(self.kind.content_type()),
        );
        res
    }

    fn stream(self, headers: HeaderMap, body: Body, metadata: HeaderMap) -> Response<Body> {
        // A trailers-only answer: nothing but the end of the stream.
        let head = Status::from_header_map(&headers);
        let pump = Pump {
            call: self,
            body: head.is_none().then_some(body),
            buf: BytesMut::new(),
            head,
            done: false,
        };
        let content_type = pump.call.kind.content_type();
        let stream = futures::stream::unfold(pump, |mut pump| async move {
            let frame = pump.next().await?;
            Some((Ok::<_, Status>(http_body::Frame::data(frame)), pump))
        });
        let mut res = Response::new(Body::new(StreamBody::new(stream)));
        *res.headers_mut() = metadata;
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        res
    }

    /// An error: for a unary call the HTTP status of its code and a JSON
    /// body; for a streaming one a stream that ends at once with it.
    fn failed(&self, status: &Status, metadata: HeaderMap) -> Response<Body> {
        let (http, body, content_type) = if self.kind.streaming {
            let end = end_stream(Some(self.error(status)), &HeaderMap::new());
            (StatusCode::OK, end, self.kind.content_type())
        } else {
            let body = serde_json::to_vec(&self.error(status)).unwrap_or_default();
            (
                http_status(status.code()),
                Bytes::from(body),
                "application/json",
            )
        };
        let mut res = Response::new(Body::new(Full::new(body)));
        *res.status_mut() = http;
        *res.headers_mut() = metadata;
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        res
    }

    /// Connect's JSON error: code, message and the `google.rpc.Status`
    /// details, each with its type, its bytes and, when the type is known,
    /// a readable copy.
    fn error(&self, status: &Status) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), json!(code_name(status.code())));
        if !status.message().is_empty() {
            error.insert("message".into(), json!(status.message()));
        }
        let details = tonic_types::pb::Status::decode(status.details())
            .map(|s| s.details)
            .unwrap_or_default();
        if !details.is_empty() {
            let list: Vec<Value> = details
                .iter()
                .map(|any| {
                    let mut d = Map::new();
                    d.insert("type".into(), json!(type_name(&any.type_url)));
                    d.insert(
                        "value".into(),
                        json!(base64::engine::general_purpose::STANDARD_NO_PAD.encode(&any.value)),
                    );
                    if let Some(debug) = self.schema.debug(any) {
                        d.insert("debug".into(), debug);
                    }
                    Value::Object(d)
                })
                .collect();
            error.insert("details".into(), Value::Array(list));
        }
        Value::Object(error)
    }
}

/// Reads a server-streaming gRPC response and writes Connect envelopes.
struct Pump {
    call: Call,
    body: Option<Body>,
    buf: BytesMut,
    /// The status of a trailers-only answer.
    head: Option<Status>,
    done: bool,
}

impl Pump {
    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        loop {
            if let Some(message) = take_frame(&mut self.buf) {
                let converted = message.and_then(|m| self.call.to_connect(m));
                return Some(match converted {
                    Ok(m) => envelope(0, &m),
                    Err(status) => self.end(Some(&status), &HeaderMap::new()),
                });
            }
            let Some(body) = self.body.as_mut() else {
                let head = self.head.take();
                return Some(self.end(head.as_ref(), &HeaderMap::new()));
            };
            match body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buf.extend_from_slice(&data),
                    Err(frame) => {
                        let trailers = frame.into_trailers().unwrap_or_default();
                        let status = Status::from_header_map(&trailers).unwrap_or_else(|| {
                            Status::internal("the service ended the call without a status")
                        });
                        return Some(self.end(Some(&status), &trailers));
                    }
                },
                Some(Err(status)) => return Some(self.end(Some(&status), &HeaderMap::new())),
                None => {
                    let status = Status::internal("the service ended the call without a status");
                    return Some(self.end(Some(&status), &HeaderMap::new()));
                }
            }
        }
    }

    fn end(&mut self, status: Option<&Status>, trailers: &HeaderMap) -> Bytes {
        self.done = true;
        let error = status
            .filter(|s| s.code() != Code::Ok)
            .map(|s| self.call.error(s));
        end_stream(error, trailers)
    }
}

/// The end-of-stream envelope: the error, if any, and the trailing metadata.
fn end_stream(error: Option<Value>, trailers: &HeaderMap) -> Bytes {
    let mut end = Map::new();
    if let Some(error) = error {
        end.insert("error".into(), error);
    }
    let mut meta = Map::new();
    for (name, value) in &metadata(trailers, "") {
        let list = meta
            .entry(name.as_str().to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let (Value::Array(list), Ok(v)) = (list, value.to_str()) {
            list.push(json!(v));
        }
    }
    if !meta.is_empty() {
        end.insert("metadata".into(), Value::Object(meta));
    }
    envelope(
        END_STREAM,
        &serde_json::to_vec(&Value::Object(end)).unwrap_or_default(),
    )
}

fn envelope(flags: u8, message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(flags);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

/// The messages of a streaming request's envelopes.
fn envelopes(mut raw: Bytes) -> Result<Vec<Bytes>, Status> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        if raw.len() < 5 {
            return Err(Status::invalid_argument("truncated envelope header"));
        }
        let flags = raw[0];
        let len = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]) as usize;
        raw.advance(5);
        if flags & COMPRESSED != 0 {
            return Err(Status::invalid_argument(
                "compressed envelope without a connect-content-encoding",
            ));
        }
        if flags & END_STREAM != 0 {
            return Err(Status::invalid_argument(
                "an end-of-stream envelope in a request",
            ));
        }
        if len > raw.len() {
            return Err(Status::invalid_argument(format!(
                "envelope declares {len} bytes, {} follow",
                raw.len()
            )));
        }
        out.push(raw.split_to(len));
    }
    Ok(out)
}

/// The messages of a whole gRPC response body.
fn frames(raw: Bytes) -> Result<Vec<Bytes>, Status> {
    let mut buf = BytesMut::from(raw);
    let mut out = Vec::new();
    while let Some(message) = take_frame(&mut buf) {
        out.push(message?);
    }
    if buf.is_empty() {
        Ok(out)
    } else {
        Err(Status::internal("the service sent a truncated message"))
    }
}

/// The next whole gRPC frame's message, if the buffer holds one.
fn take_frame(buf: &mut BytesMut) -> Option<Result<Bytes, Status>> {
    if buf.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf.len() < 5 + len {
        return None;
    }
    let compressed = buf[0] & COMPRESSED != 0;
    buf.advance(5);
    let message = buf.split_to(len).freeze();
    Some(if compressed {
        Err(Status::internal("the service sent a compressed message"))
    } else {
        Ok(message)
    })
}

/// Response metadata a Connect client sees: everything but the gRPC
/// protocol's own headers, each name given `prefix`.
fn metadata(headers: &HeaderMap, prefix: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if n.starts_with("grpc-")
            || matches!(
                n,
                "content-type" | "content-length" | "te" | "trailer" | "transfer-encoding"
            )
        {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(format!("{prefix}{n}").as_bytes()) {
            out.append(name, value.clone());
        }
    }
    out
}

/// `connect-timeout-ms`: a positive integer of at most ten digits.
fn connect_timeout(value: &str) -> Option<Duration> {
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().map(Duration::from_millis)
}

fn clip(text: &str) -> String {
    text.chars().take(REASON_MAX).collect()
}

/// Connect's name for a code.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status of a unary error, as the protocol maps codes.
fn http_status(code: Code) -> StatusCode {
    let n = match code {
        Code::Ok => 200,
        Code::Cancelled => 499,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::DeadlineExceeded => 504,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::PermissionDenied => 403,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::Unauthenticated => 401,
    };
    StatusCode::from_u16(n).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_at_most_ten_digits_of_milliseconds() {
        assert_eq!(connect_timeout("1500"), Some(Duration::from_millis(1500)));
        assert_eq!(
            connect_timeout("9999999999"),
            Some(Duration::from_millis(9_999_999_999))
        );
        for bad in ["", "12345678901", "-1", "1.5", "1s", " 1"] {
            assert_eq!(connect_timeout(bad), None, "{bad:?}");
        }
        // Ten digits of milliseconds still fit a grpc-timeout.
        let long = format_grpc_timeout(Duration::from_millis(9_999_999_999));
        assert!(
            focusforge_core::parse_grpc_timeout(&long).is_some(),
            "{long}"
        );
    }

    #[test]
    fn request_envelopes_are_checked() {
        let good = envelope(0, b"abc");
        assert_eq!(
            envelopes(good).expect("one"),
            vec![Bytes::from_static(b"abc")]
        );
        let past = Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff, 1]);
        assert_eq!(
            envelopes(past).err().map(|s| s.code()),
            Some(Code::InvalidArgument)
        );
        let short = Bytes::from_static(&[0, 0, 0]);
        assert_eq!(
            envelopes(short).err().map(|s| s.code()),
            Some(Code::InvalidArgument)
        );
        let compressed = envelope(COMPRESSED, b"x");
        assert_eq!(
            envelopes(compressed).err().map(|s| s.code()),
            Some(Code::InvalidArgument)
        );
        let end = envelope(END_STREAM, b"{}");
        assert_eq!(
            envelopes(end).err().map(|s| s.code()),
            Some(Code::InvalidArgument)
        );
    }

    #[test]
    fn every_code_has_the_protocols_name_and_status() {
        assert_eq!(code_name(Code::Cancelled), "canceled");
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::ResourceExhausted).as_u16(), 429);
        assert_eq!(http_status(Code::Cancelled).as_u16(), 499);
        assert_eq!(http_status(Code::Unimplemented).as_u16(), 501);
    }

    #[test]
    fn the_contracts_are_all_in_the_schema() {
        let schema = Schema::new().expect("schema");
        let m = schema
            .method("/focusforge.tasks.v1.TaskService/CreateTask")
            .expect("create task");
        assert!(!m.is_server_streaming());
        let s = schema
            .method("/focusforge.events.v1.EventService/Subscribe")
            .expect("subscribe");
        assert!(s.is_server_streaming());
        assert!(
            schema
                .method("/focusforge.tasks.v1.TaskService/Nope")
                .is_none()
        );
        assert!(
            schema
                .pool
                .get_message_by_name("google.rpc.BadRequest")
                .is_some()
        );
    }

    proptest::proptest! {
        #[test]
        fn envelopes_of_any_bytes_are_messages_or_a_clear_error(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            match envelopes(Bytes::from(bytes.clone())) {
                Ok(messages) => {
                    let total: usize = messages.iter().map(|m| m.len() + 5).sum();
                    proptest::prop_assert_eq!(total, bytes.len());
                }
                Err(status) => proptest::prop_assert_eq!(status.code(), Code::InvalidArgument),
            }
        }
    }
}
