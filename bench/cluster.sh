#!/usr/bin/env bash
# Cluster benchmark (not a test): hotline nodes behind Kamailio sharing their
# queues through Redis, all on loopback. Run it with --nodes 1 and --nodes 2
# to compare; every phase is bounded in calls and time.
#
# Phases:
#   setup  sipp places 1 s calls through Kamailio at each rate of
#          --setup-rates (40 s per rate, stopping at the first rate with a
#          failure): the IVR's setup rate through the front.
#   join   --callers callers arrive at --rate calls/s, choose Polish (4) and
#          "speak to someone" (0), and wait: joins per second the shared
#          queue takes, callers waiting across the nodes (every one must be
#          counted), Redis commands per joined caller.
#   offer  --agents agents (wrap-up 0 s, talking --talk-ms each call) work
#          through the waiting callers for --window s: the time from an
#          agent's BYE (the agent is free) to the INVITE that offers them the
#          next caller (p50/p99 from the nodes' logs), offers in arrival
#          order across the nodes (from the queue logs), Redis commands per
#          offer, and CPU of each node, Redis and Kamailio apart from sipp.
#          Round trips are counted (Redis MONITOR) over the window's first
#          third (at most 10 s); offer times and CPU over the rest, without
#          MONITOR, which slows every Redis command.
#
#   bench/cluster.sh [--nodes 1|2] [--callers N] [--agents M] [--rate R]
#                    [--talk-ms T] [--window S] [--setup-rates "R1 R2 .."]
#                    [--skip-setup] [--standalone] [--stages]
#
# --stages (one node) logs the store's steps at debug level and splits each
# offer's time: the agent's BYE to the dispatcher reading the event, the
# dispatcher's decision and offer script, and the node taking the offer.
#
# --standalone runs one node without Redis (queues in the process), the
# baseline for what the shared queue adds to an offer decision.
#
# Needs sipp, kamailio, redis-server, redis-cli, curl, python3. Raw results
# (logs, sipp CSVs, Redis INFO, queue logs) go to bench/results/cluster-*/.
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=2 CALLERS=800 AGENTS=50 RATE=200 TALK_MS=3000 WINDOW=30
SETUP_RATES="100 200 400" SKIP_SETUP=0 SETUP_SECONDS=40 STANDALONE=0 STAGES=0
while (($#)); do
    case "$1" in
        --nodes) NODES=$2; shift 2 ;;
        --callers) CALLERS=$2; shift 2 ;;
        --agents) AGENTS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --talk-ms) TALK_MS=$2; shift 2 ;;
        --window) WINDOW=$2; shift 2 ;;
        --setup-rates) SETUP_RATES=$2; shift 2 ;;
        --skip-setup) SKIP_SETUP=1; shift ;;
        --standalone) STANDALONE=1; NODES=1; shift ;;
        --stages) STAGES=1; shift ;;
        -h | --help) sed -n '2,32p' "$0"; exit 0 ;;
        *) echo "cluster.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
((NODES == 1 || NODES == 2)) || { echo "cluster.sh: --nodes is 1 or 2" >&2; exit 2; }
if ((STAGES)); then
    ((NODES == 1 && ! STANDALONE)) || { echo "cluster.sh: --stages is for one node with Redis" >&2; exit 2; }
    export RUST_LOG="info,hotline::cluster::store=debug"
fi
for tool in sipp kamailio redis-server redis-cli curl python3; do
    command -v "$tool" >/dev/null || { echo "cluster.sh: needs $tool" >&2; exit 2; }
done

