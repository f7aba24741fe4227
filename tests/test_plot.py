"""Tests for benchmark/plot.py on real TensorBoard logs: run names with the collision suffix, and groups with a single
logged step (a short run's one evaluation) drawn as points instead of nothing."""

import importlib.util
import sys

import matplotlib.pyplot as plt
import pytest
from conftest import ROOT
from torch.utils.tensorboard import SummaryWriter

spec = importlib.util.spec_from_file_location("plot", ROOT / "benchmark" / "plot.py")
plot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot)


def _write_run(path, points):
    writer = SummaryWriter(str(path))
    for step, value in points:
        writer.add_scalar("eval/episodic_return", value, step)
    writer.close()


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


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")
