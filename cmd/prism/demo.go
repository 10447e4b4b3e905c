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
	"time"

	"github.com/prism-proxy/prism/demo"
)

func init() {
	commands["demo"] = command{"run a proxy, backends and checking clients in one process", runDemo}
}

func runDemo(args []string) int {
	fs := flag.NewFlagSet("prism demo", flag.ContinueOnError)
	duration := fs.Duration("duration", 10*time.Second, "how long the clients send requests")
	clients := fs.Int("clients", 8, "client connections")
	pipeline := fs.Int("pipeline", 8, "requests in flight per client connection")
	policies := fs.Int("policies", 3, "policies 1..n (odd ones echo, even ones upper-case)")
	backends := fs.Int("backends", 2, "backend servers per policy")
	loops := fs.Int("loops", 0, "proxy event loops; 0: one per CPU")
	size := fs.Int("size", 256, "largest payload in `bytes`")
	verbose := fs.Bool("v", false, "log the proxy's and the backends' messages to stderr")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected arguments: %v", fs.Args())
	}
	for name, v := range map[string]int64{"duration": int64(*duration), "clients": int64(*clients),
		"pipeline": int64(*pipeline), "policies": int64(*policies), "backends": int64(*backends), "size": int64(*size)} {
		if v <= 0 {
			return usageError(fs, "-%s must be positive", name)
		}
	}
	cfg := demo.Config{
		Duration: *duration, Clients: *clients, Pipeline: *pipeline, Policies: *policies,
		Backends: *backends, Loops: *loops, Size: *size,
	}
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second Ctrl-C kills at once
	_, err := demo.Run(ctx, cfg, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, demo.ErrConfig):
		return usageError(fs, "%v", err)
	case err != nil:
		fmt.Fprintln(os.Stderr, "prism demo:", err)
		return 1
	}
	return 0
}
