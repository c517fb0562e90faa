#!/usr/bin/env bash
# A CI-sized fuzz run: every target for SECONDS (default 60) from the seed corpus in
# fuzz/corpus/. Installs cargo-fuzz if missing. libFuzzer needs nightly-only compiler flags;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them (no other toolchain can be fetched
# here). A crash leaves its input in fuzz/artifacts/<target>/: add it as a regression test.
#
#   scripts/fuzz-smoke.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  # Work on a copy so the committed seed corpus stays small and reviewed.
  work=$(mktemp -d)
  cp -r "fuzz/corpus/$target/." "$work/"
  echo "== $target: ${seconds}s"
  (cd fuzz && cargo fuzz run "$target" "$work" -- -max_total_time="$seconds" -rss_limit_mb=1024 -max_len=65536 2>&1 |
    grep -E "^(#[0-9]+ *DONE|Done|==[0-9]+==|SUMMARY|thread .* panicked|INFO: -max_total_time)" || true)
  rm -rf "$work"
  if [ -n "$(ls -A "fuzz/artifacts/$target" 2>/dev/null)" ]; then
    echo "fuzz target $target found a failing input: fuzz/artifacts/$target" >&2
    exit 1
  fi
done
echo "fuzz smoke: ${#targets[@]} targets, ${seconds}s each, no findings"
