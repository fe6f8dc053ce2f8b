#!/usr/bin/env bash
# Benchmark of the running service on loopback: how many calls it holds with
# prompts playing (RTP pacing, CPU, memory per call) and how many call setups
# per second it takes without a failure. A benchmark, not a test: it is never
# part of the test suite. Every phase is bounded in time and in calls.
#
#   bench/run.sh [options]
#     --calls N          concurrent calls to hold (default 1000)
#     --ramp-rate R      calls/s while ramping up to N (default 200)
#     --window S         seconds measured once all N calls are up (default 20)
#     --rate R           setup rate, calls/s (default 200)
#     --step-up          double the rate (R, 2R, 4R, ...) until a step fails
#     --max-rate R       highest rate tried with --step-up (default 3200)
#     --rate-seconds S   seconds of call generation per rate (default 40: longer
#                        than the 32 s a finished SIP transaction is kept, so
#                        the service reaches its steady state within a step)
#     --runs K           repeat everything K times (fresh service each time)
#     --rtp-ports LO-HI  the service's RTP range (default 10000-29999)
#     --no-build         use the binaries already in target/release
#     --perf             profile the service with perf during the hold window
#     --service-config F pass --config F to the service (e.g. a larger max_calls)
#     --skip-hold / --skip-rate   run only one phase
#     --summary DIR      only print the summary of an earlier results directory
#
# Needs sipp, curl, jq, ss. Raw results go to bench/results/<timestamp>/.
set -euo pipefail

CALLS=1000
RAMP_RATE=200
WINDOW=20
RATE=200
STEP_UP=0
MAX_RATE=3200
RATE_SECONDS=40
RUNS=1
RTP_PORTS=10000-29999
BUILD=1
DO_HOLD=1
DO_RATE=1
PERF=0
SERVICE_CONFIG=
SUMMARY_ONLY=

die() { echo "run.sh: $*" >&2; exit 2; }
positive() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, got '$2'"; }

while (($#)); do
    case "$1" in
        --calls) positive "$1" "${2-}"; CALLS=$2; shift 2 ;;
        --ramp-rate) positive "$1" "${2-}"; RAMP_RATE=$2; shift 2 ;;
        --window) positive "$1" "${2-}"; WINDOW=$2; shift 2 ;;
        --rate) positive "$1" "${2-}"; RATE=$2; shift 2 ;;
        --step-up) STEP_UP=1; shift ;;
        --max-rate) positive "$1" "${2-}"; MAX_RATE=$2; shift 2 ;;
        --rate-seconds) positive "$1" "${2-}"; RATE_SECONDS=$2; shift 2 ;;
        --runs) positive "$1" "${2-}"; RUNS=$2; shift 2 ;;
        --rtp-ports) [[ "${2-}" =~ ^[0-9]+-[0-9]+$ ]] || die "--rtp-ports LO-HI"; RTP_PORTS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --perf) PERF=1; shift ;;
        --service-config) [[ -f "${2-}" ]] || die "--service-config needs a file"; SERVICE_CONFIG=$(realpath "$2"); shift 2 ;;
        --skip-hold) DO_HOLD=0; shift ;;
        --skip-rate) DO_RATE=0; shift ;;
        --summary) [[ -d "${2-}" ]] || die "--summary needs a results directory"; SUMMARY_ONLY=$(realpath "$2"); shift 2 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
((CALLS <= 6000)) || die "--calls is capped at 6000 (open files, probe memory)"
((WINDOW <= 120)) || die "--window is capped at 120 s"
((RATE_SECONDS <= 60)) || die "--rate-seconds is capped at 60"
((MAX_RATE <= 10000)) || die "--max-rate is capped at 10000"
((RUNS <= 10)) || die "--runs is capped at 10"

for tool in sipp curl jq ss; do
    command -v "$tool" >/dev/null || die "needs $tool"
done

