package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/prism-proxy/prism/bench/compare/results"
)

// caseCmd runs one load-generator command and records its report together
// with the proxy's CPU time over the measured window.
func caseCmd(args []string) error {
	fs := flag.NewFlagSet("case", flag.ContinueOnError)
	proxy := fs.String("proxy", "", "proxy `name` (direct, prism, haproxy, nginx, naive)")
	label := fs.String("case", "", "case label (default: size/pipeline/conns from the report)")
	group := fs.String("group", results.GroupMatrix, "case group: matrix or sweep")
	pct := fs.Int("sweep-pct", 0, "for a sweep case, the rate as a percentage of the reference maximum")
	out := fs.String("out", "", "write the case record to this `file` (required)")
	pidList := fs.String("pids", "", "comma-separated proxy `pids` whose CPU time to read (none: no proxy)")
	warmup := fs.Duration("warmup", 0, "the load generator's warmup; the CPU window starts after it")
	limit := fs.Duration("limit", 5*time.Minute, "kill the load generator after this long")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: harness case [flags] -- COMMAND [ARGS...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() == 0 {
		fs.Usage()
		return errors.New("need -out and a command")
	}
	pids, err := parsePIDs(*pidList)
	if err != nil {
		return err
	}

	var stdout bytes.Buffer
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	cpu0, err := cpuSeconds(pids)
	if err != nil {
		cmd.Process.Kill()
		return fmt.Errorf("proxy gone before the case: %w", err)
	}
	t0 := time.Now()
	var runErr error
	finished := false
	select {
	case runErr = <-done:
		finished = true
	case <-time.After(*warmup):
		if c, err := cpuSeconds(pids); err == nil {
			cpu0, t0 = c, time.Now()
		}
	}
	if !finished {
		select {
		case runErr = <-done:
		case <-time.After(*limit):
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("load generator still running after %v; killed", *limit)
		}
	}
	cpu1, cpuErr := cpuSeconds(pids)
	window := time.Since(t0).Seconds()
	if cpuErr != nil {
		return fmt.Errorf("proxy gone during the case: %w", cpuErr)
	}
	b, err := results.ParseBench(stdout.Bytes())
	switch {
	case runErr != nil && err != nil:
		return fmt.Errorf("%v: %w", cmd.Args, runErr)
	case runErr != nil:
		// A load generator may exit non-zero when requests failed; its
		// report still says how many.
		fmt.Fprintf(os.Stderr, "harness case: %v: %v; keeping its report\n", cmd.Args, runErr)
	case err != nil:
		return err
	}
	c := results.Case{
		Proxy: *proxy, Case: *label, Group: *group, SweepPct: *pct,
		Size: b.Size, Pipeline: b.Pipeline, Conns: b.Conns, Rate: b.Rate, Mode: b.Mode,
		Sent: b.Sent, Replies: b.Replies, Errors: b.Errors,
		Throughput: b.Throughput, AchievedRate: b.AchievedRate, DurationS: b.DurationS,
		Latency:     b.Latency,
		CPUWindowS:  window,
		LoadgenCPUS: (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds(),
		Bench:       bytes.TrimSpace(stdout.Bytes()),
	}
	if c.Case == "" {
		c.Case = results.CaseLabel(c.Size, c.Pipeline, c.Conns)
	}
	if len(pids) > 0 {
		c.ProxyCPUS = cpu1 - cpu0
		// Our window opens at the end of warmup and closes when the load
		// generator has exited, so it holds the bench's measured window
		// plus idle moments (connecting, shutting down): count the
		// messages of the measured window.
		if msgs := c.Throughput * min(window, c.DurationS); msgs > 0 {
			c.CPUPerMsgUS = c.ProxyCPUS / msgs * 1e6
		}
	}
	fmt.Printf("%-8s %-16s %10.0f msgs/s  p50 %7.0fµs  p99 %7.0fµs  p99.9 %7.0fµs  cpu %6.2fµs/msg  errors %d\n",
		c.Proxy, c.Case, c.Throughput, c.Latency.P50, c.Latency.P99, c.Latency.P999, c.CPUPerMsgUS, c.ErrorCount())
	return results.Write(*out, c)
}
