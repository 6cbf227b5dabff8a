#!/usr/bin/env bash
# Checks the deployment files without installing or running anything:
#
#   scripts/check-deploy.sh
#
# - deploy/herald.service: `systemd-analyze verify` (syntax, known keys and
#   values, executables present), `systemd-analyze security --offline` (the
#   hardening keeps the exposure score at or below 1.4 of 10), and
#   TimeoutStopSec above shutdown_drain_ms + shutdown_timeout_secs.
# - Dockerfile: hadolint, any finding fails. $HADOLINT names the binary
#   (default: hadolint on PATH); without one the check prints SKIPPED.
#
# Needs systemd-analyze (Debian package systemd); no running systemd.
set -euo pipefail
cd "$(dirname "$0")/.."

# systemd-analyze takes the threshold in tenths: 14 = an exposure of 1.4,
# the unit's score today. Loosening the hardening fails the check.
max_exposure_tenths=14
unit=deploy/herald.service
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "-- $unit: systemd-analyze verify"
# verify refuses a unit whose ExecStart/ExecStartPre programs do not exist,
# and herald is not installed at /usr/local/bin on a CI machine. So the
# check runs on a copy whose herald paths point at a stub executable in a
# temporary directory; everything else in the copy is the file as shipped.
printf '#!/bin/sh\nexit 0\n' >"$work/herald"
chmod +x "$work/herald"
sed "s#/usr/local/bin/herald#$work/herald#g" "$unit" >"$work/herald.service"
# verify exits 0 on unknown keys and unparsable values, with a warning:
# anything it prints fails the check.
if ! systemd-analyze verify "$work/herald.service" >"$work/verify.log" 2>&1 \
    || [ -s "$work/verify.log" ]; then
  sed "s#$work/#deploy/#g" "$work/verify.log" >&2
  echo "FAILED: systemd-analyze verify $unit" >&2
  exit 1
fi
echo "ok"

max_exposure="$((max_exposure_tenths / 10)).$((max_exposure_tenths % 10))"
echo "-- $unit: systemd-analyze security --offline (exposure at most $max_exposure)"
if ! systemd-analyze security --offline=true --threshold="$max_exposure_tenths" \
    "$work/herald.service" >"$work/security.log" 2>&1; then
  grep -E '✗|exposure' "$work/security.log" >&2 || cat "$work/security.log" >&2
  echo "FAILED: $unit has an exposure above $max_exposure" >&2
  exit 1
fi
grep -o 'Overall exposure level.*' "$work/security.log"

echo "-- $unit: TimeoutStopSec above shutdown_drain_ms + shutdown_timeout_secs"
shutdown=$(sed -n 's/^shutdown_timeout_secs *= *\([0-9]*\).*/\1/p' config.toml)
shutdown=${shutdown:-10}
drain_ms=$(sed -n 's/^shutdown_drain_ms *= *\([0-9]*\).*/\1/p' config.toml)
drain=$(( (${drain_ms:-0} + 999) / 1000 ))
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)$/\1/p' "$unit")
if [ -z "$stop" ] || [ "$stop" -le "$((drain + shutdown))" ]; then
  echo "FAILED: TimeoutStopSec=${stop:-unset} must be a number of seconds above shutdown_drain_ms + shutdown_timeout_secs = ${drain} + $shutdown s" >&2
  exit 1
fi
echo "ok: TimeoutStopSec=$stop > shutdown_drain_ms + shutdown_timeout_secs = ${drain} + $shutdown s"

echo "-- Dockerfile: hadolint"
hadolint="${HADOLINT:-hadolint}"
if ! command -v "$hadolint" >/dev/null 2>&1; then
  echo "SKIPPED: hadolint is not installed; the Dockerfile was not linted"
  exit 0
fi
"$hadolint" --version
"$hadolint" --no-color Dockerfile
echo "ok"
