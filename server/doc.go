// Package server is the Prism proxy: one gnet engine that serves clients and
// backend registrations on one address and forwards each request to a
// backend of the policy it names, round robin or by the power of two
// choices (Config.Balance, balance.go), on a pipelined data connection, returning the reply on the client's connection in request
// order. It does not run backends (package backend) or speak to clients
// itself (package client).
//
//	p, err := server.New(server.Config{Listen: "127.0.0.1:9000"})
//	if err != nil { ... }
//	if err := p.Start(); err != nil { ... }
//	defer p.Shutdown(ctx)
//
// # The request path
//
// A client's bytes arrive in OnTraffic on the event loop that owns the
// connection (inconn.go). The loop cuts them into frames (binary or text,
// detected from the first byte), decodes each request without copying it
// (codec), and starts a call (call.go) queued on the client. dispatch
// (link.go) picks a backend of the policy from the registry's immutable
// snapshot (pool) and puts the call on this loop's link to that backend:
// one persistent, pipelined data connection per loop and backend, dialed
// on first use and attached to the same loop, so that a request and its
// reply never cross threads. The request's JSON is copied once, framed for
// the backend, into the link's chunks (chunks.go), and written from there.
// The backend answers in order, so each reply matches the head of the
// link's fifo; it is converted to the client's framing and written when
// its turn in the client's queue comes. Writes are batched per poll
// (batch.go): the requests of every client read together go to a backend
// in one write, the replies of a client in one write.
//
// # Who owns what
//
// Everything a loop touches on the request path (its connections, links,
// calls, buffers and counters) belongs to that loop's goroutine and is
// never locked. Other goroutines reach a loop only through gnet's task
// queue (Execute: the tick, Shutdown and Snapshot) and read its published
// counters through atomics. The registry is shared: registrations take a
// mutex and swap in a new snapshot; the request path loads the snapshot
// and advances one atomic counter per policy (round robin), or reads two
// backends' latency estimates and the loop's own in-flight counts (p2c),
// each reply then updating its backend's estimate with a compare-and-swap. Dials run on their own
// goroutines and hand the connection (or the failure) back to the loop.
// Settings that Reload may change are an immutable snapshot (reload.go)
// behind an atomic pointer: Reload publishes a new one and has each loop
// copy its limits through the task queue (the tick looks too), so the
// request path reads the loop's own copy and nothing else.
//
// # The fleet registry
//
// With Config.Registry the proxies of a fleet share their registrations
// through etcd (fleet.go, internal/fleet): setups accepted here are
// published, and the other proxies' entries are routed here like static
// backends. The request path does not know: they are registry entries.
//
// # How errors become answers
//
// Every request gets exactly one answer, its reply or an error message
// (type 3) with a protocol code, in its turn:
//
//	bad_request          the message does not decode as a request
//	too_large            a frame over Config.MaxFrame (then the connection closes)
//	no_backend           no backend serves the policy
//	backend_unavailable  its backend failed before replying, and no retry was left
//	timeout              no reply within Config.Timeout
//	overloaded           every backend of the policy is stalled or full
//	unauthorized         a setup without the right token, or from a network or
//	                     listener not allowed to register (then the lease closes);
//	                     and on a lease replaced by a newer setup of its id:
//	                     "replaced by a newer registration of id N from ADDR",
//	                     then it closes (the backend should not register again)
//	shutting_down        a request read while the proxy drains
//
// Error answers are counted, never logged one by one: the ticker logs one
// summary line per Config.ErrorLogEvery with the counts by code and policy
// (errlog.go).
//
// A stream that cannot be cut into frames is answered once, after the
// requests already queued, and closed. A backend whose data connection
// breaks the protocol is closed and its calls are retried elsewhere.
package server
