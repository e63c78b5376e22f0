#!/usr/bin/env bash
# Short libFuzzer run of every target (CI): seeds and past findings first, then mutation for
# SECONDS each (default 10). New inputs go to a temporary directory, never into the repo.
# Needs cargo-fuzz; the stable toolchain is told to accept -Z flags with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export RUSTC_BOOTSTRAP=1
cargo fuzz build
for target in $(cargo fuzz list); do
  dirs=("$work/$target" "fuzz/corpus/$target")
  [ -d "fuzz/regressions/$target" ] && dirs+=("fuzz/regressions/$target")
  mkdir -p "$work/$target"
  cargo fuzz run "$target" "${dirs[@]}" -- \
    -max_total_time="$seconds" -artifact_prefix="$work/" -print_final_stats=1 \
    2>"$work/$target.log" || { tail -n 60 "$work/$target.log"; exit 1; }
  echo "fuzz $target: $(grep -E 'number_of_executed_units' "$work/$target.log" | awk '{print $2}') runs in ${seconds}s"
done
