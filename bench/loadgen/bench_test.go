package loadgen

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prism-proxy/prism/codec"
)

// BenchmarkBookkeeping measures the per-request path of a connection: the
// send's ring slot and counting, then the answer's classification, ring
// slot and latency recording (batches handed to a shard every 256).
func BenchmarkBookkeeping(b *testing.B) {
	payload := strings.Repeat("x", 64)
	for _, bb := range []struct {
		name string
		body []byte
	}{
		{"reply", codec.AppendReply(nil, 1, 1, payload)},
		{"error", codec.AppendError(nil, 1, codec.CodeNoBackend, "no backend serves policy 9")},
	} {
		b.Run(bb.name, func(b *testing.B) {
			cfg, err := Config{Targets: []string{"127.0.0.1:1"}, Conns: 1, Rate: 1000, Warmup: -1}.resolve()
			if err != nil {
				b.Fatal(err)
			}
			r := newRun(cfg)
			r.base = time.Now()
			w := r.workers[0]
			b.SetBytes(int64(len(bb.body)))
			b.ReportAllocs()
			for b.Loop() {
				now := r.now()
				if !w.mayIssue(now) {
					b.Fatal("may not issue")
				}
				s := &w.ring[w.t&w.mask]
				s.intended, s.sent = now, now
				w.t++
				w.nextBody()
				w.complete(bb.body, &w.ring[w.h&w.mask], r.now())
				w.h++
			}
		})
	}
}

// BenchmarkClosedLoop runs b.N requests through the in-test echo server,
// 32 connections × 16 in flight, 64-byte payloads; both ends share the
// machine. It reports the throughput as msgs/s.
func BenchmarkClosedLoop(b *testing.B) {
	srv := (&echoServer{}).start(b)
	b.ReportAllocs()
	res, err := Run(context.Background(), Config{
		Targets: []string{srv.addr}, Conns: 32, Pipeline: 16, Size: 64, Requests: int64(max(b.N, 1000)), Warmup: -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	if res.Replies != res.Sent {
		b.Fatalf("sent %d replies %d errors %v", res.Sent, res.Replies, res.Errors)
	}
	b.ReportMetric(res.Throughput, "msgs/s")
	b.ReportMetric(res.Latency.P50, "p50-µs")
	b.ReportMetric(res.Latency.P99, "p99-µs")
}
