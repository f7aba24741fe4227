"""--resume and --save-buffer, in every script: a run stopped by SIGTERM (a scheduler's stop) continues from its
checkpoint in the same run directory, and with its saved replay buffer it continues exactly."""

import json
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, SUBPROCESS_ENV, TINY, assert_ok, read_scalars, run_dir, run_script

import hasac_continuous as hc
from hasac_utils.checkpoints import load_buffer, resume_training

# Each script's tiny training run, at a budget it does not reach before the test stops it: (script, flags, warm-up).
# The test stops it once it has logged losses: at its first training phase, or at isaacgym's first log after it.
SCRIPTS = {
    "continuous": ("hasac_continuous.py", ["--env-id", "simple_spread_v3"], 200),
    "discrete": ("hasac_discrete.py", ["--env-id", "simple_spread_v3"], 200),
    "smac": ("hasac_smac.py", ["--env-id", "3m", "--hidden-dim", "32"], 200),
    "isaacgym": (
        "hasac_isaacgym.py",
        ["--env-id", "transport", "--num-envs", "8", "--episode-length", "20", "--learning-starts", "160"],
        160,
    ),
}
LONG = ["--total-timesteps", "400000"]


def flags_of(name: str) -> list:
    """TINY with the script's own flags last (later flags win in tyro), and an isaacgym run logging every 160 steps."""
    extra = ["--log-interval", "160", "--train-interval", "1"] if name == "isaacgym" else []
    return [*TINY, *SCRIPTS[name][1], *extra]


