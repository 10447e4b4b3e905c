package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/prism-proxy/prism/bench/loadgen"
)

func init() {
	commands["bench"] = command{"generate load and measure throughput and latency", runBench}
}

// benchArgs is what the bench command's flags say: the loadgen.Config and
// the command's own output settings.
type benchArgs struct {
	cfg    loadgen.Config
	asJSON bool
	hgrm   string
	fs     *flag.FlagSet // for usage errors found past the parse
}

// parseBenchArgs reads the bench command's flags into a benchArgs; done
// reports that the command should return code (0 after -h, 2 after a usage
// error). The Config has no Progress.
func parseBenchArgs(args []string) (ba benchArgs, code int, done bool) {
	fs := flag.NewFlagSet("prism bench", flag.ContinueOnError)
	ba.fs = fs
	ba.cfg.RegisterFlags(fs)
	fs.BoolVar(&ba.asJSON, "json", false, "print one JSON document (schema "+loadgen.Schema+") instead of the summary")
	fs.StringVar(&ba.hgrm, "hgrm", "", "write the latency percentile spectrum (.hgrm, milliseconds) to `file`")
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
		return ba, code, true
	}
	if fs.NArg() > 0 {
		return ba, usageError(fs, "unexpected argument %q", fs.Arg(0)), true
	}
	return ba, 0, false
}

func runBench(args []string) int {
	ba, code, done := parseBenchArgs(args)
	if done {
		return code
	}
	cfg := ba.cfg
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
		return usageError(ba.fs, "%v", err)
	case res == nil:
		fmt.Fprintln(os.Stderr, "prism bench:", err)
		return 1
	case err != nil:
		fmt.Fprintln(os.Stderr, "prism bench: stopped early:", err)
	}
	if ba.asJSON {
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
	if ba.hgrm != "" {
		if err := writeHgrm(ba.hgrm, res); err != nil {
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
