#!/usr/bin/env bash
# Compare two prism binaries on one case, alternating them ROUNDS times, and
# report the proxy's CPU time per message for each run and the medians.
#
#   bench/compare/ab.sh OLD_BIN NEW_BIN                 # 64B/p16/c1000, 5 rounds
#   ROUNDS=7 CASE=4096:16:1000 bench/compare/ab.sh old new
#
# On a shared 2-core machine one run of a case moves by ±25% (more at 1000
# connections), so a change worth a few percent shows only in the medians
# of alternating runs. The proxy is pinned to CPU 0 with one loop, the load
# generator and two echo backends to CPU 1, as in run.sh. CPU per message is
# the proxy's user+system time (/proc/PID/stat) over the measured window
# divided by the replies in it: it moves less than msgs/s, which also
# depends on what the load generator got of its CPU.
#
# Environment: ROUNDS [5]  CASE [64:16:1000] size:pipeline:conns
#              DURATION [6s]  WARMUP [1s]  PORT [19500] (backends on the next two)
set -euo pipefail

if (($# != 2)); then
	sed -n '2,8p' "$0" >&2
	exit 2
fi
ROUNDS=${ROUNDS:-5}
CASE=${CASE:-64:16:1000}
DURATION=${DURATION:-6s}
WARMUP=${WARMUP:-1s}
PORT=${PORT:-19500}
IFS=: read -r SIZE PIPE CONNS <<<"$CASE"
HZ=$(getconf CLK_TCK)
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT

cputicks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# one BIN: prints the proxy's CPU µs per reply
one() {
	local bin=$1 pids=() px
	taskset -c 0 "$bin" proxy -listen "127.0.0.1:$PORT" -admin "" -loops 1 >"$TMP/proxy.log" 2>&1 &
	px=$!
	for i in 1 2; do
		taskset -c 1 "$bin" backend -port $((PORT + i)) -proxy "127.0.0.1:$PORT" -id "$i" -policy 7 -mode echo \
			>"$TMP/b$i.log" 2>&1 &
		pids+=($!)
	done
	sleep 1.5
	# prism bench resets its counters after the warmup: start the CPU clock then.
	taskset -c 1 "$bin" bench -proxy "127.0.0.1:$PORT" -policy 7 -conns "$CONNS" -pipeline "$PIPE" \
		-size "$SIZE" -duration "$DURATION" -warmup "$WARMUP" -json >"$TMP/out.json" 2>"$TMP/bench.log" &
	local bench=$!
	sleep "${WARMUP%s}"
	local t0 t1
	t0=$(cputicks "$px")
	wait "$bench"
	t1=$(cputicks "$px")
	kill "$px" "${pids[@]}" 2>/dev/null || true
	wait "$px" "${pids[@]}" 2>/dev/null || true
	python3 - "$TMP/out.json" "$((t1 - t0))" "$HZ" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
replies = doc["replies"]
print(f"{int(sys.argv[2]) / int(sys.argv[3]) * 1e6 / replies:.2f}")
EOF
}

declare -A runs
for ((r = 1; r <= ROUNDS; r++)); do
	for bin in "$1" "$2"; do
		v=$(one "$bin")
		runs[$bin]="${runs[$bin]:-} $v"
		printf 'round %d  %-30s %s µs/msg\n' "$r" "$bin" "$v" >&2
	done
done
for bin in "$1" "$2"; do
	# shellcheck disable=SC2086
	median=$(printf '%s\n' ${runs[$bin]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	printf '%-30s %s  median %s µs/msg\n' "$bin" "${runs[$bin]}" "$median"
done
