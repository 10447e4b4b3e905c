//go:build !unix

package server

// openFilesLimit: unknown on this platform.
func openFilesLimit() int { return 0 }

// RaiseOpenFilesLimit does nothing on this platform.
func RaiseOpenFilesLimit() (int, error) { return 0, nil }
