"""Plot learning curves of HASAC runs from their TensorBoard logs, and tabulate their results.

Runs are grouped by (env_id, exp_name), parsed from the run directory name
`{env_id}__{exp_name}__{seed}__{unix_time}` that the hasac_*.py scripts write (with a `_2`, `_3`, ...
suffix when a run with the same name started in the same second: a run of its own). Each group is
drawn as its mean across seeds with a std (or min-max) band, one subplot per env id; a group whose
runs share only one logged step (a short run with a single evaluation) is drawn as a point with an error bar.

A second figure, `<stem>_time.png` beside `--out`, draws the same curves against the run's wall-clock time (hours, or
minutes when every run is shorter than 2 h), as CleanRL does. A run interrupted and resumed into the same directory
has one event file per start: its time excludes the downtime between the last event of one file and the first event
of the next, and steps a later file logs again (steps going backwards, TensorBoard's purge_step) keep the later
file's values. Run time is measured from the first logged scalar (any tag); a writer's header event is not counted.

The Markdown table of results (mean ± std over seeds at the last step all seeds reach; with `--at-steps`, also at
each listed step) is printed and written to `<stem>.md`; `--reference` adds rows of published numbers at those steps.

    python benchmark/plot.py runs --out mamujoco.png
    python benchmark/plot.py runs --tag charts/episodic_return --env-ids Ant-4x2 Walker2d-6x1
    python benchmark/plot.py runs --env-ids simple_spread_v3 --out mpe.png --at-steps 20000 50000 100000 \\
        --reference "simple_spread_v3:official HARL (seed 1)=-61.9,-58.8,-48.3"
"""

import argparse
import math
import os
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # write files only: works on headless machines
import matplotlib.pyplot as plt
import numpy as np
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto import event_pb2
from tensorboard.util import tensor_util

REFERENCE_MARKERS = ["X", "P", "D", "s", "^", "v", "*"]


@dataclass
class Run:
    env_id: str
    exp_name: str
    seed: int
    steps: np.ndarray  # strictly increasing global env steps
    values: np.ndarray
    times: np.ndarray  # run time in seconds at each step (downtime between event files excluded), non-decreasing


@dataclass
class Reference:
    env_id: str | None  # None: every env id
    label: str
    values: list[float]  # one per --at-steps step; nan where not given
    text: str  # as given on the command line, for error messages


