#!/usr/bin/env bash
# Release binaries into dist/ (gitignored), stamped with the version, with
# SHA-256 checksums:
#   deploy/release.sh [VERSION]       (default: git describe --tags --always --dirty)
# linux/amd64 and linux/arm64 for everything; darwin/amd64 and darwin/arm64
# too, for the client and bench (the proxy and backend run on Linux only;
# see README, "Platforms"). Same flags as deploy/Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
pkg=github.com/prism-proxy/prism/internal/buildinfo
rm -rf dist && mkdir -p dist
for target in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64; do
  os=${target%/*} arch=${target#*/}
  name=prism-$version-$os-$arch
  echo "== $name"
  mkdir -p "dist/$name"
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -buildvcs=false \
    -ldflags "-s -w -X $pkg.version=$version -X $pkg.commit=$commit" \
    -o "dist/$name/prism" ./cmd/prism
  cp LICENSE README.md "dist/$name/"
  if [ "$os" = linux ]; then
    mkdir -p "dist/$name/deploy"
    cp -r deploy/systemd deploy/prism.yaml deploy/VMS.md "dist/$name/deploy/"
  fi
  tar -C dist -czf "dist/$name.tar.gz" "$name"
  rm -rf "dist/${name:?}"
done
(cd dist && sha256sum -- *.tar.gz > SHA256SUMS && cat SHA256SUMS)
if [ "$(go env GOOS)/$(go env GOARCH)" = linux/amd64 ]; then
  tar -xzOf "dist/prism-$version-linux-amd64.tar.gz" "prism-$version-linux-amd64/prism" > dist/.prism-check
  chmod +x dist/.prism-check && ./dist/.prism-check version && rm dist/.prism-check
fi
