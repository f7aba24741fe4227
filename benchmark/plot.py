"""Plot learning curves of HASAC runs from their TensorBoard logs, and print final results.

Runs are grouped by (env_id, exp_name), parsed from the run directory name
`{env_id}__{exp_name}__{seed}__{unix_time}` that the hasac_*.py scripts write (with a `_2`, `_3`, ...
suffix when a run with the same name started in the same second: a run of its own). Each group is
drawn as its mean across seeds with a std (or min-max) band, one subplot per env id; a group whose
runs share only one logged step (a short run with a single evaluation) is drawn as a point with an error bar.

    python benchmark/plot.py runs --out mamujoco.png
    python benchmark/plot.py runs --tag charts/episodic_return --env-ids Ant-4x2 Walker2d-6x1
"""

import argparse
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # write files only: works on headless machines
import matplotlib.pyplot as plt
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator


@dataclass
class Run:
    env_id: str
    exp_name: str
    seed: int
    steps: np.ndarray  # strictly increasing global env steps
    values: np.ndarray


def int_at_least(minimum: int):
    """argparse type: an integer >= minimum, with a one-line error otherwise."""

    def integer(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    return integer


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "runs_dir", nargs="?", default="runs", help="directory searched (recursively) for run directories (default: runs)"
    )
    parser.add_argument(
        "--tag", default="eval/episodic_return", help="TensorBoard scalar tag to plot (default: eval/episodic_return)"
    )
    parser.add_argument("--out", default="hasac.png", help="output image path (default: hasac.png)")
    parser.add_argument("--env-ids", nargs="+", help="plot only these env ids (default: all found)")
    parser.add_argument("--exp-names", nargs="+", help="plot only these exp names (default: all found)")
    parser.add_argument("--band", choices=["std", "minmax"], default="std", help="shaded band across seeds (default: std)")
    parser.add_argument(
        "--num-points", type=int_at_least(2), default=200, help="points on the common step grid (default: 200)"
    )
    parser.add_argument("--ncols", type=int_at_least(1), default=3, help="subplots per row (default: 3)")
    return parser.parse_args()


def parse_run_name(name: str) -> tuple[str, str, int] | None:
    """(env_id, exp_name, seed) from `{env_id}__{exp_name}__{seed}__{unix_time}` (unix_time may end in `_2`...), or None."""
    parts = name.split("__")
    if len(parts) < 4 or not parts[-2].isdigit() or not re.fullmatch(r"\d+(_\d+)?", parts[-1]):
        return None
    # Split from both ends so an exp_name containing "__" still parses.
    return parts[0], "__".join(parts[1:-2]), int(parts[-2])


def load_scalar(run_dir: str, tag: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values) of one tag, or None if the run never logged it."""
    # size_guidance 0 keeps every point; the default keeps a random sample of 10,000.
    accumulator = EventAccumulator(run_dir, size_guidance={SCALARS: 0})
    accumulator.Reload()
    if tag not in accumulator.Tags()["scalars"]:
        return None
    events = accumulator.Scalars(tag)
    steps = np.array([event.step for event in events], dtype=np.float64)
    values = np.array([event.value for event in events], dtype=np.float64)
    # Several episodes can end at the same global step (parallel envs with equal episode
    # lengths); interpolation needs one value per step, so average them.
    unique_steps, index = np.unique(steps, return_inverse=True)
    mean_values = np.bincount(index, weights=values) / np.bincount(index)
    return unique_steps, mean_values


def find_runs(args: argparse.Namespace) -> list[Run]:
    runs = []
    for directory, _, files in sorted(os.walk(args.runs_dir)):
        if not any(f.startswith("events.out.tfevents") for f in files):
            continue
        parsed = parse_run_name(os.path.basename(directory))
        if parsed is None:
            print(f"skipping {directory}: name is not env_id__exp_name__seed__time", file=sys.stderr)
            continue
        env_id, exp_name, seed = parsed
        if (args.env_ids and env_id not in args.env_ids) or (args.exp_names and exp_name not in args.exp_names):
            continue
        scalar = load_scalar(directory, args.tag)
        if scalar is None:
            print(f"skipping {directory}: no '{args.tag}' scalars", file=sys.stderr)
            continue
        runs.append(Run(env_id, exp_name, seed, *scalar))
    return runs


def on_common_grid(runs: list[Run], num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate every run onto one step grid: (grid [P], values [seeds, P]).

    The grid spans only the steps all runs cover, so every point averages the same seeds.
    """
    start = max(run.steps[0] for run in runs)
    end = min(run.steps[-1] for run in runs)
    # Warn only when a seed stopped well short (crashed or still running), not for the
    # small offsets that different logging grids give.
    if end < 0.9 * max(run.steps[-1] for run in runs):
        lengths = ", ".join(f"seed {run.seed}: {run.steps[-1]:.0f}" for run in runs)
        print(f"note: {runs[0].env_id}/{runs[0].exp_name} truncated to the shortest run ({lengths})", file=sys.stderr)
    grid = np.linspace(start, end, num_points) if end > start else np.array([end])
    return grid, np.stack([np.interp(grid, run.steps, run.values) for run in runs])


