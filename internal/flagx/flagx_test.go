package flagx

import (
	"flag"
	"testing"
	"time"
)

func TestFlags(t *testing.T) {
	var n int
	var d time.Duration
	var off time.Duration
	var list []string
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Var(Check(&n, Positive), "n", "")
	fs.Var(Check(&d, NonNegative), "d", "")
	fs.Var(Off(&off, "never"), "off", "")
	fs.Var(List{P: &list}, "list", "")
	if err := fs.Parse([]string{"-n", "3", "-d", "0s", "-off", "0", "-list", " a, ,b "}); err != nil {
		t.Fatal(err)
	}
	if n != 3 || d != 0 || off != -1 || len(list) != 2 || list[0] != "a" || list[1] != "b" {
		t.Fatalf("n %d d %v off %v list %q", n, d, off, list)
	}
	for _, bad := range [][]string{{"-n", "0"}, {"-n", "x"}, {"-d", "-1s"}, {"-off", "-2s"}} {
		fs.SetOutput(nopWriter{})
		if err := fs.Parse(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if got := Off(&off, "never").String(); got != "0s" {
		t.Errorf("off shown as %q; want 0s", got)
	}
}

type nopWriter struct{}

func (nopWriter) Write(b []byte) (int, error) { return len(b), nil }
