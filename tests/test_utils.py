"""hasac_utils on its own: checkpoint round trips and their one-line errors, the --resume refusal, the replay-buffer
files, run folders, the graceful stop on signals, the progress line and the run's bookkeeping (in-process, no env)."""

import os
import signal
import subprocess
import sys
import types
from dataclasses import dataclass
from typing import NamedTuple, Optional

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import MINI, ROOT, SUBPROCESS_ENV, assert_ok, run_dir
from stable_baselines3.common.buffers import NStepReplayBuffer

from hasac_utils.checkpoints import (
    check_resumable,
    learner_state,
    load_buffer,
    load_learner_state,
    read_checkpoint,
    save_buffer,
    save_checkpoint,
    saved_args,
)
from hasac_utils.runs import Run, code_version, make_run_dir, progress_line, start_run


class ToyLearner(NamedTuple):
    actors: list
    optimizers: list
    log_alphas: list
    value_norm: Optional[nn.Module]
    target_entropies: list  # a setting: rebuilt from Args, never saved
    name: str


@dataclass
class ToyArgs:
    exp_name: str = "toy"
    seed: int = 1
    policy_lr: float = 1e-3
    total_timesteps: int = 1000
    eval_interval: int = 100
    num_envs: int = 2
    save_model: bool = True
    save_buffer: bool = False
    env_id: str = "toy"
    learning_starts: int = 10
    resume: Optional[str] = None
    track: bool = False


def toy_learner(seed: int) -> ToyLearner:
    torch.manual_seed(seed)
    actors = [nn.Linear(3, 2), nn.Linear(3, 4)]
    log_alphas = [torch.zeros((), requires_grad=True) for _ in actors]
    optimizers = [torch.optim.Adam([*actor.parameters(), alpha]) for actor, alpha in zip(actors, log_alphas)]
    return ToyLearner(actors, optimizers, log_alphas, nn.BatchNorm1d(2), [-1.0, -2.0], "toy")


def test_checkpoint_round_trip_restores_modules_optimisers_temperatures_and_generators(tmp_path):
    learner = toy_learner(0)
    for actor, optimizer, alpha in zip(learner.actors, learner.optimizers, learner.log_alphas):
        (actor(torch.ones(5, 3)).sum() + alpha).backward()
        optimizer.step()
    learner.value_norm.running_mean.fill_(3.0)
    assert set(learner_state(learner)) == {"actors", "optimizers", "log_alphas", "value_norm"}  # settings are not saved
    path = str(tmp_path / "toy.cleanrl_model")
    torch.manual_seed(42)
    save_checkpoint(path, "/somewhere/hasac_toy.py", ToyArgs(seed=5), 700, learner)
    assert not os.path.exists(path + ".tmp")
    expected_draw = torch.rand(3)

    checkpoint = read_checkpoint(path, "hasac_toy.py", torch.device("cpu"))
    assert (checkpoint["args"]["seed"], checkpoint["global_step"]) == (5, 700)
    fresh = toy_learner(1)
    assert not torch.equal(fresh.actors[1].weight, learner.actors[1].weight)
    load_learner_state(fresh, checkpoint["learner"])
    for new, old in zip(fresh.actors, learner.actors):
        assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), old.state_dict().values()))
    assert [alpha.item() for alpha in fresh.log_alphas] == [alpha.item() for alpha in learner.log_alphas] != [0.0, 0.0]
    assert fresh.log_alphas[0].requires_grad  # loaded in place: the optimiser still steps the same tensor
    moments = [optimizer.state_dict()["state"][0]["exp_avg"] for optimizer in (fresh.optimizers[0], learner.optimizers[0])]
    assert torch.equal(*moments)
    assert fresh.value_norm.running_mean.tolist() == [3.0, 3.0]
    torch.set_rng_state(checkpoint["rng"][2])
    assert torch.equal(torch.rand(3), expected_draw)


