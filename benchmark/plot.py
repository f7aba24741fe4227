"""Plot learning curves of HASAC runs from their TensorBoard logs, and tabulate their results.

Runs are grouped by (env_id, exp_name), parsed from the run directory name
`{env_id}__{exp_name}__{seed}__{unix_time}` that the hasac_*.py scripts write (with a `_2`, `_3`, ...
suffix when a run with the same name started in the same second: a run of its own). Each group is
drawn as its mean across seeds with a band (± the sample std, or min-max) when it has more than one seed, one subplot
per env id; a group whose runs share only one logged step (a short run with a single evaluation) is drawn as a point.
A run interrupted and resumed into the same directory has one event file per start: steps a later file logs again
(steps going backwards, TensorBoard's purge_step) keep the later file's values.

The Markdown table of results (at the last step all seeds reach; with `--at-steps`, also at each listed step) is
printed and written to `<stem>.md`: each cell is the mean over seeds followed by every seed's own value, as
`-45.37 (s1 -44.60, s2 -45.21, s3 -46.30)` (one seed: its value alone). `--reference` adds rows of published numbers
at those steps, of one run or of several seeds (separated by `;`).

Each run directory's `code_version.txt` (one line `{UTC time} {version} {global_step}` per start or resume, written
by hasac_utils/runs.py) names the code that made it; the table says which code and when the runs started, and runs
of different code versions are not combined unless `--allow-mixed-versions` is given.

    python benchmark/plot.py runs --out mamujoco.png
    python benchmark/plot.py runs --tag charts/episodic_return --env-ids Ant-4x2 Walker2d-6x1
    python benchmark/plot.py runs --env-ids simple_spread_v3 --out mpe.png --at-steps 20000 50000 100000 \\
        --reference "simple_spread_v3:official HARL (seed 1)=-61.9,-58.8,-48.3" \\
        --reference "simple_spread_v3:my baseline (seeds 1-3)=-60,-55,-50;-62,-57,-49;-61,-56,-51"
"""

import argparse
import math
import os
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")  # write files only: works on headless machines
import matplotlib.pyplot as plt
import numpy as np
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto import event_pb2
from tensorboard.util import tensor_util

REFERENCE_MARKERS = ["X", "P", "D", "s", "^", "v", "*"]
CODE_VERSION_FILE = "code_version.txt"  # written by hasac_utils/runs.py record_code_version
UNKNOWN_VERSION = "unknown"  # a run without the file, or one started outside a git checkout
MODIFIED_SUFFIX = "+modified"  # tracked files differed from the commit


@dataclass
class CodeVersion:
    """What a run's code_version.txt says: the code of each start or resume, and when."""

    versions: list[str]  # one per start or resume, in order; [UNKNOWN_VERSION] without the file
    has_file: bool
    first_start: datetime | None = None  # UTC; None without the file
    last_start: datetime | None = None  # the last start or resume


@dataclass
class Run:
    env_id: str
    exp_name: str
    seed: int
    steps: np.ndarray  # strictly increasing global env steps
    values: np.ndarray
    name: str  # the run directory's name
    code: CodeVersion


@dataclass
class Reference:
    env_id: str | None  # None: every env id
    label: str
    seeds: list[list[float]]  # per seed, in the order given (`;` between seeds): one per --at-steps step; nan: not given
    values: list[float]  # per step, the mean over seeds (nan where a seed's value is not given): what the figure draws
    text: str  # as given on the command line, for error messages


