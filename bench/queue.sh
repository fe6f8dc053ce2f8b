#!/usr/bin/env bash
# Queue benchmark (not a test): many callers waiting with music and
# announcements while agents answer at a steady rate. Reports callers held in
# the queue, calls bridged, RTP pacing of the callers' audio (rtp-probe) and
# the service's CPU and memory. Loopback only; bounded in calls and time.
#
# By default the agents talk (sipp plays a tone pcap into each bridged call)
# and the callers' side returns every packet it receives, so a bridged call
# carries audio both ways, as with real phones. `--silent-agents` leaves the
# bridges idle; the CPU difference between the two runs, divided by the calls
# bridged, is the CPU per bridged call.
#
#   bench/queue.sh [--callers N] [--agents M] [--talk-ms T] [--rate R] [--window S]
#                  [--silent-agents] [--no-echo]
#
# PERF_OUT=file records a `perf` profile of the service over the window
# (costs some CPU: compare profiles, not the CPU figure, of such runs).
set -euo pipefail
cd "$(dirname "$0")/.."

CALLERS=1000 AGENTS=100 TALK_MS=60000 RATE=100 WINDOW=20 AGENT_SCENARIO=bench/sipp/agent_talks.xml
ECHO=--echo
while (($#)); do
    case "$1" in
        --silent-agents) AGENT_SCENARIO=tests/sipp/agent_hangs_up.xml; shift ;;
        --no-echo) ECHO=; shift ;;
        --callers) CALLERS=$2; shift 2 ;;
        --agents) AGENTS=$2; shift 2 ;;
        --talk-ms) TALK_MS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --window) WINDOW=$2; shift 2 ;;
        *) echo "queue.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

