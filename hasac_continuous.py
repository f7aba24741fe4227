"""HASAC for continuous actions: Multi-Agent MuJoCo and continuous-action MPE.

Heterogeneous-Agent Soft Actor-Critic (Liu et al., "Maximum Entropy Heterogeneous-Agent
Reinforcement Learning", ICLR 2024): a centralised twin soft Q-function on (global state,
joint action) and one tanh-squashed Gaussian actor per agent, updated one agent after the
other in a random order against the already-updated agents' new actions (Algorithm 2).

    python hasac_continuous.py --env-id Ant-4x2
    python hasac_continuous.py --env-id simple_spread_v3 --n-step 20 --policy-lr 5e-4 --q-lr 5e-4
"""

import collections
import contextlib
import itertools
import math
import os
import pickle
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from typing import Literal, NamedTuple, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
import tyro


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = False
    """if toggled, train on the GPU (an error if none is available)"""
    matmul_precision: Literal["highest", "high", "medium"] = "highest"
    """`torch.set_float32_matmul_precision`: highest (exact float32), high (TF32 on GPUs), medium (also bfloat16)"""
    track: bool = False
    """if toggled, this experiment will be tracked with Weights and Biases"""
    wandb_project_name: str = "hasac"
    """the wandb's project name"""
    wandb_entity: Optional[str] = None
    """the entity (team) of wandb's project"""
    capture_video: bool = False
    """whether to record a video of one deterministic evaluation episode (needs working rendering and moviepy)"""
    save_model: bool = False
    """save the latest weights to `runs/{run_name}/{exp_name}.cleanrl_model` (each evaluation, the end, Ctrl-C)"""
    resume: Optional[str] = None
    """continue training from a --save-model checkpoint, logging into its run dir (implies --save-model)"""
    save_buffer: bool = False
    """with --save-model: also write the replay buffer when the run stops, so that --resume continues it exactly"""

    # Algorithm specific arguments
    env_id: str = "Ant-4x2"
    """the environment id: a MaMuJoCo `Scenario-conf` (e.g. Ant-4x2) or an MPE task (e.g. simple_spread_v3)"""
    total_timesteps: int = 10_000_000
    """total environment steps, summed over the parallel envs"""
    num_envs: int = 20
    """the number of parallel environments"""
    buffer_size: int = 1_000_000
    """the replay memory buffer size (transitions, all envs together)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    tau: float = 0.005
    """target smoothing coefficient"""
    batch_size: int = 1000
    """the batch size of sample from the replay memory"""
    learning_starts: int = 10_000
    """env steps of uniform random actions before learning starts"""
    train_interval: int = 50
    """loop steps (each `num_envs` env steps) between training phases"""
    gradient_steps: int = 50
    """full HASAC updates per training phase"""
    policy_lr: float = 5e-4
    """the learning rate of the actors' optimisers"""
    q_lr: float = 5e-4
    """the learning rate of the Q network optimiser"""
    alpha: float = 0.2
    """the temperature (initial temperature with --autotune)"""
    autotune: bool = True
    """automatic tuning of each agent's temperature toward target entropy -dim(A^i) (on the normalised [-1, 1] action)"""
    alpha_lr: float = 3e-4
    """the learning rate of the temperature optimisers"""
    n_step: int = 20
    """the number of steps of the n-step return"""
    hidden_dim: int = 256
    """the width of both hidden layers of the actors and the critic"""
    share_param: bool = False
    """if toggled, all agents share one actor (their spaces must be equal)"""
    fixed_order: bool = False
    """if toggled, update the agents in the order 1..N instead of a random permutation"""
    eval_interval: int = 200_000
    """env steps between deterministic evaluations"""
    eval_episodes: int = 40
    """episodes per evaluation"""

    # continuous specific arguments
    agent_obsk: Optional[int] = None
    """MaMuJoCo only: observe the K nearest joints (the library's local observations), not the full state plus one-hot id"""
    mpe_clip_actions: bool = False
    """MPE only: act in [-1, 1] and let the env's [0, 1] clip it, as the official code does (see docs/algorithm.md)"""
    eval_checkpoint: Optional[str] = None
    """evaluate (and with --capture-video, record) a saved `.cleanrl_model` instead of training"""


# ENVIRONMENTS: the place to edit when adding one. Every env sits behind one batched interface
# reset(seed) -> obs [E, N, obs_dim], state [E, S], avail None
# step(actions [E, N, act_dim]) -> obs, state, avail, reward [E], terminated [E], truncated [E], info
PAPER_MAMUJOCO_TASKS = (
    *("Ant-2x4", "Ant-4x2", "Ant-8x1", "HalfCheetah-2x3", "HalfCheetah-3x2", "HalfCheetah-6x1", "Walker2d-2x3"),
    *("Walker2d-6x1", "HumanoidStandup-17x1", "ManyAgentSwimmer-10x2"),
)
# scenario names -> gymnasium_robotics.mamujoco_v1 scenarios: the library's own, and the paper's names for two of them
MAMUJOCO_SCENARIOS = {name: name for name in "Ant HalfCheetah Walker2d Hopper Humanoid HumanoidStandup Swimmer".split()}
MAMUJOCO_SCENARIOS |= {name: name for name in "Reacher Pusher ManySegmentSwimmer ManySegmentAnt CoupledHalfCheetah".split()}
MAMUJOCO_SCENARIOS |= {"ManyAgentSwimmer": "ManySegmentSwimmer", "ManyAgentAnt": "ManySegmentAnt"}
# The official implementation groups HalfCheetah-3x2's joints non-consecutively; other
# partitions the library lacks are its joints, in its order, split into consecutive groups.
OFFICIAL_JOINT_GROUPS = {("HalfCheetah", "3x2"): (("bfoot", "bshin"), ("bthigh", "ffoot"), ("fshin", "fthigh"))}
MPE_TASKS = ("simple_spread_v3", "simple_reference_v3", "simple_speaker_listener_v4")
MAMUJOCO_EPISODE_STEPS = 1000
MPE_EPISODE_STEPS = 25


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Per-sample standardisation over the last dim, as the official MaMuJoCo wrapper does."""
    return (x - x.mean(-1, keepdim=True)) / x.std(-1, correction=0, keepdim=True)


def full_state_observations(state: torch.Tensor, n_agents: int) -> torch.Tensor:
    """The official MaMuJoCo observation: each agent sees the full state plus its one-hot id.

    state [..., S] -> obs [..., N, S + N]. It is a function of the state, so the replay buffer
    stores only the state (HumanoidStandup-17x1 would otherwise need N times the memory).
    """
    agent_ids = torch.eye(n_agents, dtype=state.dtype, device=state.device).expand(*state.shape[:-1], -1, -1)
    return standardise(torch.cat([state.unsqueeze(-2).expand(*agent_ids.shape[:-1], -1), agent_ids], -1))


def mamujoco_factorization(scenario: str, agent_conf: str):
    """The library's agent factorisation for `agent_conf`, or one built for a partition it lacks."""
    from gymnasium_robotics.envs.multiagent_mujoco.obsk import get_parts_and_edges

    try:
        get_parts_and_edges(scenario, agent_conf)
        return None  # the library has this partition
    except Exception as error:  # the library raises a bare Exception for a partition it lacks; anything else is a real error
        if not str(error).startswith("UNKNOWN partitioning config"):
            raise
    try:
        (joints,), edges, globals_ = get_parts_and_edges(scenario, None)
    except Exception:
        raise ValueError(f"{scenario} has no partition {agent_conf!r} (see gymnasium_robotics' MaMuJoCo docs)") from None
    n_joints = len(joints)
    groups = OFFICIAL_JOINT_GROUPS.get((scenario, agent_conf))
    if groups is None:
        n_agents, joints_per_agent = (int(x) for x in agent_conf.split("x")) if _is_nxk(agent_conf) else (0, 0)
        if n_agents * joints_per_agent != n_joints:
            raise ValueError(
                f"{scenario} has {n_joints} joints: partition {agent_conf!r} is impossible; "
                f"use NxK with N*K={n_joints} (e.g. {n_joints}x1) or one of the library's own"
            )
        by_index = [joints[i : i + joints_per_agent] for i in range(0, n_joints, joints_per_agent)]
        return {"partition": [tuple(p) for p in by_index], "edges": edges, "globals": globals_}
    by_label = {joint.label: joint for joint in joints}
    return {"partition": [tuple(by_label[j] for j in g) for g in groups], "edges": edges, "globals": globals_}


