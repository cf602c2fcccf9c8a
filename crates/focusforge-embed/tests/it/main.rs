//! The embedder with the real model files: numerical agreement with the
//! reference implementation, batching, and failure modes.

mod minilm;
