#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, and every test of the workspace.
#
# SIM_SEEDS sets how many seeds the raft simulation runs (default 500).
set -euo pipefail
cd "$(dirname "$0")/.."

export SIM_SEEDS="${SIM_SEEDS:-500}"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
