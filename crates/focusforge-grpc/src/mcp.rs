use focusforge_core::{Error, FieldViolation};
use focusforge_mcp::{Caller, Category, Registry, Tool, ToolError};
use focusforge_proto::mcp::v1 as pb;
use focusforge_proto::mcp::v1::mcp_service_server::McpService;
use tonic::{Request, Response, Status};

use crate::{caller, into_status};

/// `focusforge.mcp.v1.McpService` over the tool registry.
#[derive(Clone)]
pub struct McpApi(pub Registry);

type Reply<T> = Result<Response<T>, Status>;

fn category_pb(c: Category) -> i32 {
    let v = match c {
        Category::Ai => pb::ToolCategory::Ai,
        Category::Tasks => pb::ToolCategory::Tasks,
        Category::Mood => pb::ToolCategory::Mood,
        Category::Gamification => pb::ToolCategory::Gamification,
        Category::Integrations => pb::ToolCategory::Integrations,
        Category::Memory => pb::ToolCategory::Memory,
        Category::Planner => pb::ToolCategory::Planner,
        Category::Focus => pb::ToolCategory::Focus,
        Category::Calendar => pb::ToolCategory::Calendar,
        Category::Analytics => pb::ToolCategory::Analytics,
        Category::Workflows => pb::ToolCategory::Workflows,
    };
    v as i32
}

fn category(raw: i32) -> Result<Option<Category>, Error> {
    let c = pb::ToolCategory::try_from(raw)
        .map_err(|_| Error::invalid("category", format!("unknown value {raw}")))?;
    Ok(match c {
        pb::ToolCategory::Unspecified => None,
        pb::ToolCategory::Ai => Some(Category::Ai),
        pb::ToolCategory::Tasks => Some(Category::Tasks),
        pb::ToolCategory::Mood => Some(Category::Mood),
        pb::ToolCategory::Gamification => Some(Category::Gamification),
        pb::ToolCategory::Integrations => Some(Category::Integrations),
        pb::ToolCategory::Memory => Some(Category::Memory),
        pb::ToolCategory::Planner => Some(Category::Planner),
        pb::ToolCategory::Focus => Some(Category::Focus),
        pb::ToolCategory::Calendar => Some(Category::Calendar),
        pb::ToolCategory::Analytics => Some(Category::Analytics),
        pb::ToolCategory::Workflows => Some(Category::Workflows),
    })
}

fn tool_pb(t: &Tool) -> pb::Tool {
    pb::Tool {
        name: t.name.clone(),
        title: t.title.clone(),
        description: t.description.clone(),
        category: category_pb(t.category),
        input_schema_json: t.input_schema.to_string(),
        output_schema_json: t.output_schema.to_string(),
        service: t.service.to_owned(),
    }
}

/// Tool failures as statuses: the registry's kinds keep their code, the
/// upstream's status passes through.
fn tool_status(e: ToolError) -> Status {
    match e {
        ToolError::NotFound(name) => into_status(Error::NotFound(format!("tool {name:?}"))),
        ToolError::Invalid(violations) => into_status(Error::InvalidArgument(
            violations
                .into_iter()
                .map(|v| FieldViolation {
                    field: if v.path.is_empty() {
                        "arguments".into()
                    } else {
                        format!("arguments.{}", v.path)
                    },
                    description: v.rule,
                })
                .collect(),
        )),
        ToolError::Unavailable(msg) => Status::unavailable(msg),
        ToolError::Upstream(status) => status,
    }
}

/// The caller the interceptor verified.
fn who<T>(req: &Request<T>) -> Result<Caller, Status> {
    crate::identity(req)
}

#[tonic::async_trait]
impl McpService for McpApi {
    async fn list_tools(&self, req: Request<pb::ListToolsRequest>) -> Reply<pb::ListToolsResponse> {
        caller(&req)?;
        let filter = category(req.get_ref().category).map_err(into_status)?;
        Ok(Response::new(pb::ListToolsResponse {
            tools: self.0.list(filter).into_iter().map(tool_pb).collect(),
        }))
    }

    async fn call_tool(&self, req: Request<pb::CallToolRequest>) -> Reply<pb::CallToolResponse> {
        let who = who(&req)?;
        let req = req.into_inner();
        let args = if req.arguments_json.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&req.arguments_json).map_err(|e| {
                into_status(Error::invalid(
                    "arguments_json",
                    format!("is not JSON: {e}"),
                ))
            })?
        };
        let result = self
            .0
            .call(&who, &req.name, args)
            .await
            .map_err(tool_status)?;
        Ok(Response::new(pb::CallToolResponse {
            result_json: result.to_string(),
            text: serde_json::to_string_pretty(&result).unwrap_or_default(),
        }))
    }

    async fn get_status(&self, req: Request<pb::GetStatusRequest>) -> Reply<pb::GetStatusResponse> {
        caller(&req)?;
        Ok(Response::new(pb::GetStatusResponse {
            tools: self
                .0
                .status()
                .await
                .into_iter()
                .map(|s| pb::ToolStatus {
                    name: s.name,
                    service: s.service.to_owned(),
                    available: s.available,
                    detail: s.detail,
                })
                .collect(),
        }))
    }
}
