//go:build !linux

package gnetio

import "errors"

// ErrUnsupported: StopListening is Linux only.
var ErrUnsupported = errors.New("gnetio: not supported on this system")

// StopListening is Linux only: elsewhere it returns ErrUnsupported.
func StopListening(...string) error { return ErrUnsupported }