def fail(message: str) -> None:
    """Exit as argparse does on a usage error: one `plot.py: error: ...` line on stderr, exit status 2."""
    print(f"plot.py: error: {message}", file=sys.stderr)
    sys.exit(2)


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
    """argparse type: `[ENV_ID:]LABEL=V1,V2,...`, or `...=V1,V2,...;V1,V2,...;...` for several seeds (a value may be
    `n/a`, `nan` or empty: not given, shown as n/a)."""
    left, equals, right = text.rpartition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"expected [ENV_ID:]LABEL=V1,V2,...[;V1,V2,...], got '{text}'")
    env_id, colon, label = left.partition(":")
    env_id, label = (env_id.strip(), label.strip()) if colon else (None, left.strip())
    if not label or env_id == "":
        raise argparse.ArgumentTypeError(f"expected [ENV_ID:]LABEL=V1,V2,... with a non-empty label, got '{text}'")
    seeds = []
    for seed_text in right.split(";"):
        if ";" in right and not seed_text.strip():
            raise argparse.ArgumentTypeError(f"a seed without values (empty between `;`) in '{text}'")
        values = []
        for item in seed_text.split(","):
            item = item.strip()
            try:
                values.append(math.nan if item.lower() in ("", "n/a", "nan") else float(item))
            except ValueError:
                raise argparse.ArgumentTypeError(f"'{item}' in '{text}' is not a number") from None
        seeds.append(values)
    if len({len(values) for values in seeds}) > 1:
        counts = ", ".join(str(len(values)) for values in seeds)
        raise argparse.ArgumentTypeError(f"the seeds in '{text}' have different numbers of values ({counts})")
    # A seed without a value at a step leaves the mean undefined there: nan, like a run that stopped short.
    means = seeds[0] if len(seeds) == 1 else [float(np.mean(column)) for column in zip(*seeds)]
    return Reference(env_id, label, seeds, means, text)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "runs_dir", nargs="?", default="runs", help="directory searched (recursively) for run directories (default: runs)"
    )
    parser.add_argument(
        "--tag", default="eval/episodic_return", help="TensorBoard scalar tag to plot (default: eval/episodic_return)"
    )
    parser.add_argument(
        "--out", default="hasac.png", help="output image path (default: hasac.png); the table <stem>.md is written beside it"
    )
    parser.add_argument("--env-ids", nargs="+", help="plot only these env ids (default: all found)")
    parser.add_argument("--exp-names", nargs="+", help="plot only these exp names (default: all found)")
    parser.add_argument(
        "--band",
        choices=["std", "minmax"],
        default="std",
        help="shaded band across seeds: mean ± sample std (ddof 1), or min-max; none for a single seed (default: std)",
    )
    parser.add_argument(
        "--num-points", type=int_at_least(2), default=200, help="points on the common step grid (default: 200)"
    )
    parser.add_argument("--ncols", type=int_at_least(1), default=3, help="subplots per row (default: 3)")
    parser.add_argument("--title", help="the figure's suptitle (default: the tag)")
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
        metavar="[ENV_ID:]LABEL=V1,V2,...[;V1,V2,...]",
        help="a table row (and markers on the plot) of values at the --at-steps steps, e.g. a paper's numbers; several"
        " seeds separated by `;` (the row gives their mean and each, the plot their mean); for one env id with the"
        " prefix, every env id without it; repeatable",
    )
    parser.add_argument(
        "--allow-mixed-versions",
        action="store_true",
        help="combine runs of different code versions (code_version.txt) instead of refusing; the table lists each",
    )
    return parser.parse_args()


def parse_run_name(name: str) -> tuple[str, str, int] | None:
    """(env_id, exp_name, seed) from `{env_id}__{exp_name}__{seed}__{unix_time}` (unix_time may end in `_2`...), or None."""
    parts = name.split("__")
    if len(parts) < 4 or not parts[-2].isdigit() or not re.fullmatch(r"\d+(_\d+)?", parts[-1]):
        return None
    # Split from both ends so an exp_name containing "__" still parses.
    return parts[0], "__".join(parts[1:-2]), int(parts[-2])


