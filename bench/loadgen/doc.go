// Package loadgen is Prism's load generator, the library behind `prism bench`.
// It owns the generation of request load over many connections, the checking
// and counting of the answers, and the latency statistics (HdrHistogram) with
// their reports: a human summary, a JSON document (schema prism-bench/v1) and
// the .hgrm percentile spectrum. It borrows from wrk2 (constant-rate schedule,
// coordinated-omission correction), vegeta (a rate over many connections) and
// memtier_benchmark (closed loop with pipelining).
//
// It speaks the request/reply framing of the client package, so it measures a
// proxy or, pointed at a backend's own port, the direct path (the baseline).
// It does not start proxies or backends, does not retry a failed request and
// does not check payloads beyond the reply's type and error code.
//
// Two modes:
//
//   - closed loop (Rate zero): each connection keeps Pipeline requests in
//     flight and sends the next one as soon as an answer comes back. Latency
//     is service time, from the send to the answer.
//   - open loop (Rate > 0): requests leave at a constant rate spread over the
//     connections, whether answers come back or not. Latency is counted from
//     when a request should have been sent (corrected for coordinated
//     omission, as wrk2 does), and from when it was sent (uncorrected).
//
// Use:
//
//	res, err := loadgen.Run(ctx, loadgen.Config{
//		Targets:  []string{"127.0.0.1:9000"},
//		Policies: []int64{7},
//		Conns:    32,
//		Pipeline: 16,
//		Duration: 10 * time.Second,
//	})
//	if err != nil { ... }
//	res.WriteSummary(os.Stdout) // or res.WriteJSON, res.WriteHgrm
//
// Run may be called from several goroutines at once, each call with its own
// Config.
//
// Cost per request. The generator shares its machine with what it measures,
// so the per-request path allocates nothing and takes no lock (see
// BenchmarkBookkeeping): requests are pre-encoded, send timestamps go into a
// per-connection ring, latencies into a per-connection batch that is handed
// to a shared histogram shard, under its mutex, 256 at a time or once a
// second. Counters are published through atomics when a connection is about
// to block. A closed-loop connection is one goroutine that flushes its
// writes only when it is about to block on a read (from under the client's
// reader, so that a partial frame or a text framing's trailing newline does
// not hold them back). An open-loop connection has a writer and a reader
// goroutine; one pacer goroutine, sleeping on a timerfd on Linux, wakes the
// writers when their requests fall due, since Go's timers can wake a
// millisecond late and that lateness would show in corrected latency.
//
// A connection that has requests in flight and no answer for Config.Timeout
// is closed, its requests count as "timeout", and it is redialed; a
// connection that fails counts its requests in flight as "conn_error" and is
// redialed with backoff.
package loadgen