cd "$(dirname "$0")/.."
REPO=$PWD
HOTLINE=${HOTLINE:-$REPO/target/release/hotline}
PROBE=$REPO/target/release/rtp-probe
SCENARIO=$REPO/bench/sipp/uac_hold.xml
FLOWS=${FLOWS:-$REPO/ivr-flows}
# --------------------------------------------------------------- summary --

summary() {
    local holds=("$RESULTS"/run-*/hold.json) rates=("$RESULTS"/run-*/rate.json)
    echo
    printf '%-5s %7s %6s %9s %9s %9s %7s %9s %6s\n' run held calls "p50 ms" "p99 ms" "max ms" "cpu %" "KiB/call" lost
    if [[ -e "${holds[0]}" ]]; then
        local f
        for f in "${holds[@]}"; do
            jq -r --arg run "$(basename "$(dirname "$f")")" \
                '[$run, (if .all_calls_held then "yes" else "NO" end), .calls, .pacing_p50_ms, .pacing_p99_ms, .pacing_max_ms, .cpu_percent_of_one_core, .kib_per_call, .lost] | @tsv' "$f"
        done | awk -F'\t' '{ printf "%-5s %7s %6s %9s %9s %9s %7s %9s %6s\n", substr($1, 5), $2, $3, $4, $5, $6, $7, $8, $9 }'
        jq -s '{
            median_pacing_p50_ms: (map(.pacing_p50_ms) | sort | .[length / 2 | floor]),
            median_pacing_p99_ms: (map(.pacing_p99_ms) | sort | .[length / 2 | floor]),
            median_cpu_percent: (map(.cpu_percent_of_one_core) | sort | .[length / 2 | floor]),
            median_kib_per_call: (map(.kib_per_call) | sort | .[length / 2 | floor])
          }' "${holds[@]}" >"$RESULTS/hold-medians.json"
        echo "medians: $(jq -c . "$RESULTS/hold-medians.json")"
    fi
    echo
    printf '%-5s %7s %9s %7s %7s %9s %7s\n' run target achieved ok failed "p99 ms" "cpu %"
    local r
    for r in "$RESULTS"/run-*/rate-*.json; do
        [[ -e "$r" ]] || continue
        jq -r --arg run "$(basename "$(dirname "$r")")" \
            '[$run, .target_rate, .achieved_rate, .successful, .failed, .pacing_p99_ms, .cpu_percent_of_one_core] | @tsv' "$r"
    done | sort -t$'\t' -k1,1 -k2,2n |
        awk -F'\t' '{ printf "%-5s %7s %9s %7s %7s %9s %7s\n", substr($1, 5), $2, $3, $4, $5, $6, $7 }'
    if [[ -e "${rates[0]}" ]]; then
        echo "highest rate with zero failures, per run: $(jq -s -c 'map(.best_rate_zero_failures)' "${rates[@]}")"
    fi
    echo
    echo "raw results: $RESULTS"
}
if [[ -n "$SUMMARY_ONLY" ]]; then
    RESULTS=$SUMMARY_ONLY
    summary | tee "$RESULTS/summary.txt"
    exit 0
fi

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$REPO/bench/results/$STAMP
mkdir -p "$RESULTS"
START_EPOCH=$(date +%s)
# The rate search stops starting new steps after this many seconds.
BUDGET_SECONDS=${BUDGET_SECONDS:-540}

# Every call holds a socket in the service and sipp; use all we may.
ulimit -n "$(ulimit -Hn)" || true
echo "open files: $(ulimit -n)"

if ((BUILD)); then
    cargo build --release --bins
fi
[[ -x "$HOTLINE" && -x "$PROBE" ]] || die "missing $HOTLINE or $PROBE (build first)"
[[ -d "$FLOWS" ]] || die "no flows directory at $FLOWS"

CLK_TCK=$(getconf CLK_TCK)
PAGE_KIB=$(( $(getconf PAGESIZE) / 1024 ))

# ---------------------------------------------------------------- helpers --

