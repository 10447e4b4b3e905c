// Package backend is Prism's backend server: a program of its own, with its
// own gnet engine, that answers requests on a data port and keeps itself
// registered with one or more proxies.
//
// It owns the data port (each connection's requests answered in order, in
// the framing the connection speaks, each invalid one with a protocol error)
// and the leases: one registration connection per proxy, opened with a setup
// and held open, registered again with backoff when it drops. A proxy named
// by a host name has a lease per address the name resolves to, resolved
// again every Config.ResolveEvery (leases opened for new addresses, closed
// for vanished ones; Config.LookupHost is the resolver). A proxy that
// refuses the setup (unauthorized, bad_request) is given up on, with an
// error logged: registering again would get the same answer. A lease ended
// with unauthorized (a newer registration of the same id replaced it) is
// registered again only after Config.ReplacedRetry (1m), so that two
// servers sharing an id do not take it from each other in a loop.
// WaitRegistered then returns ErrRefused or ErrRevoked. It does not
// route, balance or retry; that is the proxy's job (package server). Its
// answers are an echo of the payload or the payload upper-cased, enough for
// tests, demos and benchmarks.
//
//	cfg := backend.Config{ID: 1, Policy: 7, Proxies: []string{"127.0.0.1:9000"}}
//	b, err := backend.New(cfg)
//	if err != nil { ... }
//	if err := b.Start(); err != nil { ... }
//	defer b.Close()
//	err = b.WaitRegistered(ctx)
//
// A command registers the flags of the Config with Config.RegisterFlags.
package backend
