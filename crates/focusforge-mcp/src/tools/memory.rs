//! The tools of the Memory service.

use super::*;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Kept an hour.
    ShortTerm,
    /// Kept a day.
    Working,
    /// Kept until forgotten.
    LongTerm,
    /// Kept until forgotten, searchable by meaning.
    Semantic,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RememberInput {
    /// What to remember.
    #[schemars(length(min = 1, max = 8000))]
    pub content: String,
    /// Default semantic.
    #[serde(default)]
    pub tier: Option<Tier>,
    /// A label such as `note`, `preference` or `mood`.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub kind: String,
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub tags: Vec<String>,
}

/// A memory.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MemoryOutput {
    pub id: String,
    pub tier: Tier,
    pub kind: String,
    pub content: String,
    pub tags: Vec<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// When it will be forgotten, for the short-term and working tiers.
    pub expires_at: Option<DateTime<Utc>>,
}

fn memory_out(m: Option<memory_pb::Memory>) -> Result<MemoryOutput, ToolError> {
    let m = m.ok_or_else(|| missing("memory"))?;
    Ok(MemoryOutput {
        tier: match memory_pb::MemoryTier::try_from(m.tier) {
            Ok(memory_pb::MemoryTier::ShortTerm) => Tier::ShortTerm,
            Ok(memory_pb::MemoryTier::Working) => Tier::Working,
            Ok(memory_pb::MemoryTier::LongTerm) => Tier::LongTerm,
            Ok(memory_pb::MemoryTier::Semantic | memory_pb::MemoryTier::Unspecified) | Err(_) => {
                Tier::Semantic
            }
        },
        id: m.id,
        kind: m.kind,
        content: m.content,
        tags: m.tags,
        created_at: ts(m.create_time),
        expires_at: ts(m.expire_time),
    })
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    Semantic,
    Keyword,
    Hybrid,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchInput {
    #[schemars(length(min = 1, max = 2000))]
    pub query: String,
    /// 1-50; default 10.
    #[serde(default)]
    #[schemars(range(min = 1, max = 50))]
    pub top_k: Option<i32>,
    /// Default hybrid.
    #[serde(default)]
    pub mode: Option<SearchMode>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Hit {
    pub memory: MemoryOutput,
    pub score: f32,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchOutput {
    /// Best first.
    pub hits: Vec<Hit>,
}

fn memory_client(mesh: &Mesh) -> Result<MemoryServiceClient<Conn>, ToolError> {
    client(mesh, MEMORY, MemoryServiceClient::new)
}

async fn remember(mesh: Mesh, caller: Caller, i: RememberInput) -> Result<MemoryOutput, ToolError> {
    let tier = match i.tier.unwrap_or(Tier::Semantic) {
        Tier::ShortTerm => memory_pb::MemoryTier::ShortTerm,
        Tier::Working => memory_pb::MemoryTier::Working,
        Tier::LongTerm => memory_pb::MemoryTier::LongTerm,
        Tier::Semantic => memory_pb::MemoryTier::Semantic,
    };
    let r = memory_client(&mesh)?
        .remember(caller.request(memory_pb::RememberRequest {
            tier: tier as i32,
            kind: i.kind,
            content: i.content,
            tags: i.tags,
            ..Default::default()
        }))
        .await?;
    memory_out(r.into_inner().memory)
}

async fn search(mesh: Mesh, caller: Caller, i: SearchInput) -> Result<SearchOutput, ToolError> {
    let mode = match i.mode.unwrap_or(SearchMode::Hybrid) {
        SearchMode::Semantic => memory_pb::SearchMode::Semantic,
        SearchMode::Keyword => memory_pb::SearchMode::Keyword,
        SearchMode::Hybrid => memory_pb::SearchMode::Hybrid,
    };
    let r = memory_client(&mesh)?
        .search_memories(caller.request(memory_pb::SearchMemoriesRequest {
            query: i.query,
            top_k: i.top_k.unwrap_or(10),
            mode: mode as i32,
        }))
        .await?
        .into_inner();
    Ok(SearchOutput {
        hits: r
            .hits
            .into_iter()
            .map(|h| {
                Ok(Hit {
                    memory: memory_out(h.memory)?,
                    score: h.score,
                })
            })
            .collect::<Result<_, ToolError>>()?,
    })
}

/// The tools of the Memory service.
pub fn tools() -> Vec<Tool> {
    use Category::*;
    vec![
        Tool::new::<RememberInput, MemoryOutput, _, _>(
            "memory.remember",
            "Remember",
            "Stores something about the user in a memory tier (semantic by default, searchable by meaning).",
            Memory,
            MEMORY,
            remember,
        ),
        Tool::new::<SearchInput, SearchOutput, _, _>(
            "memory.search",
            "Search memories",
            "Finds the user's semantic memories that best match a query, by meaning, keywords or both.",
            Memory,
            MEMORY,
            search,
        ),
    ]
}