source bench/lib.sh
metric() { curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
# Sum over every label set of one metric.
metric_sum() { curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | awk -v m="$1" 'index($1, m "{") == 1 { s += $2 } END { print s + 0 }'; }

ulimit -n "$(ulimit -Hn)" || true
RUN_DIR="bench/results/queue-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RUN_DIR"
BIN=${HOTLINE:-target/release/hotline}
PROBE=${RTP_PROBE:-target/release/rtp-probe}
[ -x "$BIN" ] && [ -x "$PROBE" ] || cargo build --release --bins
# The agents' voice: as long as a call lasts, so a bridge never goes quiet.
"$PROBE" pcap --out bench/results/agent-talk.pcap --seconds $(((TALK_MS + 999) / 1000))

SIP_PORT=$(free_port); HTTP_PORT=$(free_tcp_port); PROBE_PORT=$(free_port); SINK_PORT=$(free_port)
PHONES_PORT=$(free_port)

# Agents: a1..aM, Polish speakers, one shared demo password.
write_agents "$RUN_DIR/agents.yaml" a "$AGENTS"
write_service_config "$RUN_DIR/hotline.yaml" "$PWD/$RUN_DIR/agents.yaml"

"$BIN" serve --config "$RUN_DIR/hotline.yaml" --sip-listen "127.0.0.1:$SIP_PORT" \
    --http-listen "127.0.0.1:$HTTP_PORT" --flows ivr-flows --data-dir "$RUN_DIR/data" \
    --rtp-ports 30000-39999 >"$RUN_DIR/hotline.log" 2>&1 &
SERVICE=$!
cleanup() { kill "$SERVICE" "${PHONES:-}" "${CALLERS_PID:-}" "${PROBE_PID:-}" 2>/dev/null || true; }
trap cleanup EXIT
ready=
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null && { ready=1; break; }
    kill -0 "$SERVICE" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$ready" ]; then
    echo "hotline did not start (see $RUN_DIR/hotline.log):" >&2
    tail -n 5 "$RUN_DIR/hotline.log" >&2
    exit 1
fi

# The agents' phones: one sipp answering every agent's calls, talking TALK_MS.
sipp "127.0.0.1:$SIP_PORT" -sf "$AGENT_SCENARIO" -i 127.0.0.1 -mi 127.0.0.1 -p "$PHONES_PORT" \
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
# The probe's window opens and closes on lines written to this pipe.
mkfifo "$RUN_DIR/probe.ctl"
"$PROBE" listen --listen "127.0.0.1:$PROBE_PORT" $ECHO --start-on-stdin --duration $((WINDOW + 5)) --max-streams $((CALLERS + 10)) \
    --out "$RUN_DIR/probe.json" <"$RUN_DIR/probe.ctl" &
PROBE_PID=$!
exec 3>"$RUN_DIR/probe.ctl"
sipp "127.0.0.1:$SIP_PORT" -sf tests/sipp/call_queue_until_bye.xml -s 1000 -i 127.0.0.1 \
    -key rtp_port "$PROBE_PORT" -key codecs "0 101" -key digit 4 -key digit2 0 \
    -l "$CALLERS" -m "$CALLERS" -r "$RATE" -aa -nostdin -timeout 900s \
    -buff_size 4194304 >"$RUN_DIR/callers.out" 2>&1 &
CALLERS_PID=$!

# Measure in steady state: (nearly) every agent on a call and every other
# caller through the menus and waiting. Bounded: at most 120 s more.
sleep $((CALLERS / RATE))
for _ in $(seq 120); do
    bridged=$(metric 'hotline_calls_active{stage="agent"}')
    waiting=$(metric 'hotline_calls_active{stage="queue"}')
    [ "${bridged%.*}" -ge $((AGENTS * 9 / 10)) ] &&
        [ "${waiting%.*}" -ge $(((CALLERS - AGENTS) * 95 / 100)) ] && break
    sleep 1
done
echo start >&3
if [ -n "${PERF_OUT:-}" ]; then
    perf record -F 499 -p "$SERVICE" -o "$PERF_OUT" -- sleep "$WINDOW" >/dev/null 2>&1 &
fi
t0=$(cpu_ticks "$SERVICE"); s0=$(date +%s.%N)
queue0=$(metric 'hotline_calls_active{stage="queue"}'); agent0=$(metric 'hotline_calls_active{stage="agent"}')
rx0=$(metric hotline_rtp_packets_received_total); tx0=$(metric hotline_rtp_packets_sent_total); rl0=$(metric hotline_rtp_packets_relayed_total)
sleep "$WINDOW"
rx1=$(metric hotline_rtp_packets_received_total); tx1=$(metric hotline_rtp_packets_sent_total); rl1=$(metric hotline_rtp_packets_relayed_total)
t1=$(cpu_ticks "$SERVICE"); s1=$(date +%s.%N)
queue1=$(metric 'hotline_calls_active{stage="queue"}'); agent1=$(metric 'hotline_calls_active{stage="agent"}')
answered=$(metric_sum hotline_queue_answered_total)
rss=$(awk '/VmRSS/ { print $2 }' "/proc/$SERVICE/status")
echo stop >&3
exec 3>&-
wait "$PROBE_PID" || true
cpu=$(python3 -c "print(round(100*($t1-$t0)/$(getconf CLK_TCK)/($s1-$s0),1))")
echo "agents: $(basename "$AGENT_SCENARIO" .xml); callers echo: ${ECHO:-no}"
echo "waiting in queue: $queue0 → $queue1; bridged: $agent0 → $agent1; answered by agents so far: $answered"
echo "service CPU: $cpu % of one core; RSS $rss KiB"
python3 -c "w=$s1-$s0; print(f'RTP through the service: {($rx1-$rx0)/w:.0f} packets/s in, {($tx1-$tx0)/w:.0f} packets/s out, of which relayed {($rl1-$rl0)/w:.0f}/s')"
python3 - "$RUN_DIR/probe.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
keys = ("streams", "packets")
print({k: p.get(k) for k in keys}, "pacing error:", p.get("pacing_error"), "after a timestamp jump (relayed):", p.get("pacing_error_after_timestamp_jump"), "jitter:", p.get("interarrival_jitter"), "loss:", p.get("loss"))
PY
echo "results: $RUN_DIR"
