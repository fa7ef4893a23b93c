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
# Progress goes to stderr: one line as each phase starts and one as it ends, with its seconds
# (downloading Jaeger's modules, compiling Jaeger, downloading the Collector's modules, compiling
# the Collector), a line every 30 s in between, and at the end the disk the Go caches and the
# binaries take. The Go tools' own output goes to ~/.cache/otel-portkey/build/build.log (its last
# lines are shown when a phase fails).
#
# Measured cold (empty cache) on 2 cores: Jaeger 272-398 s, the Collector 310-330 s; afterwards the
# cache holds ~6.0 GB of Go module and build caches (go/: needed only to rebuild) and 156 MB of
# binaries (bin/). `make clean-components` removes them.
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
die() { echo "[build.sh] ERROR: $*" >&2; exit 1; }
LOG_FILE="$BUILD_DIR/build.log"
# One phase of the build: a line as it starts, one every 30 s while it runs (a cold compile is
# silent for minutes), one with its seconds as it ends. The command's own output goes to $LOG_FILE;
# when it fails, its last lines come to stderr and the build stops.
phase() { # $1=what; rest=command
  local what="$1" t0=$SECONDS pid rc=0; shift
  log "$what ..."
  ( while sleep 1; do
      (( (SECONDS - t0) % 30 == 0 )) && log "  ... $what: $((SECONDS - t0)) s"
    done ) &
  pid=$!
  "$@" >>"$LOG_FILE" 2>&1 || rc=$?
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  if (( rc != 0 )); then
    tail -n 30 "$LOG_FILE" >&2
    die "$what failed (exit $rc); the Go tools' whole output is in $LOG_FILE"
  fi
  log "$what: done in $((SECONDS - t0)) s"
}

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
# "go install pkg@version" refuses modules with replace directives (jaeger has one for sarama), so
# it is built inside the downloaded module source, honouring its go.mod. `go list -deps` resolves
# every package the build imports, which downloads exactly the modules `go build` needs, so the
# download and the compile are two phases.
jaeger_modules() {
  JAEGER_SRC="$("$GO" mod download -json "$JAEGER_MODULE@$JAEGER_MODULE_VERSION" \
                | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$JAEGER_SRC/cmd/jaeger" ]] || { echo "jaeger source not found (got '$JAEGER_SRC')"; return 1; }
  (cd "$JAEGER_SRC" && "$GO" list -deps ./cmd/jaeger >/dev/null)
}
build_jaeger() {
  local t0=$SECONDS tmp="$JAEGER_BIN.tmp.$$"
  phase "Jaeger v$JAEGER_VERSION: downloading its modules from $("$GO" env GOPROXY)" jaeger_modules
  # No UI: cmd/query/app/ui embeds actual/* (only a .gitignore in the module zip) and
  # falls back to a placeholder index.html; the HTTP/gRPC query APIs work normally.
  phase "Jaeger v$JAEGER_VERSION: compiling (the longest phase)" bash -c \
    'cd "$1" && "$2" build -trimpath -ldflags "$3" -o "$4" ./cmd/jaeger' _ \
    "$JAEGER_SRC" "$GO" "$JAEGER_LDFLAGS" "$tmp"
  mv -f "$tmp" "$JAEGER_BIN"
  echo "$JAEGER_STAMP" > "$JAEGER_BIN.stamp"
  log "jaeger built in $((SECONDS - t0))s -> $JAEGER_BIN"
}

# ---- OpenTelemetry Collector (ocb) -------------------------------------------
build_otelcol() {
  local t0=$SECONDS
  local ocb="$GOBIN/ocb-$BUILDER_VERSION"
  if [[ ! -x "$ocb" ]]; then
    phase "the Collector builder (ocb) $BUILDER_VERSION: installing" \
      bash -c 'cd "$1" && "$2" install "$3"' _ "$BUILD_DIR" "$GO" "$BUILDER_MODULE@$BUILDER_VERSION"
    mv -f "$GOBIN/builder" "$ocb"
  fi
  local work="$BUILD_DIR/otelcol-$OTELCOL_VERSION"
  rm -rf "$work"
  mkdir -p "$work"
  cp "$MANIFEST" "$work/otelcol-builder.yaml"
  # output_path in the manifest is relative (./otelcol-dist) -> resolved from $work. ocb first
  # writes the sources and gets their modules, then compiles: two phases.
  phase "the Collector $OTELCOL_VERSION: downloading its modules" \
    bash -c 'cd "$1" && "$2" --config=otelcol-builder.yaml --skip-compilation' _ "$work" "$ocb"
  phase "the Collector $OTELCOL_VERSION: compiling" \
    bash -c 'cd "$1" && "$2" --config=otelcol-builder.yaml --skip-generate --skip-get-modules' _ "$work" "$ocb"
  local out="$work/otelcol-dist/otelcol-portkey"
  [[ -x "$out" ]] || die "ocb did not produce $out"
  mv -f "$out" "$OTELCOL_BIN.tmp.$$"
  mv -f "$OTELCOL_BIN.tmp.$$" "$OTELCOL_BIN"
  echo "$OTELCOL_STAMP" > "$OTELCOL_BIN.stamp"
  log "otelcol built in $((SECONDS - t0))s -> $OTELCOL_BIN"
}

: >"$LOG_FILE"
log "building what is missing in $BIN_DIR (Go caches in $GOPATH; the Go tools' output: $LOG_FILE)"
up_to_date "$JAEGER_BIN" "$JAEGER_STAMP" || build_jaeger
up_to_date "$OTELCOL_BIN" "$OTELCOL_STAMP" || build_otelcol
# What the cache now takes on disk.
log "built in $SECONDS s; disk used: $(du -sh "$GOPATH/" | cut -f1) in $GOPATH (Go module and build" \
  "caches, needed only to rebuild), $(du -sh "$BIN_DIR/" | cut -f1) in $BIN_DIR; make clean-components removes them"

echo "JAEGER=$JAEGER_BIN"
echo "OTELCOL=$OTELCOL_BIN"