# A loopback port free for both UDP and TCP, outside the RTP range.
free_port() {
    local port tries=0
    while ((tries++ < 200)); do
        port=$((40000 + RANDOM % 20000))
        if [[ -z "$(ss -Hlnu "sport = :$port")" && -z "$(ss -Hlnt "sport = :$port")" ]]; then
            echo "$port"
            return
        fi
    done
    die "no free loopback port"
}

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
now_s() { date +%s.%N; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", a - b }'; }

metrics() { curl -fsS --max-time 2 "http://127.0.0.1:$HTTP_PORT/metrics" || true; }
# Value of one sample line of /metrics (0 when absent).
metric() {
    metrics | awk -v name="$1" '$1 == name { v = $2 } END { print (v == "" ? 0 : v) }'
}
active_ivr() { metric 'hotline_calls_active{stage="ivr"}'; }
active_all() {
    metrics | awk '$1 ~ /^hotline_calls_active\{/ { s += $2 } END { print s + 0 }'
}

# Only processes this script started and has not yet reaped are stopped.
SERVICE_PID= PROBE_PID= SIPP_PID=
cleanup() {
    local pid
    for pid in $SIPP_PID $PROBE_PID $SERVICE_PID; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT
# A probe that has already gone must not kill the script through its fifo.
trap '' PIPE

start_service() {
    local run_dir=$1
    SIP_PORT=$(free_port)
    HTTP_PORT=$(free_port)
    mkdir -p "$run_dir/data"
    local config=()
    [[ -n "$SERVICE_CONFIG" ]] && config=(--config "$SERVICE_CONFIG")
    # Logging stays at the service's default (info, one line per call
    # event), as operators run it; set RUST_LOG to change it.
    "$HOTLINE" serve "${config[@]}" \
        --sip-listen "127.0.0.1:$SIP_PORT" --http-listen "127.0.0.1:$HTTP_PORT" \
        --flows "$FLOWS" --data-dir "$run_dir/data" --rtp-ports "$RTP_PORTS" \
        </dev/null >"$run_dir/hotline.out" 2>"$run_dir/hotline.log" &
    SERVICE_PID=$!
    local i
    for ((i = 0; i < 300; i++)); do
        curl -fsS --max-time 1 "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$SERVICE_PID" 2>/dev/null || { tail -20 "$run_dir/hotline.log" >&2; die "service exited"; }
        sleep 0.1
    done
    die "service not ready after 30 s"
}

stop_service() {
    kill -TERM "$SERVICE_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$SERVICE_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVICE_PID" 2>/dev/null || true
    wait "$SERVICE_PID" 2>/dev/null || true
    SERVICE_PID=
}

# Starts the probe; its window opens on `echo start >&"$PROBE_CTL"`.
start_probe() {
    local out=$1 window=$2 fifo
    PROBE_PORT=$(free_port)
    fifo=$(mktemp -u "$RESULTS/probe-ctl.XXXX")
    mkfifo "$fifo"
    "$PROBE" listen --listen "127.0.0.1:$PROBE_PORT" --start-on-stdin \
        --duration "$window" --max-wait 900 --out "$out" <"$fifo" 2>>"$RESULTS/probe.log" &
    PROBE_PID=$!
    exec {PROBE_CTL}>"$fifo"
    rm -f "$fifo"
}

finish_probe() {
    echo stop >&"$PROBE_CTL" 2>/dev/null || true
    exec {PROBE_CTL}>&-
    wait "$PROBE_PID" 2>/dev/null || true
    PROBE_PID=
}

# sipp as the callers. Arguments: name, hold ms, then extra sipp options.
start_sipp() {
    local name=$1 hold_ms=$2
    shift 2
    sed "s/@HOLD_MS@/$hold_ms/" "$SCENARIO" >"$RUN_DIR/$name.xml"
    (
        cd "$RUN_DIR"
        # -aa: answer in-dialog OPTIONS as a phone does. sipp sends no RTP,
        # so after rtp_timeout_s the service probes each caller to see if it
        # is still there.
        exec sipp "127.0.0.1:$SIP_PORT" -sf "$name.xml" -s 1000 -aa \
            -i 127.0.0.1 -p "$(free_port)" \
            -key rtp_port "$PROBE_PORT" -key codecs "0 101" \
            -nostdin -trace_stat -stf "$name.csv" -fd 1 \
            -trace_err -error_file "$name.errors.log" \
            -trace_screen -screen_file "$name.screen.log" \
            "$@" </dev/null >"$name.out" 2>&1
    ) &
    SIPP_PID=$!
}

# Sets SIPP_RC: 0 all calls succeeded, 1 some failed, 97/99/255 see sipp(1).
wait_sipp() {
    SIPP_RC=0
    wait "$SIPP_PID" || SIPP_RC=$?
    SIPP_PID=
}

# Column of the last row of a sipp statistics CSV.
stat_last() {
    awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        c { v = $c } END { print (v == "" ? 0 : v) }' "$1"
}

# Calls/s while sipp was creating calls: slope of OutgoingCall(C) between the
# first row and the first row that reached the total.
achieved_rate() {
    awk -F';' -v total="$2" '
        NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "CurrentTime") t = i; if ($i == "OutgoingCall(C)") n = i }; next }
        { split($t, parts, "\t"); time = parts[3]; count = $n
          if (first == "") { first = time; first_n = count }
          if (count >= total && last == "") { last = time; last_n = count } }
        END { if (last == "" || last - first <= 0) print 0; else printf "%.1f\n", (last_n - first_n) / (last - first) }' "$1"
}

