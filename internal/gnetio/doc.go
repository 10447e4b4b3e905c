// Package gnetio holds what Prism's two gnet programs share: the proxy
// (package server) and the backend server (package backend). It cuts
// messages out of what a gnet.Conn has read without copying them, stops an
// engine within a caller's context, sends gnet's log to slog, and learns the
// address an engine's listener got.
//
// It keeps no state of its own and decides nothing about the protocol:
// framing and decoding belong to package codec, connections to their program.
//
//	f := gnetio.NewFrames(c, &split) // in OnTraffic, on c's event loop
//	for {
//		body, err := f.Next()
//		if gnetio.Incomplete(err) {
//			break
//		}
//		... // err != nil: the stream is unusable
//		f.Consume()
//	}
//	f.Done()
package gnetio
