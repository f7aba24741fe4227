#!/usr/bin/env bash
# HASAC on the paper's single-state matrix game (Liu et al., "Maximum Entropy Heterogeneous-Agent
# Reinforcement Learning", ICLR 2024, Section 3.2, Figure 1; the temperature study of
# Figures 4c and 5): both agents start from the biased policy (0.6, 0.2, 0.2) over (A, B, C),
# which favours the suboptimal equilibrium (A, A) (reward 5) over the optimal (C, C) (reward 20).
# Two studies, several seeds each:
#   SWEEP: fixed temperatures (including near zero: --alpha must be positive, since the
#          temperature lives as log alpha) and the auto-tuned one;
#   QRE:   the quantal response equilibrium of Appendix B, Table 3: fixed temperatures, both
#          actor losses (--actor-loss gumbel, the paper's, and expected, the exact expectation
#          over each agent's own actions); the plotter sets each agent's final policy beside the QRE.
#
# Usage (from anywhere):   bash benchmark/hasac_matrix_game.sh
#   SEEDS="1 2 3"                    seeds per temperature
#   SWEEP=1 QRE=1                    which studies to run (0 skips one)
#   ALPHAS="1e-4 1e-3 0.1 0.5 1 2 5" SWEEP's fixed temperatures; AUTOTUNE=0 skips the auto-tuned runs
#   TOTAL_TIMESTEPS=6000             SWEEP's env steps per run (one step per episode)
#   QRE_ALPHAS="1 2 5 10 15 20"      QRE's temperatures (runs of the script's matrix-game defaults: 40k steps)
#   ACTOR_LOSSES="gumbel expected"   QRE's actor losses
#   EXTRA_ARGS="--buffer-size 2000"  appended to every command
#   JOBS=1                           runs at a time on this machine (benchmark/run.py --workers)
#   DRY_RUN=1                        print the commands, run nothing (--workers 0)
#   RUNNER_ARGS=""                   more benchmark/run.py flags: e.g. "--log-dir logs" (each run's output in a file), or
#                                    "--slurm --slurm-partition gpu --slurm-time 24:00:00" (one Slurm job array, each run
#                                    requeued with --resume before its time limit)
#   PYTHON=python                    the interpreter of benchmark/run.py (python benchmark/run.py --help)
# Then: python benchmark/plot_matrix_game.py runs --out matrix_game.png (and matrix_game_qre.png for QRE)
set -euo pipefail
cd "$(dirname "$0")/.."

SEEDS=${SEEDS:-"1 2 3"}
SWEEP=${SWEEP:-1}
QRE=${QRE:-1}
QRE_ALPHAS=${QRE_ALPHAS:-"1 2 5 10 15 20"}
ACTOR_LOSSES=${ACTOR_LOSSES:-"gumbel expected"}
ALPHAS=${ALPHAS:-"1e-4 1e-3 0.1 0.5 1 2 5"}
AUTOTUNE=${AUTOTUNE:-1}
TOTAL_TIMESTEPS=${TOTAL_TIMESTEPS:-6000}
EXTRA_ARGS=${EXTRA_ARGS:-}

# A one-step game needs neither the MPE budget nor its networks: 10 updates every 100 env steps
# (about 600 updates in all), small batches, faster learning rates; a few seconds per run on one
# CPU core. The warm-up is short and the buffer small on purpose: the data then come from the
# policies themselves, so exploring (C, C) is up to the temperature. A long uniform warm-up
# (e.g. EXTRA_ARGS="--learning-starts 1000 --buffer-size 100000") shows the critic (C, C) on its
# own, and then even a near-zero temperature escapes (A, A).
MATRIX_ARGS="--env-id matrix-game --matrix-init-bias --num-envs 10 --learning-starts 100 --buffer-size 1000 \
--train-interval 10 --gradient-steps 10 --batch-size 128 --hidden-dim 64 --policy-lr 3e-3 --q-lr 3e-3 \
--alpha-lr 3e-3 --eval-interval 1000000 --eval-episodes 10"

commands=()
for seed in $SEEDS; do
    [[ "$SWEEP" == 1 ]] || break
    for alpha in $ALPHAS; do  # the exp name carries the temperature for the plotter
        commands+=("python hasac_discrete.py $MATRIX_ARGS --no-autotune --alpha $alpha --exp-name matrix_alpha_$alpha --seed $seed --total-timesteps $TOTAL_TIMESTEPS${EXTRA_ARGS:+ $EXTRA_ARGS}")
    done
    if [[ "$AUTOTUNE" == 1 ]]; then
        commands+=("python hasac_discrete.py $MATRIX_ARGS --autotune --alpha 0.2 --exp-name matrix_alpha_auto --seed $seed --total-timesteps $TOTAL_TIMESTEPS${EXTRA_ARGS:+ $EXTRA_ARGS}")
    fi
done
# QRE: the script's matrix-game defaults (the same small nets as MATRIX_ARGS; the actors learn slower than the critic,
# policy-lr 1e-3 against q-lr 3e-3, so that they follow its estimate; 40k steps: about 4000 updates, enough for the
# expected loss to settle at its fixed point), a fixed temperature, one loss per run
for seed in $SEEDS; do
    [[ "$QRE" == 1 ]] || break
    for loss in $ACTOR_LOSSES; do
        for alpha in $QRE_ALPHAS; do  # the exp name carries the loss and the temperature for the plotter
            commands+=("python hasac_discrete.py --env-id matrix-game --no-autotune --alpha $alpha --actor-loss $loss --exp-name matrix_qre_${loss}_alpha_$alpha --seed $seed${EXTRA_ARGS:+ $EXTRA_ARGS}")
        done
    done
done

# benchmark/run.py runs them from the repository root (with --save-model), or submits them to Slurm
WORKERS=${JOBS:-1}
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    WORKERS=0
fi
# shellcheck disable=SC2086  # RUNNER_ARGS is split into flags on purpose
printf '%s\n' "${commands[@]}" | ${PYTHON:-python} benchmark/run.py --commands-from - --workers "$WORKERS" ${RUNNER_ARGS:-}
