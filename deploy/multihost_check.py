#!/usr/bin/env python3
"""Parsers for deploy/multihost.sh: each reads standard input and prints one line.

  answers            prism client's JSON lines -> "1:4 2:4 err:no_backend:1 upper:4"
                     (replies by srcid, errors by code, replies whose payload is upper case)
  backends [state]   /backends JSON -> "1 2 3" (ids, sorted; only those in state if given)
  bench              prism bench -json -> "throughput p50_us p99_us sent replies unanswered errors"
                     (unanswered: requests the generator gave up on or lost with a connection)
  updown             lines "ms v1 v2 ..." (a gauge sampled, one column per proxy) ->
                     "samples down_ms1/spans1 down_ms2/spans2 ... last1 last2 ...": the time
                     each column was not 1 (a span from its first sample not 1 to the next
                     sample that is 1, or the last sample), the spans, the last value
  logdown MS         a proxy's log -> "down_ms/spans longest_ms": from MS (Unix ms) on, the
                     time between each "fleet registry unreachable" and the next "fleet
                     registry up" (what prism_registry_up follows), up to now if none
"""
import json
import re
import sys
import time
from datetime import datetime


def answers():
    replies, errors, upper = {}, {}, 0
    for line in sys.stdin:
        line = line.strip()
        if not line.startswith("{"):
            continue
        m = json.loads(line)
        if m.get("type") == 2:
            replies[m["srcid"]] = replies.get(m["srcid"], 0) + 1
            p = m.get("payload", "")
            if p and p == p.upper() and p != p.lower():
                upper += 1
        elif m.get("type") == 3:
            errors[m.get("code", "?")] = errors.get(m.get("code", "?"), 0) + 1
    out = ["%d:%d" % (k, replies[k]) for k in sorted(replies)]
    out += ["err:%s:%d" % (k, errors[k]) for k in sorted(errors)]
    out.append("upper:%d" % upper)
    print(" ".join(out))


def backends(state=None):
    try:
        data = json.load(sys.stdin)
    except ValueError:
        print("")
        return
    if isinstance(data, dict):  # tolerate a wrapped list
        data = data.get("backends", [])
    ids = sorted({b["id"] for b in data if state is None or b.get("state") == state})
    print(" ".join(str(i) for i in ids))


def bench():
    r = json.load(sys.stdin)
    errs = r.get("errors", {})
    # The generator's own give-ups; a proxy's "timeout" answer is counted
    # under the same name, so the caller runs with a proxy timeout that
    # retries beat.
    unanswered = sum(errs.get(k, 0) for k in ("timeout", "conn_error", "bad_reply"))
    lat = r.get("latency_us", {})
    print("%.0f %.0f %.0f %d %d %d %s" % (
        r.get("throughput", 0), lat.get("p50", 0), lat.get("p99", 0), r.get("sent", 0),
        r.get("replies", 0), unanswered,
        ",".join("%s=%d" % (k, v) for k, v in sorted(errs.items()) if v) or "none"))


def updown():
    rows = [line.split() for line in sys.stdin if line.strip()]
    rows = [r for r in rows if len(r) > 1 and r[0].isdigit()]
    if not rows:
        print("0")
        return
    cols = max(len(r) for r in rows) - 1
    down, spans, last = [0] * cols, [0] * cols, ["-"] * cols
    for c in range(cols):
        start = None
        for r in rows:
            ms, v = int(r[0]), (r[c + 1] if c + 1 < len(r) else "-")
            last[c] = v
            if v != "1" and start is None:
                start = ms
                spans[c] += 1
            elif v == "1" and start is not None:
                down[c] += ms - start
                start = None
        if start is not None:
            down[c] += int(rows[-1][0]) - start
    print(" ".join([str(len(rows))] + ["%d/%d" % (d, n) for d, n in zip(down, spans)] + last))


def logdown(since_ms):
    since = int(since_ms)
    down, spans, longest, start = 0, 0, 0, None
    for line in sys.stdin:
        m = re.match(r"time=(\S+) ", line)
        if not m:
            continue
        ms = int(datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp() * 1000)
        if ms < since:
            continue
        if 'msg="fleet registry unreachable' in line and start is None:
            start, spans = ms, spans + 1
        elif 'msg="fleet registry up"' in line and start is not None:
            down, longest, start = down + ms - start, max(longest, ms - start), None
    if start is not None:
        now = int(time.time() * 1000)
        down, longest = down + now - start, max(longest, now - start)
    print("%d/%d %d" % (down, spans, longest))


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "answers":
        answers()
    elif cmd == "backends":
        backends(*sys.argv[2:3])
    elif cmd == "bench":
        bench()
    elif cmd == "updown":
        updown()
    elif cmd == "logdown" and len(sys.argv) == 3:
        logdown(sys.argv[2])
    else:
        sys.exit(__doc__)
