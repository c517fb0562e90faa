#!/usr/bin/env bash
# Crash loops on the real file system (exit non-zero on any loss):
#  1. CYCLES (default 50) rounds of: start `sierradb serve`, append from 16 connections,
#     kill -9 at a random moment (a quarter of the rounds SIGSTOP/SIGCONT first), restart and
#     verify every acknowledged event (content, version, no duplicate, no gap);
#  2. the data directory on a small tmpfs that fills up: appends fail with TRYAGAIN, reads
#     work, appends resume when space returns (skipped, with a note, if tmpfs cannot be
#     mounted here).
#
#   scripts/crash-loop.sh [CYCLES] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export CRASH_LOOP_CYCLES=${1:-50}
export CRASH_LOOP_SEED=${2:-$RANDOM}
cargo test --release -q -p sierradb-bin --test crash_loop -- --ignored --nocapture long_crash_loop

mnt=$(mktemp -d)
if mount -t tmpfs -o size=8m tmpfs "$mnt" 2>/dev/null; then
  trap 'umount "$mnt"; rmdir "$mnt"' EXIT
  CRASH_LOOP_FULL_DIR=$mnt cargo test --release -q -p sierradb-bin --test crash_loop -- \
    --ignored --nocapture a_full_disk_fails_appends_cleanly_and_they_resume
else
  rmdir "$mnt"
  echo "disk-full check skipped: cannot mount a tmpfs here (needs root and mount rights)"
fi
