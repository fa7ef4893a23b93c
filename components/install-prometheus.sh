#!/usr/bin/env bash
# Install Prometheus (prometheus and promtool) from Debian's package when they are missing, for the
# Prometheus tests (tests/test_prometheus*.py). Called by `make components`.
#
# Nothing happens when both binaries are already on PATH or in /usr/bin. Otherwise, as root or with
# sudo: `apt-get update`, then `apt-get install -y --no-install-recommends prometheus`
# (DEBIAN_FRONTEND=noninteractive; apt-get's output goes to a log file under ${TMPDIR:-/tmp}, kept
# when the install fails). About 10 s on these machines (12 packages, 22 MB).
#
# The package's postinst starts its service through invoke-rc.d (/etc/init.d/prometheus, a daemon on
# 0.0.0.0:9090) when systemd is not running. The tests run their own Prometheus, so while this script
# installs, a policy-rc.d answering 101 ("action forbidden") keeps any service from starting; an
# existing /usr/sbin/policy-rc.d is left as it is. On a systemd machine the unit is still enabled
# for the next boot (`systemctl disable prometheus` undoes that).
#
# Exit status: 0 when the binaries are there (or, without OTEL_PORTKEY_REQUIRE_REAL=1, when they
# cannot be installed: one line then says that the Prometheus tests will be skipped); 1 when they
# cannot be installed under OTEL_PORTKEY_REQUIRE_REAL=1 (one line says what to install).
set -uo pipefail

found() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ]; }

if found prometheus && found promtool; then
  exit 0
fi

HOW="sudo apt-get update && sudo apt-get install prometheus"
give_up() { # $1 = why
  if [ "${OTEL_PORTKEY_REQUIRE_REAL:-}" = 1 ]; then
    echo "make components: Prometheus is missing and $1; install it with: $HOW" >&2
    exit 1
  fi
  echo "make components: Prometheus is missing and $1, so the Prometheus tests will be skipped (to install it: $HOW)" >&2
  exit 0
}

if ! command -v apt-get >/dev/null 2>&1; then
  HOW="put prometheus and promtool (2.x) on PATH"
  give_up "apt-get is not available"
fi

if [ "$(id -u)" = 0 ]; then
  AS_ROOT=()
elif command -v sudo >/dev/null 2>&1; then
  if [ -t 0 ]; then AS_ROOT=(sudo); else AS_ROOT=(sudo -n); fi
else
  give_up "installing it needs root (no sudo here)"
fi

LOG="$(mktemp "${TMPDIR:-/tmp}/otel-portkey-prometheus-install.XXXXXX.log")"
POLICY=/usr/sbin/policy-rc.d
OUR_POLICY=0
INSTALLED=0
cleanup() {
  if [ "$OUR_POLICY" = 1 ]; then "${AS_ROOT[@]}" rm -f "$POLICY"; fi
  if [ "$INSTALLED" = 1 ]; then rm -f "$LOG"; fi
}
trap cleanup EXIT

if [ ! -e "$POLICY" ]; then
  if printf '#!/bin/sh\n# otel-portkey install-prometheus.sh: no service starts while it installs\nexit 101\n' \
      | "${AS_ROOT[@]}" tee "$POLICY" >/dev/null 2>>"$LOG" && "${AS_ROOT[@]}" chmod 755 "$POLICY" 2>>"$LOG"; then
    OUR_POLICY=1
  fi
fi

echo "[install-prometheus.sh] installing Debian's prometheus package (log: $LOG)" >&2
APT=("${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
if ! "${APT[@]}" update >>"$LOG" 2>&1; then
  give_up "apt-get update failed (see $LOG)"
fi
if ! "${APT[@]}" install -y --no-install-recommends prometheus >>"$LOG" 2>&1; then
  give_up "apt-get install prometheus failed (see $LOG)"
fi
found prometheus && found promtool || give_up "the package did not provide prometheus and promtool"
INSTALLED=1
echo "[install-prometheus.sh] $(/usr/bin/prometheus --version 2>&1 | head -n1)" >&2
