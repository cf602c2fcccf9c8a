//! Language models for the chains. [`LanguageModel`] is the port;
//! [`LocalModel`] runs a GGUF model (SmolLM2-135M-Instruct by default, read
//! with candle) on the crate's llama decoder on a thread of its own, reading the tokenizer and the chat
//! template from the GGUF metadata, and can restrict every sampled token to
//! what a JSON [`Schema`] allows, so structured output always parses.

mod decode;
mod gguf;
pub mod kernels;
pub mod llama;
mod local;
mod openai;
mod schema;
#[cfg(feature = "testing")]
pub mod testing;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use local::{LocalModel, MODEL_DIR, MODEL_FILE};
pub use openai::{OpenAiConfig, OpenAiModel};
pub use schema::{Schema, SchemaError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
}

/// How tokens are picked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0 picks the most likely token.
    pub temperature: f32,
    /// Nucleus sampling: the smallest set of tokens whose probabilities add
    /// up to this.
    pub top_p: f32,
    /// Divides the logits of recently generated tokens (1 = off).
    pub repeat_penalty: f32,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 0.9,
            repeat_penalty: 1.1,
            seed: 299_792_458,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub messages: Vec<Message>,
    /// Most tokens to generate (forced structure included).
    pub max_tokens: usize,
    pub sampling: Sampling,
    /// When set, the output is JSON valid against it.
    pub schema: Option<Schema>,
    /// Generation stops (with [`LlmError::DeadlineExceeded`]) past this.
    pub deadline: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its answer, or the schema's value is complete.
    Stop,
    /// The token budget ran out first.
    Length,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub text: String,
    pub finish: Finish,
    pub prompt_tokens: usize,
    /// Tokens of the answer: sampled, plus structure the schema forced.
    pub completion_tokens: usize,
    /// Of those, the tokens the model sampled.
    pub sampled_tokens: usize,
    pub prompt_time: Duration,
    pub generation_time: Duration,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    #[error("model files missing: {0}; run `scripts/fetch-models` to fetch them")]
    ModelMissing(String),
    #[error("model unusable: {0}")]
    ModelInvalid(String),
    #[error("generation failed: {0}")]
    Generation(String),
    #[error("the deadline passed during generation")]
    DeadlineExceeded,
    #[error("the model backend is unavailable: {0}")]
    Unavailable(String),
    #[error("the model backend refused: {0}")]
    Refused(String),
    #[error("the model backend is rate limiting")]
    RateLimited,
}

/// A model that answers chat messages.
#[async_trait]
pub trait LanguageModel: Send + Sync + 'static {
    /// Names the backend and model, e.g. `local:SmolLM2-135M-Instruct.Q4_1`.
    fn name(&self) -> &str;

    /// Generates an answer; text is also sent to `stream` as it is made.
    async fn generate(
        &self,
        request: GenerateRequest,
        stream: Option<mpsc::UnboundedSender<String>>,
    ) -> Result<Generation, LlmError>;
}
