// Command prism is the Prism proxy, its backend server, a client, a load
// generator and a demo, as subcommands of one binary. Each subcommand lives in
// its own file and registers itself in commands; the logic is in packages.
package main

import (
	"fmt"
	"os"
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

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "prism: unknown command %q\n", args[0])
		usage()
		return 2
	}
	return cmd.run(args[1:])
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: prism <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(os.Stderr, "\nrun 'prism <command> -h' for a command's flags")
}