source bench/lib.sh
# CPU ticks of a whole process group (Kamailio's workers).
group_ticks() { local t=0 p; for p in $(pgrep -g "$1"); do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }
# A metric summed over the nodes and over every label set that has the
# labels given: metric_sum 'hotline_calls_active{stage="queue"}'.
metric_sum() {
    local port
    for port in "${HTTP_PORTS[@]}"; do curl -s "http://127.0.0.1:$port/metrics"; done | python3 -c '
import re, sys
want = sys.argv[1]
name, _, labels = want.partition("{")
need = set(re.findall(r"(\w+)=\"([^\"]*)\"", labels))
total = 0.0
for line in sys.stdin:
    m = re.match(r"(\w+)(?:\{(.*)\})?\s+(\S+)", line)
    if m and m.group(1) == name and need <= set(re.findall(r"(\w+)=\"([^\"]*)\"", m.group(2) or "")):
        total += float(m.group(3))
print(int(total) if total == int(total) else total)' "$1"
}
redis_ticks() {
    redis-cli -p "$REDIS_PORT" info cpu | awk -F: -v hz="$(getconf CLK_TCK)" '
        /^used_cpu_(sys|user):/ { s += $2 } END { printf "%d\n", s * hz }'
}
# Client round trips to Redis while a phase runs: MONITOR lists every command
# with its source; commands a Lua script runs say "lua" and are not round
# trips. MONITOR costs Redis some CPU, which the figures below include.
monitor_start() { redis-cli -p "$REDIS_PORT" monitor >"$RUN_DIR/monitor-$1.txt" 2>&1 & MONITOR_PID=$!; sleep 0.2; }
monitor_stop() { # name -> "round_trips script_commands"
    kill "$MONITOR_PID" 2>/dev/null || true; wait "$MONITOR_PID" 2>/dev/null || true
    awk '/^[0-9.]+ \[[0-9]+ lua\]/ { s++; next } /^[0-9.]+ \[/ { c++ } END { print c + 0, s + 0 }' "$RUN_DIR/monitor-$1.txt"
    rm -f "$RUN_DIR/monitor-$1.txt"
}
pct() { python3 -c "print(round(100 * $1 / $(getconf CLK_TCK) / $2, 1))"; }

ulimit -n "$(ulimit -Hn)" || true
RUN_DIR="bench/results/cluster-$NODES-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RUN_DIR"
BIN=${HOTLINE:-target/release/hotline}
PROBE=${RTP_PROBE:-target/release/rtp-probe}
[ -x "$BIN" ] && [ -x "$PROBE" ] || cargo build --release --bins
"$PROBE" pcap --out "$RUN_DIR/agent-talk.pcap" --seconds $(((TALK_MS + 999) / 1000))

