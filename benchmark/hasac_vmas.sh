#!/usr/bin/env bash
# HASAC on five cooperative VMAS scenarios (continuous actions), the on-device stand-in for
# Bi-DexHands that installs from PyPI and runs on a CPU or a GPU. VMAS has no official HASAC
# setting: these are hasac_isaacgym.py's documented defaults (256 envs, 100-step episodes,
# 4 updates per loop step, n-step 10, gamma 0.99, lr 5e-4 / 5e-4, auto temperature).
#
# Usage (from anywhere):   bash benchmark/hasac_vmas.sh
#   SEEDS="1 2 3"              seeds per scenario
#   TASKS="transport balance"  a subset of the scenarios below (default: all five)
#   TOTAL_TIMESTEPS=10240000   env steps per run (a multiple of the 256 envs)
#   EXTRA_ARGS="--cuda --num-envs 4096"   appended to every command
#   JOBS=1                     runs at a time on this machine (benchmark/run.py --workers)
#   DRY_RUN=1                  print the commands, run nothing (--workers 0)
#   RUNNER_ARGS=""             more benchmark/run.py flags: e.g. "--log-dir logs" (each run's output in a file), or
#                              "--slurm --slurm-partition gpu --slurm-time 24:00:00" (one Slurm job array, each run
#                              requeued with --resume before its time limit)
#   PYTHON=python              the interpreter of benchmark/run.py (python benchmark/run.py --help)
# Then: python benchmark/plot.py runs --out vmas.png
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_TASKS="transport balance wheel dispersion navigation"
SEEDS=${SEEDS:-"1 2 3"}
TASKS=${TASKS:-$ALL_TASKS}
TOTAL_TIMESTEPS=${TOTAL_TIMESTEPS:-10240000}
EXTRA_ARGS=${EXTRA_ARGS:-}

for task in $TASKS; do
    if [[ " $ALL_TASKS " != *" $task "* ]]; then
        echo "error: unknown task '$task'; choose from: $ALL_TASKS" >&2
        exit 2
    fi
done

commands=()
for task in $TASKS; do
    for seed in $SEEDS; do
        commands+=("python hasac_isaacgym.py --env-id $task --seed $seed --total-timesteps $TOTAL_TIMESTEPS${EXTRA_ARGS:+ $EXTRA_ARGS}")
    done
done

# benchmark/run.py runs them from the repository root (with --save-model), or submits them to Slurm
WORKERS=${JOBS:-1}
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    WORKERS=0
fi
# shellcheck disable=SC2086  # RUNNER_ARGS is split into flags on purpose
printf '%s\n' "${commands[@]}" | ${PYTHON:-python} benchmark/run.py --commands-from - --workers "$WORKERS" ${RUNNER_ARGS:-}
