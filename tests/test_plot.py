"""Tests for benchmark/plot.py on real TensorBoard logs: run names with the collision suffix, groups with a single
logged step (a short run's one evaluation) drawn as points instead of nothing, resumed runs (several event files: run
time without the downtime, re-logged steps), the wall-clock figure, the Markdown table with --at-steps and
--reference, and the skipped-runs summary."""

import importlib.util
import sys

import matplotlib.pyplot as plt
import pytest
from conftest import ROOT
from torch.utils.tensorboard import SummaryWriter

spec = importlib.util.spec_from_file_location("plot", ROOT / "benchmark" / "plot.py")
plot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot)


def _write_run(path, points, tag="eval/episodic_return"):
    """One event file; points are (step, value) or (step, value, walltime)."""
    writer = SummaryWriter(str(path))
    for step, value, *walltime in points:
        writer.add_scalar(tag, value, step, walltime=walltime[0] if walltime else None)
    writer.close()


def _run_main(monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["plot.py", *map(str, argv)])
    plot.main()


def test_parse_run_name_accepts_the_collision_suffix():
    assert plot.parse_run_name("Ant-4x2__hasac_continuous__1__1700000000") == ("Ant-4x2", "hasac_continuous", 1)
    assert plot.parse_run_name("Ant-4x2__hasac_continuous__1__1700000000_2") == ("Ant-4x2", "hasac_continuous", 1)
    assert plot.parse_run_name("Ant-4x2__hasac_continuous__1__1700000000_x") is None


