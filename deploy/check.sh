#!/usr/bin/env bash
# Validates the packaging in deploy/ without a container engine, a cluster or
# a systemd boot:
#   1. builds prism with exactly the Dockerfile's `go build` line, and checks
#      the binary is static and stamped (prism version);
#   2. TestDeployFiles: every YAML file parses, every prism flag and PRISM_*
#      variable in the manifests, compose file, units and guides is one the
#      commands know, the Dockerfile's COPY sources and ENTRYPOINT exist,
#      and prism proxy -check accepts deploy/prism.yaml;
#   3. systemd-analyze verify on the units, when systemd-analyze exists.
# What it cannot show: that an image builds and runs, that the manifests
# apply, that the units start under a real systemd.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== build with the Dockerfile's flags"
line=$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' deploy/Dockerfile | grep -E '^RUN .*go build' | head -1)
[ -n "$line" ] || { echo "no RUN ... go build line in deploy/Dockerfile"; exit 1; }
cmd=${line#RUN }
cmd=${cmd//\/out\/prism/$tmp/prism}
echo "$cmd"
VERSION=v0.0.0-check COMMIT=check0000 bash -c "$cmd"
file "$tmp/prism"
file "$tmp/prism" | grep -q 'statically linked' || { echo "not statically linked"; exit 1; }
if ldd "$tmp/prism" >/dev/null 2>&1; then echo "ldd finds dynamic dependencies:"; ldd "$tmp/prism"; exit 1; fi
echo "ldd: not a dynamic executable"
"$tmp/prism" version | tee "$tmp/version"
grep -q 'prism v0.0.0-check commit check0000' "$tmp/version" || { echo "the -X stamping did not take"; exit 1; }

echo "== manifests, compose, units, guides: YAML and flags"
go test -count=1 -run 'TestDeployFiles' -v ./cmd/prism | grep -E '^(=== RUN|--- |PASS|FAIL|ok|\s+deploy_test)' 

echo "== systemd-analyze verify"
if command -v systemd-analyze >/dev/null; then
  mkdir "$tmp/units"
  # The units run /usr/local/bin/prism, which verify wants to exist: point
  # them at the binary just built.
  for u in deploy/systemd/*.service; do
    sed "s#/usr/local/bin/prism#$tmp/prism#g" "$u" > "$tmp/units/$(basename "$u")"
  done
  out=$(cd "$tmp/units" && systemd-analyze verify prism-proxy.service 'prism-backend@1.service' 2>&1) || { echo "$out"; exit 1; }
  # Warnings (an unknown key, a bad value) do not change the status: any
  # output is a failure.
  if [ -n "$out" ]; then echo "$out"; exit 1; fi
  echo "units verified"
else
  echo "SKIPPED: systemd-analyze not installed (apt-get install systemd)"
fi
echo "deploy check passed"
