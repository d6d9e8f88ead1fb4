//! Generated gRPC types for the agent <-> proxy capture stream (`proto/kreplay/v1/capture.proto`).

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("kreplay.v1");
}
