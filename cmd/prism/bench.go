package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/prism-proxy/prism/bench/loadgen"
	"github.com/prism-proxy/prism/codec"
)

func init() {
	commands["bench"] = command{"generate load and measure throughput and latency", runBench}
}

func runBench(args []string) int {
	fs := flag.NewFlagSet("prism bench", flag.ContinueOnError)
	targets := fs.String("proxy", "127.0.0.1:9000", "`addresses` to load, comma-separated (a backend's own port measures the direct path)")
	conns := fs.Int("conns", 32, "connections, spread over the addresses")
	pipeline := fs.Int("pipeline", 0, "requests in flight per connection: closed loop (default 16), or\nthe most in flight per connection in open loop (default 1024)")
	rate := fs.Float64("rate", 0, "open loop at this many requests/s over all connections (0: closed loop)")
	duration := fs.Duration("duration", 0, "measure for this long after warmup (default 10s without -n)")
	n := fs.Int64("n", 0, "send this many requests after warmup, then stop")
	warmup := fs.Duration("warmup", 0, "send, but do not count, for this long first (default 1s without -n, none with it)")
	size := fs.Int("size", 64, "payload `bytes`")
	policies := fs.String("policy", "0", "`policies` of the requests; a comma list mixes them round-robin per request")
	id := fs.Int64("id", 1, "client id (srcid) of the requests")
	timeout := fs.Duration("timeout", 10*time.Second, "a connection with requests in flight and no answer for this long\ncounts them as \"timeout\" and redials (0: never)")
	text := fs.Bool("text", false, "use the text framing instead of binary")
	asJSON := fs.Bool("json", false, "print one JSON document (schema "+loadgen.Schema+") instead of the summary")
	hgrm := fs.String("hgrm", "", "write the latency percentile spectrum (.hgrm, milliseconds) to `file`")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: prism bench [flags]\n\n"+
			"Loads a proxy (or a backend directly) with requests and reports throughput,\n"+
			"errors by code and latency percentiles. Closed loop by default: each\n"+
			"connection keeps -pipeline requests in flight. With -rate, open loop:\n"+
			"requests leave on a fixed schedule and latency is counted from when each\n"+
			"should have been sent (coordinated omission corrected), beside the latency\n"+
			"from when it was sent. Exits 1 when no request got a reply.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	cfg := loadgen.Config{
		Conns:    *conns,
		Pipeline: *pipeline,
		Rate:     *rate,
		Duration: *duration,
		Requests: *n,
		Warmup:   *warmup,
		Size:     *size,
		SrcID:    *id,
		Timeout:  *timeout,
	}
	for _, t := range strings.Split(*targets, ",") {
		if t = strings.TrimSpace(t); t != "" {
			cfg.Targets = append(cfg.Targets, t)
		}
	}
	for _, p := range strings.Split(*policies, ",") {
		v, err := strconv.ParseInt(strings.TrimSpace(p), 10, 64)
		if err != nil {
			return usageError(fs, "bad -policy %q", p)
		}
		cfg.Policies = append(cfg.Policies, v)
	}
	// The flags' zero values mean "off", the Config's mean "default".
	if set["warmup"] && *warmup == 0 {
		cfg.Warmup = -1
	}
	if set["timeout"] && *timeout == 0 {
		cfg.Timeout = -1
	}
	if set["size"] && *size == 0 {
		cfg.Size = -1
	}
	switch {
	case *conns <= 0:
		return usageError(fs, "-conns must be positive")
	case set["pipeline"] && *pipeline <= 0:
		return usageError(fs, "-pipeline must be positive")
	case *size < 0:
		return usageError(fs, "-size must not be negative")
	}
	if *text {
		cfg.Framing = codec.Text
	}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		cfg.Progress = func(p loadgen.Progress) {
			fmt.Fprintf(os.Stderr, "\r%s\x1b[K", loadgen.FormatProgress(p))
			if p.Final {
				fmt.Fprintln(os.Stderr)
			}
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { // a second interrupt kills at once
		<-ctx.Done()
		stop()
	}()
	res, err := loadgen.Run(ctx, cfg)
	switch {
	case errors.Is(err, loadgen.ErrConfig):
		return usageError(fs, "%v", err)
	case res == nil:
		fmt.Fprintln(os.Stderr, "prism bench:", err)
		return 1
	case err != nil:
		fmt.Fprintln(os.Stderr, "prism bench: stopped early:", err)
	}
	if *asJSON {
		err = res.WriteJSON(os.Stdout)
		for _, w := range res.Warnings() {
			fmt.Fprintln(os.Stderr, "prism bench: warning:", w)
		}
	} else {
		err = res.WriteSummary(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "prism bench:", err)
		return 1
	}
	if *hgrm != "" {
		if err := writeHgrm(*hgrm, res); err != nil {
			fmt.Fprintln(os.Stderr, "prism bench:", err)
			return 1
		}
	}
	if res.Replies == 0 {
		return 1
	}
	return 0
}

func writeHgrm(path string, res *loadgen.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := res.WriteHgrm(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
