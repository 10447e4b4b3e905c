package server

import (
	"cmp"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The error summary: requests answered with an error are not logged one
// by one (a misbehaving client or a dead policy would make a line per
// request, on the request path). The ticker instead compares the loops'
// published error counters (the ones /metrics reads) with what it saw
// last, at most every Config.ErrorLogEvery, and logs one line with the
// counts by code, and by policy, when some moved. The request path only
// counts, as it did for the metrics.

// errorLog is the summary's state, the ticker's own (OnTick runs on one
// goroutine).
type errorLog struct {
	at   time.Time                         // the last look; zero: none yet
	seen map[string][len(errorCodes)]int64 // each policy label's counts then
}

// maxLoggedPolicies bounds the policies a summary line names; the rest
// are in prism_errors_total.
const maxLoggedPolicies = 8

// errorHints say what to look at, for the code with the most answers.
var errorHints = map[string]string{
	"bad_request":         "clients send messages that are not valid requests",
	"too_large":           "clients send messages over -max-frame",
	"no_backend":          "no backend serves the policy: start or register one",
	"backend_unavailable": "backends fail or cannot be reached: see the backend logs and /backends",
	"timeout":             "backends answer slower than -timeout: see prism_backend_reply_duration_seconds",
	"overloaded":          "clients or backends are at their limits (-max-inflight, -max-memory) or a backend stalls",
	"shutting_down":       "the proxy is draining",
	"unauthorized":        "setups are refused: check -register-token and -register-cidr",
}

// logErrors logs the error answers since the last summary, when there
// were some and every has passed. Called by the ticker.
func (m *Metrics) logErrors(log *slog.Logger, every time.Duration) {
	el := &m.errLog
	now := time.Now()
	if every <= 0 {
		return
	}
	if el.at.IsZero() { // the first summary counts from the start
		el.at, el.seen = now, map[string][len(errorCodes)]int64{}
		return
	}
	if now.Sub(el.at) < every {
		return
	}
	interval := now.Sub(el.at)
	el.at = now
	byCode, byPolicy := m.errorDeltas()
	var total int64
	for _, n := range byCode {
		total += n
	}
	if total == 0 {
		return
	}
	attrs := []any{slog.Int64("total", total)}
	top := 0
	for i, c := range errorCodes {
		if byCode[i] > 0 {
			attrs = append(attrs, slog.Int64(c, byCode[i]))
			if byCode[i] > byCode[top] {
				top = i
			}
		}
	}
	slices.SortFunc(byPolicy, func(a, b policyErrors) int {
		return cmp.Or(cmp.Compare(b.total, a.total), strings.Compare(a.label, b.label))
	})
	var sb strings.Builder
	for i, pe := range byPolicy {
		if i == maxLoggedPolicies {
			sb.WriteString(" …")
			break
		}
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(pe.label)
		sep := byte(':')
		for j, c := range errorCodes {
			if pe.n[j] > 0 {
				sb.WriteByte(sep)
				sb.WriteString(c)
				sb.WriteByte('=')
				sb.WriteString(strconv.FormatInt(pe.n[j], 10))
				sep = ','
			}
		}
	}
	attrs = append(attrs, slog.String("policies", sb.String()),
		slog.Duration("interval", interval.Round(time.Millisecond)),
		slog.String("hint", errorHints[errorCodes[top]]))
	log.Warn("requests answered with errors (counts since the last summary; all in prism_errors_total)", attrs...)
}

// policyErrors are one policy's new error answers, by code.
type policyErrors struct {
	label string
	n     [len(errorCodes)]int64
	total int64
}

// errorDeltas returns the error answers counted since its last call, by
// code and by policy label, and remembers the counts.
func (m *Metrics) errorDeltas() (byCode [len(errorCodes)]int64, byPolicy []policyErrors) {
	el := &m.errLog
	for label, pt := range m.policies(false) {
		var now [len(errorCodes)]int64
		copy(now[:], pt.n[pErrors:])
		was := el.seen[label]
		pe := policyErrors{label: label}
		for i := range now {
			d := now[i] - was[i]
			if d > 0 {
				pe.n[i] = d
				pe.total += d
				byCode[i] += d
			}
		}
		if pe.total > 0 {
			byPolicy = append(byPolicy, pe)
			el.seen[label] = now
		}
	}
	return byCode, byPolicy
}
