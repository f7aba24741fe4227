"""Shared helpers: the repo root on sys.path (the scripts run nothing on import), running a
script in a subprocess with its own working directory, and reading its TensorBoard scalars."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONTINUOUS = ROOT / "hasac_continuous.py"

# The networks here are tiny: torch's intra-op threads only add overhead, and when the CPU is
# shared (2 cores, other jobs) their spin-waiting made runs 5-10x slower. One thread, here and in
# the scripts the tests start (an OMP_NUM_THREADS already set is kept).
torch.set_num_threads(1)
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}

# Tiny budgets that still reach gradient updates: 300 loop steps of 2 envs, updates from
# global_step 220 on, every 10 loop steps (20 training phases), one 1-episode final evaluation.
TINY = (
    "--total-timesteps 600 --num-envs 2 --learning-starts 200 --train-interval 10 --gradient-steps 2 --batch-size 64".split()
)
TINY += "--buffer-size 10000 --n-step 5 --eval-interval 100000 --eval-episodes 1 --hidden-dim 64".split()
TINY_UPDATE_STEPS = list(range(220, 601, 20))  # TINY's training phases: global_step > 200, every 10 loop steps of 2 envs
# Cheaper still, for "does every env id reach an update": one env, 300 steps, updates from step 110.
MINI = (
    "--total-timesteps 300 --num-envs 1 --learning-starts 100 --train-interval 10 --gradient-steps 1 --batch-size 32".split()
)
MINI += "--buffer-size 1000 --n-step 3 --eval-interval 100000 --eval-episodes 1 --hidden-dim 32".split()

# The module-level names the parity tests import from every script
EXPOSED_NAMES = (
    "Args make_env Actor SoftQNetwork stack_actor_weights sample_actions Batch critic_target actor_loss alpha_loss "
    "soft_update Learner build_learner hasac_update act evaluate"
).split()


def run_script(cwd: Path, *args: str, script: Path = CONTINUOUS, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python <script> *args` with `cwd` as working directory (so `runs/` lands there)."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=timeout
    )


def assert_ok(result: subprocess.CompletedProcess):
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    )


def assert_one_line_error(result: subprocess.CompletedProcess, expected: list, cwd: Path):
    """A bad input ends the run with exactly one `error:` line containing every `expected`
    text, no traceback, a non-zero exit, and before any run directory is written."""
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    error_lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, output
    for text in expected:
        assert text in error_lines[0], (text, error_lines[0])
    assert not (cwd / "runs").exists()


def assert_choice_error(result: subprocess.CompletedProcess, flag: str, value: str, choices: list, cwd: Path):
    """A value outside a `Literal` flag's choices: tyro's usage error (exit 2) names the flag, the value and every
    valid choice, with no traceback, before any run directory is written."""
    assert result.returncode == 2, result.stdout + result.stderr
    output = " ".join((result.stdout + result.stderr).split())  # tyro wraps its message in a box across lines
    assert "Traceback" not in output
    for text in ("invalid choice", f"'{value}'", flag, *(f"'{choice}'" for choice in choices)):
        assert text in output, (text, output)
    assert not (cwd / "runs").exists()


def run_dir(cwd: Path) -> Path:
    """The single run directory a script wrote under `cwd/runs`."""
    dirs = sorted(p for p in (cwd / "runs").iterdir() if p.is_dir())
    assert len(dirs) == 1, f"expected one run dir, found {dirs}"
    return dirs[0]


def read_scalars(path: Path) -> dict:
    """tag -> [(step, value), ...] for every scalar in a TensorBoard run directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_finite_series(scalars: dict, tag: str):
    assert tag in scalars, f"missing scalar {tag!r}; have {sorted(scalars)}"
    values = [v for _, v in scalars[tag]]
    assert values and all(math.isfinite(v) for v in values), f"{tag}: {values}"


@pytest.fixture(autouse=True)
def _work_in_tmp_path(tmp_path, monkeypatch):
    """MuJoCo appends its warnings to MUJOCO_LOG.TXT in the working directory: keep that (and
    anything else a test writes) out of the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def spread_run(tmp_path_factory):
    """One tiny simple_spread_v3 training run (seed 1, --save-model), shared by the smoke,
    determinism and checkpoint tests: (cwd, run dir, CompletedProcess)."""
    cwd = tmp_path_factory.mktemp("spread_seed1")
    result = run_script(cwd, "--env-id", "simple_spread_v3", "--seed", "1", "--save-model", *TINY)
    assert_ok(result)
    return cwd, run_dir(cwd), result
