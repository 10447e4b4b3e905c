package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prism-proxy/prism/backend"
)

func init() {
	commands["backend"] = command{"run a backend server that registers with proxies", runBackend}
}

func runBackend(args []string) int {
	fs := flag.NewFlagSet("prism backend", flag.ContinueOnError)
	var cfg backend.Config
	cfg.RegisterFlags(fs)
	var level levelFlag
	var format formatFlag
	fs.Var(&level, "log-level", "`level` of the log: debug, info (the default), warn or error")
	fs.Var(&format, "log-format", "`format` of the log on standard error: text (key=value) or json (one object a line)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected arguments: %v", fs.Args())
	}
	logger := newLogger(os.Stderr, format, slog.Level(level))
	cfg.Logger = logger
	raiseProcs(cfg.Loops)
	b, err := backend.New(cfg)
	if err == nil {
		err = b.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "prism backend:", listenHint(err, cfg.Listen, "-port or -host"))
		return 1
	}
	logger.Info("backend serving", "id", cfg.ID, "policy", cfg.Policy, "port", b.Port(), "mode", cfg.Mode.String())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
	case <-b.Done(): // stopped on its own: its leases are gone
		b.Close()
		fmt.Fprintln(os.Stderr, "prism backend:", b.Err())
		return 1
	}
	b.Close()
	logger.Info("backend stopped", "id", cfg.ID, "served", b.Served())
	return 0
}
