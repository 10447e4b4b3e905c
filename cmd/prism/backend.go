package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/server"
)

func init() {
	commands["backend"] = command{"run a backend server that registers with proxies", runBackend}
}

func runBackend(args []string) int {
	fs := flag.NewFlagSet("prism backend", flag.ContinueOnError)
	proxies := fs.String("proxy", "127.0.0.1:9000", "comma-separated proxy `addresses` to register with; empty: serve only")
	id := fs.Int64("id", 1, "server id")
	policy := fs.Int64("policy", 0, "privacy policy served")
	port := fs.Int("port", 0, "data port; 0: a free one")
	host := fs.String("host", "127.0.0.1", "data address to listen on")
	mode := fs.String("mode", "echo", "echo, or upper (payload upper-cased)")
	token := fs.String("token", "", "registration token")
	text := fs.Bool("text", false, "register with the text framing (the proxy then speaks text to this backend)")
	loops := fs.Int("loops", 1, "event loops")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected arguments: %v", fs.Args())
	}
	m, err := server.ParseMode(*mode)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	var list []string
	for _, a := range strings.Split(*proxies, ",") {
		if a = strings.TrimSpace(a); a != "" {
			list = append(list, a)
		}
	}
	framing := codec.Binary
	if *text {
		framing = codec.Text
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	raiseProcs(*loops)
	b, err := server.NewBackendServer(server.BackendConfig{
		ID: *id, Policy: *policy, Listen: net.JoinHostPort(*host, strconv.Itoa(*port)),
		Proxies: list, Mode: m, Token: *token, Framing: framing, Loops: *loops, Logger: logger,
	})
	if err == nil {
		err = b.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "prism backend:", err)
		return 1
	}
	logger.Info("backend serving", "id", *id, "policy", *policy, "port", b.Port(), "mode", *mode)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	b.Close()
	return 0
}