# ------------------------------------------------------------ hold phase --

hold_phase() {
    local run_dir=$1
    local ramp_s=$(((CALLS + RAMP_RATE - 1) / RAMP_RATE))
    # Calls outlive ramp + settling + window; the flow may still end them earlier.
    local hold_ms=$(((ramp_s + 15 + WINDOW + 5) * 1000))
    local idle_rss idle_ticks
    echo "== hold: $CALLS calls at $RAMP_RATE/s, window $WINDOW s, hold $((hold_ms / 1000)) s"

    sleep 1
    idle_rss=$(rss_kib "$SERVICE_PID")
    start_probe "$run_dir/probe-hold.json" "$WINDOW"
    local buff=()
    ((RAMP_RATE > 2000)) && buff=(-buff_size 4194304)
    start_sipp hold "$hold_ms" -l "$CALLS" -m "$CALLS" -r "$RAMP_RATE" \
        -timeout "$((hold_ms / 1000 + ramp_s + 60))s" -timeout_error "${buff[@]}"

    # Wait (bounded) until every call is in the IVR.
    local up=0 i deadline=$(( $(date +%s) + ramp_s + 30 ))
    while (($(date +%s) < deadline)); do
        up=$(active_ivr)
        ((${up%.*} >= CALLS)) && break
        kill -0 "$SIPP_PID" 2>/dev/null || break
        sleep 0.5
    done
    local up_at_start=$up
    echo "   calls in the IVR: $up_at_start of $CALLS"

    local t0 c0 t1 c1 rss_mid rss_end up_at_end
    t0=$(now_s)
    c0=$(cpu_ticks "$SERVICE_PID")
    echo start >&"$PROBE_CTL"
    local perf_pid=
    if ((PERF)) && command -v perf >/dev/null; then
        perf record -F 499 -g -p "$SERVICE_PID" -o "$run_dir/perf.data" -- sleep "$WINDOW" \
            >"$run_dir/perf.log" 2>&1 &
        perf_pid=$!
    fi
    sleep "$((WINDOW / 2))"
    rss_mid=$(rss_kib "$SERVICE_PID")
    sleep "$((WINDOW - WINDOW / 2))"
    t1=$(now_s)
    c1=$(cpu_ticks "$SERVICE_PID")
    rss_end=$(rss_kib "$SERVICE_PID")
    up_at_end=$(active_ivr)
    metrics >"$run_dir/metrics-hold.txt"
    if [[ -n "$perf_pid" ]]; then
        wait "$perf_pid" || true
        perf report -i "$run_dir/perf.data" --stdio --no-children --percent-limit 1 \
            >"$run_dir/perf-report.txt" 2>/dev/null || true
    fi
    # The probe closes its window by itself and keeps draining until stopped.
    for ((i = 0; i < 100; i++)); do
        [[ -s "$run_dir/probe-hold.json" ]] && break
        sleep 0.1
    done

    echo "   letting the calls end"
    wait_sipp
    local rc=$SIPP_RC
    finish_probe
    local loaded_rss=$((rss_mid > rss_end ? rss_mid : rss_end))
    jq -n \
        --argjson calls "$CALLS" --argjson up_start "${up_at_start:-0}" --argjson up_end "${up_at_end:-0}" \
        --argjson window "$(minus "$t1" "$t0")" \
        --argjson ticks "$((c1 - c0))" --argjson clk "$CLK_TCK" \
        --argjson idle_rss "$idle_rss" --argjson rss "$loaded_rss" \
        --argjson sipp_rc "$rc" \
        --argjson failed "$(stat_last "$run_dir/hold.csv" 'FailedCall(C)')" \
        --argjson ok "$(stat_last "$run_dir/hold.csv" 'SuccessfulCall(C)')" \
        --slurpfile probe "$run_dir/probe-hold.json" '
        {
          calls: $calls,
          ivr_active_at_window_start: $up_start,
          ivr_active_at_window_end: $up_end,
          all_calls_held: ($up_start == $calls and $up_end == $calls),
          cpu_percent_of_one_core: (($ticks / $clk) / $window * 100 | . * 10 | round / 10),
          rss_idle_kib: $idle_rss,
          rss_loaded_kib: $rss,
          kib_per_call: ((($rss - $idle_rss) / $calls) * 10 | round / 10),
          sipp_exit: $sipp_rc, sipp_successful: $ok, sipp_failed: $failed,
          streams: $probe[0].streams,
          packets_per_s: $probe[0].packets_per_s,
          pacing_p50_ms: $probe[0].pacing_error.p50_ms,
          pacing_p99_ms: $probe[0].pacing_error.p99_ms,
          pacing_max_ms: $probe[0].pacing_error.max_ms,
          jitter_p99_ms: $probe[0].interarrival_jitter.p99_ms,
          lost: $probe[0].loss.lost,
          audible_share: $probe[0].frames.audible_share,
          probe_kernel_drops: $probe[0].probe.kernel_drops
        }' >"$run_dir/hold.json"
    jq -c . "$run_dir/hold.json"

    # Bounded wait for the service to let go of every call.
    for ((i = 0; i < 60; i++)); do
        (($(active_all | cut -d. -f1) == 0)) && break
        sleep 0.5
    done
}

