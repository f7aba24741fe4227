#!/usr/bin/env bash
# HASAC on the nine Bi-DexHands tasks of Liu et al., "Maximum Entropy Heterogeneous-Agent
# Reinforcement Learning" (ICLR 2024): Section 5.1, Figures 3b-d and 7, Appendix H.2.1, with the
# official per-task HASAC configs (temperature, gamma, episode length, env steps; every task:
# n-step 20, lr 5e-4 / 5e-4, batch 1000, buffer 1e6, 20 envs, 50 updates every 50 loop steps,
# 10,000 warm-up steps). Needs Isaac Gym Preview 4, DexterousHands and an NVIDIA GPU.
#
# Usage (from anywhere):   bash benchmark/hasac_dexhands.sh
#   SEEDS="1 2 3"                       seeds per task
#   TASKS="ShadowHandOver ShadowHandPen"   a subset of the tasks below (default: all nine)
#   TOTAL_TIMESTEPS=10000000            env steps per run (default: the official per-task budget)
#   EXTRA_ARGS="--compile"              appended to every command
#   JOBS=1                              runs at a time on this machine (benchmark/run.py --workers); one GPU each is wise
#   DRY_RUN=1                           print the commands, run nothing (--workers 0)
#   RUNNER_ARGS=""                      more benchmark/run.py flags: e.g. "--log-dir logs" (each run's output in a file), or
#                                       "--slurm --slurm-partition gpu --slurm-time 24:00:00" (one Slurm job array, each run
#                                       requeued with --resume before its time limit)
#   PYTHON=python                       the interpreter of benchmark/run.py (python benchmark/run.py --help)
# Then: python benchmark/plot.py runs --out dexhands.png
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_TASKS="ShadowHandCatchAbreast ShadowHandTwoCatchUnderarm ShadowHandLiftUnderarm ShadowHandOver \
ShadowHandCatchOver2Underarm ShadowHandPen ShadowHandDoorCloseInward ShadowHandDoorOpenInward ShadowHandDoorOpenOutward"
SEEDS=${SEEDS:-"1 2 3"}
TASKS=${TASKS:-$ALL_TASKS}
EXTRA_ARGS=${EXTRA_ARGS:-}

# The official HASAC config per task (PKU-MARL/HARL tuned_configs/dexhands/<task>/hasac).
# The episode length (env.hands_episode_length) comes from the script's own table (DEXHANDS_EPISODE_STEPS), which
# holds the same official values. Flag <- official key: --num-envs <- train.n_rollout_threads, --n-step <- algo.n_step,
# --policy-lr / --q-lr <- model.lr / model.critic_lr, --batch-size <- algo.batch_size, --buffer-size <- algo.buffer_size,
# --learning-starts <- train.warmup_steps, --train-interval <- train.train_interval, --gradient-steps <-
# train.train_interval x train.update_per_train, --gamma <- algo.gamma, --autotune/--no-autotune <- algo.auto_alpha,
# --alpha <- algo.alpha, --total-timesteps <- train.num_env_steps; algo.use_huber_loss and algo.use_valuenorm are false,
# as in the script. Under auto_alpha the official learner starts log alpha at 0 and never reads algo.alpha (5e-5 or 0.2
# in those configs), so the auto-tuned tasks start at --alpha 1.0.
task_args() {
    local common="--cuda --num-envs 20 --n-step 20 --policy-lr 5e-4 --q-lr 5e-4 --batch-size 1000 --buffer-size 1000000 \
--learning-starts 10000 --train-interval 50 --gradient-steps 50"
    case "$1" in
        ShadowHandTwoCatchUnderarm)    echo "$common --no-autotune --alpha 5e-5 --gamma 0.95 --total-timesteps ${TOTAL_TIMESTEPS:-10000000}" ;;
        ShadowHandCatchAbreast|ShadowHandPen|ShadowHandDoorCloseInward|ShadowHandDoorOpenInward)
                                       echo "$common --autotune --alpha 1.0 --gamma 0.95 --total-timesteps ${TOTAL_TIMESTEPS:-10000000}" ;;
        ShadowHandOver)                echo "$common --autotune --alpha 1.0 --gamma 0.95 --total-timesteps ${TOTAL_TIMESTEPS:-50000000}" ;;
        ShadowHandCatchOver2Underarm)  echo "$common --autotune --alpha 1.0 --gamma 0.99 --total-timesteps ${TOTAL_TIMESTEPS:-20000000}" ;;
        ShadowHandLiftUnderarm|ShadowHandDoorOpenOutward)
                                       echo "$common --autotune --alpha 1.0 --gamma 0.99 --total-timesteps ${TOTAL_TIMESTEPS:-10000000}" ;;
    esac
}

for task in $TASKS; do
    if [[ " $ALL_TASKS " != *" $task "* ]]; then
        echo "error: unknown task '$task'; choose from: $ALL_TASKS" >&2
        exit 2
    fi
done

commands=()
for task in $TASKS; do
    for seed in $SEEDS; do
        commands+=("python hasac_isaacgym.py --env-id $task --seed $seed $(task_args "$task")${EXTRA_ARGS:+ $EXTRA_ARGS}")
    done
done

# benchmark/run.py runs them from the repository root (with --save-model), or submits them to Slurm
WORKERS=${JOBS:-1}
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    WORKERS=0
fi
# shellcheck disable=SC2086  # RUNNER_ARGS is split into flags on purpose
printf '%s\n' "${commands[@]}" | ${PYTHON:-python} benchmark/run.py --commands-from - --workers "$WORKERS" ${RUNNER_ARGS:-}