def test_single_evaluation_runs_are_drawn_and_suffixed_runs_count(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    _write_run(runs / "3m__hasac_smac__1__1700000000", [(600, 1.0)])
    _write_run(runs / "3m__hasac_smac__1__1700000000_2", [(600, 3.0)])
    _write_run(runs / "8m__hasac_smac__1__1700000001", [(100, 0.0), (200, 2.0)])
    saved = {}
    monkeypatch.setattr(plt.Figure, "savefig", lambda fig, *args, **kwargs: saved.setdefault("fig", fig))
    monkeypatch.setattr(sys, "argv", ["plot.py", str(runs), "--out", str(tmp_path / "out.png")])
    plot.main()
    table = capsys.readouterr().out
    assert "| 3m | hasac_smac | 2 | 600 | 2.00 ± 1.00 |" in table and "| 8m | hasac_smac | 1 | 200 | 2.00 ± 0.00 |" in table
    single, curve = saved["fig"].axes[:2]
    assert [ax.get_title() for ax in (single, curve)] == ["3m", "8m"]
    drawn = [line for line in single.get_lines() if len(line.get_xdata()) and line.get_marker() not in (None, "None", "")]
    assert any(list(line.get_xdata()) == [600] and list(line.get_ydata()) == [2.0] for line in drawn), "no point drawn for 3m"
    assert len(curve.get_lines()) == 1 and len(curve.get_lines()[0].get_xdata()) == 200


def test_resumed_run_time_excludes_the_downtime_between_event_files(tmp_path):
    run = tmp_path / "simple_spread_v3__hasac__1__1700000000"
    _write_run(run, [(100, 1.0, 1000.0), (200, 2.0, 1060.0), (300, 3.0, 1120.0)])
    # Resumed an hour later into the same dir: a second event file; a loss logged before the first evaluation.
    _write_run(run, [(300, 0.5, 4720.0)], tag="losses/qf1_loss")
    _write_run(run, [(400, 4.0, 4780.0), (500, 5.0, 4840.0)])
    assert len(list(run.iterdir())) == 3
    steps, values, times = plot.load_scalar(str(run), "eval/episodic_return")
    assert list(steps) == [100, 200, 300, 400, 500] and list(values) == [1, 2, 3, 4, 5]
    # File 2 (the loss) has no span, file 3 starts where file 1 ended: 120 s, then 60 s on.
    assert list(times) == [0.0, 60.0, 120.0, 120.0, 180.0]


def test_relogged_steps_of_a_resumed_run_take_the_later_values(tmp_path):
    run = tmp_path / "simple_spread_v3__hasac__1__1700000000"
    _write_run(run, [(100, 1.0, 1000.0), (200, 2.0, 1010.0), (300, 3.0, 1020.0), (400, 4.0, 1030.0)])
    # Resumed from the step-200 checkpoint: steps 200 and 300 logged again, 400 not (yet).
    _write_run(run, [(200, 20.0, 2000.0), (200, 22.0, 2000.0), (300, 30.0, 2010.0)])
    steps, values, times = plot.load_scalar(str(run), "eval/episodic_return")
    assert list(steps) == [100, 200, 300] and list(values) == [1.0, 21.0, 30.0]
    assert list(times) == [0.0, 30.0, 40.0]
    # SummaryWriter's purge_step (a SessionLog.START) drops the steps from there on, here before anything is re-logged.
    writer = SummaryWriter(str(run), purge_step=300)
    writer.add_scalar("losses/qf1_loss", 0.1, 300, walltime=3000.0)
    writer.close()
    steps, values, _ = plot.load_scalar(str(run), "eval/episodic_return")
    assert list(steps) == [100, 200] and list(values) == [1.0, 21.0]


def test_time_figure_is_written_beside_the_step_figure(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    for seed, minutes_per_eval in ((1, 1.0), (2, 2.0)):
        points = [(step, step / 100, 1000.0 + 60 * minutes_per_eval * i) for i, step in enumerate((100, 200, 300))]
        _write_run(runs / f"simple_spread_v3__hasac__{seed}__1700000000", points)
    saved, savefig = [], plt.Figure.savefig
    monkeypatch.setattr(plt.Figure, "savefig", lambda fig, *args, **kwargs: (saved.append(fig), savefig(fig, *args, **kwargs)))
    _run_main(monkeypatch, runs, "--out", tmp_path / "plots" / "mpe.png", "--title", "MPE")
    assert sorted(path.name for path in (tmp_path / "plots").iterdir()) == ["mpe.md", "mpe.png", "mpe_time.png"]
    step_fig, time_fig = saved
    assert step_fig.get_suptitle() == time_fig.get_suptitle() == "MPE"
    time_ax = time_fig.axes[0]
    assert time_ax.get_xlabel() == "run time (minutes)" and step_fig.axes[0].get_xlabel() == "environment steps"
    (line,) = time_ax.get_lines()
    # Seed 1 ends at 2 minutes, seed 2 at 4: the common time range is 0-2 minutes, where seed 2 is half as far.
    assert line.get_xdata()[0] == 0 and line.get_xdata()[-1] == pytest.approx(2.0)
    assert line.get_ydata()[-1] == pytest.approx((3.0 + 2.0) / 2)

    # A run of 3 hours: the axis is in hours.
    _write_run(runs / "simple_spread_v3__hasac__3__1700000000", [(100, 1.0, 0.0), (300, 3.0, 3 * 3600.0)])
    saved.clear()
    _run_main(monkeypatch, runs, "--out", tmp_path / "plots" / "mpe.png")
    assert saved[1].axes[0].get_xlabel() == "run time (hours)"


def test_table_at_steps_with_references_is_written_to_markdown(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    _write_run(runs / "simple_spread_v3__hasac__1__1700000000", [(0, 0.0), (100, 1.0), (200, 2.0), (300, 3.0)])
    _write_run(runs / "simple_spread_v3__hasac__2__1700000000", [(0, 2.0), (100, 3.0), (200, 4.0)])
    _write_run(runs / "simple_tag_v3__hasac__1__1700000000", [(0, 5.0), (300, 8.0)])
    monkeypatch.setattr(plt.Figure, "savefig", lambda *args, **kwargs: None)
    saved = []
    monkeypatch.setattr(plt.Figure, "savefig", lambda fig, *args, **kwargs: saved.append(fig))
    _run_main(
        monkeypatch,
        runs,
        "--out",
        tmp_path / "mpe.png",
        "--at-steps",
        "150",
        "250",
        "--reference",
        "simple_spread_v3:official HARL, seed 1=1.25,n/a",
        "--reference",
        "paper=9,10.5",
    )
    table = (tmp_path / "mpe.md").read_text()
    assert table.startswith(
        "| env_id | exp_name | seeds | at 150 | at 250 | step | final eval/episodic_return (mean ± std) |\n"
        "|---|---|---|---|---|---|---|\n"
        "| simple_spread_v3 | hasac | 2 | 2.50 ± 1.00 | n/a | 200 | 3.00 ± 1.00 |\n"
        "| simple_spread_v3 | official HARL, seed 1 | | 1.25 | n/a | | |\n"
        "| simple_spread_v3 | paper | | 9.00 | 10.50 | | |\n"
        "| simple_tag_v3 | hasac | 1 | 6.50 ± 0.00 | 7.50 ± 0.00 | 300 | 8.00 ± 0.00 |\n"
        "| simple_tag_v3 | paper | | 9.00 | 10.50 | | |\n"
    )
    assert "n/a: some seed's logged steps do not cover that step (simple_spread_v3/hasac seed 2 logged steps 0-200)" in table
    assert table in capsys.readouterr().out
    spread, tag = saved[0].axes[:2]
    markers = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in spread.get_lines()[1:]}
    assert markers.keys() == {"official HARL, seed 1", "paper"} and markers["paper"] == ([150, 250], [9.0, 10.5])
    assert [line.get_label() for line in tag.get_lines()[1:]] == ["paper"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--at-steps", "100", "200", "--reference", "official=1,2,3"], "--reference 'official=1,2,3' has 3 values but"),
        (["--reference", "official=1"], "--reference needs --at-steps"),
        (["--at-steps", "100", "--reference", "Ant-4x2:official=1"], "is for env id 'Ant-4x2', not among ['3m']"),
    ],
)
def test_bad_references_give_a_one_line_error(tmp_path, monkeypatch, argv, message):
    _write_run(tmp_path / "runs" / "3m__hasac_smac__1__1700000000", [(100, 1.0)])
    with pytest.raises(SystemExit) as exit_info:
        _run_main(monkeypatch, tmp_path / "runs", "--out", tmp_path / "out.png", *argv)
    error = str(exit_info.value.code)
    assert error.startswith("plot.py: error: ") and message in error and "\n" not in error


def test_skipped_run_dirs_are_listed_and_summarised(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    _write_run(runs / "3m__hasac_smac__1__1700000000", [(100, 1.0)])
    _write_run(runs / "3m__hasac_smac__2__1700000000", [(100, 1.0)], tag="charts/episodic_return")
    _write_run(runs / "3m__hasac_smac__3__1700000000", [(100, 1.0)], tag="charts/episodic_length")
    _write_run(runs / "not_a_run_name", [(100, 1.0)])
    SummaryWriter(str(runs / "3m__hasac_smac__4__1700000000")).close()  # killed before logging: only the header
    (runs / "3m__hasac_smac__5__1700000000").mkdir()
    (runs / "3m__hasac_smac__5__1700000000" / "events.out.tfevents.1700000000.host.1.0").write_bytes(b"")
    _write_run(runs / "8m__hasac_smac__1__1700000000", [(100, 1.0)])  # filtered out: not skipped
    monkeypatch.setattr(plt.Figure, "savefig", lambda *args, **kwargs: None)
    _run_main(monkeypatch, runs, "--out", tmp_path / "out.png", "--env-ids", "3m")
    err = capsys.readouterr().err.splitlines()
    reasons = "2 no 'eval/episodic_return' scalars, 2 no logged events, 1 name is not env_id__exp_name__seed__time"
    summary = f"skipped 5 run dirs ({reasons})"
    assert err[-1] == summary
    assert sum(line.startswith("skipping ") for line in err) == 5
    assert f"{runs / 'not_a_run_name'}: name is not env_id__exp_name__seed__time" in "\n".join(err)
    assert (tmp_path / "out.md").read_text().endswith(f"\n\nNote: {summary}.\n")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")
