//! The tool registry: every tool's name, category, schemas and handler, in
//! one deterministic order.

use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::schema::{Violation, validate};

/// What a tool is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Ai,
    Tasks,
    Mood,
    Gamification,
    Integrations,
    Memory,
    Planner,
    Focus,
    Calendar,
    Analytics,
    Workflows,
}

impl Category {
    pub const ALL: [Category; 11] = [
        Category::Ai,
        Category::Tasks,
        Category::Mood,
        Category::Gamification,
        Category::Integrations,
        Category::Memory,
        Category::Planner,
        Category::Focus,
        Category::Calendar,
        Category::Analytics,
        Category::Workflows,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Ai => "ai",
            Category::Tasks => "tasks",
            Category::Mood => "mood",
            Category::Gamification => "gamification",
            Category::Integrations => "integrations",
            Category::Memory => "memory",
            Category::Planner => "planner",
            Category::Focus => "focus",
            Category::Calendar => "calendar",
            Category::Analytics => "analytics",
            Category::Workflows => "workflows",
        }
    }
}

pub use focusforge_mesh::{Caller, Mesh};

/// Why a tool call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ToolError {
    #[error("no tool named {0:?}")]
    NotFound(String),
    #[error("invalid arguments: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Violation>),
    /// The service the tool needs is not deployed or does not answer.
    #[error("{0}")]
    Unavailable(String),
    /// The service answered with an error.
    #[error("{}", .0.message())]
    Upstream(tonic::Status),
}

impl From<tonic::Status> for ToolError {
    fn from(s: tonic::Status) -> Self {
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::Unimplemented => {
                ToolError::Unavailable(format!("the service is unavailable: {}", s.message()))
            }
            _ => ToolError::Upstream(s),
        }
    }
}

/// Runs one tool.
#[async_trait]
pub(crate) trait ToolHandler: Send + Sync + 'static {
    async fn call(&self, mesh: &Mesh, caller: &Caller, args: Value) -> Result<Value, ToolError>;
}

/// A handler over typed input and output.
struct Typed<I, O, F> {
    f: F,
    _types: PhantomData<fn(I) -> O>,
}

#[async_trait]
impl<I, O, F, Fut> ToolHandler for Typed<I, O, F>
where
    I: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    F: Fn(Mesh, Caller, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, ToolError>> + Send + 'static,
{
    async fn call(&self, mesh: &Mesh, caller: &Caller, args: Value) -> Result<Value, ToolError> {
        let input: I = serde_json::from_value(args).map_err(|e| {
            ToolError::Invalid(vec![Violation {
                path: String::new(),
                rule: e.to_string(),
            }])
        })?;
        let out = (self.f)(mesh.clone(), caller.clone(), input).await?;
        serde_json::to_value(out)
            .map_err(|e| ToolError::Upstream(tonic::Status::internal(e.to_string())))
    }
}

/// One tool.
#[derive(Clone)]
pub struct Tool {
    /// `[a-z0-9_.-]`, unique.
    pub name: String,
    pub title: String,
    pub description: String,
    pub category: Category,
    pub input_schema: Value,
    pub output_schema: Value,
    /// The gRPC service it calls.
    pub service: &'static str,
    handler: Arc<dyn ToolHandler>,
}

fn schema_of<T: JsonSchema>() -> Value {
    let mut v = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("$schema");
        m.remove("title");
    }
    v
}

impl Tool {
    /// A tool whose schemas come from its Rust input and output types.
    pub fn new<I, O, F, Fut>(
        name: &str,
        title: &str,
        description: &str,
        category: Category,
        service: &'static str,
        f: F,
    ) -> Self
    where
        I: DeserializeOwned + JsonSchema + Send + 'static,
        O: Serialize + JsonSchema + Send + 'static,
        F: Fn(Mesh, Caller, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, ToolError>> + Send + 'static,
    {
        Self {
            name: name.to_owned(),
            title: title.to_owned(),
            description: description.to_owned(),
            category,
            input_schema: schema_of::<I>(),
            output_schema: schema_of::<O>(),
            service,
            handler: Arc::new(Typed {
                f,
                _types: PhantomData,
            }),
        }
    }
}

/// Whether a tool can be called now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolStatus {
    pub name: String,
    pub service: &'static str,
    pub available: bool,
    /// Why not, when it is not.
    pub detail: String,
}