def _is_nxk(agent_conf: str) -> bool:
    parts = agent_conf.split("x")
    return len(parts) == 2 and all(p.isdigit() and int(p) > 0 for p in parts)


def print_mujoco_warning(message: str):
    """MuJoCo's warning handler, minus one line. MuJoCo 4 warns on every model compile that
    gymnasium's half_cheetah.xml uses the deprecated `settotalmass` (harmless): 40 identical
    lines, and a MUJOCO_LOG.TXT in the working directory, at the start of each HalfCheetah run."""
    if "settotalmass" not in message:
        print(f"MuJoCo warning: {message}", file=sys.stderr)


def make_pettingzoo_env(env_id: str, agent_obsk: Optional[int], render_mode: Optional[str] = None):
    """One pettingzoo ParallelEnv for `env_id`; raises ValueError naming the valid ids."""
    if env_id in MPE_TASKS:
        if agent_obsk is not None:
            raise ValueError("--agent-obsk applies to MaMuJoCo only")
        import importlib

        module = importlib.import_module(f"mpe2.{env_id}")
        return module.parallel_env(continuous_actions=True, max_cycles=MPE_EPISODE_STEPS, render_mode=render_mode)
    scenario, _, agent_conf = env_id.partition("-")
    if scenario not in MAMUJOCO_SCENARIOS or not agent_conf:
        raise ValueError(
            f"unknown env id {env_id!r}; valid: {', '.join(PAPER_MAMUJOCO_TASKS + MPE_TASKS)}, "
            f"or Scenario-NxK with Scenario in {', '.join(MAMUJOCO_SCENARIOS)}"
        )
    if agent_obsk is not None and agent_obsk < 0:
        raise ValueError("--agent-obsk must be >= 0")
    import mujoco
    from gymnasium_robotics import mamujoco_v1

    mujoco.set_mju_user_warning(print_mujoco_warning)
    scenario = MAMUJOCO_SCENARIOS[scenario]
    return mamujoco_v1.parallel_env(
        scenario,
        agent_conf,
        agent_obsk=1 if agent_obsk is None else agent_obsk,
        agent_factorization=mamujoco_factorization(scenario, agent_conf),
        render_mode=render_mode,
        max_episode_steps=MAMUJOCO_EPISODE_STEPS,
    )


class MultiAgentVecEnv:
    """`num_envs` pettingzoo parallel envs stepped in turn, padded to the largest agent.

    Team reward: MaMuJoCo's one reward (it hands every agent a copy); in MPE the sum of all
    agents' rewards, as the official implementation does. Finished envs reset at once; the true final
    observation and state come back in info["final_obs"] / info["final_state"].
    """

    def __init__(self, env_id: str, num_envs: int, agent_obsk: Optional[int] = None, render_mode=None, clip_actions=False):
        if clip_actions and env_id not in MPE_TASKS:
            raise ValueError("--mpe-clip-actions applies to MPE only")
        self.envs = [make_pettingzoo_env(env_id, agent_obsk, render_mode) for _ in range(num_envs)]
        env = self.envs[0]
        self.agents = env.possible_agents
        self.num_envs, self.n_agents = num_envs, len(self.agents)
        self.full_state_obs = env_id not in MPE_TASKS and agent_obsk is None
        action_spaces = [env.action_space(a) for a in self.agents]
        self.act_dims = [space.shape[0] for space in action_spaces]
        self.act_dim = max(self.act_dims)
        self.box_low = np.zeros((self.n_agents, self.act_dim), np.float32)  # the env's Box: warm-up actions are uniform on it
        self.box_high = np.zeros((self.n_agents, self.act_dim), np.float32)
        for i, space in enumerate(action_spaces):
            self.box_low[i, : self.act_dims[i]], self.box_high[i, : self.act_dims[i]] = space.low, space.high
        self.action_mask = np.arange(self.act_dim) < np.array(self.act_dims)[:, None]  # [N, act_dim]
        # The actors' bounds: the Box. The official actors act in tanh's [-1, 1] whatever the Box, and MPE clips the action
        # to its [0, 1]: with --mpe-clip-actions so do ours, and any negative output is exactly zero force on its axis.
        self.clip_actions = clip_actions
        ones = np.ones_like(self.box_low)
        self.action_low, self.action_high = (-ones, ones) if clip_actions else (self.box_low, self.box_high)
        env.reset(seed=0)
        self.state_dim = env.state().shape[0]
        if self.full_state_obs:
            self.obs_dims = [self.state_dim + self.n_agents] * self.n_agents
        else:
            self.obs_dims = [env.observation_space(a).shape[0] for a in self.agents]
        self.obs_dim = max(self.obs_dims)
        self.sum_rewards = env_id in MPE_TASKS

    def _observations(self, states: np.ndarray, agent_obs: list) -> np.ndarray:
        """Some envs' states [E', S] and per-agent observation dicts -> obs [E', N, obs_dim],
        built for all of them at once (full-state mode: one batched call, not one per env)."""
        if self.full_state_obs:
            return full_state_observations(torch.from_numpy(states), self.n_agents).numpy()
        obs = np.zeros((len(states), self.n_agents, self.obs_dim), np.float32)
        for e, observed in enumerate(agent_obs):
            for i, agent in enumerate(self.agents):
                obs[e, i, : self.obs_dims[i]] = observed[agent]
        return obs

    def reset(self, seed: Optional[int] = None):
        agent_obs = [env.reset(seed=None if seed is None else seed + i)[0] for i, env in enumerate(self.envs)]
        state = np.stack([env.state() for env in self.envs]).astype(np.float32)
        return self._observations(state, agent_obs), state, None

    def step(self, actions: np.ndarray):
        if self.clip_actions:  # the replay buffer keeps the actor's unclipped action, as the official one does
            actions = np.clip(actions, self.box_low, self.box_high)
        state = np.empty((self.num_envs, self.state_dim), np.float32)
        reward = np.empty(self.num_envs, np.float32)
        terminated, truncated = np.zeros(self.num_envs, bool), np.zeros(self.num_envs, bool)
        agent_obs, final_agent_obs, final_state = [], [], {}
        for e, env in enumerate(self.envs):
            observed, rewards, terms, truncs, _ = env.step(
                {a: actions[e, i, : self.act_dims[i]] for i, a in enumerate(self.agents)}
            )
            reward[e] = sum(rewards.values()) if self.sum_rewards else rewards[self.agents[0]]
            terminated[e] = any(terms.values())
            truncated[e] = any(truncs.values()) and not terminated[e]
            if terminated[e] or truncated[e]:
                final_state[e] = np.asarray(env.state(), np.float32)
                final_agent_obs.append(observed)
                observed = env.reset()[0]
            agent_obs.append(observed)
            state[e] = env.state()
        info = {"final_obs": {}, "final_state": final_state}
        if final_state:
            final_obs = self._observations(np.stack(list(final_state.values())), final_agent_obs)
            info["final_obs"] = dict(zip(final_state, final_obs))
        return self._observations(state, agent_obs), state, None, reward, terminated, truncated, info

    def close(self):
        for env in self.envs:
            env.close()


