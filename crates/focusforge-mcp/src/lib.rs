//! FocusForge's services as tools for AI agents. A [`Registry`] holds each
//! tool's name, category, input and output JSON Schemas (generated from its
//! Rust types) and a handler that calls the owning service over gRPC on the
//! caller's behalf. Arguments are validated against the input schema before
//! a handler runs.

mod jsonrpc;
mod registry;
pub mod schema;
mod server;
pub mod tools;

pub use registry::{Caller, Category, Mesh, Registry, Tool, ToolError, ToolStatus, valid_name};
pub use server::{McpHttp, McpServer};
