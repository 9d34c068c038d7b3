#!/usr/bin/env bash
# Prepares a fresh Debian machine to build and test tinykv-rs.
#
# Needs: the Rust toolchain (cargo, rustc, clippy, rustfmt). Protobuf code is
# generated with a vendored protoc, so no system protobuf is required.
# RocksDB (the store's engine) builds from source through the rocksdb crate and
# needs clang's libraries; they are installed here once, ahead of that crate.
set -euo pipefail

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
dpkg -s libclang-dev >/dev/null 2>&1 || need_apt+=(libclang-dev clang)

if ((${#need_apt[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2
    exit 1
fi
for tool in clippy fmt; do
    if ! cargo "$tool" --version >/dev/null 2>&1; then
        echo "setup: cargo $tool missing; installing the component" >&2
        rustup component add "$( [ "$tool" = fmt ] && echo rustfmt || echo clippy )"
    fi
done
echo "setup: ok ($(cargo --version))"
