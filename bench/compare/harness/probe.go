package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/prism-proxy/prism/bench/compare/results"
	"github.com/prism-proxy/prism/client"
)

// probeCmd waits until requests sent to addr are answered by want distinct
// backends, each request on a new connection so that proxies balancing
// connections (HAProxy, nginx) are seen to reach every backend too.
func probeCmd(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:19000", "`address` to probe")
	policy := fs.Int64("policy", 7, "policy of the requests")
	want := fs.Int("want", 1, "distinct backends that must answer")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	deadline := time.Now().Add(*timeout)
	seen := map[int64]bool{}
	var last error
	for time.Now().Before(deadline) {
		id, err := probeOnce(*addr, *policy)
		if err != nil {
			last = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		seen[id] = true
		if len(seen) >= *want {
			ids := make([]int64, 0, len(seen))
			for id := range seen {
				ids = append(ids, id)
			}
			sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
			fmt.Fprintf(os.Stderr, "%s: answered by backends %v\n", *addr, ids)
			return nil
		}
	}
	return fmt.Errorf("%s: %d of %d backends answered within %v (last error: %v)", *addr, len(seen), *want, *timeout, last)
}

func probeOnce(addr string, policy int64) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	r, err := c.Call(ctx, 1, policy, "probe")
	if err != nil {
		return 0, err
	}
	if r.Payload != "probe" {
		return 0, errors.New("reply does not echo the payload")
	}
	return r.SrcID, nil
}

// rateCmd prints pct percent of the throughput recorded in a case file, as
// an integer rate for `prism bench -rate`.
func rateCmd(args []string) error {
	fs := flag.NewFlagSet("rate", flag.ContinueOnError)
	in := fs.String("in", "", "case `file`")
	pct := fs.Float64("pct", 50, "percentage")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var c results.Case
	if err := readJSON(*in, &c); err != nil {
		return err
	}
	if c.Throughput <= 0 {
		return fmt.Errorf("%s: no throughput", *in)
	}
	r := int64(c.Throughput * *pct / 100)
	fmt.Println(max(r, 1))
	return nil
}
