// Package backendtest starts backend servers for tests: started, closed
// when the test ends, and registered with their proxies before it returns.
package backendtest

import (
	"context"
	"testing"
	"time"

	"github.com/prism-proxy/prism/backend"
)

// Start runs a backend server with cfg until the test ends and waits (5s
// at most) until every proxy of cfg.Proxies acknowledged its setup.
func Start(t testing.TB, cfg backend.Config) *backend.Server {
	t.Helper()
	b, err := backend.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.WaitRegistered(ctx); err != nil {
		t.Fatalf("backend %d did not register: %v", cfg.ID, err)
	}
	return b
}