def test_a_checkpoint_of_another_shape_or_program_is_refused_in_one_line(tmp_path):
    path = str(tmp_path / "toy.cleanrl_model")
    save_checkpoint(path, "hasac_toy.py", ToyArgs(), 1, toy_learner(0))
    shared = toy_learner(0)._replace(actors=[nn.Linear(3, 2)])  # one actor where the checkpoint has two
    with pytest.raises(ValueError, match="the checkpoint holds 2 actors, this run has 1"):
        load_learner_state(shared, read_checkpoint(path, "hasac_toy.py", torch.device("cpu"))["learner"])
    wider = toy_learner(0)._replace(actors=[nn.Linear(3, 2), nn.Linear(5, 4)])  # another --hidden-dim, say
    with pytest.raises(ValueError, match=r"its actors do not fit this run's: .*size mismatch for weight"):
        load_learner_state(wider, read_checkpoint(path, "hasac_toy.py", torch.device("cpu"))["learner"])
    without_norm = toy_learner(0)._replace(value_norm=None)  # a learner field the checkpoint has and this run lacks
    with pytest.raises(ValueError, match=r"holds the learner state .*'value_norm'.*, this run's learner"):
        load_learner_state(without_norm, read_checkpoint(path, "hasac_toy.py", torch.device("cpu"))["learner"])
    wider_alpha = toy_learner(0)._replace(log_alphas=[torch.zeros(3), torch.zeros(())])  # copy_ would broadcast
    with pytest.raises(ValueError, match=r"its log_alphas do not fit this run's: shape \(\) where this run has \(3,\)"):
        load_learner_state(wider_alpha, read_checkpoint(path, "hasac_toy.py", torch.device("cpu"))["learner"])
    with pytest.raises(ValueError, match=r"not a hasac_other.py checkpoint \(written by hasac_toy.py\)"):
        read_checkpoint(path, "hasac_other.py", torch.device("cpu"))
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a checkpoint"):
        read_checkpoint(str(tmp_path / "notes.txt"), "hasac_toy.py", torch.device("cpu"))
    checkpoint = read_checkpoint(path, "hasac_toy.py", torch.device("cpu"))
    assert saved_args(checkpoint, ToyArgs) == ToyArgs()
    with pytest.raises(ValueError, match="its flags do not fit this script's Args"):
        saved_args(checkpoint, dataclass(type("FewerFlags", (), {"__annotations__": {"seed": int}, "seed": 1})))
    torch.save({"script": "hasac_toy.py", "actors": []}, tmp_path / "old.cleanrl_model")  # the layout before hasac_utils
    with pytest.raises(ValueError, match="written before hasac_utils"):
        read_checkpoint(str(tmp_path / "old.cleanrl_model"), "hasac_toy.py", torch.device("cpu"))


def test_resume_refuses_changed_flags_but_allows_a_longer_budget():
    checkpoint = {"args": vars(ToyArgs()), "global_step": 600}
    check_resumable(checkpoint, ToyArgs(total_timesteps=2000, eval_interval=7))  # may change: budget, evaluation
    with pytest.raises(ValueError, match="the checkpoint's run had --seed 1, --policy-lr 0.001; drop the flags"):
        check_resumable(checkpoint, ToyArgs(seed=2, policy_lr=0.1))
    with pytest.raises(ValueError, match="the checkpoint is at step 600: raise --total-timesteps"):
        check_resumable(checkpoint, ToyArgs(total_timesteps=600))


def test_buffer_files_round_trip_and_belong_to_their_step(tmp_path):
    rb = NStepReplayBuffer(100, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2,)), "cpu", n_envs=2, n_steps=3)
    for step in range(4):
        rb.add(np.full((2, 3), step), np.full((2, 3), step + 1), np.zeros((2, 2)), np.ones(2), np.zeros(2), [{}, {}])
    save_buffer(str(tmp_path), rb, 8)
    assert load_buffer(str(tmp_path), 6, torch.device("cpu")) is None  # saved with another checkpoint
    assert load_buffer(str(tmp_path / "elsewhere"), 8, torch.device("cpu")) is None
    loaded = load_buffer(str(tmp_path), 8, torch.device("cpu"))
    assert loaded.pos == 4 and np.array_equal(loaded.observations[:4], rb.observations[:4])
    assert loaded.timeouts[3].all() and not loaded.timeouts[:3].any()  # each env's interrupted episode ends at the stop


