#!/usr/bin/env bash
# Build (once per machine) the real Go components used by the otel-portkey tests:
#   * Jaeger v2 all-in-one (github.com/jaegertracing/jaeger, ./cmd/jaeger), no UI assets
#   * an OpenTelemetry Collector distribution built with ocb from otelcol-builder.yaml
#
# Binaries land in ~/.cache/otel-portkey/bin/{jaeger,otelcol}-<version> and are only
# rebuilt when a pin (or the builder manifest) changes. Needs only Go >= 1.26 and a
# reachable Go module proxy. On success the last two lines of stdout are:
#   JAEGER=<path>
#   OTELCOL=<path>
# Everything else (progress, build logs) goes to stderr.
#
# Usage: components/build.sh [--force | --check]
#   --check  build nothing: exit 0 and print the paths when both binaries are up to date,
#            else exit 3 with one line saying what is missing (the test fixtures use this:
#            builds happen in `make components`, before pytest starts, never inside a test).
# Env:   OTEL_PORTKEY_CACHE (default ~/.cache/otel-portkey), GO (go binary to use)
set -euo pipefail

# ---- pins -------------------------------------------------------------------
# Jaeger's v2.x git tags are not Go-module versions; module tag v1.76.0 is the
# same commit as the Jaeger v2.13.0 release (see its CHANGELOG "v1.76.0 / v2.13.0").
JAEGER_MODULE=github.com/jaegertracing/jaeger
JAEGER_MODULE_VERSION=v1.76.0
JAEGER_VERSION=2.13.0
# Collector core v0.161.0 / stable v1.67.0; contrib v0.161.0 (see otelcol-builder.yaml:
# v0.161.0 is the newest release at which the contrib loadbalancing, prometheus and
# tail_sampling modules are all served by the Go module proxy; the manifest also
# carries a `replaces:` for a dependency the proxy lacks).
BUILDER_MODULE=go.opentelemetry.io/collector/cmd/builder
BUILDER_VERSION=v0.161.0
OTELCOL_VERSION=0.161.0
MIN_GO_MINOR=26   # collector v0.161 modules (and builder v0.161.0) declare "go 1.26.0"
# -----------------------------------------------------------------------------

FORCE=0
CHECK=0
case "${1:-}" in
  --force) FORCE=1 ;;
  --check) CHECK=1 ;;
  "") ;;
  *) echo "usage: $0 [--force | --check]" >&2; exit 2 ;;
esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MANIFEST="$HERE/otelcol-builder.yaml"
CACHE="${OTEL_PORTKEY_CACHE:-$HOME/.cache/otel-portkey}"
BIN_DIR="$CACHE/bin"
BUILD_DIR="$CACHE/build"
JAEGER_BIN="$BIN_DIR/jaeger-$JAEGER_VERSION"
OTELCOL_BIN="$BIN_DIR/otelcol-$OTELCOL_VERSION"

log() { echo "[build.sh] $*" >&2; }
# A cold build is silent for minutes: say every 30 s that it is still going.
with_heartbeat() { # $1=what; rest=command
  local what="$1" t0=$SECONDS pid; shift
  ( while sleep 1; do
      (( (SECONDS - t0) % 30 == 0 )) && log "... still building $what ($((SECONDS - t0)) s)"
    done ) &
  pid=$!
  local rc=0
  "$@" || rc=$?
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  return "$rc"
}
die() { echo "[build.sh] ERROR: $*" >&2; exit 1; }

[[ -f "$MANIFEST" ]] || die "missing $MANIFEST"
mkdir -p "$BIN_DIR" "$BUILD_DIR"

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# What each cached binary was built from; a mismatch triggers a rebuild.
JAEGER_LDFLAGS="-s -w -X $JAEGER_MODULE/internal/version.latestVersion=v$JAEGER_VERSION"
JAEGER_STAMP="module=$JAEGER_MODULE@$JAEGER_MODULE_VERSION flags=-trimpath ldflags=$JAEGER_LDFLAGS cgo=0"
OTELCOL_STAMP="builder=$BUILDER_MODULE@$BUILDER_VERSION manifest_sha256=$(sha256 "$MANIFEST")"

up_to_date() { # $1=binary $2=stamp
  [[ "$FORCE" == 0 && -x "$1" && -f "$1.stamp" && "$(cat "$1.stamp")" == "$2" ]]
}

# Fast path: nothing to do, do not even look for Go.
if up_to_date "$JAEGER_BIN" "$JAEGER_STAMP" && up_to_date "$OTELCOL_BIN" "$OTELCOL_STAMP"; then
  echo "JAEGER=$JAEGER_BIN"
  echo "OTELCOL=$OTELCOL_BIN"
  exit 0