def train_until_stopped(cwd, script: str, flags: list, logged: str) -> tuple[int, str]:
    """Starts a --save-model run, sends SIGTERM once it has trained, -> (the step it stopped at, its output)."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / script), *flags, *LONG, "--save-model"],
        cwd=cwd,
        env=SUBPROCESS_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for line in process.stdout:
            if logged in line:
                break
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=240)[0]
    finally:
        process.kill()
    assert process.returncode == 143, output
    return int(re.search(r"interrupted at global_step=(\d+)", output).group(1)), output


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_sigterm_then_resume_continues_in_the_same_run_dir(tmp_path, name):
    """Without --save-buffer: the resumed run starts at the saved step, warms up afresh before it trains again, logs
    into the same TensorBoard curves (no step twice) and finishes its budget."""
    script, _, warm_up = SCRIPTS[name]
    logged = "global_step=320/" if name == "isaacgym" else "warm-up done"
    stopped_at, _ = train_until_stopped(tmp_path, script, flags_of(name), logged)
    checkpoint = next(run_dir(tmp_path).glob("*.cleanrl_model"))
    assert torch.load(checkpoint, weights_only=False)["global_step"] == stopped_at
    total = stopped_at + warm_up + 160
    result = run_script(
        tmp_path, *flags_of(name), "--total-timesteps", str(total), "--resume", str(checkpoint), script=ROOT / script
    )
    assert_ok(result)
    assert f"resumed at global_step={stopped_at} in " in result.stdout and "without its buffer" in result.stdout
    assert len(list((tmp_path / "runs").iterdir())) == 1  # no second run directory
    assert len(list(run_dir(tmp_path).glob("events.out.tfevents.*"))) == 2  # one event file per start, none extra
    steps = [step for step, _ in read_scalars(run_dir(tmp_path))["losses/qf1_loss"]]
    assert steps == sorted(set(steps)), steps
    before, after = [s for s in steps if s <= stopped_at], [s for s in steps if s > stopped_at]
    assert before and after, steps
    assert min(after) > stopped_at + warm_up  # a fresh warm-up refilled the empty buffer first
    assert torch.load(checkpoint, weights_only=False)["global_step"] == total


MATRIX = "--env-id matrix-game --num-envs 4 --learning-starts 40 --train-interval 5 --gradient-steps 2 --batch-size 32"
MATRIX = [*MATRIX.split(), "--eval-interval", "200"]


def test_resume_with_its_buffer_gives_the_losses_of_an_uninterrupted_run(tmp_path):
    """The matrix game is stateless (every episode is one step), so the envs' restart on resume changes nothing: a run
    stopped at step 400 with --save-buffer and resumed to 800 logs exactly the losses of a run of 800 steps. Without
    the buffer it does not (the test would pass vacuously if the buffer were never used)."""
    script = ROOT / "hasac_discrete.py"
    assert_ok(run_script(tmp_path / "whole", *MATRIX, "--total-timesteps", "800", script=script))
    for variant in ("with", "without"):
        cwd = tmp_path / variant
        buffer = ["--save-buffer"] if variant == "with" else []
        assert_ok(run_script(cwd, *MATRIX, "--total-timesteps", "400", "--save-model", *buffer, script=script))
        checkpoint = next(run_dir(cwd).glob("*.cleanrl_model"))
        assert (checkpoint.parent / "replay_buffer.pt").exists() == (variant == "with")
        result = run_script(cwd, *MATRIX, "--total-timesteps", "800", "--resume", str(checkpoint), script=script)
        assert_ok(result)
        assert f"{variant} its buffer" in result.stdout
    whole, resumed, refilled = (read_scalars(run_dir(tmp_path / d)) for d in ("whole", "with", "without"))
    for tag in ("losses/qf1_loss", "losses/qf2_loss", "losses/actor_loss", "losses/alpha", "eval/episodic_return"):
        assert resumed[tag] == whole[tag], tag
        assert max(step for step, _ in whole[tag]) == 800
    assert [v for s, v in refilled["losses/qf1_loss"] if s > 400] != [v for s, v in whole["losses/qf1_loss"] if s > 400]


def test_resume_training_restores_optimisers_temperatures_and_random_state(tmp_path):
    """In-process: what resume_training loads is what the run had when it saved (Adam moments included)."""
    assert_ok(run_script(tmp_path, *flags_of("continuous"), "--total-timesteps", "600", "--save-model"))
    path = str(next(run_dir(tmp_path).glob("*.cleanrl_model")))
    saved = torch.load(path, weights_only=False)
    args = hc.Args(**{**saved["args"], "total_timesteps": 1200})
    envs = hc.make_env(args, 1)
    learner = hc.build_learner(envs, args, torch.device("cpu"))
    torch.manual_seed(123), np.random.seed(123)
    cpu, state = torch.device("cpu"), saved["learner"]

    def resume(args):
        return resume_training(path, "hasac_continuous.py", learner, args, cpu)

    assert resume(args) == 600
    for optimizer, optimizer_state in zip(learner.actor_optimizers, state["actor_optimizers"]):
        assert optimizer.state_dict()["state"][0]["exp_avg"].equal(optimizer_state["state"][0]["exp_avg"])
    assert learner.q_optimizer.state_dict()["state"][0]["exp_avg_sq"].equal(state["q_optimizer"]["state"][0]["exp_avg_sq"])
    assert learner.alpha_optimizers[0].state_dict()["state"][0]["step"] == state["alpha_optimizers"][0]["state"][0]["step"] > 0
    assert torch.stack(learner.log_alphas).equal(torch.stack(state["log_alphas"]))
    assert all(learner.qf_target.state_dict()[key].equal(value) for key, value in state["qf_target"].items())
    assert torch.get_rng_state().equal(saved["rng"][2]) and np.random.get_state()[1].tolist() == saved["rng"][1][1].tolist()
    with pytest.raises(ValueError, match="the checkpoint's run had --seed 1; drop the flags that differ"):
        resume(hc.Args(**{**saved["args"], "seed": 2}))
    # a flag that shapes the learner or the buffer: --share-param loaded actor 0 alone (zip stops at the shorter list),
    # and the other agents' weights were lost at the next save
    for changed, named in (({"share_param": True}, "--share-param False"), ({"num_envs": 4}, "--num-envs 2")):
        with pytest.raises(ValueError, match=f"run had {named}; drop the flags that differ"):
            resume(hc.Args(**{**saved["args"], **changed}))
    longer = {"total_timesteps": 2400, "eval_interval": 7, "eval_episodes": 3, "track": True, "matmul_precision": "medium"}
    assert resume(hc.Args(**{**saved["args"], **longer})) == 600
    with pytest.raises(ValueError, match="raise --total-timesteps"):
        resume(hc.Args(**saved["args"]))  # 600 of 600 steps done
    envs.close()


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_a_resumed_run_continues_its_wandb_run(tmp_path, name):
    """With --track, the wandb run's id is the run dir's name and resume="allow": a --resume run (same dir) continues
    the same wandb run instead of starting a second one, and a --resume of a bad checkpoint fails before wandb.init.
    wandb itself (an online service, not installed here) is replaced by a module on PYTHONPATH that records what
    wandb.init was given."""
    (tmp_path / "fake" / "wandb").mkdir(parents=True)
    (tmp_path / "fake" / "wandb" / "__init__.py").write_text(
        "import json, os\n"
        "def init(**kwargs):\n"
        "    with open(os.environ['FAKE_WANDB_LOG'], 'a') as log:\n"
        "        log.write(json.dumps({key: kwargs.get(key) for key in ('id', 'name', 'resume')}) + '\\n')\n"
    )
    env = {**SUBPROCESS_ENV, "PYTHONPATH": str(tmp_path / "fake"), "FAKE_WANDB_LOG": str(tmp_path / "init.jsonl")}

    def train(*extra):
        command = [sys.executable, str(ROOT / SCRIPTS[name][0]), *flags_of(name), "--track", *extra]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    assert_ok(train("--save-model"))
    checkpoint = next(run_dir(tmp_path).glob("*.cleanrl_model"))
    (checkpoint.parent / "broken.cleanrl_model").write_text("not a checkpoint")
    assert train("--total-timesteps", "800", "--resume", str(checkpoint.parent / "broken.cleanrl_model")).returncode == 1
    assert_ok(train("--total-timesteps", "800", "--resume", str(checkpoint)))
    calls = [json.loads(line) for line in (tmp_path / "init.jsonl").read_text().splitlines()]
    assert calls == [{"id": run_dir(tmp_path).name, "name": run_dir(tmp_path).name, "resume": "allow"}] * 2


def test_a_resumed_buffer_ends_the_interrupted_episodes(tmp_path):
    """The resumed envs start new episodes, so the transitions stored before the stop must not take n-step returns
    from the next episode: each env's last stored transition becomes a truncation (the target bootstraps from its true
    next state). simple_spread's episodes last 25 steps, and 410 steps of 2 envs stop 5 steps into one. (discrete and
    smac share this load_buffer: hasac_utils's.)"""
    assert_ok(run_script(tmp_path, *flags_of("continuous"), "--total-timesteps", "410", "--save-model", "--save-buffer"))
    rb = load_buffer(str(run_dir(tmp_path)), 410, torch.device("cpu"))
    stop = rb.pos  # 205 rows of each env
    assert not rb.dones[stop - 5 : stop].any()  # the interrupted episode's first 5 steps
    # the resumed run's first transition (a new episode) lands after them
    rb.add(
        rb.observations[0], rb.observations[0], rb.actions[0], np.zeros(2), np.zeros(2), [{"TimeLimit.truncated": False}] * 2
    )
    samples = rb._get_samples(np.full(16, stop - 3))  # n-step windows of 5 from 3 steps before the stop
    assert torch.equal(samples.discounts, torch.full((16, 1), 0.99**3))  # 3 steps, then the truncation (not 5)
    assert not samples.dones.any()  # bootstrapped
    last_next = torch.as_tensor(rb.next_observations[stop - 1])  # [E, D]: each env's true next observation at the stop
    assert (samples.next_observations[:, None] == last_next).all(-1).any(-1).all()


