//! Tests of the client over gRPC on loopback:
//! - `routing`: the retry and routing rules against fake stores (`fake`)
//!   that answer scripted region errors, with the real scheduler service;
//! - `clerk`: the Clerk's session protocol against the same fake stores,
//!   which keep a session table per region;
//! - `e2e`: the Raw API and the Clerk against a real scheduler and a real
//!   store node.

mod clerk;
mod e2e;
mod fake;
mod routing;
