package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The packaging in deploy/ (Dockerfile, compose.yaml, k8s/, systemd/,
// prism.yaml, the guides) names prism's flags and PRISM_* variables in
// many places. TestDeployFiles parses every YAML file there and checks each
// prism command line, and each PRISM_* variable given to a proxy, against
// the flags the commands really have (from `prism <command> -h`), so that a
// renamed or removed flag breaks CI instead of a deployment. deploy/check.sh
// runs it, with the checks that need more than Go (a static build,
// systemd-analyze).

const deployDir = "../../deploy"

// pendingFlags are flags the packaging already uses for a feature being
// written elsewhere; they are accepted while the command does not have them
// (the test logs it), and checked as any other once it does.
var pendingFlags = map[string]map[string]string{
	"proxy": {"registry": "the etcd registry (-registry, PRISM_REGISTRY), issue 10"},
}

var flagLine = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9_-]*)`)

// commandFlags returns the flag names `prism <cmd> -h` lists.
func commandFlags(t *testing.T, cmd string) map[string]bool {
	t.Helper()
	code, stdout, stderr := prism(t, cmd, "-h")
	if code != 0 {
		t.Fatalf("prism %s -h: status %d: %s", cmd, code, stderr)
	}
	flags := map[string]bool{}
	for _, line := range strings.Split(stdout, "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			flags[m[1]] = true
		}
	}
	if len(flags) < 3 {
		t.Fatalf("prism %s -h lists %d flags: %q", cmd, len(flags), stdout)
	}
	return flags
}

type deployChecker struct {
	t     *testing.T
	flags map[string]map[string]bool // command -> flag names
	seen  map[string]int             // command -> command lines checked
}

func newDeployChecker(t *testing.T) *deployChecker {
	c := &deployChecker{t: t, flags: map[string]map[string]bool{}, seen: map[string]int{}}
	for _, cmd := range []string{"proxy", "backend", "bench"} {
		c.flags[cmd] = commandFlags(t, cmd)
	}
	for cmd, pend := range pendingFlags {
		for f, what := range pend {
			if !c.flags[cmd][f] {
				t.Logf("prism %s has no -%s yet: the packaging's uses of it are not checked (%s)", cmd, f, what)
			}
		}
	}
	return c
}

// known reports whether prism cmd has flag name, or it is pending.
func (c *deployChecker) known(cmd, name string) bool {
	if c.flags[cmd][name] {
		return true
	}
	_, pending := pendingFlags[cmd][name]
	return pending
}

// argv checks a prism command line: argv[0] is the subcommand (the
// program's path already dropped).
func (c *deployChecker) argv(where string, argv []string) {
	c.t.Helper()
	if len(argv) == 0 {
		c.t.Errorf("%s: a prism command line without a subcommand", where)
		return
	}
	cmd := argv[0]
	if _, ok := c.flags[cmd]; !ok {
		c.t.Errorf("%s: prism %s: not a command the packaging should run (proxy, backend, bench)", where, cmd)
		return
	}
	c.seen[cmd]++
	for _, a := range argv[1:] {
		if !strings.HasPrefix(a, "-") || len(a) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !c.known(cmd, name) {
			c.t.Errorf("%s: prism %s has no flag -%s (prism %s -h)", where, cmd, name, cmd)
		}
	}
}

// env checks the PRISM_* variables given to a prism command: only the
// proxy reads them, one per flag (and PRISM_CONFIG).
func (c *deployChecker) env(where, cmd string, names []string) {
	c.t.Helper()
	for _, n := range names {
		if !strings.HasPrefix(n, "PRISM_") {
			continue
		}
		if cmd != "proxy" {
			c.t.Errorf("%s: %s is given to prism %s, which reads no PRISM_* variables (pass it as a flag)", where, n, cmd)
			continue
		}
		flag := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(n, "PRISM_")), "_", "-")
		if flag == "config" || flag == "test-main" {
			continue
		}
		if !c.known("proxy", flag) || slices.Contains(notInFile, flag) {
			c.t.Errorf("%s: %s names no setting of prism proxy (no flag -%s)", where, n, flag)
		}
	}
}

func TestDeployFiles(t *testing.T) {
	c := newDeployChecker(t)
	var yamls, units, docs []string
	err := filepath.WalkDir(deployDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch {
		case strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml"):
			yamls = append(yamls, path)
		case strings.HasSuffix(path, ".service"):
			units = append(units, path)
		case strings.HasSuffix(path, ".md"):
			docs = append(docs, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(yamls) < 5 || len(units) < 2 {
		t.Fatalf("deploy/ has %d YAML files and %d units: %v %v", len(yamls), len(units), yamls, units)
	}
	for _, path := range yamls {
		c.yamlFile(path)
	}
	for _, path := range units {
		c.unit(path)
	}
	for _, path := range docs {
		c.markdown(path)
	}
	c.envFile(filepath.Join(deployDir, "systemd/prism-proxy.env"), "proxy")
	c.dockerfile(filepath.Join(deployDir, "Dockerfile"))
	for _, cmd := range []string{"proxy", "backend", "bench"} {
		if c.seen[cmd] == 0 {
			t.Errorf("no prism %s command line found in deploy/: is the walk still finding them?", cmd)
		}
	}
	t.Logf("checked command lines: %v", c.seen)

	// The example configuration is one the proxy accepts.
	if code, _, stderr := prism(t, "proxy", "-check", "-config", filepath.Join(deployDir, "prism.yaml")); code != 0 {
		t.Errorf("prism proxy -check -config deploy/prism.yaml: status %d: %s", code, stderr)
	}
}

// yamlFile parses every document of a YAML file and checks the prism
// containers in it: compose services and Kubernetes containers alike, any
// mapping with an image and a command or args.
func (c *deployChecker) yamlFile(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for i := 1; ; i++ {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			c.t.Errorf("%s: document %d: %v", path, i, err)
			return
		}
		walkYAML(doc, func(m map[string]any) {
			img, _ := m["image"].(string)
			if img == "" || (m["command"] == nil && m["args"] == nil) || !strings.Contains(img, "prism") {
				return
			}
			name, _ := m["name"].(string)
			where := path + ": " + cmpOr(name, img)
			argv := append(strList(m["command"]), strList(m["args"])...)
			if len(argv) > 0 && filepath.Base(argv[0]) == "prism" {
				argv = argv[1:]
			}
			c.argv(where, argv)
			if len(argv) == 0 {
				return
			}
			envNames := envList(m["environment"])
			envNames = append(envNames, envList(m["env"])...)
			c.env(where, argv[0], envNames)
			// Kubernetes expands $(VAR) in args from the container's env.
			for _, a := range argv {
				for _, ref := range k8sRef.FindAllStringSubmatch(a, -1) {
					if !slices.Contains(envNames, ref[1]) {
						c.t.Errorf("%s: $(%s) in the command line, but no such variable in the container's env", where, ref[1])
					}
				}
			}
		})
	}
}

var k8sRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

func walkYAML(v any, visit func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		visit(v)
		for _, x := range v {
			walkYAML(x, visit)
		}
	case []any:
		for _, x := range v {
			walkYAML(x, visit)
		}
	}
}

// strList is a command or args: a list, or a string split on blanks.
func strList(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// envList is the variable names of a compose environment (a mapping or a
// list of NAME=value) or a Kubernetes env (a list of {name, value}).
func envList(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k := range v {
			out = append(out, k)
		}
	case []any:
		for _, x := range v {
			switch x := x.(type) {
			case string:
				k, _, _ := strings.Cut(x, "=")
				out = append(out, k)
			case map[string]any:
				if n, ok := x["name"].(string); ok {
					out = append(out, n)
				}
			}
		}
	}
	return out
}

// unit checks a systemd unit's prism command lines and Environment=.
func (c *deployChecker) unit(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatal(err)
	}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	cmd := ""
	var envNames []string
	for i, line := range strings.Split(text, "\n") {
		key, val, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(key, "#") {
			continue
		}
		where := path + ":" + strconv.Itoa(i+1)
		switch key {
		case "ExecStart", "ExecStartPre", "ExecStartPost", "ExecReload", "ExecStop":
			f := strings.Fields(strings.TrimLeft(val, "-@:+!"))
			if len(f) == 0 || filepath.Base(f[0]) != "prism" {
				continue
			}
			c.argv(where, f[1:])
			if key == "ExecStart" && len(f) > 1 {
				cmd = f[1]
			}
		case "Environment":
			for _, kv := range strings.Fields(val) {
				k, _, _ := strings.Cut(strings.Trim(kv, `"`), "=")
				envNames = append(envNames, k)
			}
		}
	}
	if cmd == "" {
		c.t.Errorf("%s: no ExecStart running prism", path)
	}
	c.env(path, cmd, envNames)
}

