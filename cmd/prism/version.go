package main

import (
	"flag"
	"fmt"

	"github.com/prism-proxy/prism/internal/buildinfo"
)

func init() {
	commands["version"] = command{"print the version, commit and Go version", runVersion}
}

// runVersion prints the build's version line (also prism -version).
func runVersion(args []string) int {
	fs := flag.NewFlagSet("prism version", flag.ContinueOnError)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected arguments: %v", fs.Args())
	}
	fmt.Println(buildinfo.Read())
	return 0
}
