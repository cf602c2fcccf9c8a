//! The local model with its real weights.

mod local;
