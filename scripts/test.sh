#!/usr/bin/env bash
# Every test, with what the tests need installed first (Debian, as root or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v sipp >/dev/null || need+=(sip-tester)
[ -f /usr/share/sip-tester/dtmf_2833_2.pcap ] || need+=(sip-tester)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
# Debian's baresip as an agent's softphone (aufile, aubridge and menu modules).
[ -f /usr/lib/baresip/modules/aufile.so ] || need+=(baresip-core)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
command -v systemd-analyze >/dev/null || need+=(systemd)
# Cluster tests: a real Redis and Kamailio in front of the nodes (started by
# the tests themselves on loopback ports, and stopped by them).
command -v redis-server >/dev/null || need+=(redis-server)
command -v kamailio >/dev/null || need+=(kamailio)
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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked -- --test-threads 4 2>&1 | tee "$log"
# One closing line for the whole suite (the last runner line is the doc tests').
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
# A short coverage-guided fuzz run of every target (FUZZ_SECONDS each).
./scripts/fuzz.sh
