"""Bi-DexHands (PKU-MARL's DexterousHands) on Isaac Gym behind hasac_isaacgym.py's batched on-device interface.
Optional: Isaac Gym Preview 4 is not on PyPI, and needs Python 3.6-3.8 and an NVIDIA GPU (see ISAACGYM_INSTALL).
hasac_isaacgym.py imports this module only when a Bi-DexHands task is chosen; like it, it runs on Python 3.8."""

import os
import sys
from typing import Optional

import torch

ISAACGYM_INSTALL = (
    "Bi-DexHands needs Isaac Gym Preview 4 and DexterousHands (Python 3.6-3.8, an NVIDIA GPU): download "
    "Isaac Gym from https://developer.nvidia.com/isaac-gym, `pip install -e isaacgym/python`, then "
    "`git clone https://github.com/PKU-MARL/DexterousHands && pip install -e DexterousHands`"
)


class DexHandsEnv:
    """A Bi-DexHands task on Isaac Gym: two agents, one per Shadow Hand.

    Each agent observes its own hand's block of the task's observation buffer plus the
    shared object block; the critic's state is the whole buffer. The task resets a finished
    env inside its next step (before applying that step's actions), so the observation
    returned with a done is the true final one, and the following step's transition runs
    from a reset the loop never saw: info["valid"] is False for it. A time-limit end
    (progress_buf at the episode length) is a truncation; any other end a termination.
    Observations are slices of the state, gathered by the script's `observations_from_state(state, obs_index)`.
    """

    def __init__(self, task: str, num_envs: int, device, episode_length: int, seed: int, observations_from_state):
        if "isaacgym" not in sys.modules:  # the script imports it before torch (as Isaac Gym requires) where installed
            raise ValueError(f"{task}: Isaac Gym is not installed. {ISAACGYM_INSTALL}")
        if torch.device(device).type != "cuda":
            raise ValueError(f"{task}: Bi-DexHands runs on the GPU; add --cuda")
        try:
            import bidexhands
            from bidexhands.utils.config import get_args, load_cfg, parse_sim_params
            from bidexhands.utils.parse_task import parse_task
            from bidexhands.utils.process_marl import get_AgentIndex
        except ImportError as error:
            raise ValueError(f"{task}: DexterousHands is not installed ({error}). {ISAACGYM_INSTALL}") from None
        self.device, self.num_envs, self.n_agents = torch.device(device), num_envs, 2
        self.episode_length, self.observations_from_state = episode_length, observations_from_state
        # DexterousHands reads its flags from sys.argv and its configs and assets relative to
        # its package directory, as its own train.py does when run from there.
        argv, cwd = sys.argv, os.getcwd()
        sys.argv = [
            argv[0],
            "--task",
            task,
            "--algo",
            "happo",
            "--num_envs",
            str(num_envs),
            "--episode_length",
            str(self.episode_length),
            "--seed",
            str(seed),
            "--headless",
            "--rl_device",
            str(self.device),
            "--sim_device",
            str(self.device),
        ]
        os.chdir(os.path.dirname(bidexhands.__file__))
        try:
            dexhands_args = get_args()
            cfg, cfg_train, _ = load_cfg(dexhands_args)
            sim_params = parse_sim_params(dexhands_args, cfg, cfg_train)
            dexhands_args.task_type = "MultiAgent"
            self.task, self.env = parse_task(dexhands_args, cfg, cfg_train, sim_params, get_AgentIndex(cfg))
        finally:
            sys.argv = argv
            os.chdir(cwd)
        if self.env.num_agents != 2:
            raise ValueError(f"{task}: expected one agent per hand, got {self.env.num_agents} agents")
        hand, self.state_dim = self.env.num_hand_obs, self.task.num_obs
        object_block = list(range(2 * hand, self.state_dim))
        self.obs_index = torch.tensor(
            [list(range(0, hand)) + object_block, list(range(hand, 2 * hand)) + object_block], device=self.device
        )
        self.obs_dims = [self.obs_index.shape[1]] * 2
        self.act_dims = [space.shape[0] for space in self.env.action_space]
        self.obs_dim, self.act_dim = self.obs_dims[0], max(self.act_dims)
        self.action_low = torch.zeros(2, self.act_dim, device=self.device)
        self.action_high = torch.zeros(2, self.act_dim, device=self.device)
        for i, space in enumerate(self.env.action_space):
            self.action_low[i, : self.act_dims[i]] = torch.as_tensor(space.low, dtype=torch.float32, device=self.device)
            self.action_high[i, : self.act_dims[i]] = torch.as_tensor(space.high, dtype=torch.float32, device=self.device)
        self.action_mask = (
            torch.arange(self.act_dim, device=self.device) < torch.tensor(self.act_dims, device=self.device)[:, None]
        )
        self.just_done = torch.zeros(num_envs, dtype=torch.bool, device=self.device)

    def reset(self, seed: Optional[int] = None):
        _, states, _ = self.env.reset()  # [E, N, S]: every agent gets a copy of the buffer
        self.just_done.zero_()
        state = states[:, 0]
        return self.observations_from_state(state, self.obs_index), state, None

    def step(self, actions: torch.Tensor):
        valid = ~self.just_done
        per_hand = [actions[:, i, : self.act_dims[i]] for i in range(2)]
        _, states, rewards, dones, _, _ = self.env.step(per_hand)
        state, reward, done = states[:, 0], rewards[:, 0, 0], dones[:, 0].bool()  # [E, S], [E], [E]
        # tasks end episodes at progress_buf >= max_episode_length or - 1, depending on the task
        timeout = self.task.progress_buf >= self.task.max_episode_length - 1
        terminated, truncated = done & ~timeout & valid, done & timeout & valid
        self.just_done = done
        info = {"final_state": state, "valid": valid}
        return self.observations_from_state(state, self.obs_index), state, None, reward, terminated, truncated, info

    def close(self):
        pass
