//! Plans: the state machine on its own, and the service over a real store
//! file and job queue.

mod plan;
mod service;
