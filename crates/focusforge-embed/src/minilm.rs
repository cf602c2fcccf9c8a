use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::EmbedError;

/// The files a model directory must hold.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// The model's position window; longer texts are truncated to it.
const MAX_TOKENS: usize = 256;

/// all-MiniLM-L6-v2 on the CPU. Inference is synchronous and uses the
/// calling thread (and candle's kernels' threads): call it from a blocking
/// context, or through a [`Batcher`](crate::Batcher).
pub struct MiniLm {
    model: BertModel,
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
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        let device = Device::Cpu;
        // Memory-mapping is unsafe in general (the file may change under
        // us); reading the weights keeps this crate free of unsafe code.
        let weights = std::fs::read(path("model.safetensors")).map_err(|e| invalid(dir, e))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| invalid(dir, format!("model.safetensors: {e}")))?;
        let dimensions = config.hidden_size;
        let model =
            BertModel::load(vb, &config).map_err(|e| invalid(dir, format!("weights: {e}")))?;
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

    /// Embeds a batch: tokenise (truncated to 256 tokens, padded to the
    /// longest), run BERT, mean-pool over real tokens, L2-normalise.
    pub fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.iter().map(String::as_str).collect::<Vec<_>>(), true)
            .map_err(inference)?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        let flat = |pick: fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings
                .iter()
                .flat_map(|e| pick(e).iter().copied())
                .collect()
        };
        let ids = Tensor::from_vec(flat(|e| e.get_ids()), (rows, width), &self.device)
            .map_err(inference)?;
        let types = Tensor::from_vec(flat(|e| e.get_type_ids()), (rows, width), &self.device)
            .map_err(inference)?;
        let mask = Tensor::from_vec(
            flat(|e| e.get_attention_mask()),
            (rows, width),
            &self.device,
        )
        .map_err(inference)?;

        let hidden = self
            .model
            .forward(&ids, &types, Some(&mask))
            .map_err(inference)?;
        let mask = mask
            .to_dtype(DType::F32)
            .map_err(inference)?
            .unsqueeze(2)
            .map_err(inference)?;
        let summed = hidden
            .broadcast_mul(&mask)
            .and_then(|t| t.sum(1))
            .map_err(inference)?;
        let counts = mask
            .sum(1)
            .and_then(|c| c.clamp(1e-9, f64::MAX))
            .map_err(inference)?;
        let mean = summed.broadcast_div(&counts).map_err(inference)?;
        let norms = mean
            .sqr()
            .and_then(|t| t.sum_keepdim(1))
            .and_then(|t| t.sqrt())
            .and_then(|t| t.clamp(1e-12, f64::MAX))
            .map_err(inference)?;
        let unit = mean.broadcast_div(&norms).map_err(inference)?;
        unit.to_vec2::<f32>().map_err(inference)
    }
}
