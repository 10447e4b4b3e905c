package buildinfo

import "testing"

func TestStamped(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "", ""
	base := Info{Version: Unknown, Commit: "abc", GoVersion: "go1.26.8"}
	if got := stamped(base); got != base {
		t.Errorf("unstamped: got %+v, want %+v", got, base)
	}
	version, commit = "v1.2.0", "1a2b3c"
	want := Info{Version: "v1.2.0", Commit: "1a2b3c", GoVersion: "go1.26.8"}
	if got := stamped(base); got != want {
		t.Errorf("stamped: got %+v, want %+v", got, want)
	}
	if got := Read(); got.Version != "v1.2.0" || got.Commit != "1a2b3c" {
		t.Errorf("Read: got %+v, want the stamped version and commit", got)
	}
}
