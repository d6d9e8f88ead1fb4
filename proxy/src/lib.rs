//! kreplay proxy: the control plane. REST API for users, gRPC ingest for agents, storage, and the
//! local orchestrator that runs the recorded deployments on this host.
//!
//! Layout: `api` (axum routes, one module per route family), `ingest` (tonic service agents stream
//! into), `agents` (the registry of connected agents and what they were told), `recording`
//! (recording sessions and their status streams), `replay` (replays of recorded test sets and
//! their reports), `orchestrator` (deployments and replay instances; local mode here),
//! `store` (persistence), `server` (listeners and shutdown).

pub mod agents;
pub mod api;
pub mod auth;
pub mod config;
pub mod ingest;
pub mod mocks;
pub mod model;
pub mod orchestrator;
pub mod recording;
pub mod replay;
pub mod server;
pub mod store;
pub mod util;
