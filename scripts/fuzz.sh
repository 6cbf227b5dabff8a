#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time and prints a table.
#
#   scripts/fuzz.sh            # 30 s per target
#   scripts/fuzz.sh 300        # 5 minutes per target
#   scripts/fuzz.sh 60 token   # one target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain the
# sanitizer flags are allowed through RUSTC_BOOTSTRAP=1. The corpus in
# fuzz/corpus/<target> seeds each run and is not modified: new inputs go to
# a temporary directory. A crash leaves its input in fuzz/artifacts/<target>
# and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(client_frames publish_body token ids client_query config host forwarded)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2
  exit 2
fi
export RUSTC_BOOTSTRAP=1

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "building the fuzz targets (cargo fuzz build --release)"
if ! cargo fuzz build --release >"$work/build.log" 2>&1; then
  tail -40 "$work/build.log" >&2
  exit 1
fi
failed=0
printf '| %-14s | %8s | %10s | %6s | %-6s |\n' target seconds executions corpus result
printf '|%s|%s|%s|%s|%s|\n' ---------------- ---------- ------------ -------- --------
for target in "${targets[@]}"; do
  mkdir -p "$work/$target" "fuzz/corpus/$target"
  log="$work/$target.log"
  if cargo fuzz run --release "$target" "$work/$target" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    failed=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  corpus=$(ls "$work/$target" | wc -l)
  printf '| %-14s | %8s | %10s | %6s | %-6s |\n' "$target" "$seconds" "${runs:-?}" "$corpus" "$result"
  if [ "$result" = FAILED ]; then
    tail -40 "$log" >&2
  fi
done
exit "$failed"
