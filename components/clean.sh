#!/usr/bin/env bash
# `make clean-components`: remove what `make components` keeps in its cache folder
# (OTEL_PORTKEY_CACHE, default ~/.cache/otel-portkey): the binaries (bin/), the Collector's build
# folder (build/), the Go module and build caches (go/, the bulk: about 6 GB), the OSS gateway's npm
# installs (gateway-*/) and the build lock, and say how much that freed. The next `make components`
# builds everything again.
#
# It touches nothing else: only those names, only inside a folder that holds what build.sh or the
# gateway install made there (bin/*.stamp, .build.lock or gateway-*/package.json): pointed at any
# other folder (OTEL_PORTKEY_CACHE=/usr/local, say, whose bin/ is not ours) it refuses, and it never
# cleans / or your home folder. Names are taken from globs, never from parsed `ls` output, so spaces
# in them are no danger. Prometheus (Debian's package), npm's and pip's download caches stay.
set -euo pipefail
shopt -s nullglob dotglob

say() { echo "make clean-components: $*"; }

cache="${OTEL_PORTKEY_CACHE:-$HOME/.cache/otel-portkey}"
if [[ ! -d "$cache" ]]; then
  say "$cache does not exist, nothing to remove"
  exit 0
fi
cache="$(cd "$cache" && pwd -P)"
case "$cache" in
  / | "$(cd ~ && pwd -P)") say "$cache is / or your home folder: not cleaning it"; exit 1 ;;
esac
cd "$cache"

ours=(bin/*.stamp gateway-*/package.json)  # globs: only what exists
[[ -f .build.lock ]] && ours+=(.build.lock)
if (( ${#ours[@]} == 0 )); then
  say "$cache holds nothing make components made (no bin/*.stamp, .build.lock or gateway-*/): not touching it"
  exit 1
fi

targets=()
for name in bin build go .build.lock gateway-*; do
  [[ -e "$name" || -L "$name" ]] && targets+=("$name")
done
freed="$(du -shc -- "${targets[@]}" | tail -n 1 | cut -f1)"
# Go's module cache is read-only unless built with -modcacherw (build.sh sets it; older caches may not)
rm -rf -- "${targets[@]}" 2>/dev/null || { chmod -R u+w -- "${targets[@]}" && rm -rf -- "${targets[@]}"; }
cd /
rmdir "$cache" 2>/dev/null || true
say "removed ${targets[*]} from $cache ($freed freed)"