def make_env(args: Args, num_envs: int, render_mode=None) -> MultiAgentVecEnv:
    return MultiAgentVecEnv(args.env_id, num_envs, args.agent_obsk, render_mode, args.mpe_clip_actions)


# ALGO LOGIC: initialize agent here:
LOG_STD_MIN, LOG_STD_MAX = -20, 2


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x @ weight.T + bias for one layer ([out, in]) or a stack of layers ([K, out, in], x [K, B, in])."""
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    return torch.baddbmm(bias.unsqueeze(-2), x, weight.transpose(-1, -2))


class Actor(nn.Module):
    """One agent's tanh-squashed Gaussian policy, rescaled to its action bounds.

    MLP: ReLU, then tanh on the last hidden layer; one linear head gives mean and log_std.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, action_low, action_high):
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.fc1 = nn.Linear(obs_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.fc_head = nn.Linear(hidden_dim, 2 * act_dim)  # [mean, log_std]
        low, high = torch.as_tensor(action_low, dtype=torch.float32), torch.as_tensor(action_high, dtype=torch.float32)
        self.register_buffer("action_scale", (high - low) / 2)
        self.register_buffer("action_bias", (high + low) / 2)

    def layers(self):
        """(w1, b1, w2, b2, w_head, b_head, action_scale, action_bias), as `sample_actions` takes them."""
        return (
            *self.fc1.parameters(),
            *self.fc2.parameters(),
            *self.fc_head.parameters(),
            self.action_scale,
            self.action_bias,
        )

    def padded_layers(self, obs_dim: int, act_dim: int):
        """`layers()` zero-padded to (obs_dim, act_dim), for stacking with other agents'."""
        if (obs_dim, act_dim) == (self.obs_dim, self.act_dim):
            return self.layers()
        w1, b1, w2, b2, w_head, b_head, action_scale, action_bias = self.layers()
        pad_out = act_dim - self.act_dim  # the head's mean and log_std halves are padded apart
        w_head = F.pad(w_head.view(2, self.act_dim, -1), (0, 0, 0, pad_out)).reshape(2 * act_dim, -1)
        b_head = F.pad(b_head.view(2, self.act_dim), (0, pad_out)).reshape(-1)
        scale, bias = F.pad(action_scale, (0, pad_out), value=1.0), F.pad(action_bias, (0, pad_out))
        return F.pad(w1, (0, obs_dim - self.obs_dim)), b1, w2, b2, w_head, b_head, scale, bias

    def forward(self, obs: torch.Tensor, deterministic: bool = False):
        """obs [..., obs_dim] (padding beyond obs_dim is ignored) -> action [..., act_dim], log_prob [...]."""
        return sample_actions(obs[..., : self.obs_dim], self.layers(), None, deterministic)


def stack_actor_weights(actors, policy_of_agent, obs_dim: int, act_dim: int):
    """All agents' weights stacked on a leading agent dim, so acting for every agent is one
    batched matmul per layer (a Python loop over agents would run N small matmuls)."""
    per_agent = [actors[p].padded_layers(obs_dim, act_dim) for p in policy_of_agent]
    return tuple(torch.stack(layer) for layer in zip(*per_agent))


def sample_actions(obs, weights, action_mask=None, deterministic: bool = False):
    """Squashed-Gaussian actions and their log-probabilities.

    obs [..., obs_dim] with one agent's `Actor.layers()`, or [N, B, obs_dim] with
    `stack_actor_weights`.
    Returns action [..., act_dim] in the env's bounds and log_prob [...] with the tanh and
    rescaling Jacobians; `action_mask` [N, 1, act_dim] zeroes padded dims and drops them
    from log_prob.
    """
    w1, b1, w2, b2, w_head, b_head, action_scale, action_bias = weights
    hidden = linear(linear(obs, w1, b1).relu_(), w2, b2).tanh_()  # in place: one [..., hidden] buffer less per layer
    mean, log_std = linear(hidden, w_head, b_head).chunk(2, -1)
    if action_scale.dim() == 2:  # stacked: [N, act_dim] -> [N, 1, act_dim]
        action_scale, action_bias = action_scale.unsqueeze(1), action_bias.unsqueeze(1)
    if deterministic:
        pre_tanh, log_prob = mean, torch.zeros_like(mean)
    else:
        log_std = torch.clamp(log_std, LOG_STD_MIN, LOG_STD_MAX)
        noise = torch.randn_like(mean)
        pre_tanh = mean + log_std.exp() * noise  # reparameterised u ~ N(mean, std)
        # log N(u) - log|d tanh(u)/du| - log|scale|, with log(1 - tanh(u)^2) in its stable form
        log_prob = (
            -0.5 * noise.pow(2)
            - log_std
            - 0.5 * math.log(2 * math.pi)
            - 2 * (math.log(2) - pre_tanh - F.softplus(-2 * pre_tanh))
            - torch.log(action_scale)
        )
    action = torch.tanh(pre_tanh) * action_scale + action_bias
    if action_mask is not None:
        action, log_prob = action * action_mask, log_prob * action_mask
    return action, log_prob.sum(-1)


class SoftQNetwork(nn.Module):
    """Twin soft Q-functions Q_1, Q_2 on (global state, joint action), fused into one network.

    Each layer holds both twins' weights, so one batched matmul evaluates both. Plain MLP
    (ReLU, ReLU, linear) with PyTorch's default init, as in the official implementation.
    """

    def __init__(self, state_dim: int, joint_action_dim: int, hidden_dim: int):
        super().__init__()
        self.state_dim, self.hidden_dim = state_dim, hidden_dim
        twins = [
            [nn.Linear(state_dim + joint_action_dim, hidden_dim), nn.Linear(hidden_dim, hidden_dim), nn.Linear(hidden_dim, 1)]
            for _ in range(2)
        ]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([layer.weight.data for layer in layers])) for layers in zip(*twins)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([layer.bias.data for layer in layers])) for layers in zip(*twins)
        )

    def state_features(self, state: torch.Tensor) -> torch.Tensor:
        """The state's part of both twins' first layer: [B, S] -> [2, B, hidden].

        The critic has no normalisation layer, so this is exact and can be computed once per
        update for all the sequential actor steps, which change only the action part.
        """
        w1_state = self.weights[0][:, :, : self.state_dim]
        return torch.baddbmm(self.biases[0].unsqueeze(1), state.expand(2, -1, -1), w1_state.transpose(1, 2))

    def q_values(self, state_features: torch.Tensor, joint_action: torch.Tensor) -> torch.Tensor:
        """[2, B, hidden], joint action [B, N * act_dim] -> Q_1, Q_2 as [2, B, 1]."""
        w1_action = self.weights[0][:, :, self.state_dim :]
        # activations in place: one [2, B, hidden] buffer less per layer
        hidden = torch.baddbmm(state_features, joint_action.expand(2, -1, -1), w1_action.transpose(1, 2)).relu_()
        hidden = linear(hidden, self.weights[1], self.biases[1]).relu_()
        return linear(hidden, self.weights[2], self.biases[2])

    def forward(self, state: torch.Tensor, joint_action: torch.Tensor) -> torch.Tensor:
        return self.q_values(self.state_features(state), joint_action)