def read_code_version(run_dir: str) -> CodeVersion:
    """The run's code_version.txt: `{UTC ISO time} {version} {global_step}` per start or resume; `unknown` without it.

    A line that does not read so is an error: a result whose code cannot be named should not pass as known."""
    path = os.path.join(run_dir, CODE_VERSION_FILE)
    if not os.path.isfile(path):
        return CodeVersion([UNKNOWN_VERSION], has_file=False)
    versions, times = [], []
    with open(path) as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            fields = line.split()
            try:
                if len(fields) != 3 or not fields[2].isdigit():
                    raise ValueError
                started = datetime.fromisoformat(fields[0])
            except ValueError:
                fail(f"{path} line {number} is not '{{UTC time}} {{version}} {{global_step}}': {line.strip()!r}")
            # The file's times are UTC (`...Z`); one written without a zone is read as UTC too.
            times.append(started.astimezone(timezone.utc) if started.tzinfo else started.replace(tzinfo=timezone.utc))
            versions.append(fields[1])
    if not versions:  # created but never written to: nothing to name the code by
        return CodeVersion([UNKNOWN_VERSION], has_file=True)
    return CodeVersion(versions, has_file=True, first_start=times[0], last_start=times[-1])


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


def load_scalar(run_dir: str, tag: str) -> tuple[np.ndarray, np.ndarray] | str:
    """(steps, values) of one tag, or the reason to skip the run.

    The event files are read one by one, in the order they were written (a resumed run adds one per start). When a
    file logs the tag at steps an earlier file had reached, the earlier file's points at and after the new file's first
    step are dropped (TensorBoard's purge of orphaned data), and so are points at or after a SessionLog.START step
    (SummaryWriter's purge_step).
    """
    kept: list[tuple[float, float]] = []  # (step, value), earlier files
    logged_anything = False
    for path in event_files(run_dir):
        current: list[tuple[float, float]] = []
        for event in EventFileLoader(path).Load():
            if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
                kept = [point for point in kept if point[0] < event.step]
                current = [point for point in current if point[0] < event.step]
            if not event.HasField("summary") or not event.summary.value:
                continue
            logged_anything = True
            for value in event.summary.value:
                if value.tag == tag and (scalar := scalar_value(value)) is not None:
                    current.append((float(event.step), scalar))
        if current:
            first_step = min(point[0] for point in current)
            kept = [point for point in kept if point[0] < first_step] + current
    if not kept:
        return f"no '{tag}' scalars" if logged_anything else "no logged events"
    steps, values = (np.array(column, dtype=np.float64) for column in zip(*kept))
    # Several episodes can end at the same global step (parallel envs with equal episode
    # lengths); interpolation needs one value per step, so average them.
    unique_steps, index = np.unique(steps, return_inverse=True)
    return unique_steps, np.bincount(index, weights=values) / np.bincount(index)


def find_runs(args: argparse.Namespace) -> tuple[list[Run], list[str]]:
    """The runs that log the tag, and the reason each other run dir was skipped (runs filtered out are not skipped)."""
    runs, skipped = [], []
    for directory, _, files in sorted(os.walk(args.runs_dir)):
        if not any(f.startswith("events.out.tfevents") for f in files):
            continue
        name = os.path.basename(directory)
        parsed = parse_run_name(name)
        if parsed is None:
            reason = "name is not env_id__exp_name__seed__time"
        else:
            env_id, exp_name, seed = parsed
            if (args.env_ids and env_id not in args.env_ids) or (args.exp_names and exp_name not in args.exp_names):
                continue
            scalar = load_scalar(directory, args.tag)
            if not isinstance(scalar, str):
                runs.append(Run(env_id, exp_name, seed, *scalar, name, read_code_version(directory)))
                continue
            reason = scalar
        print(f"skipping {directory}: {reason}", file=sys.stderr)
        skipped.append(reason)
    return runs, skipped


def skipped_summary(skipped: list[str]) -> str:
    """One line: `skipped K run dirs (N reason, ...)`."""
    counts = ", ".join(f"{count} {reason}" for reason, count in Counter(skipped).items())
    return f"skipped {len(skipped)} run dir{'s' if len(skipped) != 1 else ''} ({counts})"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def version_counts(runs: list[Run]) -> Counter:
    """How many runs have each code version (a run resumed on other code counts under each of its versions)."""
    return Counter(version for run in runs for version in dict.fromkeys(run.code.versions))


