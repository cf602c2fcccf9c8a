//! End-to-end tests: the binary's services started in-process on
//! `127.0.0.1:0` and called through the gateway, with a tonic client over
//! HTTP/2 and with raw gRPC-web over HTTP/1.1 and HTTP/2.

mod abuse;
mod analytics;
mod auth;
mod backends;
mod calendar;
mod chain;
mod connect;
mod context;
mod events;
mod focus;
mod fuzz;
mod game;
mod grpc_web;
mod hardening;
mod harness;
mod integrations;
mod isolation;
mod limits;
mod mcp;
mod memory;
mod mesh;
mod mood;
mod observability;
mod orchestrator;
mod planner;
mod rules;
mod tasks;
mod usefulness;
mod validation;
mod web;
mod workflow_mesh;
