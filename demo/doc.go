// Package demo owns `prism demo`: a whole Prism deployment in one process,
// driven and checked end to end over loopback sockets.
//
// Run starts a proxy on 127.0.0.1:0, Policies policies of Backends backend
// servers each (server ids 1..Policies*Backends in policy order; odd policies
// echo, even ones upper-case, so both modes show), waits until every backend
// is registered, and then lets Clients connections keep Pipeline requests in
// flight each, of random policies and random payloads, for Duration. Every
// answer is checked against what the demo knows about its request:
//
//   - isolation: the reply comes from a backend of the request's policy;
//   - addressing: the reply's destid is the client's id;
//   - payload: the payload comes back as sent (echo) or upper-cased (upper),
//     in request order, since replies on one connection are in order.
//
// Progress goes to stderr (a line rewritten in place on a terminal, plain
// periodic lines otherwise) and a summary to stdout: counts, errors by code,
// throughput, latency percentiles and the requests each backend answered,
// which shows round-robin and isolation at a glance.
//
// The package does not load-test a remote proxy (package bench does) and
// does not retry: an answer that is an error is counted by its code.
//
//	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
//	defer stop()
//	sum, err := demo.Run(ctx, demo.Config{Duration: 3 * time.Second}, os.Stdout, os.Stderr)
//	// err is nil when every check passed; sum is non-nil once the clients ran.
//
// Run may be called from several goroutines at once; each call builds its own
// deployment.
package demo
