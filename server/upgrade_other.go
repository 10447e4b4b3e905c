//go:build !linux

package server

// stopListening is Linux only: elsewhere SO_REUSEPORT does not balance a
// port's connections across processes, and Handover returns ErrUnsupported.
func stopListening(...string) error { return ErrUnsupported }
