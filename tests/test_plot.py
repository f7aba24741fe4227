"""Tests for benchmark/plot.py on real TensorBoard logs: run names with the collision suffix, groups with a single
logged step (a short run's one evaluation) drawn as points instead of nothing, resumed runs (several event files,
re-logged steps), the band (sample std, none for one seed) and no wall-clock figure, the Markdown table (each seed's
value after the mean) with --at-steps and --reference (one seed or several), the code versions read from
code_version.txt (mixed versions refused unless allowed, named under the table), and the skipped-runs summary."""

import importlib.util
import sys

import matplotlib.pyplot as plt
import numpy as np
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


def _write_version(run_dir, *lines):
    """code_version.txt as hasac_utils/runs.py writes it: `{UTC time} {version} {global_step}` per start or resume."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "code_version.txt").write_text("".join(f"{line}\n" for line in lines))


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
    assert (
        "| 3m | hasac_smac | 1, 1 | 600 | 2.00 (s1 1.00, s1 3.00) |" in table
        and "| 8m | hasac_smac | 1 | 200 | 2.00 |" in table
    )
    single, curve = saved["fig"].axes[:2]
    assert [ax.get_title() for ax in (single, curve)] == ["3m", "8m"]
    drawn = [line for line in single.get_lines() if len(line.get_xdata()) and line.get_marker() not in (None, "None", "")]
    assert any(list(line.get_xdata()) == [600] and list(line.get_ydata()) == [2.0] for line in drawn), "no point drawn for 3m"
    assert len(curve.get_lines()) == 1 and len(curve.get_lines()[0].get_xdata()) == 200


def test_resumed_run_reads_every_event_file(tmp_path):
    run = tmp_path / "simple_spread_v3__hasac__1__1700000000"
    _write_run(run, [(100, 1.0, 1000.0), (200, 2.0, 1060.0), (300, 3.0, 1120.0)])
    # Resumed an hour later into the same dir: a second event file; a loss logged before the first evaluation.
    _write_run(run, [(300, 0.5, 4720.0)], tag="losses/qf1_loss")
    _write_run(run, [(400, 4.0, 4780.0), (500, 5.0, 4840.0)])
    assert len(list(run.iterdir())) == 3
    steps, values = plot.load_scalar(str(run), "eval/episodic_return")
    assert list(steps) == [100, 200, 300, 400, 500] and list(values) == [1, 2, 3, 4, 5]


def test_relogged_steps_of_a_resumed_run_take_the_later_values(tmp_path):
    run = tmp_path / "simple_spread_v3__hasac__1__1700000000"
    _write_run(run, [(100, 1.0, 1000.0), (200, 2.0, 1010.0), (300, 3.0, 1020.0), (400, 4.0, 1030.0)])
    # Resumed from the step-200 checkpoint: steps 200 and 300 logged again, 400 not (yet).
    _write_run(run, [(200, 20.0, 2000.0), (200, 22.0, 2000.0), (300, 30.0, 2010.0)])
    steps, values = plot.load_scalar(str(run), "eval/episodic_return")
    assert list(steps) == [100, 200, 300] and list(values) == [1.0, 21.0, 30.0]
    # SummaryWriter's purge_step (a SessionLog.START) drops the steps from there on, here before anything is re-logged.
    writer = SummaryWriter(str(run), purge_step=300)
    writer.add_scalar("losses/qf1_loss", 0.1, 300, walltime=3000.0)
    writer.close()
    steps, values = plot.load_scalar(str(run), "eval/episodic_return")
    assert list(steps) == [100, 200] and list(values) == [1.0, 21.0]


def test_band_is_the_sample_std_none_for_one_seed_and_no_time_figure(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    for seed, offset in ((1, 0.0), (2, 2.0)):
        _write_run(runs / f"simple_spread_v3__hasac__{seed}__1700000000", [(100, 1.0 + offset), (300, 3.0 + offset)])
    _write_run(runs / "simple_tag_v3__hasac__1__1700000000", [(100, 1.0), (300, 3.0)])
    saved, savefig = [], plt.Figure.savefig
    monkeypatch.setattr(plt.Figure, "savefig", lambda fig, *args, **kwargs: (saved.append(fig), savefig(fig, *args, **kwargs)))
    _run_main(monkeypatch, runs, "--out", tmp_path / "plots" / "mpe.png", "--title", "MPE", "--num-points", "3")
    # One figure and its table: no wall-clock figure (`mpe_time.png`) any more.
    assert sorted(path.name for path in (tmp_path / "plots").iterdir()) == ["mpe.md", "mpe.png"]
    (fig,) = saved
    assert fig.get_suptitle() == "MPE"
    spread, tag = fig.axes[:2]
    assert [ax.get_xlabel() for ax in (spread, tag)] == ["environment steps"] * 2
    # Seeds 2 apart: the sample std (ddof 1) is sqrt(2), where numpy's default (ddof 0) would give 1.
    (band,) = spread.collections
    low, high = band.get_paths()[0].vertices[:, 1].min(), band.get_paths()[0].vertices[:, 1].max()
    assert (low, high) == (pytest.approx(2.0 - 2**0.5), pytest.approx(4.0 + 2**0.5))
    assert spread.get_legend().get_texts()[0].get_text() == "hasac: 2 seeds, band ± sample std (ddof 1)"
    # One seed: its curve, no band.
    assert not tag.collections and tag.get_legend().get_texts()[0].get_text() == "hasac: 1 seed"


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
        "| env_id | exp_name | seeds | at 150 | at 250 | step | final eval/episodic_return |\n"
        "|---|---|---|---|---|---|---|\n"
        "| simple_spread_v3 | hasac | 1, 2 | 2.50 (s1 1.50, s2 3.50) | n/a | 200 | 3.00 (s1 2.00, s2 4.00) |\n"
        "| simple_spread_v3 | official HARL, seed 1 | | 1.25 | n/a | | |\n"
        "| simple_spread_v3 | paper | | 9.00 | 10.50 | | |\n"
        "| simple_tag_v3 | hasac | 1 | 6.50 | 7.50 | 300 | 8.00 |\n"
        "| simple_tag_v3 | paper | | 9.00 | 10.50 | | |\n\n"
        "Runs: code version unknown (runs without code_version.txt), 3 runs.\n\n"
        "Cells: eval/episodic_return as the mean over seeds, then each seed's value in seed order (`sN`: seed N)"
    )
    assert "± " not in table and "std" not in table
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
        (["--at-steps", "100", "200", "--reference", "official=1;3;5"], "has 1 values per seed but --at-steps lists 2"),
    ],
)
def test_bad_references_give_a_one_line_error(tmp_path, monkeypatch, capsys, argv, message):
    _write_run(tmp_path / "runs" / "3m__hasac_smac__1__1700000000", [(100, 1.0)])
    with pytest.raises(SystemExit) as exit_info:
        _run_main(monkeypatch, tmp_path / "runs", "--out", tmp_path / "out.png", *argv)
    (error,) = capsys.readouterr().err.splitlines()
    assert exit_info.value.code == 2 and error.startswith("plot.py: error: ") and message in error


def test_cells_give_the_mean_then_each_seed_and_one_seed_alone():
    assert plot.cell(np.array([-44.6, -45.21, -46.3]), ["s1", "s2", "s3"]) == "-45.37 (s1 -44.60, s2 -45.21, s3 -46.30)"
    assert plot.cell(np.array([-44.6]), ["s7"]) == "-44.60"
    assert plot.cell(None, ["s1"]) == "n/a"


def test_a_reference_of_several_seeds_gives_their_mean_and_each(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    _write_run(runs / "simple_spread_v3__hasac__1__1700000000", [(100, 1.0), (300, 3.0)])
    saved = []
    monkeypatch.setattr(plt.Figure, "savefig", lambda fig, *args, **kwargs: saved.append(fig))
    argv = ["--at-steps", "100", "200", "300", "--reference", "simple_spread_v3:official (seeds 1-3)=1,2,n/a;3,4,5;8,6,7"]
    _run_main(monkeypatch, runs, "--out", tmp_path / "mpe.png", *argv)
    table = (tmp_path / "mpe.md").read_text()
    row = (
        "| simple_spread_v3 | official (seeds 1-3) | 3 | 4.00 (s1 1.00, s2 3.00, s3 8.00) | 4.00 (s1 2.00, s2 4.00, s3 6.00) |"
    )
    row += " n/a | | |"
    assert row in table.splitlines()
    assert "labelled s1, s2, ... in the order given" in table and "n/a where a seed's value is not given" in table
    # The figure: the mean over the seeds, as markers at the steps (none where a seed's value is missing).
    (marker,) = [line for line in saved[0].axes[0].get_lines() if line.get_linestyle() == "None"]
    assert marker.get_label() == "official (seeds 1-3): mean of 3 seeds"
    assert list(marker.get_xdata()) == [100, 200, 300] and list(marker.get_ydata())[:2] == [4.0, 4.0]
    assert np.isnan(marker.get_ydata()[2])


def test_a_reference_whose_seeds_differ_in_length_is_a_usage_error(tmp_path, monkeypatch, capsys):
    _write_run(tmp_path / "runs" / "3m__hasac_smac__1__1700000000", [(100, 1.0)])
    with pytest.raises(SystemExit) as exit_info:
        _run_main(monkeypatch, tmp_path / "runs", "--at-steps", "100", "200", "--reference", "official=1,2;3;5,6")
    assert exit_info.value.code == 2
    assert "the seeds in 'official=1,2;3;5,6' have different numbers of values (2, 1, 2)" in capsys.readouterr().err


def test_runs_of_different_code_versions_are_refused_unless_allowed(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    for seed, version, day in ((1, "5ea4637", 6), (2, "abc1234+modified", 7)):
        run = runs / f"simple_spread_v3__hasac__{seed}__1700000000"
        _write_run(run, [(100, float(seed))])
        _write_version(run, f"2026-12-0{day}T10:00:00Z {version} 0")
    # Another env id on yet another commit, filtered out: not among the runs combined.
    _write_run(runs / "simple_tag_v3__hasac__1__1700000000", [(100, 1.0)])
    _write_version(runs / "simple_tag_v3__hasac__1__1700000000", "2026-12-08T10:00:00Z 0000000 0")
    out = tmp_path / "mpe.png"
    with pytest.raises(SystemExit) as exit_info:
        _run_main(monkeypatch, runs, "--out", out, "--env-ids", "simple_spread_v3")
    (error,) = capsys.readouterr().err.splitlines()
    assert exit_info.value.code == 2 and error.startswith("plot.py: error: runs of different code versions: ")
    assert "5ea4637 (1 run), abc1234+modified (1 run);" in error and "--allow-mixed-versions" in error
    assert "0000000" not in error and not out.exists()

    _run_main(monkeypatch, runs, "--out", out, "--env-ids", "simple_spread_v3", "--allow-mixed-versions")
    assert (
        "\n\nRuns: mixed code versions (--allow-mixed-versions): code 5ea4637 (clean) in 1 run, code abc1234 (modified"
        " tracked files) in 1 run; started 2026-12-06 to 2026-12-07 (UTC); 2 runs.\n\n"
    ) in (tmp_path / "mpe.md").read_text()


def test_a_run_resumed_on_other_code_is_refused_and_a_clean_resume_is_dated(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    run = runs / "simple_spread_v3__hasac__1__1700000000"
    _write_run(run, [(100, 1.0)])
    _write_version(run, "2026-12-06T10:00:00Z 5ea4637 0", "2026-12-09T08:00:00Z 5ea4637+modified 5000")
    with pytest.raises(SystemExit) as exit_info:
        _run_main(monkeypatch, runs, "--out", tmp_path / "mpe.png")
    (error,) = capsys.readouterr().err.splitlines()
    assert exit_info.value.code == 2
    assert "5ea4637 (1 run), 5ea4637+modified (1 run); resumed on other code: simple_spread_v3__hasac__1__1700000000" in error

    _write_version(run, "2026-12-06T10:00:00Z 5ea4637+modified 0", "2026-12-09T08:00:00Z 5ea4637+modified 5000")
    _run_main(monkeypatch, runs, "--out", tmp_path / "mpe.png")
    assert (
        "\n\nRuns: code 5ea4637 (modified tracked files), started 2026-12-06 to 2026-12-06, last resumed 2026-12-09 (UTC),"
        " 1 run.\n\n"
    ) in (tmp_path / "mpe.md").read_text()


def test_a_run_without_code_version_txt_reads_as_unknown(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    _write_run(runs / "simple_spread_v3__hasac__1__1700000000", [(100, 1.0)])
    assert plot.read_code_version(str(runs / "simple_spread_v3__hasac__1__1700000000")) == plot.CodeVersion(
        ["unknown"], has_file=False
    )
    # unknown is a version of its own: not combined with a known one.
    _write_run(runs / "simple_spread_v3__hasac__2__1700000000", [(100, 2.0)])
    _write_version(runs / "simple_spread_v3__hasac__2__1700000000", "2026-12-06T10:00:00Z 5ea4637 0")
    with pytest.raises(SystemExit) as exit_info:
        _run_main(monkeypatch, runs, "--out", tmp_path / "mpe.png")
    assert exit_info.value.code == 2 and "unknown (1 run), 5ea4637 (1 run)" in capsys.readouterr().err
    _run_main(monkeypatch, runs, "--out", tmp_path / "mpe.png", "--allow-mixed-versions")
    assert (
        "Runs: mixed code versions (--allow-mixed-versions): code version unknown (runs without code_version.txt) in 1"
        " run, code 5ea4637 (clean) in 1 run; started 2026-12-06 to 2026-12-06 (UTC; 1 run without dates); 2 runs."
    ) in (tmp_path / "mpe.md").read_text()


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


def _load_plot_matrix_game(monkeypatch):
    """benchmark/plot_matrix_game.py as a module (it imports plot.py from its own folder)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmark"))
    spec = importlib.util.spec_from_file_location("plot_matrix_game", ROOT / "benchmark" / "plot_matrix_game.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_matrix_game_tables_name_their_code_and_refuse_mixed_versions(tmp_path, monkeypatch, capsys):
    """benchmark/plot_matrix_game.py ends its tables with the same `Runs:` note, and refuses the same mixtures."""
    plot_matrix_game = _load_plot_matrix_game(monkeypatch)
    runs = tmp_path / "runs"
    for seed in (1, 2):
        run = runs / f"matrix-game__matrix_alpha_0.1__{seed}__1700000000"
        writer = SummaryWriter(str(run))
        for tag in plot_matrix_game.TAGS.values():
            writer.add_scalar(tag, 0.5, 6000)
        writer.close()
        _write_version(run, f"2026-12-06T10:00:00Z {'5ea4637' if seed == 1 else 'abc1234'} 0")
    argv = ["plot_matrix_game.py", str(runs), "--out", str(tmp_path / "m.png"), "--qre-out", str(tmp_path / "q.png")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        plot_matrix_game.main()
    assert exit_info.value.code == 2 and "5ea4637 (1 run), abc1234 (1 run)" in capsys.readouterr().err
    _write_version(runs / "matrix-game__matrix_alpha_0.1__2__1700000000", "2026-12-06T11:00:00Z 5ea4637 0")
    plot_matrix_game.main()
    assert capsys.readouterr().out.endswith("\nRuns: code 5ea4637 (clean), started 2026-12-06 to 2026-12-06 (UTC), 2 runs.\n")


def test_the_matrix_game_without_runs_says_so(tmp_path, monkeypatch, capsys):
    """No matrix-game runs: the one-line "no finished runs" error, not the version check's empty mixture."""
    plot_matrix_game = _load_plot_matrix_game(monkeypatch)
    (tmp_path / "runs").mkdir()
    monkeypatch.setattr(sys, "argv", ["plot_matrix_game.py", str(tmp_path / "runs"), "--out", str(tmp_path / "m.png")])
    with pytest.raises(SystemExit) as exit_info:
        plot_matrix_game.main()
    assert "no finished matrix-game runs" in str(exit_info.value.code) + capsys.readouterr().err
