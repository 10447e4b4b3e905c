package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/prism-proxy/prism/server"
)

func init() {
	commands["proxy"] = command{"run the proxy", runProxy}
}

func runProxy(args []string) int {
	fs := flag.NewFlagSet("prism proxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9000", "`address` for clients and backend registrations")
	port := fs.Int("port", 0, "listen on localhost:`port` (the seed's form; overrides -listen)")
	admin := fs.String("admin", "", "`address` of the admin HTTP endpoint (/metrics, /healthz, /backends); empty: off")
	loops := fs.Int("loops", 0, "event loops; 0: one per CPU")
	timeout := fs.Duration("timeout", 5*time.Second, "request timeout")
	retries := fs.Int("retries", 1, "other backends of the same policy a failed request may be retried on; 0: at most once")
	maxFrame := fs.Int("max-frame", 1<<20, "largest message in `bytes`")
	token := fs.String("register-token", "", "when set, setups must carry this token")
	maxInflight := fs.Int("max-inflight", 1024, "requests in flight per client connection before the proxy stops reading it")
	drain := fs.Duration("drain", 10*time.Second, "on SIGINT/SIGTERM, how long to wait for requests in flight")
	verbose := fs.Bool("v", false, "log every registration change and debug detail")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected arguments: %v", fs.Args())
	}
	if *port != 0 {
		*listen = net.JoinHostPort("localhost", strconv.Itoa(*port))
	}
	if *retries == 0 {
		*retries = server.NoRetries
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if *loops <= 0 {
		*loops = runtime.NumCPU()
	}
	raiseProcs(*loops)
	p, err := server.New(server.Config{
		Listen: *listen, Loops: *loops, Timeout: *timeout, Retries: *retries,
		MaxFrame: *maxFrame, RegisterToken: *token, MaxClientInflight: *maxInflight, Logger: logger,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "prism proxy:", err)
		return 2
	}
	if err := p.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "prism proxy:", err)
		return 1
	}
	logger.Info("proxy listening", "addr", p.Addr(), "loops", p.Config().Loops)
	if *admin != "" {
		ln, err := net.Listen("tcp", *admin)
		if err != nil {
			fmt.Fprintln(os.Stderr, "prism proxy: admin:", err)
			p.Shutdown(context.Background())
			return 1
		}
		logger.Info("admin listening", "addr", ln.Addr().String())
		go http.Serve(ln, p.AdminHandler())
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		logger.Info("shutting down", "signal", s.String(), "inflight", p.Metrics().Snapshot().Inflight)
	case <-p.Done():
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		logger.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

// parseFlags parses args; done reports that the command should return code
// (0 after -h, 2 after a bad flag).
func parseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		return 0, true
	}
	return 2, true
}

func usageError(fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(fs.Output(), fs.Name()+": "+format+"\n", a...)
	fs.Usage()
	return 2
}