class Batch(NamedTuple):
    obs: torch.Tensor  # [B, N, obs_dim]
    state: torch.Tensor  # [B, S]
    actions: torch.Tensor  # [B, N, act_dim]
    rewards: torch.Tensor  # [B, 1] n-step discounted reward sum
    next_obs: torch.Tensor  # [B, N, obs_dim] k <= n steps later
    next_state: torch.Tensor  # [B, S]
    terminations: torch.Tensor  # [B, 1] 1 if the episode really ended within the k steps
    discounts: torch.Tensor  # [B, 1] gamma^k


def critic_target(qf_target, batch: Batch, next_actions, next_log_probs, alphas) -> torch.Tensor:
    """Soft n-step Bellman target y [B, 1] (Eq. 5-6, Algorithm 2).

    next_actions [B, N, act_dim] and next_log_probs [B, N] are fresh samples from the current
    policies. The entropy term is sum_i alpha^i log pi^i, which matches each actor's loss
    when temperatures are per agent (the official implementation instead tunes one separate
    critic temperature on sum_i log pi^i).
    """
    next_q = qf_target(batch.next_state, next_actions.flatten(1)).min(0).values  # [B, 1]
    soft_value = next_q - (next_log_probs * alphas).sum(-1, keepdim=True)
    return batch.rewards + batch.discounts * (1 - batch.terminations) * soft_value


def actor_loss(qf, state_features, joint_action, log_probs, alphas) -> torch.Tensor:
    """Eq. 10: E[alpha^i log pi^i(a^i|o^i) - min_j Q_j(s, a)] for the agents being updated.

    log_probs [B, G] and alphas [G] of the G agents whose fresh actions joint_action [B, N, act_dim]
    holds (the sequential update passes one agent at a time).
    """
    min_q = qf.q_values(state_features, joint_action.flatten(1)).min(0).values  # [B, 1]
    return ((log_probs * alphas).sum(-1) - min_q.squeeze(-1)).mean()