def check_versions(runs: list[Run], allow_mixed: bool) -> None:
    """Refuse to combine runs of different code: their differences would read as seed variance or a method's effect."""
    counts = version_counts(runs)
    if len(counts) <= 1 or allow_mixed:  # no runs: the caller's own error says so
        return
    found = ", ".join(f"{version} ({plural(count, 'run')})" for version, count in counts.most_common())
    resumed = [run.name for run in runs if len(set(run.code.versions)) > 1]
    also = f"; resumed on other code: {', '.join(resumed)}" if resumed else ""
    fail(f"runs of different code versions: {found}{also}; pass --allow-mixed-versions to combine them anyway")


def describe_version(version: str, runs: list[Run]) -> str:
    """`code 5ea4637 (clean)`, `code 5ea4637 (modified tracked files)` or `code version unknown (why)`."""
    if version != UNKNOWN_VERSION:
        modified = version.endswith(MODIFIED_SUFFIX)
        commit = version.removesuffix(MODIFIED_SUFFIX)
        return f"code {commit} ({'modified tracked files' if modified else 'clean'})"
    unknown = [run for run in runs if UNKNOWN_VERSION in run.code.versions]
    reasons = ["runs without code_version.txt"] if any(not run.code.has_file for run in unknown) else []
    reasons += ["runs started outside a git checkout"] if any(run.code.has_file for run in unknown) else []
    return f"code version unknown ({' or '.join(reasons)})"


def runs_note(runs: list[Run]) -> str:
    """`Runs: code 5ea4637 (clean), started 2026-12-06 to 2026-12-06 (UTC), 17 runs.`: which code, and when."""
    counts = version_counts(runs)
    if len(counts) == 1:
        code = describe_version(next(iter(counts)), runs)
    else:
        each = ", ".join(f"{describe_version(version, runs)} in {plural(count, 'run')}" for version, count in counts.items())
        resumed = sum(len(set(run.code.versions)) > 1 for run in runs)
        also = f" ({plural(resumed, 'run')} resumed on other code, counted under each)" if resumed else ""
        code = f"mixed code versions (--allow-mixed-versions): {each}{also}"
    # Mixed versions list their runs with commas: semicolons keep the dates and the total apart from that list.
    separator = "; " if len(counts) > 1 else ", "
    parts = [f"Runs: {code}"]
    dated = [run.code for run in runs if run.code.first_start is not None]
    if dated:
        first, last = min(code.first_start for code in dated), max(code.first_start for code in dated)
        dates = f"started {first:%Y-%m-%d} to {last:%Y-%m-%d}"
        if any(code.last_start > code.first_start for code in dated):  # a run resumed after its start
            dates += f", last resumed {max(code.last_start for code in dated):%Y-%m-%d}"
        undated = len(runs) - len(dated)
        without = f"; {plural(undated, 'run')} without dates" if undated else ""
        parts.append(f"{dates} (UTC{without})")
    return separator.join(parts + [plural(len(runs), "run")]) + "."


def on_common_grid(runs: list[Run], num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate every run onto one step grid: (grid [P], values [seeds, P]).

    The grid spans only the steps all runs cover, so every point averages the same seeds.
    """
    # Warn only when a seed stopped well short (crashed or still running), not for the
    # small offsets that different logging grids give.
    if min(run.steps[-1] for run in runs) < 0.9 * max(run.steps[-1] for run in runs):
        lengths = ", ".join(f"seed {run.seed}: {run.steps[-1]:.0f}" for run in runs)
        print(f"note: {runs[0].env_id}/{runs[0].exp_name} truncated to the shortest run ({lengths})", file=sys.stderr)
    start, end = max(run.steps[0] for run in runs), min(run.steps[-1] for run in runs)
    grid = np.linspace(start, end, num_points) if end > start else np.array([end])
    return grid, np.stack([np.interp(grid, run.steps, run.values) for run in runs])


def at_step(runs: list[Run], step: int) -> np.ndarray | None:
    """Each run's value interpolated at `step` (in the runs' order), or None when a seed's steps do not cover it."""
    if any(not run.steps[0] <= step <= run.steps[-1] for run in runs):
        return None
    return np.array([np.interp(step, run.steps, run.values) for run in runs])


