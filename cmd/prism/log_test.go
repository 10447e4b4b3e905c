package main

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
)

// TestLogFormatJSON runs the proxy with -log-format json: every line of its
// log is one JSON object with the level and message.
func TestLogFormatJSON(t *testing.T) {
	pp := startProxyProc(t, "-log-format", "json")
	line := pp.waitLog(t, "effective configuration")
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("log line %q: %v", line, err)
	}
	if rec["msg"] != "effective configuration" || rec["level"] != "INFO" || rec["log-format"] != "json" {
		t.Errorf("log line %v; want msg, level INFO and log-format json", rec)
	}
	for _, l := range pp.lines() {
		if !json.Valid([]byte(l)) {
			t.Errorf("log line %q is not JSON", l)
		}
	}
}

// TestListenInUse: a port in use is named, with the flag that picks another.
func TestListenInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"proxy", []string{"proxy", "-listen", addr}, addr + " is in use by another process: stop it, or choose another address with -listen"},
		{"admin", []string{"proxy", "-listen", "127.0.0.1:0", "-admin", addr}, addr + " is in use by another process: stop it, or choose another address with -admin"},
		{"backend", []string{"backend", "-proxy", "", "-host", "127.0.0.1", "-port", addr[strings.LastIndex(addr, ":")+1:]}, "choose another address with -port"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := prism(t, tt.args...)
			if code != 1 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, tt.want)
			}
		})
	}
}

func TestBadLogFormat(t *testing.T) {
	for _, cmd := range []string{"proxy", "backend"} {
		code, _, stderr := prism(t, cmd, "-log-format", "xml")
		if code != 2 || !strings.Contains(stderr, "want text or json") {
			t.Errorf("%s -log-format xml: exit %d, stderr %q; want 2 and 'want text or json'", cmd, code, stderr)
		}
	}
}
