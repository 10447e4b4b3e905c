//go:build !unix

package gnetio

// OpenFilesLimit: unknown on this platform.
func OpenFilesLimit() int { return 0 }
