"""Plot the matrix-game temperature sweep (Figures 4c and 5 style): the final learned joint
policy's p(C, C) and p(A, A), and the final deterministic evaluation return, against the
temperature, mean over seeds with every seed's point drawn. Prints the table too.

Reads the runs of `benchmark/hasac_matrix_game.sh`: run directories
`matrix-game__matrix_alpha_{alpha}__{seed}__{unix_time}` ({alpha} a number or `auto`).

    python benchmark/plot_matrix_game.py runs --out matrix_game.png
"""

import argparse
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")  # write files only: works on headless machines
import matplotlib.pyplot as plt
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

TAGS = {"p_CC": "charts/p_CC", "p_AA": "charts/p_AA", "eval_return": "eval/episodic_return"}
PREFIX = "matrix-game__matrix_alpha_"


def final_values(run_dir: str) -> dict | None:
    """The last logged value of each tag in TAGS, or None if the run lacks one (unfinished)."""
    accumulator = EventAccumulator(run_dir, size_guidance={SCALARS: 0})
    accumulator.Reload()
    scalars = accumulator.Tags()["scalars"]
    if not all(tag in scalars for tag in TAGS.values()):
        return None
    return {name: accumulator.Scalars(tag)[-1].value for name, tag in TAGS.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_dir", nargs="?", default="runs", help="directory holding the run directories (default: runs)")
    parser.add_argument("--out", default="matrix_game.png", help="output image path (default: matrix_game.png)")
    args = parser.parse_args()
    if not os.path.isdir(args.runs_dir):
        sys.exit(f"error: no directory {args.runs_dir!r}; run benchmark/hasac_matrix_game.sh first")

    by_alpha = defaultdict(list)  # "0.1" or "auto" -> [final values of one seed, ...]
    for name in sorted(os.listdir(args.runs_dir)):
        parts = name[len(PREFIX) :].split("__") if name.startswith(PREFIX) else []
        if len(parts) != 3:
            continue
        values = final_values(os.path.join(args.runs_dir, name))
        if values is None:
            print(f"skipping {name}: missing {', '.join(TAGS.values())}", file=sys.stderr)
            continue
        by_alpha[parts[0]].append(values)
    if not by_alpha:
        sys.exit(f"error: no finished matrix-game runs ({PREFIX}...) under {args.runs_dir!r}")

    fixed = sorted((a for a in by_alpha if a != "auto"), key=float)
    labels = fixed + (["auto"] if "auto" in by_alpha else [])
    print(f"{'alpha':>8} {'seeds':>5} {'p_CC':>14} {'p_AA':>14} {'eval return':>16}")
    for label in labels:
        runs = by_alpha[label]
        cells = [f"{np.mean([r[k] for r in runs]):.3f} ({', '.join(f'{r[k]:.2f}' for r in runs)})" for k in TAGS]
        print(f"{label:>8} {len(runs):>5} " + "  ".join(cells))

    # one categorical x position per temperature: the sweep spans 1e-4 to 5, and auto has no value
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(labels))
    for name, color in (("p_CC", "tab:green"), ("p_AA", "tab:red")):
        means = [np.mean([r[name] for r in by_alpha[label]]) for label in labels]
        axes[0].plot(x, means, "o-", color=color, label=f"p({name[2]}, {name[3]})")
        for i, label in enumerate(labels):
            axes[0].scatter([i] * len(by_alpha[label]), [r[name] for r in by_alpha[label]], color=color, alpha=0.3, s=14)
    axes[0].set_ylabel("final joint probability")
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].legend()
    means = [np.mean([r["eval_return"] for r in by_alpha[label]]) for label in labels]
    axes[1].plot(x, means, "o-", color="tab:blue")
    for i, label in enumerate(labels):
        axes[1].scatter([i] * len(by_alpha[label]), [r["eval_return"] for r in by_alpha[label]], color="tab:blue", alpha=0.3, s=14)
    for reward, text in ((5, "(A, A)"), (10, "(B, B)"), (20, "(C, C)")):
        axes[1].axhline(reward, color="grey", lw=0.6, ls=":")
        axes[1].text(-0.3, reward, text, va="bottom", ha="left", fontsize=8, color="grey")
    axes[1].set_ylabel("final eval return (greedy joint action)")
    for ax in axes:
        ax.set_xticks(x, labels)
        ax.set_xlabel("temperature alpha")
    fig.suptitle(f"HASAC on the matrix game from the biased start (0.6, 0.2, 0.2): {sum(map(len, by_alpha.values()))} runs")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
