"""Plot the matrix-game temperature sweep (Figures 4c and 5 style): the final learned joint
policy's p(C, C) and p(A, A), and the final deterministic evaluation return, against the
temperature, mean over seeds with every seed's point drawn. Prints the table too.

Reads the runs of `benchmark/hasac_matrix_game.sh`: run directories
`matrix-game__matrix_alpha_{alpha}__{seed}__{unix_time}` ({alpha} a number or `auto`).

    python benchmark/plot_matrix_game.py runs --out matrix_game.png

The QRE study's runs (`matrix-game__matrix_qre_{loss}_alpha_{alpha}__{seed}__{unix_time}`) give a table of each
agent's final policy beside the quantal response equilibrium of Table 3, computed here by iterating exact soft best
responses from the biased start, and `--qre-out` draws them.

The output ends with the code version and dates of the runs (their code_version.txt, as benchmark/plot.py reads it);
runs of different code versions are refused unless `--allow-mixed-versions`.
"""

import argparse
import os
import sys
from collections import defaultdict, namedtuple

import matplotlib

matplotlib.use("Agg")  # write files only: works on headless machines
import matplotlib.pyplot as plt
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

TAGS = {"p_CC": "charts/p_CC", "p_AA": "charts/p_AA", "eval_return": "eval/episodic_return"}
PREFIX = "matrix-game__matrix_alpha_"
QRE_PREFIX = "matrix-game__matrix_qre_"
# benchmark/plot.py's code-version check and note need only a run's name and code version
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot import check_versions, read_code_version, runs_note  # noqa: E402

VersionedRun = namedtuple("VersionedRun", "name code")
PAYOFF = np.array([[5, -20, -20], [-20, 10, -20], [-20, -20, 20]], float)  # Figure 1, rows: agent 1's A, B, C


def quantal_response_equilibrium(alpha: float, iterations: int = 5000) -> np.ndarray:
    """[2, 3]: both agents start from (0.6, 0.2, 0.2) and take exact soft best responses in turn,
    pi^i proportional to exp(E_{a^-i ~ pi^-i}[r(a^i, a^-i)] / alpha), until nothing moves."""
    policies = np.array([[0.6, 0.2, 0.2], [0.6, 0.2, 0.2]])
    for _ in range(iterations):
        for i in range(2):
            q = PAYOFF @ policies[1] if i == 0 else PAYOFF.T @ policies[0]
            z = np.exp((q - q.max()) / alpha)
            policies[i] = z / z.sum()
    return policies


def final_policies(run_dir: str):
    """Each agent's last logged policy [2, 3] (charts/pi_X/agent_i), or None if the run lacks them."""
    accumulator = EventAccumulator(run_dir, size_guidance={SCALARS: 0})
    accumulator.Reload()
    tags = [[f"charts/pi_{a}/agent_{i}" for a in "ABC"] for i in range(2)]
    if not all(tag in accumulator.Tags()["scalars"] for row in tags for tag in row):
        return None
    return np.array([[accumulator.Scalars(tag)[-1].value for tag in row] for row in tags])


def qre_study(runs_dir: str, out: str) -> bool:
    """Table and figure of the QRE study; False if runs_dir holds none of its runs."""
    by_key = defaultdict(list)  # (loss, alpha) -> [final policies [2, 3] of one seed, ...]
    for name in sorted(os.listdir(runs_dir)):
        parts = name[len(QRE_PREFIX) :].split("__") if name.startswith(QRE_PREFIX) else []
        if len(parts) != 3 or "_alpha_" not in parts[0]:
            continue
        policies = final_policies(os.path.join(runs_dir, name))
        if policies is None:
            print(f"skipping {name}: no charts/pi_*/agent_* (unfinished?)", file=sys.stderr)
            continue
        loss, alpha = parts[0].split("_alpha_")
        by_key[loss, float(alpha)].append(policies)
    if not by_key:
        return False
    losses, alphas = sorted({k[0] for k in by_key}), sorted({k[1] for k in by_key})
    print(
        "QRE study: final pi^i(A, B, C), mean over seeds; gap = max |learned - QRE| over actions and agents, mean over seeds"
    )
    print(
        f"{'alpha':>6} {'QRE':>22} "
        + " ".join(f"{loss + ' agent 1':>22} {loss + ' agent 2':>22} {'gap':>5}" for loss in losses)
    )
    for alpha in alphas:
        exact = quantal_response_equilibrium(alpha)
        cells = [f"{alpha:6g} {'(' + ', '.join(f'{p:.3f}' for p in exact[0]) + ')':>22}"]
        for loss in losses:
            runs = by_key.get((loss, alpha), [])
            if not runs:
                cells.append(f"{'-':>22} {'-':>22} {'-':>5}")
                continue
            mean = np.mean(runs, 0)
            gap = np.mean([np.abs(r - exact).max() for r in runs])
            cells.append(
                " ".join(f"{'(' + ', '.join(f'{p:.3f}' for p in mean[i]) + ')':>22}" for i in range(2)) + f" {gap:5.3f}"
            )
        seeds = len(by_key.get((losses[0], alpha), []))
        print(" ".join(cells) + f"   ({seeds} seed{'' if seeds == 1 else 's'})")

    grid = np.linspace(min(alphas), max(alphas), 200)
    curve = np.array([quantal_response_equilibrium(a, 1000)[0] for a in grid])  # [200, 3]; symmetric: agent 1's
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
    markers = {"gumbel": ("x", "tab:red"), "expected": ("o", "tab:blue")}
    for k, ax in enumerate(axes):
        ax.plot(grid, curve[:, k], color="black", lw=1, label="QRE (exact soft best responses)")
        for loss in losses:
            marker, color = markers.get(loss, ("s", "tab:grey"))
            points = [(alpha, r[i, k]) for alpha in alphas for r in by_key.get((loss, alpha), []) for i in range(2)]
            ax.scatter(
                *zip(*points), marker=marker, color=color, alpha=0.6, s=20, label=f"--actor-loss {loss} (each agent, seed)"
            )
        ax.set_title(f"pi({'ABC'[k]})")
        ax.set_xlabel("temperature alpha")
    axes[0].set_ylabel("final policy")
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "HASAC on the matrix game with a fixed temperature: learned policies against the quantal response equilibrium"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")
    return True


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
    parser.add_argument(
        "--qre-out", default="matrix_game_qre.png", help="the QRE study's image (default: matrix_game_qre.png)"
    )
    parser.add_argument(
        "--allow-mixed-versions", action="store_true", help="combine runs of different code versions instead of refusing"
    )
    args = parser.parse_args()
    if not os.path.isdir(args.runs_dir):
        sys.exit(f"error: no directory {args.runs_dir!r}; run benchmark/hasac_matrix_game.sh first")
    versioned = [
        VersionedRun(name, read_code_version(os.path.join(args.runs_dir, name)))
        for name in sorted(os.listdir(args.runs_dir))
        if name.startswith((PREFIX, QRE_PREFIX))
    ]
    check_versions(versioned, args.allow_mixed_versions)
    found_qre = qre_study(args.runs_dir, args.qre_out)

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
        if found_qre:
            print(runs_note(versioned))
            return
        sys.exit(f"error: no finished matrix-game runs ({PREFIX}... or {QRE_PREFIX}...) under {args.runs_dir!r}")

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
        axes[1].scatter(
            [i] * len(by_alpha[label]), [r["eval_return"] for r in by_alpha[label]], color="tab:blue", alpha=0.3, s=14
        )
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
    print(runs_note(versioned))


if __name__ == "__main__":
    main()
