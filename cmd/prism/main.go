// Command prism is the Prism proxy, its backend server, a client, a load
// generator and a demo, as subcommands of one binary. Each subcommand lives in
// its own file and registers itself in commands; the logic is in packages.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
)

// command is one subcommand: run parses args (without the subcommand's name)
// and returns the exit status (2 for usage errors).
type command struct {
	summary string
	run     func(args []string) int
}

var commands = map[string]command{}

func main() {
	os.Exit(run(os.Args[1:]))
}

// run runs the command line args and returns the exit status. Asked-for help
// (help, -h, help <command>) goes to standard output with status 0; a usage error's message
// and usage go to standard error with status 2.
func run(args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && args[0] == "help" { // help <command>: its flags
			if cmd, ok := commands[args[1]]; ok {
				return cmd.run([]string{"-h"})
			}
			fmt.Fprintf(os.Stderr, "prism: unknown command %q\n", args[1])
			usage(os.Stderr)
			return 2
		}
		usage(os.Stdout)
		return 0
	case "-version", "--version":
		return runVersion(args[1:])
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "prism: unknown command %q\n", args[0])
		usage(os.Stderr)
		return 2
	}
	return cmd.run(args[1:])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: prism <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nrun 'prism help <command>' (or 'prism <command> -h') for a command's flags")
}

// raiseProcs gives the Go runtime enough Ps for n event loops. A gnet loop
// waits in epoll_wait, a system call that keeps its P until the runtime's
// monitor takes it back (20µs to 10ms later); with GOMAXPROCS at the CPU
// count (1 when pinned with taskset) the rest of the process, and a loop
// returning from its wait, queue behind that: pinned to one CPU, the proxy
// gave more msgs/s at pipeline 1 and a lower p99 with more Ps (figures in
// BENCHMARKS.md, "What was tried"). An explicit GOMAXPROCS in the
// environment wins.
func raiseProcs(n int) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	if want := n + 2; runtime.GOMAXPROCS(0) < want {
		runtime.GOMAXPROCS(want)
	}
}