fi

if [[ "$CHECK" == 1 ]]; then
  echo "Jaeger $JAEGER_VERSION and otelcol $OTELCOL_VERSION are not built in $BIN_DIR: run 'make components'" >&2
  exit 3
fi

# Serialize concurrent invocations (e.g. parallel test workers).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.build.lock"
  flock 9
fi

# ---- Go environment (self-contained under the cache dir) --------------------
GO="${GO:-$(command -v go || true)}"
[[ -n "$GO" ]] || GO=/usr/local/go/bin/go
[[ -x "$GO" ]] || die "go not found (set GO=/path/to/go)"
export PATH="$(dirname "$GO"):$PATH"   # ocb runs plain "go"
export GOPATH="$CACHE/go"
export GOMODCACHE="$CACHE/go/pkg/mod"
export GOCACHE="$CACHE/go/cache"
export GOBIN="$CACHE/go/bin"
export GOFLAGS="-modcacherw"            # so the cache can be rm -rf'ed
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOWORK=off
export CGO_ENABLED=0
mkdir -p "$GOBIN"

go_minor="$("$GO" env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
[[ "$go_minor" =~ ^[0-9]+$ && "$go_minor" -ge "$MIN_GO_MINOR" ]] \
  || die "need Go >= 1.$MIN_GO_MINOR, have $("$GO" env GOVERSION)"

# ---- Jaeger -----------------------------------------------------------------
build_jaeger() {
  log "building Jaeger v$JAEGER_VERSION ($JAEGER_MODULE@$JAEGER_MODULE_VERSION) ..."
  local t0=$SECONDS src
  # "go install pkg@version" refuses modules with replace directives (jaeger has one
  # for sarama), so build inside the downloaded module source, honouring its go.mod.
  log "downloading Jaeger's modules from $("$GO" env GOPROXY) ..."
  src="$("$GO" mod download -json "$JAEGER_MODULE@$JAEGER_MODULE_VERSION" \
         | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$src/cmd/jaeger" ]] || die "jaeger source not found (got '$src')"
  local tmp="$JAEGER_BIN.tmp.$$"
  # No UI: cmd/query/app/ui embeds actual/* (only a .gitignore in the module zip) and
  # falls back to a placeholder index.html; the HTTP/gRPC query APIs work normally.
  with_heartbeat Jaeger bash -c 'cd "$1" && "$2" build -trimpath -ldflags "$3" -o "$4" ./cmd/jaeger' _ \
    "$src" "$GO" "$JAEGER_LDFLAGS" "$tmp" >&2
  mv -f "$tmp" "$JAEGER_BIN"
  echo "$JAEGER_STAMP" > "$JAEGER_BIN.stamp"
  log "jaeger built in $((SECONDS - t0))s -> $JAEGER_BIN"
}

# ---- OpenTelemetry Collector (ocb) -------------------------------------------
build_otelcol() {
  log "building otelcol $OTELCOL_VERSION with ocb $BUILDER_VERSION ..."
  local t0=$SECONDS
  local ocb="$GOBIN/ocb-$BUILDER_VERSION"
  if [[ ! -x "$ocb" ]]; then
    (cd "$BUILD_DIR" && "$GO" install "$BUILDER_MODULE@$BUILDER_VERSION") >&2
    mv -f "$GOBIN/builder" "$ocb"
  fi
  local work="$BUILD_DIR/otelcol-$OTELCOL_VERSION"
  rm -rf "$work"
  mkdir -p "$work"
  cp "$MANIFEST" "$work/otelcol-builder.yaml"
  # output_path in the manifest is relative (./otelcol-dist) -> resolved from $work.
  with_heartbeat otelcol bash -c 'cd "$1" && "$2" --config=otelcol-builder.yaml' _ "$work" "$ocb" >&2
  local out="$work/otelcol-dist/otelcol-portkey"
  [[ -x "$out" ]] || die "ocb did not produce $out"
  mv -f "$out" "$OTELCOL_BIN.tmp.$$"
  mv -f "$OTELCOL_BIN.tmp.$$" "$OTELCOL_BIN"
  echo "$OTELCOL_STAMP" > "$OTELCOL_BIN.stamp"
  log "otelcol built in $((SECONDS - t0))s -> $OTELCOL_BIN"
}

up_to_date "$JAEGER_BIN" "$JAEGER_STAMP" || build_jaeger
up_to_date "$OTELCOL_BIN" "$OTELCOL_STAMP" || build_otelcol

echo "JAEGER=$JAEGER_BIN"
echo "OTELCOL=$OTELCOL_BIN"
