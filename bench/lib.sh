# What the load benchmarks share; sourced by queue.sh and cluster.sh.

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_tcp_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# write_agents FILE PREFIX COUNT [EXTRA]: Polish agents PREFIX1..PREFIXCOUNT
# with one password (bench-agent-pw), EXTRA (e.g. "wrap_up: 0s") added to each.
write_agents() {
    local file=$1 prefix=$2 count=$3 extra=${4-} i ha1
    {
        echo "realm: hotline"; echo "agents:"
        for i in $(seq 1 "$count"); do
            ha1=$(echo -n "bench-agent-pw" | "$BIN" agents hash "$prefix$i" | awk '/ha1:/ { print $2; exit }')
            printf '  - id: %s\n    name: %s\n    sip_username: %s\n    ha1: %s\n    skills: {pl: 10}\n    topics: {advice: 5}\n' \
                "$prefix$i" "$prefix$i" "$prefix$i" "$ha1"
            if [ -n "$extra" ]; then printf '    %s\n' "$extra"; fi
        done
    } >"$file"
}

# write_service_config FILE AGENTS_FILE [EXTRA_LINES]: all agents register
# from one address, so the per-source REGISTER rate is lifted; no RTP
# timeout and no drain on exit, so the next run finds its ports free.
write_service_config() {
    cat >"$1" <<CONF
agents_file: $2
rtp_timeout_s: 0
drain_limit_s: 0
sip_admission:
  register_rate: {per_second: 1000, burst: 1000}
${3-}
CONF
}
