//go:build !unix

package server

import "github.com/prism-proxy/prism/internal/gnetio"

// openFilesLimit: unknown on this platform.
func openFilesLimit() int { return gnetio.OpenFilesLimit() }

// RaiseOpenFilesLimit does nothing on this platform.
func RaiseOpenFilesLimit() (int, error) { return 0, nil }