PIDS=() KAMAILIO_PID="" SIPP_PIDS=()
cleanup() {
    trap - EXIT INT TERM
    for p in "${SIPP_PIDS[@]}" "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "$KAMAILIO_PID" ] && kill -- "-$KAMAILIO_PID" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# Redis: no persistence, the nodes keep their own records.
REDIS_PORT=$(free_tcp_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    >"$RUN_DIR/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# The agents: b1..bM, Polish, wrap-up 0 so an agent is free at their BYE.
write_agents "$RUN_DIR/agents.yaml" b "$AGENTS" "wrap_up: 0s"
write_service_config "$RUN_DIR/hotline.yaml" "$PWD/$RUN_DIR/agents.yaml" \
    "  other_rate: {per_second: 5000, burst: 5000}"

FRONT_PORT=$(free_port)
SIP_PORTS=() HTTP_PORTS=() NODE_PIDS=()
for n in $(seq 1 "$NODES"); do
    SIP_PORTS+=("$(free_port)"); HTTP_PORTS+=("$(free_tcp_port)")
done
: >"$RUN_DIR/dispatcher.list"
for port in "${SIP_PORTS[@]}"; do echo "1 sip:127.0.0.1:$port" >>"$RUN_DIR/dispatcher.list"; done
setsid kamailio -f deploy/kamailio/kamailio.cfg -DD -E -m 64 -M 8 \
    -A "LISTEN=udp:127.0.0.1:$FRONT_PORT" \
    -A "DISPATCHER_LIST=\"$PWD/$RUN_DIR/dispatcher.list\"" \
    -P "$PWD/$RUN_DIR/kamailio.pid" -Y "$PWD/$RUN_DIR" >"$RUN_DIR/kamailio.log" 2>&1 &
KAMAILIO_PID=$!

for n in $(seq 1 "$NODES"); do
    i=$((n - 1))
    rtp_lo=$((30000 + i * 5000))
    cluster_flags=(--node-id "n$n" --redis "redis://127.0.0.1:$REDIS_PORT/0")
    ((STANDALONE)) && cluster_flags=()
    "$BIN" serve --config "$RUN_DIR/hotline.yaml" "${cluster_flags[@]}" \
        --sip-listen "127.0.0.1:${SIP_PORTS[$i]}" --http-listen "127.0.0.1:${HTTP_PORTS[$i]}" \
        --flows ivr-flows --data-dir "$RUN_DIR/n$n" --rtp-ports "$rtp_lo-$((rtp_lo + 4999))" \
        >"$RUN_DIR/n$n.log" 2>&1 &
    NODE_PIDS+=($!); PIDS+=($!)
done
for port in "${HTTP_PORTS[@]}"; do
    ready=
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && { ready=1; break; }
        sleep 0.1
    done
    [ -n "$ready" ] || { echo "a node did not start (see $RUN_DIR/n*.log)" >&2; exit 1; }
done
# Kamailio marks a node up after its first answered OPTIONS.
sleep 3

SINK_PORT=$(free_port)
"$PROBE" listen --listen "127.0.0.1:$SINK_PORT" --echo --duration 3600 --max-wait 3600 \
    --max-streams $((CALLERS + 100)) --out "$RUN_DIR/probe.json" >/dev/null 2>&1 &
SINK_PID=$!; PIDS+=("$SINK_PID")

callers() { # name, scenario, then sipp options
    local name=$1 scenario=$2
    shift 2
    sipp "127.0.0.1:$FRONT_PORT" -sf "$scenario" -s 1000 -i 127.0.0.1 -p "$(free_port)" \
        -key rtp_port "$SINK_PORT" -key codecs "0 101" -aa -nostdin \
        -trace_stat -stf "$RUN_DIR/$name.csv" -fd 1 "$@" >"$RUN_DIR/$name.out" 2>&1
}
stat_last() {
    awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        c { v = $c } END { print (v == "" ? 0 : v) }' "$1"
}
node_ticks() { local t=0 p; for p in "${NODE_PIDS[@]}"; do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }

SUMMARY="$RUN_DIR/summary.txt"
say() { echo "$*" | tee -a "$SUMMARY"; }
say "cluster benchmark: $NODES node(s)$( ((STANDALONE)) && echo " (standalone, no Redis)") behind Kamailio, Redis $(redis-server --version | awk '{ print $3 }'), $(nproc) CPUs, $(date -u +%FT%TZ)"

# ----------------------------------------------------------- setup phase --
if ((SKIP_SETUP == 0)); then
    sed "s/@HOLD_MS@/1000/" bench/sipp/uac_hold.xml >"$RUN_DIR/uac_1s.xml"
    best=0
    for rate in $SETUP_RATES; do
        total=$((rate * SETUP_SECONDS))
        n0=$(node_ticks); k0=$(group_ticks "$KAMAILIO_PID"); s0=$(date +%s.%N)
        rc=0
        callers "setup-$rate" "$RUN_DIR/uac_1s.xml" -r "$rate" -m "$total" -l $((rate * 5)) \
            -timeout $((SETUP_SECONDS + 40))s -timeout_error || rc=$?
        n1=$(node_ticks); k1=$(group_ticks "$KAMAILIO_PID"); s1=$(date +%s.%N)
        wall=$(python3 -c "print($s1 - $s0)")
        ok=$(stat_last "$RUN_DIR/setup-$rate.csv" 'SuccessfulCall(C)')
        failed=$(stat_last "$RUN_DIR/setup-$rate.csv" 'FailedCall(C)')
        say "setup $rate/s: $ok of $total calls ok, $failed failed (sipp exit $rc); nodes CPU $(pct $((n1 - n0)) "$wall") % of one core, Kamailio $(pct $((k1 - k0)) "$wall") %"
        # Let every 1 s call end and the finished transactions age out.
        sleep 35
        ((rc == 0 && failed == 0 && ok == total)) || break
        best=$rate
    done
    say "setup: highest rate without a failure: $best calls/s"
fi

# ------------------------------------------------------------ join phase --
monitor_start rest; sleep 10; read -r rest_trips rest_script < <(monitor_stop rest)
idle_rate=$(python3 -c "print($rest_trips / 10)")
say "Redis at rest: $idle_rate round trips/s from the nodes (heartbeats, views, day totals), $(python3 -c "print($rest_script / 10)") commands/s inside scripts"

monitor_start join
rt0=$(redis_ticks); n0=$(node_ticks); k0=$(group_ticks "$KAMAILIO_PID"); s0=$(date +%s.%N)
callers join tests/sipp/call_queue_until_bye.xml -key digit 4 -key digit2 0 \
    -l "$CALLERS" -m "$CALLERS" -r "$RATE" -timeout 900s -buff_size 4194304 &
SIPP_PIDS+=($!)
# Wait until every caller is in the queue (bounded: ramp + IVR + 60 s).
deadline=$(($(date +%s) + CALLERS / RATE + 90))
while (($(date +%s) < deadline)); do
    joined=$(metric_sum 'hotline_calls_active{stage="queue"}')
    ((${joined%.*} >= CALLERS)) && break
    sleep 0.5
done
s1=$(date +%s.%N); rt1=$(redis_ticks); n1=$(node_ticks); k1=$(group_ticks "$KAMAILIO_PID")
read -r trips script_cmds < <(monitor_stop join)
wall=$(python3 -c "print($s1 - $s0)")
joined=$(metric_sum 'hotline_calls_active{stage="queue"}'); joined=${joined%.*}
sleep 2
waiting_gauge=$(metric_sum 'hotline_calls_active{stage="queue"}')
views=()
for port in "${HTTP_PORTS[@]}"; do
    views+=("$(curl -s "http://127.0.0.1:$port/api/queues" | python3 -c '
import json, sys
d = json.load(sys.stdin)
qs = d.get("queues", d) if isinstance(d, dict) else d
print(sum(q.get("waiting", 0) for q in qs if q.get("name") == "advice_pl"))')")
done
per_join=$(python3 -c "print(round(($trips - $idle_rate * $wall) / max($joined, 1), 1))")
say "join: $joined of $CALLERS callers joined at $RATE/s offered (IVR included: $(python3 -c "print(round($wall, 1))") s from the first INVITE to the last join)"
say "join: waiting by the nodes' gauges (summed): $waiting_gauge; advice_pl waiting as each node shows it: ${views[*]}"
say "join: Redis round trips per joined caller (less the resting rate): $per_join ($script_cmds commands ran inside scripts); CPU nodes $(pct $((n1 - n0)) "$wall") %, Redis $(pct $((rt1 - rt0)) "$wall") %, Kamailio $(pct $((k1 - k0)) "$wall") % of one core"

# ----------------------------------------------------------- offer phase --
# The agents' phones: one sipp answering every agent's calls; the scenario
# plays bench/results/agent-talk.pcap.
cp "$RUN_DIR/agent-talk.pcap" bench/results/agent-talk.pcap
PHONES_PORT=$(free_port)
sipp "127.0.0.1:$FRONT_PORT" -sf bench/sipp/agent_talks.xml -i 127.0.0.1 -mi 127.0.0.1 \
    -p "$PHONES_PORT" -key rtp_port "$(free_port)" -key codecs "0 101" -d "$TALK_MS" \
    -nostdin -aa -timeout 900s >"$RUN_DIR/phones.out" 2>&1 &
SIPP_PIDS+=($!)
answered0=$(metric_sum hotline_queue_answered_total)
# Round trips are counted with MONITOR over the first part of the window;
# MONITOR slows every Redis command, so the offer times and CPU come from
# the rest of the window, with MONITOR stopped.
MONITOR_SECONDS=$((WINDOW / 3 < 10 ? WINDOW / 3 : 10))
monitor_start offer
m0=$(date +%s.%N)
for i in $(seq 1 "$AGENTS"); do
    sipp "127.0.0.1:$FRONT_PORT" -sf tests/sipp/agent_register.xml -i 127.0.0.1 -m 1 \
        -key agent_user "b$i" -au "b$i" -ap bench-agent-pw -key contact_port "$PHONES_PORT" \
        -key expires 3600 -nostdin -timeout 10s >>"$RUN_DIR/register.out" 2>&1 ||
        echo "registration of b$i failed: see $RUN_DIR/register.out"
done
sleep "$MONITOR_SECONDS"
read -r trips script_cmds < <(monitor_stop offer)
m1=$(date +%s.%N)
answered_m=$(python3 -c "print(int($(metric_sum hotline_queue_answered_total) - $answered0))")
mwall=$(python3 -c "print($m1 - $m0)")
answered1=$(metric_sum hotline_queue_answered_total)
rt0=$(redis_ticks); n0=$(node_ticks); k0=$(group_ticks "$KAMAILIO_PID"); s0=$(date +%s.%N)
window_start_ms=$(date +%s%3N)
sleep "$((WINDOW - MONITOR_SECONDS))"
s1=$(date +%s.%N); rt1=$(redis_ticks); n1=$(node_ticks); k1=$(group_ticks "$KAMAILIO_PID")
window_end_ms=$(date +%s%3N)
wall=$(python3 -c "print($s1 - $s0)")
answered=$(python3 -c "print(int($(metric_sum hotline_queue_answered_total) - $answered1))")
redis-cli -p "$REDIS_PORT" info commandstats >"$RUN_DIR/redis-commandstats.txt"
per_offer=$(python3 -c "print(round(($trips - $idle_rate * $mwall) / max($answered_m, 1), 1))")
say "offer: $AGENTS agents answered $answered callers in the last $(python3 -c "print(round($wall, 1))") s of the window (talking $TALK_MS ms, wrap-up 0), $answered_m in the first $MONITOR_SECONDS s"
say "offer: Redis round trips per answered call (first $MONITOR_SECONDS s, under MONITOR, less the resting rate; the agents' registrations included): $per_offer ($script_cmds commands inside scripts)"
say "offer: CPU (the rest of the window, no MONITOR) nodes $(pct $((n1 - n0)) "$wall") %, Redis $(pct $((rt1 - rt0)) "$wall") %, Kamailio $(pct $((k1 - k0)) "$wall") % of one core"

# Stop the nodes so their queue logs reach SQLite, then read logs and records.
for p in "${SIPP_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${NODE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${NODE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
if ((STAGES)); then
    python3 bench/offer_stages.py "$RUN_DIR/n1.log" | tee -a "$SUMMARY"
fi
python3 - "$RUN_DIR" "$NODES" "$window_start_ms" "$window_end_ms" <<'PY' | tee -a "$SUMMARY"
import datetime, glob, os, re, sqlite3, sys
run_dir, nodes, start_ms, end_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
line = re.compile(r'^(\S+Z)\s+\w+\s+(agent leg ended|offering to agent)\b.*?agent=(\S+)')
events = []
for n in range(1, nodes + 1):
    for text in open(os.path.join(run_dir, f"n{n}.log"), errors="replace"):
        m = line.match(text)
        if m:
            t = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
            events.append((t, m.group(2), m.group(3)))
events.sort()
free_at, gaps = {}, []
for t, what, agent in events:
    # Offers timed only once MONITOR stopped (it slows every Redis command).
    if what == "agent leg ended" and t * 1000 >= start_ms:
        free_at[agent] = t
    elif agent in free_at:
        gaps.append((t - free_at.pop(agent)) * 1000)
def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")
print(f"offer: agent free (BYE) to the next offer's INVITE over {len(gaps)} offers: "
      f"p50 {q(gaps, .5):.2f} ms, p99 {q(gaps, .99):.2f} ms, max {max(gaps, default=float('nan')):.2f} ms")
# Arrival order across the nodes: first offers sorted by time, each caller's
# join time must not go backwards (beyond 1 ms of clock granularity).
offers = []
for n in range(1, nodes + 1):
    db = os.path.join(run_dir, f"n{n}", "records.db")
    if os.path.exists(db):
        c = sqlite3.connect(db)
        rows = c.execute(
            "SELECT o.call_id, min(o.time_ms), (SELECT min(j.time_ms) FROM queue_log j "
            "WHERE j.call_id = o.call_id AND j.event = 'joined') FROM queue_log o "
            "WHERE o.event = 'offered' GROUP BY o.call_id").fetchall()
        offers += [(t, joined, f"n{n}:{call}") for call, t, joined in rows if joined is not None]
offers.sort()
inversions = sum(1 for a, b in zip(offers, offers[1:]) if b[1] < a[1] - 1)
print(f"order: {len(offers)} callers offered; {inversions} offered before a caller who had waited longer")
PY
say "results: $RUN_DIR"
