#!/usr/bin/env bash
# One slow backend among several of a policy, for the whole run: the
# experiment Linkerd published for its p2c/peak-EWMA balancer. BACKENDS echo
# backends of policy 7, backend 1 answering every request DELAY late
# (`prism backend -delay`, which holds replies without holding its loop);
# an open-loop load (`prism bench -rate`, well below capacity) through
#   rr       prism proxy -balance rr   (the default)
#   p2c      prism proxy -balance p2c
#   haproxy  HAProxy mode tcp, balance leastconn, as bench/compare runs it;
#            it balances connections, not requests: each of the CONNS client
#            connections sends all its requests to the backend it got
# Prints, per setup, the latency percentiles (from the schedule: coordinated
# omission corrected), the success rate and each backend's share of the
# requests (from its own count, warm-up included).
#
#   bench/reliability/slowbackend.sh [PRISM_BIN]
#
# Environment: RATE [4000]  DURATION [20s]  WARMUP [2s]  CONNS [32]
#              BACKENDS [4]  DELAY [50ms]  LOOPS [2]  PORT [19700]
#              SETUPS ["rr p2c haproxy"] (haproxy only when installed)
#              STALL [none] AT:FOR in seconds, e.g. 5:0.9: the proxy
#              process is stopped (SIGSTOP) AT seconds after the warm-up
#              for FOR seconds, as a paused VM or a long GC pause would
set -euo pipefail
BIN=${1:-$(mktemp -d)/prism}
if [ ! -x "$BIN" ]; then go build -o "$BIN" ./cmd/prism; fi
RATE=${RATE:-4000}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-32}
BACKENDS=${BACKENDS:-4}
DELAY=${DELAY:-50ms}
LOOPS=${LOOPS:-2}
PORT=${PORT:-19700}
SETUPS=${SETUPS:-"rr p2c haproxy"}
TMP=$(mktemp -d)
[ -z "${KEEP:-}" ] || echo "# files in $TMP"
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
	for _ in $(seq 100); do port_open "$1" && return; sleep 0.05; done
	echo "port $1 never opened" >&2; exit 1
}

start_backends() { # proxy address to register with; empty: serve only
	BPIDS=()
	for i in $(seq "$BACKENDS"); do
		local delay=0s
		if [ "$i" = 1 ]; then delay=$DELAY; fi
		"$BIN" backend -proxy "$1" -id "$i" -policy 7 -port $((PORT + i)) -delay "$delay" 2>"$TMP/backend$i.log" &
		BPIDS+=($!)
	done
	for i in $(seq "$BACKENDS"); do wait_port $((PORT + i)); done
}

stop_backends() { # prints each backend's count of requests served
	kill -TERM "${BPIDS[@]}"
	wait "${BPIDS[@]}" 2>/dev/null || true
	for i in $(seq "$BACKENDS"); do
		n=$(sed -n 's/.*backend stopped.* served=\([0-9]*\).*/\1/p' "$TMP/backend$i.log")
		echo "${n:-?}"
	done
}

haproxy_conf() {
	cat <<CONF
global
    maxconn 9000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    maxconn 9000
frontend fe
    bind 127.0.0.1:$PORT
    default_backend be
backend be
    balance leastconn
CONF
	for i in $(seq "$BACKENDS"); do echo "    server b$i 127.0.0.1:$((PORT + i))"; done
}

printf '# %s backends of policy 7, backend 1 replies %s late; %s req/s open loop on %s connections for %s (warm-up %s)\n' \
	"$BACKENDS" "$DELAY" "$RATE" "$CONNS" "$DURATION" "$WARMUP"
printf '%-8s %9s %9s %9s %9s %9s %8s  %s\n' setup p50_ms p99_ms p99.9_ms max_ms rate/s success "share of each backend (1 is slow)"
for setup in $SETUPS; do
	case $setup in
	rr | p2c)
		"$BIN" proxy -listen "127.0.0.1:$PORT" -loops "$LOOPS" -balance "$setup" >"$TMP/proxy.log" 2>&1 &
		PX=$!
		wait_port "$PORT"
		start_backends "127.0.0.1:$PORT"
		sleep 0.5 # the setups
		;;
	haproxy)
		if ! command -v haproxy >/dev/null; then echo "# haproxy: not installed (apt-get install haproxy)"; continue; fi
		start_backends ""
		haproxy_conf >"$TMP/haproxy.cfg"
		haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/proxy.log" 2>&1 &
		PX=$!
		wait_port "$PORT"
		;;
	*) echo "unknown setup $setup" >&2; exit 2 ;;
	esac
	if [ -n "${STALL:-}" ]; then
		IFS=: read -r stall_at stall_for <<<"$STALL"
		(sleep "${WARMUP%s}" && sleep "$stall_at" && kill -STOP "$PX" && sleep "$stall_for" && kill -CONT "$PX") &
	fi
	"$BIN" bench -proxy "127.0.0.1:$PORT" -policy 7 -rate "$RATE" -conns "$CONNS" \
		-duration "$DURATION" -warmup "$WARMUP" -json >"$TMP/$setup.json" 2>"$TMP/$setup.err" || true
	kill "$PX" 2>/dev/null; wait "$PX" 2>/dev/null || true
	served=$(stop_backends | tr '\n' ' ')
	python3 - "$TMP/$setup.json" "$setup" "$served" "${STALL:-}" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
lat = d["latency_us"]
errs = sum(d.get("errors", {}).values())
ok = d["replies"] / max(d["replies"] + errs, 1)
served = [int(x) if x.isdigit() else None for x in sys.argv[3].split()]
total = max(sum(x for x in served if x), 1)
share = " ".join("?" if s is None else "%.3f" % (s / total) for s in served)
print("%-8s %9.2f %9.2f %9.2f %9.2f %9.0f %7.3f%%  %s" % (sys.argv[2], lat["p50"] / 1e3, lat["p99"] / 1e3,
      lat["p999"] / 1e3, lat["max"] / 1e3, d["achieved_rate"], 100 * ok, share))
if errs:
    print("         errors: %s" % d["errors"])
if sys.argv[4]:
    # The seconds after the stall (and the second it ended in): what the
    # balancer made of it, without the requests the stall itself held.
    at, dur = (float(x) for x in sys.argv[4].split(":"))
    after = sorted(s["p99_us"] / 1e3 for s in d["series"] if s["t"] > at + dur + 1)
    if after:
        print("         after the stall: per-second p99 median %.2f ms, max %.2f ms over %d s"
              % (after[len(after) // 2], after[-1], len(after)))
PY
done
