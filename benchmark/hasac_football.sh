#!/usr/bin/env bash
# HASAC on the two Google Research Football tasks of Liu et al., "Maximum Entropy Heterogeneous-Agent Reinforcement
# Learning" (ICLR 2024), Appendix H.2.4, Figures 3g, 3h and 10: run-pass-and-shoot with keeper (RPS, 2 agents, 20M env
# steps) and corner (11 agents, 25M). Needs gfootball: bash benchmark/install_football.sh.
#
# Usage (from anywhere):   bash benchmark/hasac_football.sh
#   SEEDS="1 2 3"              seeds per task
#   TASKS="rps"                a subset of: rps corner (default: both)
#   TOTAL_TIMESTEPS=20000000   env steps per run (default: the paper's budget for each task)
#   EXTRA_ARGS="--track"       appended to every command
#   JOBS=1                     runs at a time on this machine (benchmark/run.py --workers)
#   DRY_RUN=1                  print the commands, run nothing (--workers 0)
#   RUNNER_ARGS=""             more benchmark/run.py flags: e.g. "--log-dir logs" (each run's output in a file), or
#                              "--slurm --slurm-partition gpu --slurm-time 24:00:00" (one Slurm job array, each run
#                              requeued with --resume before its time limit)
#   PYTHON=python              the interpreter of benchmark/run.py (python benchmark/run.py --help)
# Then: python benchmark/plot.py runs --out football.png (tags charts/score_rate and eval/score_rate hold the score rates)
set -euo pipefail
cd "$(dirname "$0")/.."

SEEDS=${SEEDS:-"1 2 3"}
TASKS=${TASKS:-"rps corner"}
EXTRA_ARGS=${EXTRA_ARGS:-}

# The official implementation has no tuned HASAC football config (PKU-MARL/HARL tuned_configs/football holds HAPPO's
# only). The env options are those of its HAPPO football configs and its football.yaml, which hasac_discrete.py's
# football adapter hard-codes: representation simple115v2, rewards scoring,checkpoints, stacked false, all left players
# the scenario has agents for. The algorithm settings are the official HASAC defaults (configs/algos_cfgs/hasac.yaml),
# flag <- key: --num-envs <- train.n_rollout_threads 20, --no-autotune <- algo.auto_alpha false, --alpha <- algo.alpha
# 0.001, --gamma <- algo.gamma, --n-step <- algo.n_step, --policy-lr <- model.lr, --q-lr <- model.critic_lr,
# --batch-size <- algo.batch_size, --eval-interval <- train.eval_interval 10000 loop steps x 20 envs, --eval-episodes
# <- eval.eval_episodes. The script's defaults hold the rest: train.warmup_steps 10000, train_interval 50 with
# update_per_train 1, algo.buffer_size 1e6, algo.polyak 0.005, model.hidden_sizes [256, 256].
# The paper's curves are win (score) rates: tag eval/score_rate.
FOOTBALL_ARGS="--num-envs 20 --no-autotune --alpha 0.001 --gamma 0.99 --n-step 20 --policy-lr 5e-4 --q-lr 5e-4"
FOOTBALL_ARGS+=" --batch-size 1000 --eval-interval 200000 --eval-episodes 40"

commands=()
for task in $TASKS; do
    case "$task" in
        rps)    env_id=academy_run_pass_and_shoot_with_keeper; steps=20000000 ;;
        corner) env_id=academy_corner; steps=25000000 ;;
        *)      echo "error: unknown task '$task'; choose from: rps corner" >&2; exit 2 ;;
    esac
    for seed in $SEEDS; do
        commands+=("python hasac_discrete.py --env-id $env_id --seed $seed --total-timesteps ${TOTAL_TIMESTEPS:-$steps} $FOOTBALL_ARGS${EXTRA_ARGS:+ $EXTRA_ARGS}")
    done
done

# benchmark/run.py runs them from the repository root (with --save-model), or submits them to Slurm
WORKERS=${JOBS:-1}
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    WORKERS=0
fi
# shellcheck disable=SC2086  # RUNNER_ARGS is split into flags on purpose
printf '%s\n' "${commands[@]}" | ${PYTHON:-python} benchmark/run.py --commands-from - --workers "$WORKERS" ${RUNNER_ARGS:-}