def main() -> None:
    args = parse_args()
    if not os.path.isdir(args.runs_dir):
        sys.exit(f"plot.py: error: runs directory '{args.runs_dir}' does not exist")
    runs = find_runs(args)
    if not runs:
        filters = [f"env ids {args.env_ids}"] if args.env_ids else []
        filters += [f"exp names {args.exp_names}"] if args.exp_names else []
        with_filters = f" with {' and '.join(filters)}" if filters else ""
        sys.exit(f"plot.py: error: no runs under '{args.runs_dir}'{with_filters} log the tag '{args.tag}'")

    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.env_id, run.exp_name)].append(run)
    env_ids = sorted({env_id for env_id, _ in groups})
    exp_names = sorted({exp_name for _, exp_name in groups})
    # One colour per exp_name across all subplots, so a method reads the same everywhere.
    colours = {name: f"C{i % 10}" for i, name in enumerate(exp_names)}

    ncols = min(args.ncols, len(env_ids))
    nrows = -(-len(env_ids) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.8 * nrows), squeeze=False)
    table = []
    for ax, env_id in zip(axes.flat, env_ids):
        for exp_name in exp_names:
            group = sorted(groups.get((env_id, exp_name), []), key=lambda run: run.seed)
            if not group:
                continue
            grid, values = on_common_grid(group, args.num_points)
            mean, std = values.mean(axis=0), values.std(axis=0)
            low, high = (mean - std, mean + std) if args.band == "std" else (values.min(axis=0), values.max(axis=0))
            label = f"{exp_name} ({len(group)} seeds)"
            if len(grid) == 1:  # a line or a band through one point draws nothing
                ax.errorbar(
                    grid, mean, yerr=[mean - low, high - mean], color=colours[exp_name], marker="o", capsize=4, label=label
                )
            else:
                ax.plot(grid, mean, color=colours[exp_name], label=label)
                ax.fill_between(grid, low, high, color=colours[exp_name], alpha=0.2, linewidth=0)
            table.append((env_id, exp_name, len(group), grid[-1], mean[-1], std[-1]))
        ax.set_title(env_id)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(args.tag)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes.flat[len(env_ids) :]:
        ax.set_visible(False)
    band = "± std" if args.band == "std" else "min-max"
    fig.suptitle(f"{args.tag}: mean across seeds, band {band}")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")

    # Markdown, so it pastes straight into a README.
    print(f"\n| env_id | exp_name | seeds | step | final {args.tag} (mean ± std) |")
    print("|---|---|---|---|---|")
    for env_id, exp_name, num_seeds, step, mean, std in table:
        print(f"| {env_id} | {exp_name} | {num_seeds} | {step:.0f} | {mean:.2f} ± {std:.2f} |")


if __name__ == "__main__":
    main()
