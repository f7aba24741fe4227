"""HASAC for continuous actions: Multi-Agent MuJoCo and continuous-action MPE.

Heterogeneous-Agent Soft Actor-Critic (Liu et al., "Maximum Entropy Heterogeneous-Agent
Reinforcement Learning", ICLR 2024): a centralised twin soft Q-function on (global state,
joint action) and one tanh-squashed Gaussian actor per agent, updated one agent after the
other in a random order against the already-updated agents' new actions (Algorithm 2).

    python hasac_continuous.py --env-id Ant-4x2
    python hasac_continuous.py --env-id simple_spread_v3 --n-step 20 --policy-lr 5e-4 --q-lr 5e-4
"""

import math
import os
import random
import sys
from dataclasses import dataclass
from typing import Literal, NamedTuple, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from stable_baselines3.common.buffers import NStepReplayBuffer

from hasac_utils.checkpoints import built_on_one_env, load_learner
from hasac_utils.envs.mamujoco import MAMUJOCO_SCENARIOS, PAPER_MAMUJOCO_TASKS, make_mamujoco_env
from hasac_utils.evaluation import check_rendering, episode_shares, training_rng_preserved
from hasac_utils.runs import one_line_errors, parse_args, render_video, start_run


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
    """continue a --save-model run in its run dir, its checkpoint's flags as defaults: `--resume PATH` alone continues it"""
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
    return make_mamujoco_env(
        scenario, agent_conf, 1 if agent_obsk is None else agent_obsk, render_mode, MAMUJOCO_EPISODE_STEPS
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
    envs = MultiAgentVecEnv(args.env_id, num_envs, args.agent_obsk, render_mode, args.mpe_clip_actions)
    if args.share_param and (len(set(envs.obs_dims)) > 1 or len(set(envs.act_dims)) > 1):
        raise ValueError(
            f"--share-param needs equal agent spaces; {args.env_id} has obs dims {envs.obs_dims} "
            f"and action dims {envs.act_dims}"
        )
    return envs


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
    batched matmul per layer (a Python loop over agents would run N small matmuls). Written by
    hand, not with torch.func (stack_module_state + vmap over functional_call): that needs equal
    parameter shapes, so heterogeneous agents would need this padding anyway, and it took 1.35x
    as long for this forward pass (4 agents, batch 1000, one CPU thread)."""
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


def replay_row(obs: np.ndarray, state: np.ndarray, envs: MultiAgentVecEnv) -> np.ndarray:
    """What the replay buffer stores of a step: obs [E, N, obs_dim] and state [E, S] -> [E, N * obs_dim + S], or the
    state alone where the observations are a function of it (full-state MaMuJoCo: N times less memory)."""
    stored_obs = obs[:, :0] if envs.full_state_obs else obs
    return np.concatenate([stored_obs.reshape(len(obs), -1), state], 1)


def sample_batch(rb, batch_size: int, envs: MultiAgentVecEnv) -> Batch:
    """A uniform sample of n-step transitions from the replay buffer, unpacked from `replay_row`s into a Batch."""
    data = rb.sample(batch_size)
    stored_obs_dim = data.observations.shape[1] - envs.state_dim

    def unpack(rows: torch.Tensor):  # [B, stored_obs_dim + S] -> obs [B, N, obs_dim], state [B, S]
        state = rows[:, stored_obs_dim:]
        if envs.full_state_obs:
            return full_state_observations(state, envs.n_agents), state
        return rows[:, :stored_obs_dim].view(-1, envs.n_agents, envs.obs_dim), state

    (obs, state), (next_obs, next_state) = unpack(data.observations), unpack(data.next_observations)
    actions = data.actions.view(-1, envs.n_agents, envs.act_dim)
    return Batch(obs, state, actions, data.rewards, next_obs, next_state, data.dones, data.discounts)


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


if __name__ == "__main__":
    args = parse_args(Args, __file__)
    device = torch.device("cuda" if args.cuda else "cpu")
    if args.eval_checkpoint is None:
        with one_line_errors():  # a bad env id or partition ends the run here, before anything is written
            envs = make_env(args, args.num_envs)
            if args.capture_video:
                check_rendering(make_env, args)

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_float32_matmul_precision(args.matmul_precision)

    if args.eval_checkpoint is not None:  # evaluate (and with --capture-video, record) a saved run, then stop
        with one_line_errors(f"cannot load checkpoint {args.eval_checkpoint!r}: "):
            build = built_on_one_env(make_env, build_learner, device)
            saved_args, learner = load_learner(args.eval_checkpoint, __file__, Args, build)
        with one_line_errors():
            if args.capture_video:
                check_rendering(make_env, saved_args)
        eval_envs = make_env(
            saved_args, min(args.eval_episodes, saved_args.num_envs), "rgb_array" if args.capture_video else None
        )
        frames = [] if args.capture_video else None
        returns = evaluate(learner, eval_envs, args.eval_episodes, args.seed, device, frames)
        mean, std = np.mean(returns), np.std(returns)
        print(f"{saved_args.env_id}: eval/episodic_return {mean:.2f} +- {std:.2f} over {len(returns)} episodes")
        if frames:
            render_video(frames, f"videos/{os.path.basename(os.path.dirname(os.path.abspath(args.eval_checkpoint)))}")
        sys.exit(0)

    # ALGO LOGIC: the learner, the replay memory (n-step returns, time limits: stable-baselines3's) and the eval envs
    learner = build_learner(envs, args, device)
    n_agents, act_dim = envs.n_agents, envs.act_dim
    row_dim = envs.state_dim + (0 if envs.full_state_obs else n_agents * envs.obs_dim)  # replay_row's width
    rb = NStepReplayBuffer(
        args.buffer_size,
        gym.spaces.Box(-np.inf, np.inf, (row_dim,), np.float32),
        gym.spaces.Box(-np.inf, np.inf, (n_agents * act_dim,), np.float32),
        device,
        n_envs=args.num_envs,
        handle_timeout_termination=True,
        n_steps=args.n_step,
        gamma=args.gamma,
    )
    eval_envs = make_env(args, min(args.eval_episodes, args.num_envs), "rgb_array" if args.capture_video else None)

    # TRY NOT TO MODIFY: start the game, or continue it (--resume restores the step, the learner, the generators and the
    # buffer: after the reset, which may seed the generators)
    obs, state, _ = envs.reset(seed=args.seed)
    run = start_run(args, __file__, learner, rb, device)
    rb, global_step = run.rb, run.global_step
    episode_return, episode_length = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=int)
    with run.graceful_stop():
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
            run.log_episodes(global_step, episode_return[done], episode_length[done])
            episode_return[done], episode_length[done] = 0.0, 0

            # TRY NOT TO MODIFY: save data to replay buffer; the true final observation where an episode ended
            real_next_obs, real_next_state, dones, timeouts = transition_to_store(
                next_obs, next_state, terminations, truncations, infos
            )
            flat_actions = actions.reshape(args.num_envs, -1)
            real_next_rows = replay_row(real_next_obs, real_next_state, envs)
            rb.add(replay_row(obs, state, envs), real_next_rows, flat_actions, rewards, dones, timeouts)
            obs, state = next_obs, next_state
            run.progress(global_step)  # before training: training's own speed window starts after this line

            # ALGO LOGIC: training.
            if global_step > run.learning_starts and iteration % args.train_interval == 0:
                run.end_warm_up(global_step)
                for _ in range(args.gradient_steps):
                    batch = sample_batch(rb, args.batch_size, envs)
                    agent_order = np.arange(n_agents) if args.fixed_order else np.random.permutation(n_agents)
                    metrics = hasac_update(learner, batch, agent_order, args.tau)
                run.log_losses(metrics, global_step)

            if run.evaluation_due(global_step):
                frames = [] if args.capture_video else None
                returns = evaluate(learner, eval_envs, args.eval_episodes, args.seed + 10_000, device, frames)
                run.log_evaluation(global_step, returns, frames)
                run.save(global_step)
            if run.stop_requested:
                break
    envs.close()
    eval_envs.close()
    run.finish(global_step)
