//go:build unix

package server

import (
	"golang.org/x/sys/unix"

	"github.com/prism-proxy/prism/internal/gnetio"
)

// openFilesLimit returns the soft open-files limit, or 0 when unknown.
func openFilesLimit() int { return gnetio.OpenFilesLimit() }

// RaiseOpenFilesLimit raises the process's soft open-files limit to its
// hard limit, as a server that derives its connection cap from the limit
// should do first, and returns the soft limit now in force. Go's runtime
// does the same at start-up since Go 1.19; calling it again is harmless
// and keeps the proxy's figure independent of that. Process-wide: call it
// from main, before New.
func RaiseOpenFilesLimit() (int, error) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return 0, err
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
			return openFilesLimit(), err
		}
	}
	return openFilesLimit(), nil
}