def draw(ax, grid: np.ndarray, values: np.ndarray, band: str, colour: str, label: str) -> None:
    """Mean over seeds with a band (none for one seed: there is no spread to show); a point when the grid is one step."""
    mean = values.mean(axis=0)
    if len(values) == 1:
        ax.plot(grid, mean, color=colour, label=label, marker="o" if len(grid) == 1 else None)
        return
    if band == "std":  # the sample std: a few seeds are a sample, and numpy's default (ddof 0) understates it
        std = values.std(axis=0, ddof=1)
        low, high = mean - std, mean + std
    else:
        low, high = values.min(axis=0), values.max(axis=0)
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


def cell(values: np.ndarray | None, labels: list[str]) -> str:
    """`mean (label value, ...)` over seeds, e.g. `2.50 (s1 1.50, s2 3.50)`; one seed's value alone; n/a for None.

    Every seed's value rather than a std: from the few seeds these runs have, a std is a poor estimate, while the
    values themselves show the spread and any outlier."""
    if values is None:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    each = ", ".join(f"{label} {value:.2f}" for label, value in zip(labels, values))
    return f"{values.mean():.2f} ({each})"


def reference_cell(ref: Reference, index: int) -> str:
    """A reference's cell at its index-th step, formatted like the runs' (n/a where a seed's value is not given)."""
    values = np.array([seed[index] for seed in ref.seeds])
    labels = [f"s{i}" for i in range(1, len(ref.seeds) + 1)]  # the order given: the label says which seeds
    return cell(None if np.isnan(values).any() else values, labels)


def markdown_table(args, groups, env_ids, exp_names, finals, runs, skipped) -> str:
    """The results table, one row per (env_id, exp_name) and per reference, with notes under it."""
    at_headers = "".join(f" at {step} |" for step in args.at_steps)
    lines = [
        f"| env_id | exp_name | seeds |{at_headers} step | final {args.tag} |",
        "|---|---|---|" + "---|" * len(args.at_steps) + "---|---|",
    ]
    short = []  # seeds that stop before a listed step
    for env_id in env_ids:
        for exp_name in exp_names:
            group = groups.get((env_id, exp_name))
            if not group:
                continue
            labels = [f"s{run.seed}" for run in group]
            ats = [at_step(group, step) for step in args.at_steps]
            if any(values is None for values in ats):
                short += [
                    f"{env_id}/{exp_name} seed {run.seed} logged steps {run.steps[0]:.0f}-{run.steps[-1]:.0f}"
                    for run in group
                    if not all(run.steps[0] <= step <= run.steps[-1] for step in args.at_steps)
                ]
            at_cells = "".join(f" {cell(values, labels)} |" for values in ats)
            seeds = ", ".join(str(run.seed) for run in group)
            step, final = finals[(env_id, exp_name)]
            lines.append(f"| {env_id} | {exp_name} | {seeds} |{at_cells} {step:.0f} | {cell(final, labels)} |")
        for ref in args.reference:
            if ref.env_id in (None, env_id):
                label = ref.label.replace("|", "\\|")  # a `|` would end the cell
                count = f" {len(ref.seeds)} " if len(ref.seeds) > 1 else " "  # empty for a one-seed reference, as before
                values = "".join(f" {reference_cell(ref, index)} |" for index in range(len(args.at_steps)))
                lines.append(f"| {env_id} | {label} |{count}|{values} | |")
    notes = [
        runs_note(runs),
        f"Cells: {args.tag} as the mean over seeds, then each seed's value in seed order (`sN`: seed N), e.g. `2.50 (s1"
        " 1.50, s2 3.50)`; with one seed, its value alone. `seeds`: the seed numbers. `step`: the last step all seeds"
        " reach, where `final` is taken" + ("; `at N`: each run interpolated at env step N." if args.at_steps else "."),
    ]
    if short:
        notes.append("n/a: some seed's logged steps do not cover that step (" + "; ".join(short) + ").")
    if args.reference:
        kinds = []
        if any(len(ref.seeds) == 1 for ref in args.reference):
            kinds.append("with an empty `seeds`, the values as given")
        if any(len(ref.seeds) > 1 for ref in args.reference):
            kinds.append(
                "with a seed count, the mean over those seeds, then each seed's value labelled s1, s2, ... in the order"
                " given (not seed numbers: the label says which seeds), n/a where a seed's value is not given"
            )
        notes.append(f"References (--reference) are the rows named by their label: {'; '.join(kinds)}.")
    if skipped:
        notes.append(f"Note: {skipped_summary(skipped)}.")
    return "\n".join(lines) + "".join(f"\n\n{note}" for note in notes) + "\n"


