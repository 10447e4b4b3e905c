//go:build unix

package gnetio

import "golang.org/x/sys/unix"

// OpenFilesLimit returns the soft open-files limit (RLIMIT_NOFILE), or 0
// when it is unknown or beyond 1<<24 (no practical limit).
func OpenFilesLimit() int {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<24 {
		return 0
	}
	return int(r.Cur)
}
