//! The local backend: a GGUF model on the crate's llama decoder, on a
//! thread of its own.

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::time::Instant;

use async_trait::async_trait;
use candle_core::quantized::gguf_file;
use tokenizers::Tokenizer;
use tokio::sync::{mpsc, oneshot};

use crate::decode::{Decoder, Stop, Tables};
use crate::gguf;
use crate::llama::Llama;
use crate::{Finish, GenerateRequest, Generation, LanguageModel, LlmError};

/// The directory under the models directory, and the file in it.
pub const MODEL_DIR: &str = "SmolLM2-135M-Instruct";
pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

struct Job {
    request: GenerateRequest,
    stream: Option<mpsc::UnboundedSender<String>>,
    reply: oneshot::Sender<Result<Generation, LlmError>>,
}

struct Engine {
    model: Llama,
    tokenizer: Tokenizer,
    tables: Tables,
    template: minijinja::Environment<'static>,
}

/// A GGUF chat model run locally. Requests queue for the model's thread.
pub struct LocalModel {
    name: String,
    jobs: std_mpsc::Sender<Job>,
}

impl LocalModel {
    /// Loads a GGUF file (llama architecture, GPT-2 style tokenizer, chat
    /// template in the metadata).
    pub fn load(path: &Path) -> Result<Self, LlmError> {
        if !path.is_file() {
            return Err(LlmError::ModelMissing(path.display().to_string()));
        }
        let invalid =
            |e: &dyn std::fmt::Display| LlmError::ModelInvalid(format!("{}: {e}", path.display()));
        let mut file = std::fs::File::open(path).map_err(|e| invalid(&e))?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| invalid(&e))?;
        let vocabulary = gguf::vocabulary(&content)?;
        let template = gguf::string(&content, "tokenizer.chat_template")
            .ok_or_else(|| invalid(&"the GGUF metadata has no chat template"))?;
        let mut env = minijinja::Environment::new();
        env.add_template_owned("chat", template)
            .map_err(|e| invalid(&format!("chat template: {e}")))?;
        let mut stop: Vec<u32> = Vec::new();
        if let Some(eos) = gguf::u32_value(&content, "tokenizer.ggml.eos_token_id") {
            stop.push(eos);
        }
        for marker in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"] {
            if let Some(id) = vocabulary.tokenizer.token_to_id(marker) {
                stop.push(id);
            }
        }
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let model = Llama::load(&content, &mut file, threads).map_err(|e| invalid(&e))?;
        let engine = Engine {
            model,
            tables: Tables::new(vocabulary.token_bytes, stop),
            tokenizer: vocabulary.tokenizer,
            template: env,
        };
        let name = format!(
            "local:{}",
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let (jobs, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("focusforge-llm".into())
            .spawn(move || engine.run(rx))
            .map_err(|e| LlmError::Generation(format!("cannot start the model thread: {e}")))?;
        Ok(Self { name, jobs })
    }
}

impl Engine {
    fn run(mut self, jobs: std_mpsc::Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            if job.reply.is_closed() {
                continue;
            }
            let result = self.generate(job.request, job.stream);
            let _ = job.reply.send(result);
        }
    }

    fn prompt(&self, request: &GenerateRequest) -> Result<String, LlmError> {
        let messages: Vec<_> = request
            .messages
            .iter()
            .map(|m| minijinja::context! { role => m.role.as_str(), content => m.content })
            .collect();
        self.template
            .get_template("chat")
            .and_then(|t| {
                t.render(minijinja::context! {
                    messages => messages,
                    add_generation_prompt => true,
                })
            })
            .map_err(|e| LlmError::Generation(format!("chat template: {e}")))
    }

    fn generate(
        &mut self,
        request: GenerateRequest,
        stream: Option<mpsc::UnboundedSender<String>>,
    ) -> Result<Generation, LlmError> {
        let prompt = self.prompt(&request)?;
        let ids = self
            .tokenizer
            .encode(prompt, false)
            .map_err(|e| LlmError::Generation(e.to_string()))?
            .get_ids()
            .to_vec();
        let started = Instant::now();
        let mut decoder = Decoder::new(
            &mut self.model,
            &self.tables,
            &self.tokenizer,
            request.sampling,
            request.max_tokens,
            request.deadline,
            stream,
        );
        let fail = |stop: Stop| match stop {
            Stop::Failed(e) => e,
            Stop::Budget => LlmError::Generation("token budget exhausted".into()),
        };
        decoder.prompt(&ids).map_err(fail)?;
        let prompt_time = started.elapsed();
        let finish = match &request.schema {
            Some(schema) => match decoder.value(schema) {
                Ok(()) => Finish::Stop,
                Err(Stop::Budget) => Finish::Length,
                Err(Stop::Failed(e)) => return Err(e),
            },
            None => decoder.free().map_err(fail)?,
        };
        let text = String::from_utf8_lossy(&decoder.out).into_owned();
        Ok(Generation {
            text,
            finish,
            prompt_tokens: ids.len(),
            completion_tokens: decoder.used,
            sampled_tokens: decoder.sampled,
            prompt_time,
            generation_time: started.elapsed() - prompt_time,
        })
    }
}

#[async_trait]
impl LanguageModel for LocalModel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn generate(
        &self,
        request: GenerateRequest,
        stream: Option<mpsc::UnboundedSender<String>>,
    ) -> Result<Generation, LlmError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                request,
                stream,
                reply,
            })
            .map_err(|_| LlmError::Unavailable("the model thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| LlmError::Unavailable("the model thread has stopped".into()))?
    }
}