/// All tools, ordered by category then name.
#[derive(Clone)]
pub struct Registry {
    tools: Arc<Vec<Tool>>,
    mesh: Mesh,
}

/// Tool names: `[a-z0-9_.-]`, 1-64 characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
}

impl Registry {
    /// # Panics
    /// On an invalid or duplicate tool name: the tool set is fixed at
    /// build time, so this is a programming error caught by the tests.
    pub fn new(mesh: Mesh, mut tools: Vec<Tool>) -> Self {
        let mut names = std::collections::HashSet::new();
        for t in &tools {
            assert!(valid_name(&t.name), "bad tool name {:?}", t.name);
            assert!(names.insert(t.name.as_str()), "duplicate tool {:?}", t.name);
        }
        tools.sort_by(|a, b| (a.category, &a.name).cmp(&(b.category, &b.name)));
        Self {
            tools: Arc::new(tools),
            mesh,
        }
    }

    /// The tools, optionally of one category, in a stable order.
    pub fn list(&self, category: Option<Category>) -> Vec<&Tool> {
        self.tools
            .iter()
            .filter(|t| category.is_none_or(|c| t.category == c))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// Validates the arguments against the tool's input schema, then runs
    /// it on the caller's behalf. Missing arguments count as `{}`.
    pub async fn call(&self, caller: &Caller, name: &str, args: Value) -> Result<Value, ToolError> {
        let tool = self
            .get(name)
            .ok_or_else(|| ToolError::NotFound(name.to_owned()))?;
        let args = if args.is_null() {
            Value::Object(serde_json::Map::new())
        } else {
            args
        };
        let violations = validate(&tool.input_schema, &args);
        if !violations.is_empty() {
            return Err(ToolError::Invalid(violations));
        }
        tool.handler.call(&self.mesh, caller, args).await
    }

    /// Each tool's availability: its service answers health checks as
    /// SERVING through the mesh.
    pub async fn status(&self) -> Vec<ToolStatus> {
        let services: std::collections::BTreeSet<&'static str> =
            self.tools.iter().map(|t| t.service).collect();
        // One health check per service, all at once.
        let checks = services.into_iter().map(|service| {
            let conn = self.mesh.conn(service);
            async move {
                let mut health = match conn {
                    Ok(conn) => HealthClient::new(conn),
                    Err(s) => return (service, (false, s.message().to_owned())),
                };
                let check = tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    health.check(HealthCheckRequest {
                        service: service.to_owned(),
                    }),
                )
                .await;
                let state = match check {
                    Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32 => {
                        (true, String::new())
                    }
                    Ok(Ok(_)) => (false, format!("{service} is not serving")),
                    Ok(Err(s)) if s.code() == tonic::Code::NotFound => {
                        (false, format!("{service} is not deployed here"))
                    }
                    Ok(Err(s)) => (false, format!("{service} is unreachable: {}", s.message())),
                    Err(_) => (false, format!("{service} did not answer in time")),
                };
                (service, state)
            }
        });
        let services: BTreeMap<&'static str, (bool, String)> = futures::future::join_all(checks)
            .await
            .into_iter()
            .collect();
        self.tools
            .iter()
            .map(|t| {
                let (available, detail) = services.get(t.service).cloned().unwrap_or_default();
                ToolStatus {
                    name: t.name.clone(),
                    service: t.service,
                    available,
                    detail,
                }
            })
            .collect()
    }
}
