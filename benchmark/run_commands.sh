#!/usr/bin/env bash
# The benchmark scripts' runner: runs the commands it reads on standard input, one per line,
# from the repository root.
#   JOBS=1      runs at a time (parallel through xargs -P)
#   DRY_RUN=1   print the commands, run nothing
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-1}
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    cat
    exit 0
fi
# Parallel runs share the cores: give each an equal number of threads, since PyTorch's
# OpenMP threads slow down by an order of magnitude when more of them spin than there are cores.
if [[ "$JOBS" -gt 1 && -z "${OMP_NUM_THREADS:-}" ]]; then
    threads=$(( $(nproc) / JOBS ))
    export OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 ))
fi
# xargs keeps going when one run fails and exits non-zero at the end, so a crash in one
# task does not cost the others' results.
xargs -d '\n' -P "$JOBS" -I CMD bash -c CMD
