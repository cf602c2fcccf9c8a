//! The registry as a Model Context Protocol server (rmcp): over Streamable
//! HTTP, stateless, behind bearer-token auth, and over stdio for one user.

use std::convert::Infallible;
use std::sync::Arc;

use focusforge_auth::{AuthError, Verifier};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    Tool as McpTool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::Value;

use crate::jsonrpc;
use crate::registry::{Caller, Registry, Tool, ToolError};

const INSTRUCTIONS: &str = "FocusForge helps people do focused work. Tools act on the \
authenticated user's own data: tasks (create, list, start, complete), AI help (break a task \
into focus blocks, analyse it, motivate, check a completion proof, suggest a ritual), memory \
(remember, search) and plans of actions that run in the background.";

/// The MCP server over a registry. Over HTTP the caller comes from the
/// request's verified bearer token; over stdio it is fixed.
#[derive(Clone)]
pub struct McpServer {
    registry: Registry,
    fixed_caller: Option<Caller>,
    /// The registry's tools as MCP describes them, built once: rmcp asks
    /// for a tool's description on every request.
    tools: Arc<Vec<McpTool>>,
}

fn object(v: &Value) -> Arc<JsonObject> {
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

fn mcp_tool(t: &Tool) -> McpTool {
    McpTool::new(
        t.name.clone(),
        t.description.clone(),
        object(&t.input_schema),
    )
    .with_title(t.title.clone())
    .with_raw_output_schema(object(&t.output_schema))
}

impl McpServer {
    /// A server for HTTP: each request carries its caller.
    pub fn new(registry: Registry) -> Self {
        let tools = Arc::new(registry.list(None).into_iter().map(mcp_tool).collect());
        Self {
            registry,
            fixed_caller: None,
            tools,
        }
    }

    /// A server for one caller (stdio).
    pub fn for_caller(registry: Registry, caller: Caller) -> Self {
        Self {
            fixed_caller: Some(caller),
            ..Self::new(registry)
        }
    }

    fn caller(&self, ctx: &RequestContext<RoleServer>) -> Option<Caller> {
        self.fixed_caller.clone().or_else(|| {
            ctx.extensions
                .get::<http::request::Parts>()
                .and_then(|p| p.extensions.get::<Caller>())
                .cloned()
        })
    }

    /// Serves on stdin and stdout until the client closes them.
    pub async fn serve_stdio(self) -> Result<(), std::io::Error> {
        let running = self
            .serve(rmcp::transport::stdio())
            .await
            .map_err(std::io::Error::other)?;
        running.waiting().await.map_err(std::io::Error::other)?;
        Ok(())
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("focusforge", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    fn get_tool(&self, name: &str) -> Option<McpTool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = self
            .caller(&context)
            .ok_or_else(|| ErrorData::invalid_request("the request is not authenticated", None))?;
        let args = request.arguments.map(Value::Object).unwrap_or(Value::Null);
        match self.registry.call(&caller, &request.name, args).await {
            Ok(result) => Ok(CallToolResult::structured(result).into()),
            // Calling a tool that does not exist is a protocol error.
            Err(ToolError::NotFound(name)) => Err(ErrorData::invalid_params(
                format!("unknown tool: {name}"),
                None,
            )),
            Err(e) => Ok(CallToolResult::error(vec![ContentBlock::text(e.to_string())]).into()),
        }
    }
}

/// Streamable HTTP for [`McpServer`], stateless (no sessions: any instance
/// answers any request), with bearer-token auth in front: a request without
/// a valid token is refused with 401 before MCP sees it.
#[derive(Clone)]
pub struct McpHttp {
    verifier: Arc<Verifier>,
    inner: StreamableHttpService<McpServer, NeverSessionManager>,
}

impl McpHttp {
    pub fn new(registry: Registry, verifier: Arc<Verifier>) -> Self {
        let server = McpServer::new(registry);
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            // The bearer token protects the endpoint; deployments put it
            // behind their own host names.
            .disable_allowed_hosts();
        Self {
            verifier,
            inner: StreamableHttpService::new(
                move || Ok(server.clone()),
                Arc::new(NeverSessionManager::default()),
                config,
            ),
        }
    }

    /// Answers one HTTP request to the MCP endpoint.
    pub async fn handle<B>(&self, mut req: Request<B>) -> Response<tonic::body::Body>
    where
        B: http_body::Body + Send + 'static,
        B::Error: std::fmt::Display,
        B::Data: Send + 'static,
    {
        let header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.to_str().map_err(|_| AuthError::Malformed));
        let verified = match &header {
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(v)) => self.verifier.verify_header(Some(v)),
            None => self.verifier.verify_header(None),
        };
        let header = header.and_then(Result::ok);
        let user = match verified {
            Ok(user) => user,
            Err(e) => {
                let (parts, body) = req.into_parts();
                let mut res = unauthorized(&e.to_string());
                // A body left unread ends an HTTP/1 connection the client
                // thinks it may reuse; so read it, or say the connection
                // ends. HTTP/2 resets just the stream.
                if parts.version < http::Version::HTTP_2 && !drain(body).await {
                    res.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                return res;
            }
        };
        let token = header
            .and_then(focusforge_auth::bearer_token)
            .unwrap_or_default()
            .to_owned();
        req.extensions_mut().insert(Caller::with_token(
            focusforge_auth::Principal { user, acting: None },
            token,
        ));
        // Messages are checked here, so a malformed one is answered as
        // JSON-RPC says, then handed on whole.
        if req.method() == http::Method::POST {
            let (parts, body) = req.into_parts();
            let bytes = match read_body(body).await {
                Ok(bytes) => bytes,
                Err(res) => return res,
            };
            if let Err(e) = jsonrpc::check(&bytes) {
                return e.into_response();
            }
            let req = Request::from_parts(parts, http_body_util::Full::new(bytes));
            return self.inner.handle(req).await.map(tonic::body::Body::new);
        }
        self.inner.handle(req).await.map(tonic::body::Body::new)
    }
}

/// Largest MCP request body read.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// How long a client may take to send one.
const BODY_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a request body whole, within [`MAX_BODY`] and [`BODY_TIME`].
async fn read_body<B>(body: B) -> Result<bytes::Bytes, Response<tonic::body::Body>>
where
    B: http_body::Body,
    B::Error: std::fmt::Display,
{
    let body = body.map_err(|e| std::io::Error::other(e.to_string()));
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match tokio::time::timeout(BODY_TIME, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(jsonrpc::Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            jsonrpc::INVALID_REQUEST,
            format!("the request body is over {MAX_BODY} bytes"),
        )
        .into_response()),
        Ok(Err(_)) => Err(jsonrpc::Failure::new(
            StatusCode::BAD_REQUEST,
            jsonrpc::PARSE_ERROR,
            "the request body could not be read",
        )
        .into_response()),
        Err(_) => Err(jsonrpc::Failure::new(
            StatusCode::REQUEST_TIMEOUT,
            jsonrpc::PARSE_ERROR,
            "the request body did not arrive in time",
        )
        .into_response()),
    }
}

/// How much of a refused request's body is read so its connection can
/// carry the next request, and for how long.
const DRAIN_LIMIT: usize = 64 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads a refused request's body to its end; false when it is longer than
/// [`DRAIN_LIMIT`], slower than [`DRAIN_TIME`] or broken.
async fn drain<B: http_body::Body>(body: B) -> bool {
    use bytes::Buf;
    use http_body_util::BodyExt;
    let mut body = std::pin::pin!(body);
    let mut left = DRAIN_LIMIT;
    let read = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                match left.checked_sub(data.remaining()) {
                    Some(rest) => left = rest,
                    None => return false,
                }
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, read)
        .await
        .unwrap_or(false)
}

fn unauthorized(reason: &str) -> Response<tonic::body::Body> {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": -32001, "message": format!("unauthenticated: {reason}")}
    });
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(http::header::WWW_AUTHENTICATE, "Bearer")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            bytes::Bytes::from(body.to_string()),
        )))
        .unwrap_or_default()
}

impl<B> tower::Service<Request<B>> for McpHttp
where
    B: http_body::Body + Send + 'static,
    B::Error: std::fmt::Display,
    B::Data: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}
