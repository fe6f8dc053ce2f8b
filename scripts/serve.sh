#!/usr/bin/env bash
# Builds and runs the service on its embedded defaults (no config file needed).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin hotline
exec ./target/release/hotline serve "$@"
