"""Checkpoint and replay-buffer files, and what --resume restores from them.

A checkpoint is one `torch.save`d dict: the script that wrote it, its `Args` (as a dict), the env step, the learner's
state (every module, optimiser and tensor of the script's `Learner`, by field name) and the random generators' states.
Writes are atomic (a temporary file, then `os.replace`), so an interrupted save never leaves a truncated checkpoint.
"""

import contextlib
import os
import pickle
import random
from dataclasses import asdict

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim

# --resume continues a run under its own flags: only these may differ (a longer budget, the logging, the device, and
# hasac_isaacgym.py's logging interval and compilation, which change speed but not the numbers)
RESUME_MAY_CHANGE = {"resume", "total_timesteps", "save_model", "save_buffer", "eval_interval", "eval_episodes", "track"}
RESUME_MAY_CHANGE |= {"wandb_project_name", "wandb_entity", "capture_video", "cuda", "torch_deterministic", "matmul_precision"}
RESUME_MAY_CHANGE |= {"log_interval", "compile", "cudagraphs"}
STATEFUL = (nn.Module, optim.Optimizer, torch.Tensor)


def _state_of(value):
    """A module's or optimiser's state_dict, a tensor's value, a list of those; None for a setting (an int, a float, a
    string, None), which the script rebuilds from its Args."""
    if isinstance(value, (nn.Module, optim.Optimizer)):
        return value.state_dict()
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)) and value and all(isinstance(item, STATEFUL) for item in value):
        return [_state_of(item) for item in value]
    return None


def learner_state(learner) -> dict:
    """field name -> state, for every field of a `Learner` (a NamedTuple) that holds learned or optimiser state."""
    states = {name: _state_of(value) for name, value in learner._asdict().items()}
    return {name: state for name, state in states.items() if state is not None}


def load_learner_state(learner, states: dict):
    """Loads `learner_state`'s output into a Learner built from the same Args, in place (so that compiled or
    CUDA-graphed functions holding its tensors see the loaded values). ValueError (one line) for state that does not
    fit: other fields, counts, names or shapes (a checkpoint of other code)."""
    expected = learner_state(learner).keys()
    if states.keys() != expected:
        raise ValueError(f"it holds the learner state {sorted(states)}, this run's learner {sorted(expected)}")
    for name, state in states.items():
        value = getattr(learner, name)
        values, saved = (value, state) if isinstance(value, (list, tuple)) else ([value], [state])
        if len(values) != len(saved):
            raise ValueError(f"the checkpoint holds {len(saved)} {name}, this run has {len(values)}")
        for item, item_state in zip(values, saved):
            try:
                if isinstance(item, torch.Tensor):
                    if item.shape != item_state.shape:  # copy_ would broadcast
                        raise RuntimeError(f"shape {tuple(item_state.shape)} where this run has {tuple(item.shape)}")
                    with torch.no_grad():
                        item.copy_(item_state)
                else:
                    item.load_state_dict(item_state)
            except (RuntimeError, KeyError, TypeError, ValueError) as error:  # from other code: one line, not a trace
                raise ValueError(f"its {name} do not fit this run's: {' '.join(str(error).split())}") from None


def save_checkpoint(path: str, script: str, args, global_step: int, learner):
    """Writes the run's `args`, `global_step`, `learner` and random generators to `path`, atomically."""
    checkpoint = {
        "script": os.path.basename(script),
        "args": asdict(args),
        "global_step": global_step,
        "learner": learner_state(learner),
        "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state()),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
    }
    torch.save(checkpoint, path + ".tmp")
    os.replace(path + ".tmp", path)


def read_checkpoint(path: str, script: str, device: torch.device) -> dict:
    """The checkpoint at `path`, written by `script`; ValueError (one line) for anything else."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=False)
    except OSError as error:  # no such file, a folder, no permission: the system's own words
        raise ValueError(str(error)) from None
    except (pickle.UnpicklingError, EOFError, RuntimeError) as error:
        raise ValueError(f"not a checkpoint ({error})") from None
    written_by = checkpoint.get("script") if isinstance(checkpoint, dict) else None
    if written_by != os.path.basename(script):
        raise ValueError(f"not a {os.path.basename(script)} checkpoint (written by {written_by or 'an unknown program'})")
    if not {"args", "global_step", "learner", "rng"} <= checkpoint.keys():
        raise ValueError("written before hasac_utils (its layout differs); retrain, or load it with that version's script")
    return checkpoint


def saved_args(checkpoint: dict, Args):
    """The checkpoint's run's flags as the script's `Args`; ValueError (one line) if they no longer fit it."""
    try:
        return Args(**checkpoint["args"])
    except TypeError as error:
        raise ValueError(f"its flags do not fit this script's Args ({error})") from None