def alpha_loss(log_alpha: torch.Tensor, log_probs: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """Appendix H.1: J(alpha) = E[-alpha (log pi + target entropy)], optimised on log alpha."""
    return (-log_alpha.exp() * (log_probs.detach() + target_entropy)).mean()


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float):
    """Polyak averaging: target <- (1 - tau) target + tau online."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


class Learner(NamedTuple):
    """Everything one update reads and changes."""

    actors: list  # one Actor per policy (one in all with --share-param)
    policy_of_agent: list  # agent index -> index into actors
    actor_optimizers: list
    qf: SoftQNetwork
    qf_target: SoftQNetwork
    q_optimizer: optim.Optimizer
    log_alphas: list  # one scalar tensor per agent
    alpha_optimizers: Optional[list]  # None: fixed temperature
    target_entropies: list  # -dim(A^i) on the normalised action, in the env's units
    action_mask: torch.Tensor  # [N, 1, act_dim]


def hasac_update(learner: Learner, batch: Batch, agent_order, tau: float) -> dict:
    """One full HASAC update: the critic, then each agent in `agent_order` in turn, then the
    target critic. Returns the losses as tensors (no host sync here)."""
    actors, qf, mask = learner.actors, learner.qf, learner.action_mask
    obs_dim, act_dim = batch.obs.shape[-1], batch.actions.shape[-1]
    alphas = torch.stack(learner.log_alphas).detach().exp()  # [N]

    # Critic: joint soft policy evaluation (Eq. 5-6), with fresh next actions from the current
    # policies, every agent's in one batched call
    with torch.no_grad():
        weights = stack_actor_weights(actors, learner.policy_of_agent, obs_dim, act_dim)
        next_actions, next_log_probs = sample_actions(batch.next_obs.transpose(0, 1), weights, mask)  # [N, B, act_dim], [N, B]
        target = critic_target(learner.qf_target, batch, next_actions.transpose(0, 1), next_log_probs.T, alphas)
    q_values = qf(batch.state, batch.actions.flatten(1))  # [2, B, 1]
    qf1_loss, qf2_loss = F.mse_loss(q_values[0], target), F.mse_loss(q_values[1], target)
    learner.q_optimizer.zero_grad(set_to_none=True)
    (qf1_loss + qf2_loss).backward()
    learner.q_optimizer.step()

    # Actors: heterogeneous-agent soft policy improvement, one agent after another (Eq. 10).
    # With --share-param the shared actor takes one step per agent, in the same order, as the
    # official implementation does: each agent's step sees the earlier agents' new actions.
    # Every agent's actions at s, drawn with gradient before any actor step. Detached, they are the joint action the
    # agents start from; each agent's own step differentiates its draw when its actor has not moved since (always,
    # unless the actor is shared), which saves drawing them a second time.
    draws = {i: actors[learner.policy_of_agent[i]](batch.obs[:, i : i + 1]) for i in agent_order}  # [B, 1, act_dim_i], [B, 1]
    actions = torch.zeros_like(batch.actions)  # [B, N, act_dim]
    for i, (new_actions, _) in draws.items():
        actions[:, i : i + 1, : new_actions.shape[-1]] = new_actions.detach()
    with torch.no_grad():
        state_features = qf.state_features(batch.state)
    qf.requires_grad_(False)
    actor_losses, alpha_losses, entropies, stepped = [], [], [], set()
    for step, i in enumerate(agent_order):
        policy = learner.policy_of_agent[i]
        actor, agent = actors[policy], slice(i, i + 1)
        new_actions, new_log_probs = actor(batch.obs[:, agent]) if policy in stepped else draws[i]  # a shared actor moved
        stepped.add(policy)
        joint_action = actions.clone()
        joint_action[:, agent, : actor.act_dim] = new_actions
        loss = actor_loss(qf, state_features, joint_action, new_log_probs, alphas[agent])
        learner.actor_optimizers[policy].zero_grad(set_to_none=True)
        loss.backward()
        learner.actor_optimizers[policy].step()
        actor_losses.append(loss.detach())
        entropies.append(-new_log_probs.detach().mean())
        if learner.alpha_optimizers is not None:
            temperature_loss = alpha_loss(learner.log_alphas[i], new_log_probs[:, 0], learner.target_entropies[i])
            learner.alpha_optimizers[i].zero_grad(set_to_none=True)
            temperature_loss.backward()
            learner.alpha_optimizers[i].step()
            alpha_losses.append(temperature_loss.detach())
        if step < len(agent_order) - 1:  # later agents act against this agent's updated policy
            with torch.no_grad():
                resampled, _ = actor(batch.obs[:, agent])
                actions[:, agent, : actor.act_dim] = resampled
    qf.requires_grad_(True)

    soft_update(learner.qf_target, qf, tau)
    return {
        "qf1_loss": qf1_loss.detach(),
        "qf2_loss": qf2_loss.detach(),
        "qf1_values": q_values[0].detach().mean(),
        "actor_loss": torch.stack(actor_losses).mean(),
        "alpha_loss": torch.stack(alpha_losses).mean() if alpha_losses else None,
        "entropy": torch.stack(entropies).mean(),
        "alphas": alphas,
    }


def build_learner(envs: MultiAgentVecEnv, args: Args, device: torch.device) -> Learner:
    n_policies = 1 if args.share_param else envs.n_agents
    actors = [
        Actor(
            envs.obs_dims[i],
            envs.act_dims[i],
            args.hidden_dim,
            envs.action_low[i, : envs.act_dims[i]],
            envs.action_high[i, : envs.act_dims[i]],
        ).to(device)
        for i in range(n_policies)
    ]
    qf = SoftQNetwork(envs.state_dim, envs.n_agents * envs.act_dim, args.hidden_dim).to(device)
    qf_target = SoftQNetwork(envs.state_dim, envs.n_agents * envs.act_dim, args.hidden_dim).to(device)
    qf_target.load_state_dict(qf.state_dict())
    log_alphas = [
        torch.full((), float(np.log(args.alpha)), device=device, requires_grad=args.autotune) for _ in range(envs.n_agents)
    ]
    policy_of_agent = [0] * envs.n_agents if args.share_param else list(range(envs.n_agents))
    return Learner(
        actors=actors,
        policy_of_agent=policy_of_agent,
        actor_optimizers=[optim.Adam(actor.parameters(), lr=args.policy_lr, fused=True) for actor in actors],
        qf=qf,
        qf_target=qf_target,
        q_optimizer=optim.Adam(qf.parameters(), lr=args.q_lr, fused=True),
        log_alphas=log_alphas,
        alpha_optimizers=[optim.Adam([log_alpha], lr=args.alpha_lr) for log_alpha in log_alphas] if args.autotune else None,
        # -dim(A^i) on the policy's normalised [-1, 1] action (SAC's heuristic, and where the
        # official implementation's log-probs live); log_probs here are in the env's units, so
        # the target shifts by the rescaling's log-Jacobian and does not depend on those units.
        target_entropies=[float(torch.log(actors[p].action_scale).sum()) - actors[p].act_dim for p in policy_of_agent],
        action_mask=torch.as_tensor(envs.action_mask, device=device).unsqueeze(1),
    )


def transition_to_store(next_obs, next_state, terminations, truncations, infos):
    """What the replay buffer stores for one vector step: the true final observation and state where an episode ended
    (the env has already reset), done = terminated or truncated, and the time-out flag that makes a truncation bootstrap."""
    real_next_obs, real_next_state = next_obs.copy(), next_state.copy()
    for e in infos["final_state"]:
        real_next_obs[e], real_next_state[e] = infos["final_obs"][e], infos["final_state"][e]
    timeouts = [{"TimeLimit.truncated": bool(t)} for t in truncations]
    return real_next_obs, real_next_state, terminations | truncations, timeouts


@torch.no_grad()
def act(learner: Learner, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
    """obs [E, N, obs_dim] -> actions [E, N, act_dim] from every agent's policy at once."""
    weights = stack_actor_weights(learner.actors, learner.policy_of_agent, obs.shape[-1], learner.action_mask.shape[-1])
    actions, _ = sample_actions(obs.transpose(0, 1), weights, learner.action_mask, deterministic)
    return actions.transpose(0, 1)


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


@training_rng_preserved()
def evaluate(learner: Learner, envs: MultiAgentVecEnv, n_episodes: int, seed: int, device, frames: Optional[list] = None):
    """Team returns of `n_episodes` episodes with deterministic actions (tanh of the mean), each env running its share.
    With `frames`, env 0's first episode is rendered into it."""
    obs, _, _ = envs.reset(seed=seed)
    shares = episode_shares(n_episodes, envs.num_envs)
    returns, episode_return = [[] for _ in shares], np.zeros(envs.num_envs)
    while any(len(r) < share for r, share in zip(returns, shares)):
        if frames is not None and not returns[0]:
            frames.append(envs.envs[0].render())
        actions = act(learner, torch.as_tensor(obs, device=device), deterministic=True)
        obs, _, _, reward, terminated, truncated, _ = envs.step(actions.cpu().numpy())
        episode_return += reward
        for e in np.flatnonzero(terminated | truncated):
            if len(returns[e]) < shares[e]:
                returns[e].append(episode_return[e])
            episode_return[e] = 0.0
    return [r for env_returns in returns for r in env_returns]


