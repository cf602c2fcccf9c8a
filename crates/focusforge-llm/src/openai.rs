//! An OpenAI-compatible chat-completions backend: OpenAI itself, or any
//! server that speaks the same API (llama.cpp's server, vLLM, Ollama, ...).
//! Structured requests send the schema as `response_format` `json_schema`
//! (strict); the answer is validated by the caller all the same.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::{Finish, GenerateRequest, Generation, LanguageModel, LlmError};

/// Where and what to call. The key is never printed.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// Up to and including the version, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    /// Per request, unless the caller's deadline is sooner.
    pub timeout: Duration,
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

pub struct OpenAiModel {
    name: String,
    config: OpenAiConfig,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: usize,
    #[serde(default)]
    completion_tokens: usize,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
}

impl OpenAiModel {
    pub fn new(config: OpenAiConfig) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| LlmError::Unavailable(format!("http client: {e}")))?;
        Ok(Self {
            name: format!("openai:{}", config.model),
            config,
            http,
        })
    }

    fn body(&self, request: &GenerateRequest) -> serde_json::Value {
        let mut body = json!({
            "model": self.config.model,
            "messages": request
                .messages
                .iter()
                .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
                .collect::<Vec<_>>(),
            "max_tokens": request.max_tokens,
            "temperature": request.sampling.temperature,
            "top_p": request.sampling.top_p,
            "seed": request.sampling.seed,
        });
        if let Some(schema) = &request.schema {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": "answer", "strict": true, "schema": schema.to_json_schema()},
            });
        }
        body
    }
}

#[async_trait]
impl LanguageModel for OpenAiModel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn generate(
        &self,
        request: GenerateRequest,
        stream: Option<mpsc::UnboundedSender<String>>,
    ) -> Result<Generation, LlmError> {
        let started = Instant::now();
        let mut timeout = self.config.timeout;
        if let Some(deadline) = request.deadline {
            let left = deadline.saturating_duration_since(started);
            if left.is_zero() {
                return Err(LlmError::DeadlineExceeded);
            }
            timeout = timeout.min(left);
        }
        let url = format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        );
        let mut call = self
            .http
            .post(&url)
            .timeout(timeout)
            .json(&self.body(&request));
        if let Some(key) = &self.config.api_key {
            call = call.bearer_auth(key);
        }
        let response = call.send().await.map_err(|e| {
            if e.is_timeout() {
                if request.deadline.is_some_and(|d| Instant::now() >= d) {
                    LlmError::DeadlineExceeded
                } else {
                    LlmError::Unavailable("the model server did not answer in time".into())
                }
            } else {
                LlmError::Unavailable(format!(
                    "cannot reach the model server: {}",
                    e.without_url()
                ))
            }
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            LlmError::Unavailable(format!("reading the answer: {}", e.without_url()))
        })?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(200).collect());
            return Err(match status.as_u16() {
                429 => LlmError::RateLimited,
                400..=499 => LlmError::Refused(format!("{status}: {message}")),
                _ => LlmError::Unavailable(format!("{status}: {message}")),
            });
        }
        let completion: Completion = serde_json::from_slice(&bytes)
            .map_err(|e| LlmError::Generation(format!("unreadable answer: {e}")))?;
        let choice = completion
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| LlmError::Generation("the answer has no choices".into()))?;
        if let Some(refusal) = choice.message.refusal {
            return Err(LlmError::Refused(refusal));
        }
        let text = choice.message.content.unwrap_or_default();
        if let Some(stream) = stream {
            let _ = stream.send(text.clone());
        }
        let usage = completion.usage.unwrap_or(Usage {
            prompt_tokens: 0,
            completion_tokens: 0,
        });
        Ok(Generation {
            text,
            finish: if choice.finish_reason.as_deref() == Some("length") {
                Finish::Length
            } else {
                Finish::Stop
            },
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            sampled_tokens: usage.completion_tokens,
            prompt_time: Duration::ZERO,
            generation_time: started.elapsed(),
        })
    }
}