def built_on_one_env(make_env, build_learner, device):
    """For load_learner: -> saved Args -> the Learner that `build_learner(envs, args, device)` builds for one env of
    `make_env(args, 1)`, which is closed again (a MuJoCo model, a StarCraft II game)."""

    def build(args):
        with contextlib.closing(make_env(args, 1)) as envs:
            return build_learner(envs, args, device)

    return build


def load_learner(path: str, script: str, Args, build_learner):
    """For --eval-checkpoint: -> (the saved run's Args, the Learner that `build_learner(saved_args)` builds, holding the
    checkpoint's state). ValueError (one line) for a file that is not `script`'s checkpoint."""
    checkpoint = read_checkpoint(path, script, torch.device("cpu"))
    args = saved_args(checkpoint, Args)
    learner = build_learner(args)
    load_learner_state(learner, checkpoint["learner"])
    return args, learner


def check_resumable(checkpoint: dict, args):
    """ValueError (one line) unless `args` may continue the checkpoint's run: the same flags, but for RESUME_MAY_CHANGE,
    and steps left to train."""
    saved = checkpoint["args"]
    changed = [name for name, value in saved.items() if name not in RESUME_MAY_CHANGE and getattr(args, name, None) != value]
    if changed:
        had = ", ".join(f"--{name.replace('_', '-')} {saved[name]}" for name in changed)
        raise ValueError(f"the checkpoint's run had {had}; drop the flags that differ (--resume PATH alone continues it)")
    if checkpoint["global_step"] >= args.total_timesteps:
        raise ValueError(f"the checkpoint is at step {checkpoint['global_step']}: raise --total-timesteps to continue")


def resume_training(path: str, script: str, learner, args, device: torch.device) -> int:
    """Restores a --resume checkpoint into `learner`: weights, target, temperatures, optimisers and the global random
    generators, so that the run continues where it stopped. -> the saved global step. ValueError (one line) if the
    checkpoint's run had other flags or has already reached --total-timesteps."""
    checkpoint = read_checkpoint(path, script, device)
    check_resumable(checkpoint, args)
    load_learner_state(learner, checkpoint["learner"])
    random.setstate(checkpoint["rng"][0])
    np.random.set_state(checkpoint["rng"][1])
    torch.set_rng_state(checkpoint["rng"][2].cpu())
    if checkpoint["cuda_rng"] is not None and args.cuda:
        torch.cuda.set_rng_state_all([state.cpu() for state in checkpoint["cuda_rng"]])
    return checkpoint["global_step"]


def save_buffer(run_dir: str, rb, global_step: int):
    """Writes the replay buffer (any picklable one) beside the checkpoint of `global_step`, atomically."""
    torch.save({"global_step": global_step, "buffer": rb}, f"{run_dir}/replay_buffer.pt.tmp")
    os.replace(f"{run_dir}/replay_buffer.pt.tmp", f"{run_dir}/replay_buffer.pt")


def load_buffer(run_dir: str, global_step: int, device: torch.device):
    """The replay buffer saved with the checkpoint at `global_step`, or None (none saved, or saved at another step).

    The resumed envs start new episodes, so each env's last stored transition becomes a truncation: its n-step returns
    stop there and bootstrap from its true next state, instead of running on into the next episode's rewards."""
    if not os.path.isfile(f"{run_dir}/replay_buffer.pt"):
        return None
    saved = torch.load(f"{run_dir}/replay_buffer.pt", map_location=device, weights_only=False)
    if saved["global_step"] != global_step:
        return None
    rb = saved["buffer"]
    if hasattr(rb, "episode_ends"):  # hasac_isaacgym.py's on-device buffer (its tensors are on this run's device)
        rb.episode_ends[rb.env_index, rb.heads - 1] = True  # an episode end, not a termination: the target bootstraps
    else:  # stable-baselines3's NStepReplayBuffer
        last = rb.pos - 1  # the row of each env's newest transition
        rb.timeouts[last] = np.logical_or(rb.timeouts[last], 1 - rb.dones[last])
        rb.device = device  # it samples onto the device it was saved with otherwise
    return rb
