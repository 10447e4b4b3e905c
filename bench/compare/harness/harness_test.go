package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/prism-proxy/prism/bench/compare/results"
)

func TestProcReaders(t *testing.T) {
	self := []int{os.Getpid()}
	if s, err := cpuSeconds(self); err != nil || s < 0 {
		t.Fatalf("cpuSeconds = %v, %v", s, err)
	}
	if kb, err := rssKB(self); err != nil || kb <= 0 {
		t.Fatalf("rssKB = %v, %v", kb, err)
	}
	if n, err := openFDs(self); err != nil || n < 3 {
		t.Fatalf("openFDs = %v, %v", n, err)
	}
	if _, err := cpuSeconds([]int{1 << 30}); err == nil {
		t.Fatal("cpuSeconds of no process: no error")
	}
	tests := []struct {
		in   string
		want int
		ok   bool
	}{{"", 0, true}, {"12", 1, true}, {"12, 34,", 2, true}, {"x", 0, false}, {"-1", 0, false}}
	for _, tt := range tests {
		got, err := parsePIDs(tt.in)
		if (err == nil) != tt.ok || len(got) != tt.want {
			t.Errorf("parsePIDs(%q) = %v, %v; want %d pids, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestHoldIdle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	conns := holdIdle(ln.Addr().String(), 200)
	if len(conns) != 200 {
		t.Fatalf("held %d; want 200", len(conns))
	}
	for _, c := range conns {
		c.Close()
	}
}

// TestCase runs the case command on a stand-in load generator that prints a
// prism-bench/v1 report, with this process as the "proxy".
func TestCase(t *testing.T) {
	dir := t.TempDir()
	report := `{"schema":"prism-bench/v1","targets":["127.0.0.1:1"],"mode":"closed","conns":32,"pipeline":1,"rate":0,"size":64,` +
		`"policies":[7],"duration_s":0.2,"warmup_s":0.1,"sent":1000,"replies":1000,"errors":{"timeout":2},"throughput":5000,` +
		`"achieved_rate":5000,"latency_us":{"min":1,"mean":2,"p50":3,"p90":4,"p99":5,"p999":6,"p9999":7,"max":8}}`
	script := filepath.Join(dir, "bench.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nsleep 0.3\ncat <<'EOF'\n"+report+"\nEOF\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "case.json")
	// Burn a little CPU in this process so the window has some.
	var stop atomic.Bool
	go burnCPU(&stop)
	err := caseCmd([]string{"-proxy", "prism", "-out", out, "-pids", strconv.Itoa(os.Getpid()), "-warmup", "100ms", "--", script})
	stop.Store(true)
	if err != nil {
		t.Fatal(err)
	}
	var c results.Case
	if err := readJSON(out, &c); err != nil {
		t.Fatal(err)
	}
	if c.Case != "64B/p1/c32" || c.Throughput != 5000 || c.Latency.P999 != 6 || c.ErrorCount() != 2 || len(c.Bench) == 0 {
		t.Fatalf("case = %+v", c)
	}
	if c.CPUWindowS < 0.1 || c.ProxyCPUS <= 0 || c.CPUPerMsgUS <= 0 {
		t.Fatalf("cpu: window %.3fs, %.3fs, %.1fµs/msg; want all positive", c.CPUWindowS, c.ProxyCPUS, c.CPUPerMsgUS)
	}

	// A report of another schema is refused.
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho '{\"schema\":\"other\"}'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := caseCmd([]string{"-out", out, "--", script}); err == nil {
		t.Fatal("other schema accepted")
	}
}

// burnCPU spins until stop is set.
func burnCPU(stop *atomic.Bool) {
	for !stop.Load() {
	}
}
