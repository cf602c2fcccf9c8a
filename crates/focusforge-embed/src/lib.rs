//! Sentence embeddings computed locally. [`MiniLm`] runs
//! sentence-transformers/all-MiniLM-L6-v2 (BERT, mean pooling, L2
//! normalisation, 384 dimensions) with candle from local files only;
//! inference packs a batch's tokens end to end, without padding.
//! [`Batcher`] groups concurrent requests into batches on a thread of its own,
//! off the async runtime's workers.

mod batcher;
mod minilm;
mod packed;

use async_trait::async_trait;

pub use batcher::{Batcher, BatcherSettings};
pub use minilm::{MODEL_FILES, MiniLm};

/// What fetches the model files, for messages about missing ones.
pub const FETCH_COMMAND: &str = "scripts/fetch-models";

#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    #[error("model files missing in {dir}: {missing}; run `{FETCH_COMMAND}` to fetch them")]
    ModelMissing { dir: String, missing: String },
    #[error("model files in {dir} are unusable: {reason}")]
    ModelInvalid { dir: String, reason: String },
    #[error("embedding failed: {0}")]
    Inference(String),
    #[error("the embedder has stopped")]
    Stopped,
}

/// Turns texts into unit vectors; similar texts give vectors with a high dot
/// product.
#[async_trait]
pub trait Embedder: Send + Sync + 'static {
    fn dimensions(&self) -> usize;

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Cosine similarity of two vectors (their dot product when both are unit length).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}
