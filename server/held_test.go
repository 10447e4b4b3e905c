package server

import (
	"strings"
	"testing"
	"time"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/codec"
)

// A paused client's unparsed bytes are counted in loop.held at its reads
// (countInbound); parsing them later, on resume from flush, does not
// uncount them: held stays high while the client is quiet.
func TestHeldBytesAfterAPausedClientResumes(t *testing.T) {
	p := startProxy(t, Config{Loops: 1, MaxClientInflight: 2})
	startBackend(t, p, 1, 7, backend.Echo, codec.Binary)
	c := dial(t, p, codec.Binary)
	payload := strings.Repeat("x", 8000)
	const n = 300
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			recv(t, c)
		}
	}()
	for i := 0; i < n; i++ {
		if err := c.Send(int64(i+1), 7, payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	<-done
	time.Sleep(300 * time.Millisecond) // ticks publish
	held := p.Metrics().Snapshot().Held
	t.Logf("held after every answer: %d", held)
	if held > 256<<10 { // one chunk per link
		t.Fatalf("loop holds %d bytes with nothing in flight and nothing buffered", held)
	}
}