// envFile checks an EnvironmentFile example given to prism cmd.
func (c *deployChecker) envFile(path, cmd string) {
	data, err := os.ReadFile(path)
	if err != nil {
		c.t.Error(err)
		return
	}
	var names []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		if k, _, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "PRISM_") && !strings.Contains(k, " ") {
			names = append(names, k) // commented-out examples too
		}
	}
	if len(names) == 0 {
		c.t.Errorf("%s: no PRISM_* variable", path)
	}
	c.env(path, cmd, names)
}

var mdCommand = regexp.MustCompile(`(?:^|[\s$/])prism (proxy|backend|bench)( .*)$`)

// markdown checks the prism command lines of a guide's indented or fenced
// code.
func (c *deployChecker) markdown(path string) {
	f, err := os.Open(path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	fenced := false
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if !fenced && !strings.HasPrefix(line, "    ") && !strings.HasPrefix(line, "\t") {
			continue
		}
		m := mdCommand.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		rest, _, _ := strings.Cut(m[2], " #") // a trailing comment
		c.argv(path+":"+strconv.Itoa(n), append([]string{m[1]}, strings.Fields(rest)...))
	}
}

// dockerfile checks that what the Dockerfile copies from the build context
// exists, that its ENTRYPOINT is the binary it installs, that its build
// line has the release flags, and its CMD's flags.
func (c *deployChecker) dockerfile(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatal(err)
	}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	var installed []string
	var entry, build string
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "COPY":
			args := f[1:]
			fromStage := false
			for len(args) > 0 && strings.HasPrefix(args[0], "--") {
				fromStage = fromStage || strings.HasPrefix(args[0], "--from=")
				args = args[1:]
			}
			if len(args) < 2 {
				c.t.Errorf("%s: %s: want sources and a destination", path, line)
				continue
			}
			installed = append(installed, args[len(args)-1])
			if fromStage {
				continue
			}
			for _, src := range args[:len(args)-1] {
				if _, err := os.Stat(filepath.Join(deployDir, "..", src)); err != nil {
					c.t.Errorf("%s: COPY %s: not in the build context (the repository root): %v", path, src, err)
				}
			}
		case "ENTRYPOINT":
			entry = strings.Trim(f[1], `["],`)
		case "CMD":
			var argv []string
			for _, a := range f[1:] {
				argv = append(argv, strings.Trim(a, `["],`))
			}
			c.argv(path+": CMD", argv)
		case "RUN":
			if strings.Contains(line, "go build") {
				build = line
			}
		}
	}
	if entry == "" || !slices.Contains(installed, entry) {
		c.t.Errorf("%s: ENTRYPOINT %q is not a path the Dockerfile COPYs into the image (%v)", path, entry, installed)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w`, "./cmd/prism",
		"github.com/prism-proxy/prism/internal/buildinfo.version=", "github.com/prism-proxy/prism/internal/buildinfo.commit="} {
		if !strings.Contains(build, want) {
			c.t.Errorf("%s: the go build line lacks %s: %q", path, want, build)
		}
	}
	// -X of a variable that does not exist is silently ignored.
	src, err := os.ReadFile(filepath.Join(deployDir, "../internal/buildinfo/buildinfo.go"))
	if err != nil || !strings.Contains(string(src), "var version, commit string") {
		c.t.Errorf("internal/buildinfo no longer declares var version, commit string, which the Dockerfile and release.sh set with -X (%v)", err)
	}
}
