//! The local model with its real weights.

mod local;
mod openai;
mod reference;
