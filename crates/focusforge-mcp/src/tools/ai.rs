//! The tools of the Chain service.

use super::*;

/// A task to think about.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskText {
    /// The task's title.
    #[schemars(length(min = 1, max = 500))]
    pub title: String,
    /// More about it.
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub description: String,
}

/// How an answer was produced.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Provenance {
    /// The model that answered (`local:...`, `openai:...`) or `fallback`.
    pub backend: String,
    /// Whether the rule-based fallback answered.
    pub fallback_used: bool,
    /// Whether a cached answer was returned.
    pub cached: bool,
    /// The usefulness rule the model's last rejected answer broke; empty
    /// when its first answer was kept.
    pub failed_rule: String,
}

fn provenance(info: Option<chain::ChainInfo>) -> Provenance {
    let info = info.unwrap_or_default();
    Provenance {
        backend: info.backend,
        fallback_used: info.fallback_used,
        cached: info.cached,
        failed_rule: info.failed_rule,
    }
}

fn task_input(t: TaskText) -> chain::TaskInput {
    chain::TaskInput {
        title: t.title,
        description: t.description,
        ..Default::default()
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakDownInput {
    /// The task's title.
    #[schemars(length(min = 1, max = 500))]
    pub title: String,
    /// More about it.
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub description: String,
    /// 1 (a few long blocks) to 5 (many short ones); default 3.
    #[serde(default)]
    #[schemars(range(min = 1, max = 5))]
    pub granularity: Option<i32>,
    /// The minutes the whole task takes, as the user estimates them
    /// (5-1440); the blocks add up to about this.
    #[serde(default)]
    #[schemars(range(min = 5, max = 1440))]
    pub estimated_minutes: Option<i32>,
}

/// One focus block.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Block {
    pub title: String,
    pub minutes: i32,
    /// How to tell the block is done.
    pub done_when: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BreakDownOutput {
    /// The focus blocks in order.
    pub blocks: Vec<Block>,
    pub total_minutes: i32,
    pub provenance: Provenance,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AnalysisOutput {
    /// 1 (trivial) to 10.
    pub complexity: i32,
    pub estimated_minutes: i32,
    pub skills: Vec<String>,
    pub risks: Vec<String>,
    pub first_step: String,
    pub provenance: Provenance,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MotivateInput {
    /// The task the user is about to work on, if any.
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub task_title: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MotivateOutput {
    pub message: String,
    pub streak_days: i32,
    pub completed_today: i32,
    pub provenance: Provenance,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofInput {
    /// The task's title.
    #[schemars(length(min = 1, max = 500))]
    pub title: String,
    /// More about it.
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub description: String,
    /// What the user says they did.
    #[schemars(length(min = 1, max = 10000))]
    pub proof: String,
    /// A link to the result, if any.
    #[serde(default)]
    #[schemars(length(max = 2000))]
    pub link: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Accepted,
    NeedsMore,
    Rejected,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProofOutput {
    pub verdict: Verdict,
    /// 0-100.
    pub confidence: i32,
    pub reasons: Vec<String>,
    pub provenance: Provenance,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RitualInput {
    /// The task ahead, if any.
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub task_title: String,
    /// How the user feels, in a word or two.
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub mood: String,
    /// The user's local hour, 0-23.
    #[serde(default)]
    #[schemars(range(min = 0, max = 23))]
    pub hour_of_day: Option<i32>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RitualOutput {
    pub title: String,
    pub steps: Vec<String>,
    pub minutes: i32,
    pub provenance: Provenance,
}

fn chain_client(mesh: &Mesh) -> Result<ChainServiceClient<Conn>, ToolError> {
    client(mesh, CHAIN, ChainServiceClient::new)
}

async fn break_down(
    mesh: Mesh,
    caller: Caller,
    i: BreakDownInput,
) -> Result<BreakDownOutput, ToolError> {
    let r = chain_client(&mesh)?
        .break_down_task(caller.request(chain::BreakDownTaskRequest {
            task: Some(chain::TaskInput {
                estimated_minutes: i.estimated_minutes.unwrap_or(0),
                ..task_input(TaskText {
                    title: i.title,
                    description: i.description,
                })
            }),
            granularity: i.granularity.unwrap_or(3),
            no_cache: false,
            context: None,
        }))
        .await?
        .into_inner();
    Ok(BreakDownOutput {
        blocks: r
            .blocks
            .into_iter()
            .map(|b| Block {
                title: b.title,
                minutes: b.minutes,
                done_when: b.done_when,
            })
            .collect(),
        total_minutes: r.total_minutes,
        provenance: provenance(r.info),
    })
}

async fn analyze(mesh: Mesh, caller: Caller, i: TaskText) -> Result<AnalysisOutput, ToolError> {
    let r = chain_client(&mesh)?
        .analyze_task(caller.request(chain::AnalyzeTaskRequest {
            task: Some(task_input(i)),
            no_cache: false,
            context: None,
        }))
        .await?
        .into_inner();
    Ok(AnalysisOutput {
        complexity: r.complexity,
        estimated_minutes: r.estimated_minutes,
        skills: r.skills,
        risks: r.risks,
        first_step: r.first_step,
        provenance: provenance(r.info),
    })
}

async fn motivate(
    mesh: Mesh,
    caller: Caller,
    i: MotivateInput,
) -> Result<MotivateOutput, ToolError> {
    let r = chain_client(&mesh)?
        .motivate(caller.request(chain::MotivateRequest {
            task_title: i.task_title,
            no_cache: false,
            context: None,
        }))
        .await?
        .into_inner();
    Ok(MotivateOutput {
        message: r.message,
        streak_days: r.streak_days,
        completed_today: r.completed_today,
        provenance: provenance(r.info),
    })
}

async fn validate_proof(
    mesh: Mesh,
    caller: Caller,
    i: ProofInput,
) -> Result<ProofOutput, ToolError> {
    let r = chain_client(&mesh)?
        .validate_proof(caller.request(chain::ValidateProofRequest {
            task: Some(task_input(TaskText {
                title: i.title,
                description: i.description,
            })),
            proof: i.proof,
            link: i.link,
            no_cache: false,
            context: None,
        }))
        .await?
        .into_inner();
    let verdict = match chain::ProofVerdict::try_from(r.verdict) {
        Ok(chain::ProofVerdict::Accepted) => Verdict::Accepted,
        Ok(chain::ProofVerdict::Rejected) => Verdict::Rejected,
        Ok(chain::ProofVerdict::NeedsMore | chain::ProofVerdict::Unspecified) | Err(_) => {
            Verdict::NeedsMore
        }
    };
    Ok(ProofOutput {
        verdict,
        confidence: r.confidence,
        reasons: r.reasons,
        provenance: provenance(r.info),
    })
}

async fn suggest_ritual(
    mesh: Mesh,
    caller: Caller,
    i: RitualInput,
) -> Result<RitualOutput, ToolError> {
    let r = chain_client(&mesh)?
        .suggest_ritual(caller.request(chain::SuggestRitualRequest {
            task_title: i.task_title,
            mood: i.mood,
            hour_of_day: i.hour_of_day,
            no_cache: false,
            context: None,
        }))
        .await?
        .into_inner();
    Ok(RitualOutput {
        title: r.title,
        steps: r.steps,
        minutes: r.minutes,
        provenance: provenance(r.info),
    })
}

/// The tools of the Chain service.
pub fn tools() -> Vec<Tool> {
    use Category::*;
    vec![
        Tool::new::<BreakDownInput, BreakDownOutput, _, _>(
            "ai.break_down_task",
            "Break a task into focus blocks",
            "Splits a task into ordered focus blocks, each with minutes and how to tell it is done.",
            Ai,
            CHAIN,
            break_down,
        ),
        Tool::new::<TaskText, AnalysisOutput, _, _>(
            "ai.analyze_task",
            "Analyse a task",
            "Estimates a task's complexity and time, the skills it needs, its risks and the first step.",
            Ai,
            CHAIN,
            analyze,
        ),
        Tool::new::<MotivateInput, MotivateOutput, _, _>(
            "ai.motivation_coach",
            "Motivate",
            "A short motivating message from the user's recent progress.",
            Ai,
            CHAIN,
            motivate,
        ),
        Tool::new::<ProofInput, ProofOutput, _, _>(
            "ai.validate_proof",
            "Check a completion proof",
            "Judges whether the proof shows the task done: accepted, needs more, or rejected, with reasons.",
            Ai,
            CHAIN,
            validate_proof,
        ),
        Tool::new::<RitualInput, RitualOutput, _, _>(
            "ai.suggest_ritual",
            "Suggest a focus ritual",
            "A short ritual to start a focus session, fitted to the task, mood and time of day.",
            Ai,
            CHAIN,
            suggest_ritual,
        ),
    ]
}
