#!/usr/bin/env bash
# The nightly madsim cross-check (sim-madsim/): the production server wiring under madsim's
# scheduler and TCP, with server kills (plus a disk power loss) and clogged links.
#  1. builds sim-madsim with `--cfg madsim`, in its own target directory (a cold build
#     rebuilds every dependency: several minutes, which is why this is not in .ci/run);
#  2. runs each seed of FROM..TO twice (same transcript hash required), then madsim's own
#     determinism checker on CHECK_SEEDS (default the first 3 seeds);
#  3. ends with `madsim: N passed, M failed` and exits non-zero if anything failed.
#
#   scripts/madsim-nightly.sh [SEEDS] [CHECK_SEEDS]      e.g. scripts/madsim-nightly.sh 1-200 1-5
#
# CARGO_TARGET_DIR overrides the target directory (default sim-madsim/target).
set -euo pipefail
cd "$(dirname "$0")/../sim-madsim"
seeds=${1:-1-200}
checks=${2:-$(( ${seeds%%-*} ))-$(( ${seeds%%-*} + 2 ))}
export RUSTFLAGS="--cfg madsim"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

started=$(date +%s)
# Not --locked: the lockfile follows db/net/disk's dependencies, which change in the workspace.
cargo build --bin madsim-nightly
echo "build: $(( $(date +%s) - started ))s"

MADSIM_SEEDS=$seeds MADSIM_CHECK_SEEDS=$checks "$CARGO_TARGET_DIR/debug/madsim-nightly"