# ------------------------------------------------------------ rate phase --

rate_step() {
    local run_dir=$1 rate=$2
    local total=$((rate * RATE_SECONDS))
    local name="rate-$rate"
    echo "== setup rate: $rate calls/s, $total calls of 1 s"
    # The window closes early, when sipp is done.
    start_probe "$run_dir/probe-$name.json" "$((RATE_SECONDS + 60))"
    echo start >&"$PROBE_CTL"
    local buff=()
    ((rate >= 2000)) && buff=(-buff_size 4194304)
    local c0 t0 c1 t1 rejected_before
    rejected_before=$(metric 'hotline_sip_responses_total{code="503"}')
    c0=$(cpu_ticks "$SERVICE_PID")
    t0=$(now_s)
    # -l bounds sipp's open calls if the service slows down.
    start_sipp "$name" 1000 -r "$rate" -m "$total" -l "$((rate * 5))" \
        -timeout "$((RATE_SECONDS + 40))s" -timeout_error "${buff[@]}"
    wait_sipp
    local rc=$SIPP_RC
    c1=$(cpu_ticks "$SERVICE_PID")
    t1=$(now_s)
    finish_probe
    metrics >"$run_dir/metrics-$name.txt"
    jq -n \
        --argjson target "$rate" --argjson total "$total" --argjson sipp_rc "$rc" \
        --argjson ok "$(stat_last "$run_dir/$name.csv" 'SuccessfulCall(C)')" \
        --argjson failed "$(stat_last "$run_dir/$name.csv" 'FailedCall(C)')" \
        --argjson retrans "$(stat_last "$run_dir/$name.csv" 'Retransmissions(C)')" \
        --argjson achieved "$(achieved_rate "$run_dir/$name.csv" "$total")" \
        --arg setup_avg "$(stat_last "$run_dir/$name.csv" 'ResponseTimesetup(C)')" \
        --argjson ticks "$((c1 - c0))" --argjson clk "$CLK_TCK" \
        --argjson wall "$(minus "$t1" "$t0")" \
        --argjson rejected "$(minus "$(metric 'hotline_sip_responses_total{code="503"}')" "$rejected_before")" \
        --slurpfile probe "$run_dir/probe-$name.json" '
        {
          target_rate: $target, calls: $total, sipp_exit: $sipp_rc,
          successful: $ok, failed: $failed, retransmissions: $retrans,
          service_503s: $rejected,
          achieved_rate: $achieved,
          zero_failures: ($failed == 0 and $ok == $total and $sipp_rc == 0),
          setup_time_avg: $setup_avg,
          cpu_percent_of_one_core: (($ticks / $clk) / $wall * 100 | . * 10 | round / 10),
          pacing_p99_ms: $probe[0].pacing_error.p99_ms,
          lost: $probe[0].loss.lost
        }' >"$run_dir/$name.json"
    jq -c . "$run_dir/$name.json"
    local i
    for ((i = 0; i < 60; i++)); do
        (($(active_all | cut -d. -f1) == 0)) && break
        sleep 0.5
    done
    jq -e .zero_failures "$run_dir/$name.json" >/dev/null
}