def test_a_resumed_isaacgym_buffer_ends_the_interrupted_episodes(tmp_path, monkeypatch):
    """The same for hasac_isaacgym.py's own on-device buffer: 20-step episodes, stopped 5 steps into one."""
    import hasac_isaacgym as hi

    monkeypatch.setattr(sys.modules["__main__"], "ReplayBuffer", hi.ReplayBuffer, raising=False)  # pickled by the script

    flags = [*flags_of("isaacgym"), "--total-timesteps", "360", "--save-model", "--save-buffer"]
    assert_ok(run_script(tmp_path, *flags, script=ROOT / "hasac_isaacgym.py"))
    rb = load_buffer(str(run_dir(tmp_path)), 360, torch.device("cpu"))
    newest = (rb.heads - 1) % rb.capacity  # [E]
    for age in range(1, 5):  # the interrupted episodes' earlier steps end nothing
        assert not rb.episode_ends[rb.env_index, (newest - age) % rb.capacity].any()
    fresh = (rb.states[:, 0], rb.states[:, 0], rb.actions[:, 0], rb.rewards[:, 0])
    rb.add(*fresh, torch.zeros(8, dtype=torch.bool), torch.zeros(8, dtype=torch.bool), torch.ones(8, dtype=torch.bool))
    state, _, _, next_state, terminated, discounts = rb.n_step_transitions(rb.env_index, torch.full((8,), 3))
    assert torch.equal(discounts, torch.full((8, 1), 0.99**3)) and not terminated.any()
    assert torch.equal(next_state, rb.next_states[rb.env_index, newest])


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_resume_alone_continues_as_the_full_command_does(tmp_path, name):
    """`--resume PATH` takes the checkpoint's own flags as its defaults: given with only a longer --total-timesteps, it
    logs exactly what resuming with the run's full command logs (two copies of one run directory, with its buffer)."""
    script = ROOT / SCRIPTS[name][0]
    first = run_script(
        tmp_path / "full", *flags_of(name), "--total-timesteps", "400", "--save-model", "--save-buffer", script=script
    )
    assert_ok(first)
    shutil.copytree(tmp_path / "full", tmp_path / "alone")
    assert f"continue it with: python {script.name} --resume " in first.stdout  # the short form
    resumed = {}
    for variant, flags in (("full", flags_of(name)), ("alone", [])):
        checkpoint = str(next(run_dir(tmp_path / variant).glob("*.cleanrl_model")))
        result = run_script(tmp_path / variant, *flags, "--total-timesteps", "600", "--resume", checkpoint, script=script)
        assert_ok(result)
        assert "resumed at global_step=400 in " in result.stdout and "with its buffer" in result.stdout
        resumed[variant] = {
            tag: series for tag, series in read_scalars(run_dir(tmp_path / variant)).items() if tag != "charts/SPS"
        }
    assert any(step > 400 for step, _ in resumed["full"]["losses/qf1_loss"])
    assert resumed["alone"] == resumed["full"]


