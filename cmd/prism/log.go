package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"syscall"

	"github.com/prism-proxy/prism/server"
)

// formatFlag is -log-format: text (slog's key=value lines) or json (one
// JSON object a line, for log collectors).
type formatFlag string

func (f *formatFlag) String() string {
	if f == nil || *f == "" {
		return "text"
	}
	return string(*f)
}

func (f *formatFlag) Set(s string) error {
	if s != "text" && s != "json" {
		return errors.New("want text or json")
	}
	*f = formatFlag(s)
	return nil
}

// newLogger is the commands' logger: format's handler on w at level.
func newLogger(w io.Writer, format formatFlag, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// listenHint adds to a listener's error what to do about it: an address
// in use is named, with the flag that chooses another.
func listenHint(err error, addr, flag string) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s is in use by another process: stop it, or choose another address with %s (%w)", addr, flag, err)
	}
	return err
}

// proxyAddrs names the proxy's listen addresses for listenHint.
func proxyAddrs(cfg server.Config) string {
	if cfg.RegisterListen == "" {
		return cfg.Listen
	}
	return cfg.Listen + " or " + cfg.RegisterListen + " (-register-listen)"
}
