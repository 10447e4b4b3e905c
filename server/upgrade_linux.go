package server

import "github.com/prism-proxy/prism/internal/gnetio"

// stopListening takes the proxy's listeners out of their ports
// (gnetio.StopListening).
func stopListening(addrs ...string) error { return gnetio.StopListening(addrs...) }
