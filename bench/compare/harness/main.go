// Command harness is the helper that bench/compare/run.sh calls for the parts
// of a comparison run that are awkward in shell: waiting until a proxy routes
// to its backends, running one load-generator case while reading the proxy's
// CPU time from /proc, holding idle connections while reading its memory, and
// merging the cases into results.json. It starts no proxies itself.
//
//	harness probe -addr 127.0.0.1:19000 -want 2
//	harness case  -proxy prism -out c.json -pids 1234 -warmup 2s -- prism bench -json ...
//	harness mem   -proxy prism -addr 127.0.0.1:19000 -n 10000 -pids 1234 -out m.json
//	harness rate  -in c.json -pct 25
//	harness merge -cases out/cases -out out/results.json -commit $(git rev-parse HEAD)
package main

import (
	"fmt"
	"os"
	"sort"
)

var commands = map[string]func(args []string) error{
	"probe": probeCmd,
	"case":  caseCmd,
	"mem":   memCmd,
	"rate":  rateCmd,
	"merge": mergeCmd,
}

func main() {
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: harness %v [flags]\n", names)
		os.Exit(2)
	}
	if err := commands[os.Args[1]](os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "harness %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
