#!/usr/bin/env bash
# HASAC on the ten Multi-Agent MuJoCo tasks of Liu et al., "Maximum Entropy
# Heterogeneous-Agent Reinforcement Learning" (ICLR 2024): Appendix H.2.2, Figure 8
# (Figure 3e-f shows two of them), with the official per-task hyperparameters.
#
# Usage (from anywhere):   bash benchmark/hasac_mamujoco.sh
#   SEEDS="1 2 3"              seeds per task
#   TASKS="Ant-4x2 Walker2d-6x1"   a subset of the tasks below (default: all ten)
#   TOTAL_TIMESTEPS=10000000   env steps per run (the paper's 10M)
#   EXTRA_ARGS="--track"       appended to every command
#   JOBS=1                     runs at a time on this machine (benchmark/run.py --workers)
#   DRY_RUN=1                  print the commands, run nothing (--workers 0)
#   RUNNER_ARGS=""             more benchmark/run.py flags: e.g. "--log-dir logs" (each run's output in a file), or
#                              "--slurm --slurm-partition gpu --slurm-time 24:00:00" (one Slurm job array, each run
#                              requeued with --resume before its time limit)
#   PYTHON=python              the interpreter of benchmark/run.py (python benchmark/run.py --help)
# Then: python benchmark/plot.py runs --out mamujoco.png
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_TASKS="Ant-2x4 Ant-4x2 Ant-8x1 HalfCheetah-2x3 HalfCheetah-3x2 HalfCheetah-6x1 \
Walker2d-2x3 Walker2d-6x1 HumanoidStandup-17x1 ManyAgentSwimmer-10x2"
SEEDS=${SEEDS:-"1 2 3"}
TASKS=${TASKS:-$ALL_TASKS}
TOTAL_TIMESTEPS=${TOTAL_TIMESTEPS:-10000000}
EXTRA_ARGS=${EXTRA_ARGS:-}

# The official implementation's tuned config per task (PKU-MARL/HARL tuned_configs/mamujoco/<task>/hasac/config.json).
# Flag <- official key: --num-envs <- train.n_rollout_threads, --gamma <- algo.gamma, --n-step <- algo.n_step,
# --policy-lr <- model.lr, --q-lr <- model.critic_lr, --batch-size <- algo.batch_size, --autotune/--no-autotune
# <- algo.auto_alpha, --alpha <- algo.alpha (fixed temperature), --total-timesteps <- train.num_env_steps. The script's
# defaults already hold the keys that are the same for every task: train.warmup_steps 10000 (--learning-starts),
# train.train_interval 50 and train.update_per_train 1 (--train-interval 50 --gradient-steps 50), algo.buffer_size 1e6,
# algo.polyak 0.005 (--tau), model.alpha_lr 3e-4, model.hidden_sizes [256, 256], env.agent_obsk 0 (the script's default
# for every task), algo.share_param false, eval.eval_episodes 40.
task_args() {
    local common="--gamma 0.99 --num-envs 20"
    case "$1" in
        Ant-2x4|Ant-8x1) echo "$common --no-autotune --alpha 0.2 --n-step 5 --policy-lr 1e-3 --q-lr 3e-4 --batch-size 2200" ;;
        Ant-4x2)         echo "$common --no-autotune --alpha 0.2 --n-step 5 --policy-lr 1e-3 --q-lr 3e-4 --batch-size 1000" ;;
        HalfCheetah-*|HumanoidStandup-17x1|ManyAgentSwimmer-10x2)
                         echo "$common --autotune --alpha 1.0 --n-step 10 --policy-lr 1e-3 --q-lr 1e-3 --batch-size 1000" ;;
                         # auto_alpha: the official learner starts log alpha at 0 (alpha 1) and ignores algo.alpha
        Walker2d-*)      echo "$common --no-autotune --alpha 0.2 --n-step 20 --policy-lr 5e-4 --q-lr 1e-3 --batch-size 1000" ;;
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
        commands+=("python hasac_continuous.py --env-id $task --seed $seed --total-timesteps $TOTAL_TIMESTEPS $(task_args "$task")${EXTRA_ARGS:+ $EXTRA_ARGS}")
    done
done

# benchmark/run.py runs them from the repository root (with --save-model), or submits them to Slurm
WORKERS=${JOBS:-1}
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    WORKERS=0
fi
# shellcheck disable=SC2086  # RUNNER_ARGS is split into flags on purpose
printf '%s\n' "${commands[@]}" | ${PYTHON:-python} benchmark/run.py --commands-from - --workers "$WORKERS" ${RUNNER_ARGS:-}
