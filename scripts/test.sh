#!/usr/bin/env bash
# Every test, with what the tests need installed first (Debian, as root or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v sipp >/dev/null || need+=(sip-tester)
[ -f /usr/share/sip-tester/dtmf_2833_2.pcap ] || need+=(sip-tester)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo build --locked --bins
./target/debug/hotline flows check ivr-flows
./target/debug/hotline flows test ivr-flows
./scripts/check-monitoring.sh
cargo test --locked -- --test-threads 4