rate_phase() {
    local run_dir=$1 rate=$RATE best=0
    while :; do
        if (($(date +%s) - START_EPOCH > BUDGET_SECONDS)); then
            echo "   time budget spent; stopping the rate search"
            break
        fi
        if rate_step "$run_dir" "$rate"; then
            best=$rate
        else
            break
        fi
        ((STEP_UP)) || break
        rate=$((rate * 2))
        ((rate <= MAX_RATE)) || break
    done
    echo "{\"best_rate_zero_failures\": $best}" >"$run_dir/rate.json"
}

# ------------------------------------------------------------------ main --

{
    echo "nproc: $(nproc)"
    grep -m1 '^model name' /proc/cpuinfo || true
    grep -m1 '^MemTotal' /proc/meminfo || true
    echo "kernel: $(uname -r)"
    echo "sipp: $(sipp -v 2>&1 | grep -m1 SIPp | tr -s ' ')"
    echo "git: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "service config: ${SERVICE_CONFIG:-none}"
    echo "args: calls=$CALLS ramp=$RAMP_RATE window=$WINDOW rate=$RATE step_up=$STEP_UP max_rate=$MAX_RATE rate_seconds=$RATE_SECONDS runs=$RUNS rtp=$RTP_PORTS"
} | tee "$RESULTS/machine.txt"

for ((run = 1; run <= RUNS; run++)); do
    RUN_DIR=$RESULTS/run-$run
    mkdir -p "$RUN_DIR"
    echo "=== run $run of $RUNS ($RUN_DIR)"
    start_service "$RUN_DIR"
    ((DO_HOLD)) && hold_phase "$RUN_DIR"
    ((DO_RATE)) && rate_phase "$RUN_DIR"
    stop_service
done

summary | tee "$RESULTS/summary.txt"
