#!/usr/bin/env bash
# Reproduces the stalled-backend findings with real processes: a proxy, two
# backends of policy 7 and one of policy 8; 20 KiB requests at RATE/s on 8
# connections to policy 7 and a light load on policy 8, while one policy-7
# backend is stopped (SIGSTOP) for STALL seconds, with MODE=single that
# backend is policy 7's only one. Prints the proxy's RSS each second and
# both loads' summaries (answers by kind, latency).
#
#   bench/reliability/stall.sh [PRISM_BIN]
#
# Environment: RATE [2400]  STALL [15]  MODE [pair|single]  PORT [19600]
#              LOADGEN [PRISM_BIN]: the binary whose `bench` and `backend` run
set -euo pipefail
BIN=${1:-$(mktemp -d)/prism}
if [ ! -x "$BIN" ]; then go build -o "$BIN" ./cmd/prism; fi
RATE=${RATE:-2400}
STALL=${STALL:-15}
MODE=${MODE:-pair}
PORT=${PORT:-19600}
LOADGEN=${LOADGEN:-$BIN}
TMP=$(mktemp -d)
trap 'kill -CONT $(jobs -p) 2>/dev/null; kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT

"$BIN" proxy -listen "127.0.0.1:$PORT" -loops 2 >"$TMP/proxy.log" 2>&1 &
PX=$!
sleep 0.5
"$LOADGEN" backend -proxy "127.0.0.1:$PORT" -id 1 -policy 7 -port $((PORT + 1)) >/dev/null 2>&1 &
STALLED=$!
if [ "$MODE" = pair ]; then
	"$LOADGEN" backend -proxy "127.0.0.1:$PORT" -id 2 -policy 7 -port $((PORT + 2)) >/dev/null 2>&1 &
fi
"$LOADGEN" backend -proxy "127.0.0.1:$PORT" -id 3 -policy 8 -port $((PORT + 3)) >/dev/null 2>&1 &
sleep 1
DUR=$((STALL + 6))
"$LOADGEN" bench -proxy "127.0.0.1:$PORT" -policy 7 -size 20480 -conns 8 -rate "$RATE" -duration "${DUR}s" -warmup 0s >"$TMP/p7.txt" 2>&1 &
B7=$!
"$LOADGEN" bench -proxy "127.0.0.1:$PORT" -policy 8 -size 64 -conns 1 -rate 200 -duration "${DUR}s" -warmup 0s >"$TMP/p8.txt" 2>&1 &
B8=$!
rss() { awk '/VmRSS/ {print $2}' "/proc/$PX/status"; }
echo "t(s) proxy_rss_kib"
for t in $(seq 0 $((DUR + 1))); do
	if [ "$t" = 2 ]; then kill -STOP "$STALLED"; echo "# backend 1 stopped"; fi
	if [ "$t" = $((2 + STALL)) ]; then kill -CONT "$STALLED"; echo "# backend 1 continued"; fi
	if ! kill -0 "$PX" 2>/dev/null; then echo "# proxy died"; break; fi
	echo "$t $(rss)"
	sleep 1
done
wait "$B7" "$B8" || true
echo "== policy 7 (stalled backend's policy)"; cat "$TMP/p7.txt"
echo "== policy 8 (another policy)"; cat "$TMP/p8.txt"
echo "== proxy log (warnings)"; grep -E "WARN|ERROR" "$TMP/proxy.log" | cut -c1-200 | sort | uniq -c | sort -rn | head -12
