#!/usr/bin/env bash
# A short coverage-guided run (libFuzzer) of every fuzz target, on the stable
# toolchain: the SanitizerCoverage instrumentation cargo-fuzz would add is
# asked of rustc directly. Each target starts from its seed corpus (copied, so
# the repository is not written) and runs FUZZ_SECONDS (default 20). A crash,
# a panic, a leak of the time budget (-timeout) or memory limit fails the run;
# the input that did it is kept under fuzz/artifacts/<target>/ and printed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${FUZZ_SECONDS:-20}
targets=(sip_message sdp rtp_dtmf flow_load)
triple=$(rustc -vV | sed -n 's/^host: //p')
# Build scripts are built without these (`--target` keeps RUSTFLAGS off them).
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing"
cargo build --locked --profile fuzz --target "$triple" --bins

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
for target in "${targets[@]}"; do
  mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
  cp corpus/"$target"/* "$work/$target/corpus/"
  log="$work/$target/log"
  if "target/$triple/fuzz/$target" "$work/$target/corpus" \
      -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -max_len=65536 \
      -artifact_prefix="$work/$target/artifacts/" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cover=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "fuzz $target: ok, $runs inputs in ${seconds}s, $cover"
  else
    failed=1
    echo "fuzz $target: FAILED"
    tail -n 40 "$log"
    mkdir -p "artifacts/$target"
    for a in "$work/$target/artifacts"/*; do
      [ -e "$a" ] || continue
      cp "$a" "artifacts/$target/"
      echo "input kept: fuzz/artifacts/$target/$(basename "$a") ($(wc -c <"$a") bytes)"
      od -c "$a" | head -n 20
    done
  fi
done
exit "$failed"