def int_at_least(minimum: int):
    """argparse type: an integer >= minimum, with a one-line error otherwise."""

    def integer(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    return integer


def env_step(text: str) -> int:
    """argparse type: a whole number of env steps >= 0, also written as 1e6 or 2.5e5."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of steps, got '{text}'") from None
    if not value.is_integer() or value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of steps >= 0, got '{text}'")
    return int(value)


def reference(text: str) -> Reference:
    """argparse type: `[ENV_ID:]LABEL=V1,V2,...` (a value may be `n/a` or empty: not drawn, shown as n/a)."""
    left, equals, right = text.rpartition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"expected [ENV_ID:]LABEL=V1,V2,..., got '{text}'")
    env_id, colon, label = left.partition(":")
    env_id, label = (env_id.strip(), label.strip()) if colon else (None, left.strip())
    if not label or env_id == "":
        raise argparse.ArgumentTypeError(f"expected [ENV_ID:]LABEL=V1,V2,... with a non-empty label, got '{text}'")
    values = []
    for item in right.split(","):
        item = item.strip()
        try:
            values.append(math.nan if item.lower() in ("", "n/a", "nan") else float(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{item}' in '{text}' is not a number") from None
    return Reference(env_id, label, values, text)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "runs_dir", nargs="?", default="runs", help="directory searched (recursively) for run directories (default: runs)"
    )
    parser.add_argument(
        "--tag", default="eval/episodic_return", help="TensorBoard scalar tag to plot (default: eval/episodic_return)"
    )
    parser.add_argument(
        "--out",
        default="hasac.png",
        help="output image path (default: hasac.png); <stem>_time.png and the table <stem>.md are written beside it",
    )
    parser.add_argument("--env-ids", nargs="+", help="plot only these env ids (default: all found)")
    parser.add_argument("--exp-names", nargs="+", help="plot only these exp names (default: all found)")
    parser.add_argument("--band", choices=["std", "minmax"], default="std", help="shaded band across seeds (default: std)")
    parser.add_argument(
        "--num-points", type=int_at_least(2), default=200, help="points on the common step grid (default: 200)"
    )
    parser.add_argument("--ncols", type=int_at_least(1), default=3, help="subplots per row (default: 3)")
    parser.add_argument("--title", help="the figures' suptitle (default: the tag and the band)")
    parser.add_argument(
        "--at-steps",
        nargs="+",
        type=env_step,
        default=[],
        metavar="STEP",
        help="table columns at these env steps (each run interpolated there; n/a where a seed did not reach it)",
    )
    parser.add_argument(
        "--reference",
        action="append",
        type=reference,
        default=[],
        metavar="[ENV_ID:]LABEL=V1,V2,...",
        help="a table row (and markers on the step plot) of values at the --at-steps steps, e.g. a paper's numbers;"
        " for one env id with the prefix, every env id without it; repeatable",
    )
    return parser.parse_args()


def parse_run_name(name: str) -> tuple[str, str, int] | None:
    """(env_id, exp_name, seed) from `{env_id}__{exp_name}__{seed}__{unix_time}` (unix_time may end in `_2`...), or None."""
    parts = name.split("__")
    if len(parts) < 4 or not parts[-2].isdigit() or not re.fullmatch(r"\d+(_\d+)?", parts[-1]):
        return None
    # Split from both ends so an exp_name containing "__" still parses.
    return parts[0], "__".join(parts[1:-2]), int(parts[-2])


def event_files(run_dir: str) -> list[str]:
    """The run's event files in the order they were written: by their first event's wall time, then name."""
    keyed = []
    for name in os.listdir(run_dir):
        path = os.path.join(run_dir, name)
        if name.startswith("events.out.tfevents") and os.path.isfile(path):
            first = next(iter(EventFileLoader(path).Load()), None)
            if first is not None:  # an empty file (a writer killed before its first flush) adds nothing
                keyed.append((first.wall_time, name, path))
    return [path for *_, path in sorted(keyed)]


def scalar_value(value) -> float | None:
    """The float of a scalar summary value (EventFileLoader gives every scalar in the tensor form), else None."""
    if value.metadata.plugin_data.plugin_name != "scalars":
        return None
    return float(tensor_util.make_ndarray(value.tensor).item())


def load_scalar(run_dir: str, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """(steps, values, run times in seconds) of one tag, or the reason to skip the run.

    The event files are read one by one, in the order they were written (a resumed run adds one per start):
    - run time: each file's time counts from its own first logged scalar (any tag), carried on from where the
      previous file's last scalar left off, so the downtime between two files is not counted;
    - re-logged steps: when a file logs the tag at steps an earlier file had reached, the earlier file's points at
      and after the new file's first step are dropped (TensorBoard's purge of orphaned data), and so are points at
      or after a SessionLog.START step (SummaryWriter's purge_step).
    """
    kept: list[tuple[float, float, float]] = []  # (step, value, run time), earlier files
    offset, logged_anything = 0.0, False
    for path in event_files(run_dir):
        current: list[tuple[float, float, float]] = []
        first_wall = last_wall = None
        for event in EventFileLoader(path).Load():
            if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
                kept = [point for point in kept if point[0] < event.step]
                current = [point for point in current if point[0] < event.step]
            if not event.HasField("summary") or not event.summary.value:
                continue
            logged_anything = True
            first_wall = event.wall_time if first_wall is None else first_wall
            last_wall = event.wall_time
            for value in event.summary.value:
                if value.tag == tag and (scalar := scalar_value(value)) is not None:
                    current.append((float(event.step), scalar, offset + event.wall_time - first_wall))
        if current:
            first_step = min(point[0] for point in current)
            kept = [point for point in kept if point[0] < first_step] + current
        if first_wall is not None:
            offset += last_wall - first_wall
    if not kept:
        return f"no '{tag}' scalars" if logged_anything else "no logged events"
    steps, values, times = (np.array(column, dtype=np.float64) for column in zip(*kept))
    # Several episodes can end at the same global step (parallel envs with equal episode
    # lengths); interpolation needs one value per step, so average them (the time: when the last was logged).
    unique_steps, index = np.unique(steps, return_inverse=True)
    mean_values = np.bincount(index, weights=values) / np.bincount(index)
    step_times = np.full(len(unique_steps), -np.inf)
    np.maximum.at(step_times, index, times)
    return unique_steps, mean_values, np.maximum.accumulate(step_times)


def find_runs(args: argparse.Namespace) -> tuple[list[Run], list[str]]:
    """The runs that log the tag, and the reason each other run dir was skipped (runs filtered out are not skipped)."""
    runs, skipped = [], []
    for directory, _, files in sorted(os.walk(args.runs_dir)):
        if not any(f.startswith("events.out.tfevents") for f in files):
            continue
        parsed = parse_run_name(os.path.basename(directory))
        if parsed is None:
            reason = "name is not env_id__exp_name__seed__time"
        else:
            env_id, exp_name, seed = parsed
            if (args.env_ids and env_id not in args.env_ids) or (args.exp_names and exp_name not in args.exp_names):
                continue
            scalar = load_scalar(directory, args.tag)
            if not isinstance(scalar, str):
                runs.append(Run(env_id, exp_name, seed, *scalar))
                continue
            reason = scalar
        print(f"skipping {directory}: {reason}", file=sys.stderr)
        skipped.append(reason)
    return runs, skipped


def skipped_summary(skipped: list[str]) -> str:
    """One line: `skipped K run dirs (N reason, ...)`."""
    counts = ", ".join(f"{count} {reason}" for reason, count in Counter(skipped).items())
    return f"skipped {len(skipped)} run dir{'s' if len(skipped) != 1 else ''} ({counts})"


def common_grid(xs: list[np.ndarray], ys: list[np.ndarray], num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate curves onto one grid over the x range all of them cover: (grid [P], values [curves, P])."""
    start, end = max(x[0] for x in xs), min(x[-1] for x in xs)
    grid = np.linspace(start, end, num_points) if end > start else np.array([end])
    return grid, np.stack([np.interp(grid, x, y) for x, y in zip(xs, ys)])


def on_common_grid(runs: list[Run], num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate every run onto one step grid: (grid [P], values [seeds, P]).

    The grid spans only the steps all runs cover, so every point averages the same seeds.
    """
    # Warn only when a seed stopped well short (crashed or still running), not for the
    # small offsets that different logging grids give.
    if min(run.steps[-1] for run in runs) < 0.9 * max(run.steps[-1] for run in runs):
        lengths = ", ".join(f"seed {run.seed}: {run.steps[-1]:.0f}" for run in runs)
        print(f"note: {runs[0].env_id}/{runs[0].exp_name} truncated to the shortest run ({lengths})", file=sys.stderr)
    return common_grid([run.steps for run in runs], [run.values for run in runs], num_points)


def at_step(runs: list[Run], step: int) -> tuple[float, float] | None:
    """(mean, std) over seeds of each run interpolated at `step`, or None when a seed's steps do not cover it."""
    if any(not run.steps[0] <= step <= run.steps[-1] for run in runs):
        return None
    values = np.array([np.interp(step, run.steps, run.values) for run in runs])
    return values.mean(), values.std()


def time_unit(runs: list[Run]) -> tuple[str, float]:
    """(unit, seconds per unit) for the time axis: hours, or minutes when every run is shorter than 2 h."""
    return ("minutes", 60.0) if max(run.times[-1] for run in runs) < 2 * 3600 else ("hours", 3600.0)


def draw(ax, grid: np.ndarray, values: np.ndarray, band: str, colour: str, label: str) -> None:
    """Mean over seeds with a band; a point with an error bar when the grid is a single point."""
    mean, std = values.mean(axis=0), values.std(axis=0)
    low, high = (mean - std, mean + std) if band == "std" else (values.min(axis=0), values.max(axis=0))
    if len(grid) == 1:  # a line or a band through one point draws nothing
        ax.errorbar(grid, mean, yerr=[mean - low, high - mean], color=colour, marker="o", capsize=4, label=label)
    else:
        ax.plot(grid, mean, color=colour, label=label)
        ax.fill_between(grid, low, high, color=colour, alpha=0.2, linewidth=0)


def subplots(num_axes: int, ncols: int):
    ncols = min(ncols, num_axes)
    nrows = -(-num_axes // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.8 * nrows), squeeze=False)
    for ax in axes.flat[num_axes:]:
        ax.set_visible(False)
    return fig, axes.flat[:num_axes]


def cell(mean_std: tuple[float, float] | None) -> str:
    return "n/a" if mean_std is None else f"{mean_std[0]:.2f} ± {mean_std[1]:.2f}"


def markdown_table(args, groups, env_ids, exp_names, finals, skipped) -> str:
    """The results table, one row per (env_id, exp_name) and per reference, with notes under it."""
    at_headers = "".join(f" at {step} |" for step in args.at_steps)
    lines = [
        f"| env_id | exp_name | seeds |{at_headers} step | final {args.tag} (mean ± std) |",
        "|---|---|---|" + "---|" * len(args.at_steps) + "---|---|",
    ]
    short = []  # seeds that stop before a listed step
    for env_id in env_ids:
        for exp_name in exp_names:
            group = groups.get((env_id, exp_name))
            if not group:
                continue
            ats = [at_step(group, step) for step in args.at_steps]
            if None in ats:
                short += [
                    f"{env_id}/{exp_name} seed {run.seed} logged steps {run.steps[0]:.0f}-{run.steps[-1]:.0f}"
                    for run in group
                    if not all(run.steps[0] <= step <= run.steps[-1] for step in args.at_steps)
                ]
            at_cells = "".join(f" {cell(value)} |" for value in ats)
            step, mean, std = finals[(env_id, exp_name)]
            lines.append(f"| {env_id} | {exp_name} | {len(group)} |{at_cells} {step:.0f} | {cell((mean, std))} |")
        for ref in args.reference:
            if ref.env_id in (None, env_id):
                label = ref.label.replace("|", "\\|")  # a `|` would end the cell
                values = "".join(" n/a |" if math.isnan(value) else f" {value:.2f} |" for value in ref.values)
                lines.append(f"| {env_id} | {label} | |{values} | |")
    notes = []
    if args.at_steps:
        notes.append(
            f"`at N`: {args.tag} of each run interpolated at env step N, mean ± std over seeds; `step`: the last step all"
            " seeds reach, where `final` is taken."
        )
    if short:
        notes.append("n/a: some seed's logged steps do not cover that step (" + "; ".join(short) + ").")
    if args.reference:
        notes.append("Rows without a seed count are references given with --reference.")
    if skipped:
        notes.append(f"Note: {skipped_summary(skipped)}.")
    return "\n".join(lines) + "".join(f"\n\n{note}" for note in notes) + "\n"


def main() -> None:
    args = parse_args()
    if args.reference and not args.at_steps:
        sys.exit("plot.py: error: --reference needs --at-steps (the steps its values are at)")
    for ref in args.reference:
        if len(ref.values) != len(args.at_steps):
            sys.exit(
                f"plot.py: error: --reference '{ref.text}' has {len(ref.values)} values but --at-steps lists "
                f"{len(args.at_steps)} steps"
            )
    if not os.path.isdir(args.runs_dir):
        sys.exit(f"plot.py: error: runs directory '{args.runs_dir}' does not exist")
    runs, skipped = find_runs(args)
    if not runs:
        filters = [f"env ids {args.env_ids}"] if args.env_ids else []
        filters += [f"exp names {args.exp_names}"] if args.exp_names else []
        with_filters = f" with {' and '.join(filters)}" if filters else ""
        if skipped:
            print(skipped_summary(skipped), file=sys.stderr)
        sys.exit(f"plot.py: error: no runs under '{args.runs_dir}'{with_filters} log the tag '{args.tag}'")

    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.env_id, run.exp_name)].append(run)
    for group in groups.values():
        group.sort(key=lambda run: run.seed)
    env_ids = sorted({env_id for env_id, _ in groups})
    exp_names = sorted({exp_name for _, exp_name in groups})
    for ref in args.reference:
        if ref.env_id is not None and ref.env_id not in env_ids:
            sys.exit(f"plot.py: error: --reference '{ref.text}' is for env id '{ref.env_id}', not among {env_ids}")
    # One colour per exp_name across all subplots, so a method reads the same everywhere.
    colours = {name: f"C{i % 10}" for i, name in enumerate(exp_names)}
    unit, seconds_per_unit = time_unit(runs)

    fig, axes = subplots(len(env_ids), args.ncols)
    time_fig, time_axes = subplots(len(env_ids), args.ncols)
    finals = {}
    for ax, time_ax, env_id in zip(axes, time_axes, env_ids):
        for exp_name in exp_names:
            group = groups.get((env_id, exp_name))
            if not group:
                continue
            label = f"{exp_name} ({len(group)} seed{'' if len(group) == 1 else 's'})"
            grid, values = on_common_grid(group, args.num_points)
            draw(ax, grid, values, args.band, colours[exp_name], label)
            finals[(env_id, exp_name)] = (grid[-1], values[:, -1].mean(), values[:, -1].std())
            times = [run.times / seconds_per_unit for run in group]
            time_grid, time_values = common_grid(times, [run.values for run in group], args.num_points)
            draw(time_ax, time_grid, time_values, args.band, colours[exp_name], label)
        refs = [ref for ref in args.reference if ref.env_id in (None, env_id)]
        for i, ref in enumerate(refs):
            ax.plot(
                args.at_steps,
                ref.values,
                linestyle="none",
                marker=REFERENCE_MARKERS[i % len(REFERENCE_MARKERS)],
                color="black",
                label=ref.label,
                zorder=3,
            )
        for axis, xlabel in ((ax, "environment steps"), (time_ax, f"run time ({unit})")):
            axis.set_title(env_id)
            axis.set_xlabel(xlabel)
            axis.set_ylabel(args.tag)
            axis.grid(alpha=0.3)
            axis.legend(fontsize="small")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    band = "± std" if args.band == "std" else "min-max"
    title = args.title if args.title is not None else f"{args.tag}: mean across seeds, band {band}"
    stem, ext = os.path.splitext(args.out)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    for figure, path in ((fig, args.out), (time_fig, f"{stem}_time{ext}")):
        figure.suptitle(title)
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        print(f"wrote {path}")

    # Markdown, so it pastes straight into a README.
    table = markdown_table(args, groups, env_ids, exp_names, finals, skipped)
    print(f"\n{table}")
    with open(f"{stem}.md", "w") as file:
        file.write(table)
    print(f"wrote {stem}.md")
    if skipped:
        print(skipped_summary(skipped), file=sys.stderr)


if __name__ == "__main__":
    main()
