"""What every script's `evaluate` needs around it: the training's random stream kept out of it, each eval env's share
of the episodes, and (--capture-video) a render check at the start of a run."""

import contextlib
import random
from typing import Optional

import numpy as np
import torch


@contextlib.contextmanager
def training_rng_preserved():
    """Evaluation must not change training: env libraries may seed the global generators when an env is reset with a
    seed (VMAS calls torch.manual_seed), and the run's random stream must not depend on when or whether it evaluates."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_initialized() else []):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def episode_shares(n_episodes: int, num_envs: int) -> np.ndarray:
    """How many of the `n_episodes` each eval env runs: [E]. Counting whichever episodes end first instead would
    over-represent short episodes (a MaMuJoCo fall ends one early) and bias the mean return."""
    return n_episodes // num_envs + (np.arange(num_envs) < n_episodes % num_envs)


def check_rendering(make_env, args, hint: Optional[str] = "for MuJoCo try MUJOCO_GL=egl or MUJOCO_GL=osmesa"):
    """--capture-video renders one frame at the start: without a working renderer (MuJoCo and football need OpenGL)
    the run ends here rather than at its first evaluation, hours in. `make_env(args, num_envs, render_mode)`; `hint`:
    what to try when rendering fails, or None where the script's envs have no known fix."""
    envs = make_env(args, 1, "rgb_array")
    try:
        envs.reset(seed=args.seed)
        envs.envs[0].render()
    except Exception as error:  # each renderer fails in its own way (MuJoCo: a FatalError without an OpenGL context)
        raise ValueError(f"rendering failed ({error})" + (f"; {hint}" if hint else "")) from None
    finally:
        envs.close()