def save_checkpoint(path: str, learner: Learner, args: Args, global_step: int):
    torch.save(
        {
            "script": os.path.basename(__file__),
            "args": asdict(args),
            "global_step": global_step,
            "actors": [actor.state_dict() for actor in learner.actors],
            "qf": learner.qf.state_dict(),
            "qf_target": learner.qf_target.state_dict(),
            "log_alphas": torch.stack(learner.log_alphas).detach(),
            # the training state that --resume restores
            "actor_optimizers": [optimizer.state_dict() for optimizer in learner.actor_optimizers],
            "q_optimizer": learner.q_optimizer.state_dict(),
            "alpha_optimizers": [optimizer.state_dict() for optimizer in learner.alpha_optimizers or []],
            "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state()),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        },
        path + ".tmp",
    )
    os.replace(path + ".tmp", path)  # an interrupted save never leaves a truncated checkpoint


def read_checkpoint(path: str, device: torch.device) -> dict:
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=False)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as error:
        raise ValueError(f"not a checkpoint ({error})") from None
    script = checkpoint.get("script") if isinstance(checkpoint, dict) else None
    if script != os.path.basename(__file__):
        raise ValueError(f"not a {os.path.basename(__file__)} checkpoint (written by {script or 'an unknown program'})")
    return checkpoint


def load_checkpoint(path: str, device: torch.device):
    """-> (the saved run's Args, a Learner holding its weights)."""
    checkpoint = read_checkpoint(path, device)
    saved_args = Args(**checkpoint["args"])
    envs = make_env(saved_args, 1)
    learner = build_learner(envs, saved_args, device)
    envs.close()
    load_weights(learner, checkpoint)
    return saved_args, learner


def load_weights(learner: Learner, checkpoint: dict):
    for actor, state_dict in zip(learner.actors, checkpoint["actors"]):
        actor.load_state_dict(state_dict)
    learner.qf.load_state_dict(checkpoint["qf"])
    learner.qf_target.load_state_dict(checkpoint["qf_target"])
    with torch.no_grad():
        for log_alpha, value in zip(learner.log_alphas, checkpoint["log_alphas"]):
            log_alpha.copy_(value)


# --resume continues a run under its own flags: only these may differ (a longer budget, the logging, the device)
RESUME_MAY_CHANGE = {"resume", "total_timesteps", "save_model", "save_buffer", "eval_interval", "eval_episodes", "track"}
RESUME_MAY_CHANGE |= {"wandb_project_name", "wandb_entity", "capture_video", "cuda", "torch_deterministic", "matmul_precision"}


def resume_training(path: str, learner: Learner, args: Args, device: torch.device) -> int:
    """Restores a --resume checkpoint into `learner`: weights, target, temperatures, optimisers and the global random
    generators, so that the run continues where it stopped. -> the saved global step."""
    checkpoint = read_checkpoint(path, device)
    changed = [
        name
        for name, value in checkpoint["args"].items()
        if name not in RESUME_MAY_CHANGE and getattr(args, name, None) != value
    ]
    if changed:
        saved = ", ".join(f"--{name.replace('_', '-')} {checkpoint['args'][name]}" for name in changed)
        raise ValueError(f"the checkpoint's run had {saved}; resume with the run's own flags")
    if checkpoint["global_step"] >= args.total_timesteps:
        raise ValueError(f"the checkpoint is at step {checkpoint['global_step']}: raise --total-timesteps to continue")
    load_weights(learner, checkpoint)
    for optimizer, state in zip(learner.actor_optimizers, checkpoint["actor_optimizers"]):
        optimizer.load_state_dict(state)
    learner.q_optimizer.load_state_dict(checkpoint["q_optimizer"])
    for optimizer, state in zip(learner.alpha_optimizers or [], checkpoint["alpha_optimizers"]):
        optimizer.load_state_dict(state)
    random.setstate(checkpoint["rng"][0])
    np.random.set_state(checkpoint["rng"][1])
    torch.set_rng_state(checkpoint["rng"][2].cpu())
    if checkpoint["cuda_rng"] is not None and args.cuda:
        torch.cuda.set_rng_state_all([state.cpu() for state in checkpoint["cuda_rng"]])
    return checkpoint["global_step"]


def save_buffer(run_dir: str, rb, global_step: int):
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
    last = rb.pos - 1  # the row of each env's newest transition
    rb.timeouts[last] = np.logical_or(rb.timeouts[last], 1 - rb.dones[last])
    rb.device = device  # it samples onto the device it was saved with otherwise
    return rb


def check_rendering(args: Args):
    """--capture-video renders one frame at the start: without a working renderer (MuJoCo needs an OpenGL backend) the
    run ends here rather than at its first evaluation, hours in."""
    envs = make_env(args, 1, "rgb_array")
    try:
        envs.reset(seed=args.seed)
        envs.envs[0].render()
    except Exception as error:  # each renderer fails in its own way (MuJoCo: a FatalError without an OpenGL context)
        raise ValueError(f"rendering failed ({error}); for MuJoCo try MUJOCO_GL=egl or MUJOCO_GL=osmesa") from None
    finally:
        envs.close()


