#!/usr/bin/env bash
# Queue benchmark (not a test): many callers waiting with music and
# announcements while agents answer at a steady rate. Reports callers held in
# the queue, calls bridged, RTP pacing of the waiting callers' audio (rtp-probe)
# and the service's CPU and memory. Loopback only; bounded in calls and time.
#
#   bench/queue.sh [--callers N] [--agents M] [--talk-ms T] [--rate R] [--window S]
set -euo pipefail
cd "$(dirname "$0")/.."

CALLERS=1000 AGENTS=100 TALK_MS=20000 RATE=100 WINDOW=20
while (($#)); do
    case "$1" in
        --callers) CALLERS=$2; shift 2 ;;
        --agents) AGENTS=$2; shift 2 ;;
        --talk-ms) TALK_MS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --window) WINDOW=$2; shift 2 ;;
        *) echo "queue.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
metric() { curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

ulimit -n "$(ulimit -Hn)" || true
RUN_DIR="bench/results/queue-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RUN_DIR"
BIN=${HOTLINE:-target/release/hotline}
PROBE=${RTP_PROBE:-target/release/rtp-probe}
[ -x "$BIN" ] && [ -x "$PROBE" ] || cargo build --release --bins

SIP_PORT=$(free_port); HTTP_PORT=$(free_port); PROBE_PORT=$(free_port); SINK_PORT=$(free_port)
PHONES_PORT=$(free_port)

# Agents: a1..aM, Polish speakers, one shared demo password.
{
    echo "realm: hotline"; echo "agents:"
    for i in $(seq 1 "$AGENTS"); do
        ha1=$(echo -n "bench-agent-pw" | "$BIN" agents hash "a$i" | awk '/ha1:/ { print $2; exit }')
        printf '  - id: a%s\n    name: a%s\n    sip_username: a%s\n    ha1: %s\n    skills: {pl: 10}\n    topics: {advice: 5}\n' "$i" "$i" "$i" "$ha1"
    done
} >"$RUN_DIR/agents.yaml"
# All agents register from one address, so lift the per-source REGISTER rate;
# no drain on exit, so that the next run finds its RTP ports free.
cat >"$RUN_DIR/hotline.yaml" <<CONF
agents_file: $PWD/$RUN_DIR/agents.yaml
rtp_timeout_s: 0
drain_limit_s: 0
sip_admission:
  register_rate: {per_second: 1000, burst: 1000}
CONF

"$BIN" serve --config "$RUN_DIR/hotline.yaml" --sip-listen "127.0.0.1:$SIP_PORT" \
    --http-listen "127.0.0.1:$HTTP_PORT" --flows ivr-flows --data-dir "$RUN_DIR/data" \
    --rtp-ports 30000-39999 >"$RUN_DIR/hotline.log" 2>&1 &
SERVICE=$!
cleanup() { kill "$SERVICE" "${PHONES:-}" "${CALLERS_PID:-}" "${PROBE_PID:-}" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null && break; sleep 0.1; done

# The agents' phones: one sipp answering every agent's calls, talking TALK_MS.
sipp "127.0.0.1:$SIP_PORT" -sf tests/sipp/agent_hangs_up.xml -i 127.0.0.1 -p "$PHONES_PORT" \
    -key rtp_port "$SINK_PORT" -key codecs "0 101" -d "$TALK_MS" -nostdin -aa \
    -timeout 600s -bg >"$RUN_DIR/phones.out" 2>&1 || true
PHONES=$(pgrep -f "sipp.*-p $PHONES_PORT" | head -1 || true)
for i in $(seq 1 "$AGENTS"); do
    sipp "127.0.0.1:$SIP_PORT" -sf tests/sipp/agent_register.xml -i 127.0.0.1 -m 1 \
        -key agent_user "a$i" -au "a$i" -ap bench-agent-pw -key contact_port "$PHONES_PORT" \
        -key expires 3600 -nostdin -timeout 10s >>"$RUN_DIR/register.out" 2>&1 ||
        echo "registration of a$i failed: see $RUN_DIR/register.out"
done
echo "agents ready: $(metric 'hotline_agents{skill="pl",state="ready"}')"

# The callers: Polish (4), then "speak to someone" (0), then wait for the BYE.
"$PROBE" listen --listen "127.0.0.1:$PROBE_PORT" --start-on-stdin --max-streams $((CALLERS + 10)) \
    --out "$RUN_DIR/probe.json" < <(sleep $((CALLERS / RATE + 15)); echo start; sleep "$WINDOW"; echo stop; sleep 5) &
PROBE_PID=$!
sipp "127.0.0.1:$SIP_PORT" -sf tests/sipp/call_queue_until_bye.xml -s 1000 -i 127.0.0.1 \
    -key rtp_port "$PROBE_PORT" -key codecs "0 101" -key digit 4 -key digit2 0 \
    -l "$CALLERS" -m "$CALLERS" -r "$RATE" -aa -nostdin -timeout 900s \
    -buff_size 4194304 >"$RUN_DIR/callers.out" 2>&1 &
CALLERS_PID=$!

sleep $((CALLERS / RATE + 15))
t0=$(cpu_ticks "$SERVICE"); s0=$(date +%s.%N)
queue0=$(metric 'hotline_calls_active{stage="queue"}'); agent0=$(metric 'hotline_calls_active{stage="agent"}')
sleep "$WINDOW"
t1=$(cpu_ticks "$SERVICE"); s1=$(date +%s.%N)
queue1=$(metric 'hotline_calls_active{stage="queue"}'); agent1=$(metric 'hotline_calls_active{stage="agent"}')
answered=$(metric 'hotline_calls_total{outcome="answered"}')
rss=$(awk '/VmRSS/ { print $2 }' "/proc/$SERVICE/status")
wait "$PROBE_PID" || true
cpu=$(python3 -c "print(round(100*($t1-$t0)/$(getconf CLK_TCK)/($s1-$s0),1))")
echo "waiting in queue: $queue0 → $queue1; bridged: $agent0 → $agent1; answered so far: $answered"
echo "service CPU: $cpu % of one core; RSS $rss KiB"
python3 - "$RUN_DIR/probe.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
keys = ("streams", "packets")
print({k: p.get(k) for k in keys}, "pacing error:", p.get("pacing_error"), "jitter:", p.get("interarrival_jitter"), "loss:", p.get("loss"))
PY
echo "results: $RUN_DIR"