def test_resume_alone_parses_to_the_checkpoints_flags(tmp_path, monkeypatch):
    """In-process: `--resume PATH` alone gives the saved Args (with --resume set); a flag beside it overrides."""
    from hasac_utils.runs import parse_args

    flags = [*flags_of("continuous"), "--seed", "7", "--q-lr", "1e-3", "--save-model"]
    assert_ok(run_script(tmp_path, *flags))
    checkpoint = str(next(run_dir(tmp_path).glob("*.cleanrl_model")))
    saved = hc.Args(**torch.load(checkpoint, weights_only=False)["args"])
    assert (saved.seed, saved.q_lr, saved.env_id) == (7, 1e-3, "simple_spread_v3")
    monkeypatch.setattr(sys, "argv", ["hasac_continuous.py", "--resume", checkpoint, "--total-timesteps", "800"])
    assert parse_args(hc.Args, hc.__file__) == hc.Args(**{**vars(saved), "resume": checkpoint, "total_timesteps": 800})


def test_resume_with_a_changed_learning_rate_is_refused_and_writes_nothing(tmp_path):
    """A flag that changes the run (here --policy-lr) is refused in one line, naming the checkpoint's value, before any
    file is written; the checkpoint at its budget's end asks for a longer --total-timesteps."""
    assert_ok(run_script(tmp_path, *flags_of("continuous"), "--total-timesteps", "400", "--save-model"))
    checkpoint = str(next(run_dir(tmp_path).glob("*.cleanrl_model")))
    before = {path: path.stat().st_mtime_ns for path in run_dir(tmp_path).iterdir()}
    result = run_script(tmp_path, "--resume", checkpoint, "--total-timesteps", "800", "--policy-lr", "1e-3")
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: cannot resume from {checkpoint!r}: the checkpoint's run had --policy-lr 0.0005; "
        "drop the flags that differ (--resume PATH alone continues it)"
    ]
    result = run_script(tmp_path, "--resume", checkpoint)
    assert result.stderr.strip().splitlines() == [
        f"error: cannot resume from {checkpoint!r}: the checkpoint is at step 400: raise --total-timesteps to continue"
    ]
    assert {path: path.stat().st_mtime_ns for path in run_dir(tmp_path).iterdir()} == before
