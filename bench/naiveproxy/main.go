// Command naiveproxy is the baseline of the comparison harness: a Prism
// proxy written the way the original threaded design would write it, so that
// bench/compare can show what the gnet design buys.
//
// It speaks Prism's protocol (see PROTOCOL.md) and is naive on purpose, in
// the plain, honest way such a proxy is usually first written:
//
//   - one goroutine per connection, blocking reads and writes with package net;
//   - every message is decoded by encoding/json into a map and re-encoded;
//   - ONE BACKEND DIAL PER REQUEST: the request is sent on a fresh
//     connection to the backend, one reply is read, the connection is closed;
//   - a connection's requests are handled one after another, so pipelined
//     requests wait in the socket buffer.
//
// What it keeps from the contract: backend registration is a lease (the setup
// connection stays open; closing it removes the backend), round robin per
// policy, isolation, one answer per request (the reply or an error of type 3
// with code bad_request, too_large, no_backend, backend_unavailable or
// timeout), and one retry on another backend when a backend cannot be
// reached. It has no admin endpoint, no tokens and no graceful shutdown.
//
//	go run ./bench/naiveproxy -listen 127.0.0.1:9000
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"time"
)

func main() {
	fs := flag.NewFlagSet("naiveproxy", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:9000", "`address` for clients and backend registrations")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline of one backend round trip (dial, write, read)")
	retries := fs.Int("retries", 1, "other backends a request may be tried on when its backend cannot be reached")
	maxFrame := fs.Int("max-frame", 1<<20, "largest message accepted, in `bytes`")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: naiveproxy [flags]\n\nA deliberately naive Prism proxy (goroutine per connection, encoding/json,\none backend dial per request), the baseline of bench/compare.\n\nflags:")
		fs.PrintDefaults()
	}
	fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fs.Usage()
		os.Exit(2)
	}
	s := &Server{Timeout: *timeout, Retries: *retries, MaxFrame: *maxFrame}
	log.Fatal(s.ListenAndServe(*listen)) // it returns only on failure
}
