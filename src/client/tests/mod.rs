//! Tests of the client over gRPC on loopback:
//! - `routing`: the retry and routing rules against fake stores (`fake`)
//!   that answer scripted region errors, with the real scheduler service;
//! - `e2e`: the Raw API against a real scheduler and a real store node.

mod e2e;
mod fake;
mod routing;