def test_run_dirs_never_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = [make_run_dir("simple_spread_v3__hasac_continuous__1__1700000000") for _ in range(3)]
    assert names == [f"simple_spread_v3__hasac_continuous__1__1700000000{suffix}" for suffix in ("", "_2", "_3")]
    assert all((tmp_path / "runs" / name).is_dir() for name in names)


def test_progress_line_says_how_far_how_fast_how_well_and_how_long():
    line = progress_line(2500, 10_000, 50.0, -12.345, warming_up=False)
    assert line == "global_step=2500/10000 (25.0%), SPS=50, recent episodic_return=-12.35, time left ~2m30s"
    line = progress_line(0, 10_000_000, 100.0, 1.5, warming_up=False, win_rate=0.25)
    assert line.endswith("recent episodic_return=1.50, win_rate=0.250, time left ~27h46m")
    assert progress_line(10, 100, 1e6, None, warming_up=True).endswith("=n/a, time left unknown until training starts")


class RecordingWriter:
    def __init__(self):
        self.scalars, self.closed = [], False

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, float(value), step))

    def close(self):
        self.closed = True


def toy_run(tmp_path, **args) -> Run:
    return Run(ToyArgs(**args), "hasac_toy.py", toy_learner(0), None, str(tmp_path), RecordingWriter(), 0, 10, 50)


def test_a_run_evaluates_every_interval_and_at_its_end_once(tmp_path):
    run = toy_run(tmp_path, total_timesteps=350, eval_interval=100)
    assert [step for step in range(2, 351, 2) if run.evaluation_due(step)] == [100, 200, 300, 350]
    assert not run.evaluation_due(350)


def test_a_run_logs_episodes_losses_and_stops_on_a_non_finite_loss(tmp_path, capsys):
    run = toy_run(tmp_path)
    run.log_episodes(20, np.array([]), np.array([]))
    run.log_episodes(40, np.array([1.0, 3.0]), np.array([5, 7]), wins=np.array([1.0, 0.0]))
    assert run.writer.scalars == [("charts/episodic_return", 2.0, 40), ("charts/episodic_length", 6.0, 40)] + [
        ("charts/win_rate", 0.5, 40)
    ]
    run.progress(50)
    assert "global_step=50/1000 (5.0%)" in capsys.readouterr().out
    metrics = {name: torch.tensor(1.0) for name in ("qf1_values", "qf1_loss", "qf2_loss", "actor_loss", "entropy")}
    metrics |= {"alpha_loss": None, "alphas": torch.tensor([0.1, 0.2])}
    run.end_warm_up(60)
    run.end_warm_up(80)
    run.log_losses(metrics, 60)
    assert capsys.readouterr().out == "global_step=60, warm-up done: training starts\n"  # once
    assert ("losses/alpha/agent_1", pytest.approx(0.2), 60) in run.writer.scalars
    with pytest.raises(SystemExit, match=r"^error: losses/qf2_loss is nan at global_step=80; stopping"):
        run.log_losses({**metrics, "qf2_loss": torch.tensor(float("nan"))}, 80)
    assert run.writer.closed


def test_graceful_stop_waits_for_the_iteration_and_exits_with_the_signals_status(tmp_path, monkeypatch, capsys):
    """start_run takes the signals first thing (a stop while it resumes or starts wandb still saves), the loop inside
    graceful_stop stops at its iteration's end, and the closing cannot be cut short."""
    monkeypatch.chdir(tmp_path)
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        run = start_run(ToyArgs(save_model=False), "hasac_toy.py", toy_learner(0), None, torch.device("cpu"))
        os.kill(os.getpid(), signal.SIGTERM)  # before the loop: requested, not killed
        with run.graceful_stop():
            os.kill(os.getpid(), signal.SIGTERM)  # a repeated SIGTERM is one request, not an immediate stop
            assert run.stop_requested
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C stops at once, and the run still finishes
            pytest.fail("a second Ctrl-C must stop the loop at once")
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # the closing saves cannot be cut short
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    with pytest.raises(SystemExit) as exit_info:
        run.finish(123)
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert "interrupted at global_step=123" in capsys.readouterr().out