def check_args(args: Args):
    """Bad flag combinations end the run with one line naming what is valid."""
    positive = ("total_timesteps", "num_envs", "buffer_size", "batch_size", "train_interval", "gradient_steps", "n_step")
    for name in positive + ("hidden_dim", "eval_interval", "eval_episodes"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 < args.tau <= 1:
        raise ValueError(f"--tau must be in (0, 1], got {args.tau}")
    if not 0 <= args.gamma <= 1:
        raise ValueError(f"--gamma must be in [0, 1], got {args.gamma}")
    for name in ("policy_lr", "q_lr", "alpha_lr"):
        if not 0 <= getattr(args, name) < math.inf:
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {getattr(args, name)}")
    if not 0 < args.alpha < math.inf:
        raise ValueError(f"--alpha must be positive and finite (the initial value with --autotune), got {args.alpha}")
    if not args.exp_name or os.sep in args.exp_name:
        raise ValueError(f"--exp-name names the run and its checkpoint file: no {os.sep!r}, got {args.exp_name!r}")
    if args.buffer_size // args.num_envs <= args.n_step:
        raise ValueError("--buffer-size / --num-envs must exceed --n-step")
    if args.buffer_size < args.batch_size:
        raise ValueError(f"--buffer-size ({args.buffer_size}) must be at least --batch-size ({args.batch_size})")
    if args.eval_checkpoint is None and args.total_timesteps % args.num_envs:
        lower = args.total_timesteps // args.num_envs * args.num_envs
        raise ValueError(
            f"--total-timesteps must be a multiple of --num-envs {args.num_envs}: "
            f"{lower or args.num_envs} or {lower + args.num_envs}"
        )
    if args.eval_checkpoint is None and args.total_timesteps <= args.learning_starts:
        raise ValueError(
            f"--total-timesteps ({args.total_timesteps}) must exceed --learning-starts ({args.learning_starts}), "
            "or nothing is trained"
        )
    if args.resume is not None and (args.eval_checkpoint is not None or not os.path.isfile(args.resume)):
        raise ValueError(f"--resume {args.resume!r} is not a file" if args.eval_checkpoint is None else "--resume trains")
    if args.save_buffer and not (args.save_model or args.resume):
        raise ValueError("--save-buffer writes the buffer beside the checkpoint: add --save-model")
    if args.cuda and not torch.cuda.is_available():
        raise ValueError("--cuda was given but torch.cuda.is_available() is False; drop --cuda to train on the CPU")
    if args.capture_video:
        try:
            import moviepy  # noqa: F401  (gymnasium's save_video needs it; check before any long work)
        except ImportError:
            raise ValueError("--capture-video needs moviepy: pip install moviepy") from None
    if args.track:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ValueError("--track needs wandb: pip install wandb") from None


def make_run_dir(run_name: str) -> str:
    """Creates runs/{run_name} and returns the name. A run started in the same second with the same env and seed gets
    a suffix (_2, _3, ...) instead of mixing its logs and checkpoint into the other's folder."""
    for name in itertools.chain([run_name], (f"{run_name}_{k}" for k in itertools.count(2))):
        with contextlib.suppress(FileExistsError):
            os.makedirs(f"runs/{name}")
            return name


def progress_line(global_step: int, total_timesteps: int, recent_sps: float, recent_returns, warming_up: bool) -> str:
    """How far along the run is, how fast it went lately, how well it does, and how long it still needs."""
    seconds_left = int((total_timesteps - global_step) / max(recent_sps, 1e-9))
    hours, minutes = divmod(seconds_left // 60, 60)
    left = f"~{hours}h{minutes:02d}m" if hours else f"~{minutes}m{seconds_left % 60:02d}s"
    if warming_up:  # no update yet: the warm-up runs far faster than training, so its speed tells nothing
        left = "unknown until training starts"
    returns = f"{np.mean(recent_returns):.2f}" if recent_returns else "n/a"
    return (
        f"global_step={global_step}/{total_timesteps} ({100 * global_step / total_timesteps:.1f}%), SPS={recent_sps:.0f}, "
        f"recent episodic_return={returns}, time left {left}"
    )


def render_video(frames: list, video_dir: str, fps: int):
    from gymnasium.utils.save_video import save_video

    save_video(frames, video_dir, fps=fps, name_prefix="eval")
    print(f"video written to {video_dir}/")


if __name__ == "__main__":
    args = tyro.cli(Args)
    try:
        check_args(args)
        device = torch.device("cuda" if args.cuda else "cpu")
        if args.eval_checkpoint is None:
            envs = make_env(args, args.num_envs)
            if args.share_param and (len(set(envs.obs_dims)) > 1 or len(set(envs.act_dims)) > 1):
                raise ValueError(
                    f"--share-param needs equal agent spaces; {args.env_id} has obs dims {envs.obs_dims} "
                    f"and action dims {envs.act_dims}"
                )
            if args.capture_video:
                check_rendering(args)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_float32_matmul_precision(args.matmul_precision)

    if args.eval_checkpoint is not None:
        try:
            saved_args, learner = load_checkpoint(args.eval_checkpoint, device)
        except (OSError, KeyError, TypeError, RuntimeError, ValueError) as error:
            raise SystemExit(f"error: cannot load checkpoint {args.eval_checkpoint!r}: {error}") from None
        try:
            if args.capture_video:
                check_rendering(saved_args)
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None
        eval_envs = make_env(
            saved_args, min(args.eval_episodes, saved_args.num_envs), "rgb_array" if args.capture_video else None
        )
        frames = [] if args.capture_video else None
        returns = evaluate(learner, eval_envs, args.eval_episodes, args.seed, device, frames)
        print(
            f"{saved_args.env_id}: eval/episodic_return {np.mean(returns):.2f} +- {np.std(returns):.2f} "
            f"over {len(returns)} episodes"
        )
        if frames:
            render_video(frames, f"videos/{os.path.basename(os.path.dirname(os.path.abspath(args.eval_checkpoint)))}", fps=30)
        sys.exit(0)

    # ALGO LOGIC: the learner, the replay memory and the evaluation envs
    learner = build_learner(envs, args, device)
    n_agents, obs_dim, act_dim = envs.n_agents, envs.obs_dim, envs.act_dim
    stored_obs_dim = 0 if envs.full_state_obs else n_agents * obs_dim  # full-state observations are rebuilt from the state

    def pack(obs: np.ndarray, state: np.ndarray) -> np.ndarray:  # -> [E, stored_obs_dim + S]
        return np.concatenate([obs.reshape(len(obs), -1)[:, :stored_obs_dim], state], 1)

    def unpack(flat: torch.Tensor):  # [B, stored_obs_dim + S] -> obs [B, N, obs_dim], state [B, S]
        state = flat[:, stored_obs_dim:]
        obs = (
            full_state_observations(state, n_agents)
            if envs.full_state_obs
            else flat[:, :stored_obs_dim].view(-1, n_agents, obs_dim)
        )
        return obs, state

    import gymnasium as gym
    from stable_baselines3.common.buffers import NStepReplayBuffer  # n-step returns, time limits and the write head

    rb = NStepReplayBuffer(
        args.buffer_size,
        gym.spaces.Box(-np.inf, np.inf, (stored_obs_dim + envs.state_dim,), np.float32),
        gym.spaces.Box(-np.inf, np.inf, (n_agents * act_dim,), np.float32),
        device,
        n_envs=args.num_envs,
        handle_timeout_termination=True,
        n_steps=args.n_step,
        gamma=args.gamma,
    )
    eval_envs = make_env(args, min(args.eval_episodes, args.num_envs), "rgb_array" if args.capture_video else None)

    # the run dir comes last, so that a failure while building the above leaves nothing under runs/
    if args.resume:  # the same run dir: its logs continue in the same curves
        run_dir, args.save_model = os.path.dirname(os.path.abspath(args.resume)), True
    else:
        run_dir = "runs/" + make_run_dir(f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}")
    run_name = os.path.basename(run_dir)
    model_path = f"{run_dir}/{args.exp_name}.cleanrl_model"

    def run_evaluation(global_step: int):
        frames = [] if args.capture_video else None
        returns = evaluate(learner, eval_envs, args.eval_episodes, args.seed + 10_000, device, frames)
        writer.add_scalar("eval/episodic_return", np.mean(returns), global_step)
        print(f"global_step={global_step}, eval/episodic_return={np.mean(returns):.2f}")
        if frames:
            render_video(frames, f"videos/{run_name}/step_{global_step}", fps=30)
        if args.save_model:
            save_checkpoint(model_path, learner, args, global_step)

    # Ctrl-C and SIGTERM (a scheduler's stop) end the run after the current iteration, so that the checkpoint holds a
    # whole update; a second Ctrl-C stops at once. A repeated SIGTERM only asks again: a process group's SIGTERM and
    # benchmark/run.py's copy of it are one request.
    stop_signals = []

    def request_stop(signum, frame):
        stop_signals.append(signum)
        if stop_signals.count(signal.SIGINT) > 1:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    # TRY NOT TO MODIFY: start the game, or continue it (--resume): after the reset, which may seed the generators
    obs, state, _ = envs.reset(seed=args.seed)
    global_step, learning_starts = 0, args.learning_starts
    if args.resume:
        try:
            global_step = resume_training(args.resume, learner, args, device)
        except (OSError, KeyError, TypeError, RuntimeError, ValueError) as error:
            raise SystemExit(f"error: cannot resume from {args.resume!r}: {error}") from None
        saved_rb = load_buffer(run_dir, global_step, device)
        if saved_rb is None:  # no buffer of this step: a fresh warm-up refills it, acting with the restored policies
            learning_starts = global_step + args.learning_starts
            if learning_starts >= args.total_timesteps:
                print(f"warning: without its buffer the run warms up again to step {learning_starts}, so it will not train")
        rb = rb if saved_rb is None else saved_rb
        print(f"resumed at global_step={global_step} in {run_dir}, {'without' if saved_rb is None else 'with'} its buffer")
    if args.track:  # after --resume read its checkpoint (a bad one leaves the wandb run alone), before the writer
        import wandb

        wandb.init(
            project=args.wandb_project_name,
            entity=args.wandb_entity,
            sync_tensorboard=True,
            config=vars(args),
            name=run_name,
            id=run_name,  # with resume="allow", a --resume run (the same run dir) continues the same wandb run
            resume="allow",
            save_code=True,
        )
    from torch.utils.tensorboard import SummaryWriter

    # a resumed run's curves continue: purge_step drops what a killed run logged after its checkpoint
    writer = SummaryWriter(run_dir, purge_step=global_step + 1 if args.resume else None)
    writer.add_text(
        "hyperparameters", "|param|value|\n|-|-|\n%s" % ("\n".join([f"|{key}|{value}|" for key, value in vars(args).items()]))
    )
    start_time, start_step = time.time(), global_step
    episode_return, episode_length = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=int)
    last_eval, metrics, exit_status = global_step, None, 0
    recent_returns, progress_step, progress_time = collections.deque(maxlen=args.num_envs), global_step, start_time
    progress_interval = max(args.num_envs, min(10_000, args.total_timesteps // 10))  # env steps between progress lines
    try:
        for iteration in range(global_step // args.num_envs + 1, args.total_timesteps // args.num_envs + 1):
            # ALGO LOGIC: put action logic here
            if global_step < args.learning_starts:
                actions = np.random.uniform(envs.box_low, envs.box_high, (args.num_envs, n_agents, act_dim)).astype(np.float32)
            else:
                actions = act(learner, torch.as_tensor(obs, device=device)).cpu().numpy()

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, next_state, _, rewards, terminations, truncations, infos = envs.step(actions)
            global_step += args.num_envs
            episode_return += rewards
            episode_length += 1
            done = terminations | truncations
            if done.any():
                writer.add_scalar("charts/episodic_return", episode_return[done].mean(), global_step)
                writer.add_scalar("charts/episodic_length", episode_length[done].mean(), global_step)
                recent_returns.extend(episode_return[done])
                episode_return[done], episode_length[done] = 0.0, 0

            # TRY NOT TO MODIFY: save data to replay buffer; the true final observation where an episode ended
            real_next_obs, real_next_state, dones, timeouts = transition_to_store(
                next_obs, next_state, terminations, truncations, infos
            )
            rb.add(
                pack(obs, state),
                pack(real_next_obs, real_next_state),
                actions.reshape(args.num_envs, -1),
                rewards,
                dones,
                timeouts,
            )
            obs, state = next_obs, next_state

            # TRY NOT TO MODIFY: progress, before the training phase: training's own speed window starts after this line
            if global_step // progress_interval > (global_step - args.num_envs) // progress_interval:
                now = time.time()
                recent_sps = (global_step - progress_step) / (now - progress_time)
                print(progress_line(global_step, args.total_timesteps, recent_sps, recent_returns, metrics is None))
                writer.add_scalar("charts/SPS", int((global_step - start_step) / (now - start_time)), global_step)
                progress_step, progress_time = global_step, now

            # ALGO LOGIC: training.
            if global_step > learning_starts and iteration % args.train_interval == 0:
                if metrics is None:
                    print(f"global_step={global_step}, warm-up done: training starts")
                    progress_step, progress_time = global_step, time.time()  # time left: from training alone
                for _ in range(args.gradient_steps):
                    data = rb.sample(args.batch_size)
                    (obs_b, state_b), (next_obs_b, next_state_b) = unpack(data.observations), unpack(data.next_observations)
                    actions_b = data.actions.view(-1, n_agents, act_dim)
                    batch = Batch(
                        obs_b, state_b, actions_b, data.rewards, next_obs_b, next_state_b, data.dones, data.discounts
                    )
                    agent_order = np.arange(n_agents) if args.fixed_order else np.random.permutation(n_agents)
                    metrics = hasac_update(learner, batch, agent_order, args.tau)
                    for name in ("qf1_loss", "qf2_loss", "actor_loss", "alpha_loss"):
                        if metrics[name] is not None and not torch.isfinite(metrics[name]):
                            raise FloatingPointError(
                                f"losses/{name} is {metrics[name].item()} at global_step={global_step}; "
                                "stopping instead of training on it (try lower learning rates)"
                            )

                for name in ("qf1_values", "qf1_loss", "qf2_loss", "actor_loss", "entropy", "alpha_loss"):
                    if metrics[name] is not None:  # alpha_loss: None with a fixed temperature
                        writer.add_scalar(f"losses/{name}", metrics[name].item(), global_step)
                writer.add_scalar("losses/alpha", metrics["alphas"].mean().item(), global_step)
                for i, alpha in enumerate(metrics["alphas"].tolist()):
                    writer.add_scalar(f"losses/alpha/agent_{i}", alpha, global_step)

            if global_step // args.eval_interval > last_eval // args.eval_interval:
                run_evaluation(global_step)
                last_eval = global_step
            if stop_signals:
                raise KeyboardInterrupt
        if last_eval != global_step:
            run_evaluation(global_step)
    except KeyboardInterrupt:
        print(f"interrupted at global_step={global_step}")
        exit_status = 128 + stop_signals[0]  # 130 / 143, as a shell reports it: a sweep tells it from a finished run
    except FloatingPointError as error:
        raise SystemExit(f"error: {error}") from None
    finally:  # the run has stopped: a further Ctrl-C or SIGTERM no longer cuts its closing and its saves short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        envs.close()
        eval_envs.close()
        writer.close()
    if args.save_model:
        save_checkpoint(model_path, learner, args, global_step)
        print(f"model saved; evaluate it with: python {os.path.basename(__file__)} --eval-checkpoint {model_path}")
        if args.save_buffer:
            print(f"writing the replay buffer to {run_dir}/replay_buffer.pt")
            save_buffer(run_dir, rb, global_step)
        print(f"continue it with: python {os.path.basename(__file__)} [the same flags] --resume {model_path}")
    sys.exit(exit_status)