def main() -> None:
    args = parse_args()
    if args.reference and not args.at_steps:
        fail("--reference needs --at-steps (the steps its values are at)")
    for ref in args.reference:
        if len(ref.values) != len(args.at_steps):  # reference() made every seed's count the same
            per_seed = " per seed" if len(ref.seeds) > 1 else ""
            fail(
                f"--reference '{ref.text}' has {len(ref.values)} values{per_seed} but --at-steps lists "
                f"{len(args.at_steps)} steps"
            )
    if not os.path.isdir(args.runs_dir):
        fail(f"runs directory '{args.runs_dir}' does not exist")
    runs, skipped = find_runs(args)
    if not runs:
        filters = [f"env ids {args.env_ids}"] if args.env_ids else []
        filters += [f"exp names {args.exp_names}"] if args.exp_names else []
        with_filters = f" with {' and '.join(filters)}" if filters else ""
        if skipped:
            print(skipped_summary(skipped), file=sys.stderr)
        fail(f"no runs under '{args.runs_dir}'{with_filters} log the tag '{args.tag}'")
    check_versions(runs, args.allow_mixed_versions)

    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.env_id, run.exp_name)].append(run)
    for group in groups.values():
        group.sort(key=lambda run: run.seed)
    env_ids = sorted({env_id for env_id, _ in groups})
    exp_names = sorted({exp_name for _, exp_name in groups})
    for ref in args.reference:
        if ref.env_id is not None and ref.env_id not in env_ids:
            fail(f"--reference '{ref.text}' is for env id '{ref.env_id}', not among {env_ids}")
    # One colour per exp_name across all subplots, so a method reads the same everywhere.
    colours = {name: f"C{i % 10}" for i, name in enumerate(exp_names)}
    band = "band ± sample std (ddof 1)" if args.band == "std" else "band min-max"

    fig, axes = subplots(len(env_ids), args.ncols)
    finals = {}
    for ax, env_id in zip(axes, env_ids):
        for exp_name in exp_names:
            group = groups.get((env_id, exp_name))
            if not group:
                continue
            # The legend says what the band is, and that a single seed has none.
            label = f"{exp_name}: {plural(len(group), 'seed')}" + (f", {band}" if len(group) > 1 else "")
            grid, values = on_common_grid(group, args.num_points)
            draw(ax, grid, values, args.band, colours[exp_name], label)
            finals[(env_id, exp_name)] = (grid[-1], values[:, -1])
        refs = [ref for ref in args.reference if ref.env_id in (None, env_id)]
        for i, ref in enumerate(refs):
            ax.plot(
                args.at_steps,
                ref.values,  # several seeds: their mean, as the runs' curves are
                linestyle="none",
                marker=REFERENCE_MARKERS[i % len(REFERENCE_MARKERS)],
                color="black",
                label=ref.label if len(ref.seeds) == 1 else f"{ref.label}: mean of {len(ref.seeds)} seeds",
                zorder=3,
            )
        ax.set_title(env_id)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(args.tag)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    fig.suptitle(args.title if args.title is not None else f"{args.tag}: mean across seeds")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")

    # Markdown, so it pastes straight into a README.
    table = markdown_table(args, groups, env_ids, exp_names, finals, runs, skipped)
    print(f"\n{table}")
    stem = os.path.splitext(args.out)[0]
    with open(f"{stem}.md", "w") as file:
        file.write(table)
    print(f"wrote {stem}.md")
    if skipped:
        print(skipped_summary(skipped), file=sys.stderr)


if __name__ == "__main__":
    main()