def test_a_run_records_the_code_that_made_it(tmp_path, monkeypatch):
    """Each start appends the commit (and whether tracked files were modified) to its folder's code_version.txt."""
    assert code_version(str(tmp_path)) == "unknown"  # not a git checkout
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    (tmp_path / "algo.py").write_text("x = 1\n")
    for command in (["init", "-q"], ["add", "algo.py"], ["commit", "-q", "-m", "c"]):
        subprocess.run(git + command, check=True)
    commit = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "untracked.txt").write_text("runs and logs are not the code\n")
    assert code_version(str(tmp_path)) == commit
    (tmp_path / "algo.py").write_text("x = 2\n")
    assert code_version(str(tmp_path)) == commit + "+modified"
    monkeypatch.chdir(tmp_path)
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        start_run(ToyArgs(save_model=False), "hasac_toy.py", toy_learner(0), None, torch.device("cpu")).writer.close()
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    (record,) = (tmp_path / "runs").glob("*/code_version.txt")
    (line,) = record.read_text().splitlines()
    assert line.split()[1:] == [code_version(), "0"]


def test_a_loop_that_fails_still_writes_its_logs(tmp_path):
    run = toy_run(tmp_path)
    with pytest.raises(RuntimeError, match="the env crashed"):
        with run.graceful_stop():
            raise RuntimeError("the env crashed")
    assert run.writer.closed


def test_a_finished_run_saves_and_says_how_to_continue(tmp_path, capsys):
    run = toy_run(tmp_path, save_buffer=True)
    run.rb = types.SimpleNamespace(contents="the buffer")
    with pytest.raises(SystemExit) as exit_info:
        run.finish(1000)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert (
        f"continue it with: python hasac_toy.py --resume {tmp_path}/toy.cleanrl_model --total-timesteps <more than 1000>"
        in out
    )
    assert read_checkpoint(f"{tmp_path}/toy.cleanrl_model", "hasac_toy.py", torch.device("cpu"))["global_step"] == 1000
    assert torch.load(tmp_path / "replay_buffer.pt", weights_only=False)["buffer"].contents == "the buffer"


def test_a_fork_of_a_script_runs_on_its_own(tmp_path):
    """docs/design.md's "Fork it": a copy of hasac_continuous.py with its actor loss changed trains, saves checkpoints
    under its own name and evaluates them; hasac_utils is all it imports from the project."""
    source = (ROOT / "hasac_continuous.py").read_text()
    loss = "    return ((log_probs * alphas).sum(-1) - min_q.squeeze(-1)).mean()\n"
    assert source.count(loss) == 1
    (tmp_path / "my_idea.py").write_text(
        source.replace(loss, loss.replace("(log_probs * alphas)", "(2 * log_probs * alphas)"))
    )
    env = {**SUBPROCESS_ENV, "PYTHONPATH": str(ROOT)}

    def my_idea(*flags):
        command = [sys.executable, "my_idea.py", "--env-id", "simple_spread_v3", *flags]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    assert_ok(my_idea(*MINI, "--save-model"))
    checkpoint = run_dir(tmp_path) / "my_idea.cleanrl_model"
    assert run_dir(tmp_path).name.startswith("simple_spread_v3__my_idea__1__")
    result = my_idea("--eval-checkpoint", str(checkpoint), "--eval-episodes", "1")
    assert_ok(result)
    assert result.stdout.startswith("simple_spread_v3: eval/episodic_return ")
    refused = subprocess.run(
        [sys.executable, str(ROOT / "hasac_continuous.py"), "--eval-checkpoint", str(checkpoint)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "not a hasac_continuous.py checkpoint (written by my_idea.py)" in refused.stderr
