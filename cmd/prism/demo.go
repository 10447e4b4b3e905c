package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prism-proxy/prism/demo"
)

func init() {
	commands["demo"] = command{"run a proxy, backends and checking clients in one process", runDemo}
}

// demoArgs is what the demo command's flags say: the demo.Config and
// whether to log.
type demoArgs struct {
	cfg     demo.Config
	verbose bool
	fs      *flag.FlagSet // for usage errors found past the parse
}

// parseDemoArgs reads the demo command's flags into a demoArgs; done reports
// that the command should return code (0 after -h, 2 after a usage error).
// The Config has no Logger.
func parseDemoArgs(args []string) (da demoArgs, code int, done bool) {
	fs := flag.NewFlagSet("prism demo", flag.ContinueOnError)
	da.fs = fs
	da.cfg.RegisterFlags(fs)
	fs.BoolVar(&da.verbose, "v", false, "log the proxy's and the backends' messages to stderr")
	if code, done := parseFlags(fs, args); done {
		return da, code, true
	}
	if fs.NArg() > 0 {
		return da, usageError(fs, "unexpected arguments: %v", fs.Args()), true
	}
	return da, 0, false
}

func runDemo(args []string) int {
	da, code, done := parseDemoArgs(args)
	if done {
		return code
	}
	cfg := da.cfg
	if da.verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second Ctrl-C kills at once
	_, err := demo.Run(ctx, cfg, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, demo.ErrConfig):
		return usageError(da.fs, "%v", err)
	case err != nil:
		fmt.Fprintln(os.Stderr, "prism demo:", err)
		return 1
	}
	return 0
}
