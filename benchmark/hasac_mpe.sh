#!/usr/bin/env bash
# HASAC on the three cooperative Multi-Agent Particle Environment tasks (PettingZoo MPE:
# Spread, Reference, Speaker-Listener) of Liu et al., "Maximum Entropy Heterogeneous-Agent
# Reinforcement Learning" (ICLR 2024), Appendix H.2.5, with the official hyperparameters.
#
# Usage (from anywhere):   bash benchmark/hasac_mpe.sh
#   SEEDS="1 2 3"              seeds per task
#   TASKS="simple_spread_v3"   a subset of the tasks below (default: all three)
#   TOTAL_TIMESTEPS=10000000   env steps per run (the paper's 10M)
#   EXTRA_ARGS="--track"       appended to every command
#   OFFICIAL_ACTIONS=1         continuous runs act as the official code does: --mpe-clip-actions (see below)
#   JOBS=1                     runs at a time on this machine (benchmark/run.py --workers)
#   DRY_RUN=1                  print the commands, run nothing (--workers 0)
#   RUNNER_ARGS=""             more benchmark/run.py flags: e.g. "--log-dir logs" (each run's output in a file), or
#                              "--slurm --slurm-partition gpu --slurm-time 24:00:00" (one Slurm job array, each run
#                              requeued with --resume before its time limit)
#   PYTHON=python              the interpreter of benchmark/run.py (python benchmark/run.py --help)
# Then: python benchmark/plot.py runs --out mpe.png
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_TASKS="simple_spread_v3 simple_reference_v3 simple_speaker_listener_v4"
SEEDS=${SEEDS:-"1 2 3"}
TASKS=${TASKS:-$ALL_TASKS}
TOTAL_TIMESTEPS=${TOTAL_TIMESTEPS:-10000000}
EXTRA_ARGS=${EXTRA_ARGS:-}
OFFICIAL_ACTIONS=${OFFICIAL_ACTIONS:-0}

# The official implementation's tuned MPE config, the same for every task and for both
# action types (PKU-MARL/HARL tuned_configs/pettingzoo_mpe/<task>/hasac/config.json). MPE episodes last only 25 steps, so
# evaluation is cheap: every 10k env steps gives finer curves than the 200k default.
# Flag <- official key: --num-envs <- train.n_rollout_threads, --autotune <- algo.auto_alpha (the official learner then
# starts log alpha at 0, so --alpha 1.0), --gamma <- algo.gamma, --n-step <- algo.n_step, --policy-lr <- model.lr,
# --q-lr <- model.critic_lr, --batch-size <- algo.batch_size, --total-timesteps <- train.num_env_steps. The script's
# defaults hold the rest: train.warmup_steps 10000, train.train_interval 50 with update_per_train 1 (--gradient-steps 50),
# algo.buffer_size 1e6, algo.polyak 0.005, model.alpha_lr 3e-4, model.hidden_sizes [256, 256].
MPE_ARGS="--num-envs 20 --autotune --alpha 1.0 --gamma 0.99 --n-step 20 --policy-lr 5e-4 --q-lr 5e-4 --batch-size 1000 --eval-interval 10000"

for task in $TASKS; do
    if [[ " $ALL_TASKS " != *" $task "* ]]; then
        echo "error: unknown task '$task'; choose from: $ALL_TASKS" >&2
        exit 2
    fi
done

commands=()
add_commands() {  # $1: the training script, $2: its own flags; each script's default --exp-name keeps its runs apart
    for task in $TASKS; do
        for seed in $SEEDS; do
            commands+=("python $1 --env-id $task --seed $seed --total-timesteps $TOTAL_TIMESTEPS $MPE_ARGS$2${EXTRA_ARGS:+ $EXTRA_ARGS}")
        done
    done
}

# ---- Continuous actions ----
# The official actor acts in [-1, 1] and MPE clips its action to the Box [0, 1]: negative outputs are exactly zero force
# (HARL's SquashedGaussianPolicy scales tanh by action_space.high only; MPE's simple_env clips). That is an accident of
# the official code, so the script's default rescales [-1, 1] to [0, 1] instead; OFFICIAL_ACTIONS=1 reproduces it
# (--mpe-clip-actions, README: "Continuous MPE against the official curve").
if [[ $OFFICIAL_ACTIONS == 1 ]]; then
    add_commands hasac_continuous.py " --mpe-clip-actions --exp-name hasac_continuous_clip"
else
    add_commands hasac_continuous.py ""
fi

# ---- Discrete actions ----
add_commands hasac_discrete.py ""

# benchmark/run.py runs them from the repository root (with --save-model), or submits them to Slurm
WORKERS=${JOBS:-1}
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    WORKERS=0
fi
# shellcheck disable=SC2086  # RUNNER_ARGS is split into flags on purpose
printf '%s\n' "${commands[@]}" | ${PYTHON:-python} benchmark/run.py --commands-from - --workers "$WORKERS" ${RUNNER_ARGS:-}
