package main

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prism-proxy/prism/bench/loadgen"
)

// TestBenchPolicy: without -policy the bench loads the policies the
// proxy's backends serve (-admin), or refuses, saying why, when no backend
// serves the policy it would load; the load is printed at the start.
func TestBenchPolicy(t *testing.T) {
	p := startUpper(t) // policy 7
	admin := httptest.NewServer(p.AdminHandler())
	defer admin.Close()
	adminAddr := strings.TrimPrefix(admin.URL, "http://")
	run := []string{"bench", "-proxy", p.Addr(), "-conns", "1", "-n", "50"}
	for _, tt := range []struct {
		name           string
		args           []string
		code           int
		stdout, stderr string
	}{
		{"no policy, no admin", nil, 1, "",
			"no backend serves policy 0 at " + p.Addr() + " (no -policy given, so policy 0 was tried: give the policy of a running backend with -policy"},
		{"policy unserved", []string{"-policy", "8"}, 1, "", "no backend serves policy 8"},
		{"policies from admin", []string{"-admin", adminAddr}, 0, "policy 7 → " + p.Addr(),
			"prism bench: closed loop, 1 conns × 16 in flight, 64-byte payloads, policy 7 → " + p.Addr() + ": 50 requests"},
		{"policy given", []string{"-policy", "7", "-admin", adminAddr}, 0, "50 replies", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := prism(t, append(run, tt.args...)...)
			if code != tt.code || !strings.Contains(stdout, tt.stdout) || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q and %q", code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

// TestStatusLines: off a terminal, progress is a line every interval, not
// every call.
func TestStatusLines(t *testing.T) {
	var out strings.Builder
	status := statusLines(&out, 5*time.Second)
	for s := 1; s <= 12; s++ {
		status(loadgen.Progress{Elapsed: time.Duration(s) * time.Second, Sent: int64(s)})
	}
	status(loadgen.Progress{Elapsed: 13 * time.Second, Final: true})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "[  5.0s] sent 5") || !strings.Contains(lines[1], "[ 10.0s] sent 10") {
		t.Errorf("status lines %q; want the 5s and 10s ones", lines)
	}
}
