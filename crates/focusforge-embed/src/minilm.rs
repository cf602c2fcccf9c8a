use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config;
use tokenizers::{Tokenizer, TruncationParams};

use crate::EmbedError;
use crate::packed::PackedBert;

/// The files a model directory must hold.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// The model's position window; longer texts are truncated to it.
const MAX_TOKENS: usize = 256;

/// all-MiniLM-L6-v2 on the CPU. Inference is synchronous and uses the
/// calling thread (and candle's kernels' threads): call it from a blocking
/// context, or through a [`Batcher`](crate::Batcher).
pub struct MiniLm {
    model: PackedBert,
    tokenizer: Tokenizer,
    device: Device,
    dimensions: usize,
}

fn invalid(dir: &Path, reason: impl std::fmt::Display) -> EmbedError {
    EmbedError::ModelInvalid {
        dir: dir.display().to_string(),
        reason: reason.to_string(),
    }
}

fn inference(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Inference(e.to_string())
}

impl MiniLm {
    /// Loads the model from `dir` (holding [`MODEL_FILES`]); never reaches
    /// the network.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let path = |f: &str| -> PathBuf { dir.join(f) };
        let missing: Vec<&str> = MODEL_FILES
            .iter()
            .copied()
            .filter(|f| !path(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(EmbedError::ModelMissing {
                dir: dir.display().to_string(),
                missing: missing.join(", "),
            });
        }
        let config: Config = serde_json::from_str(
            &std::fs::read_to_string(path("config.json")).map_err(|e| invalid(dir, e))?,
        )
        .map_err(|e| invalid(dir, format!("config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_file(path("tokenizer.json"))
            .map_err(|e| invalid(dir, format!("tokenizer.json: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| invalid(dir, e))?;
        tokenizer.with_padding(None);
        let device = Device::Cpu;
        // Memory-mapping is unsafe in general (the file may change under
        // us); reading the weights keeps this crate free of unsafe code.
        let weights = std::fs::read(path("model.safetensors")).map_err(|e| invalid(dir, e))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| invalid(dir, format!("model.safetensors: {e}")))?;
        let dimensions = config.hidden_size;
        let model =
            PackedBert::load(vb, &config).map_err(|e| invalid(dir, format!("weights: {e}")))?;
        Ok(Self {
            model,
            tokenizer,
            device,
            dimensions,
        })
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Embeds a batch: tokenise (truncated to 256 tokens), run BERT over
    /// the packed tokens, mean-pool each text's tokens, L2-normalise.
    pub fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.iter().map(String::as_str).collect::<Vec<_>>(), true)
            .map_err(inference)?;
        let tokens: Vec<(&[u32], &[u32])> = encodings
            .iter()
            .map(|e| (e.get_ids(), e.get_type_ids()))
            .collect();
        self.model.embed(&tokens, &self.device).map_err(inference)
    }
}
