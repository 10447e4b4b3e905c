package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/internal/backendtest"
	"github.com/prism-proxy/prism/server"
)

// startUpper runs a proxy and one upper-casing backend of policy 7 in the
// test's process.
func startUpper(t *testing.T) *server.Proxy {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := server.New(server.Config{Listen: "127.0.0.1:0", Loops: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	backendtest.Start(t, backend.Config{ID: 3, Policy: 7, Proxies: []string{p.Addr()}, Mode: backend.Upper, Logger: quiet})
	return p
}

// lockedBuffer is a bytes.Buffer safe from two goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSuffix(l.b.String(), "\n"), "\n")
}

// TestClientAnswersEachLine: `prism client` reading its input answers each
// line as it comes, before the next is written (as a person types), and
// pipelines lines that come together.
func TestClientAnswersEachLine(t *testing.T) {
	addr := startUpper(t).Addr()
	c, err := client.DialOptions(context.Background(), addr, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	in, typing := io.Pipe()
	var out lockedBuffer
	res := make(chan error, 1)
	go func() {
		failed, err := exchange(c, 42, 7, 5*time.Second, func(send func(string) error, flush func() error) error {
			return feedLines(in, send, flush)
		}, &out)
		if err == nil && failed {
			err = io.ErrUnexpectedEOF
		}
		res <- err
	}()
	waitLines := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); len(out.lines()) < n || out.lines()[0] == ""; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("answers %q; want %d before the next line is written", out.lines(), n)
			}
		}
	}
	for i, word := range []string{"one", "two", "three"} {
		if _, err := io.WriteString(typing, word+"\n"); err != nil {
			t.Fatal(err)
		}
		waitLines(i + 1) // the pipe stays open: the answer cannot wait for the end of the input
	}
	io.WriteString(typing, "four\nfive\r\nsix") // together, the last without a line end
	typing.Close()
	select {
	case err := <-res:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not return after the input ended")
	}
	got := out.lines()
	want := []string{"ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX"}
	if len(got) != len(want) {
		t.Fatalf("answers %q; want %d", got, len(want))
	}
	for i, w := range want {
		if !strings.Contains(got[i], `"payload":"`+w+`"`) {
			t.Errorf("answer %d = %s; want payload %s", i, got[i], w)
		}
	}
}
