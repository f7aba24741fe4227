"""HASAC for massively parallel on-device environments: VMAS by default, Bi-DexHands on Isaac Gym.

Heterogeneous-Agent Soft Actor-Critic (Liu et al., "Maximum Entropy Heterogeneous-Agent
Reinforcement Learning", ICLR 2024): a centralised twin soft Q-function on (global state,
joint action) and one tanh-squashed Gaussian actor per agent, updated one agent after the
other in a random order against the already-updated agents' new actions (Algorithm 2).
This variant keeps everything on one device: thousands of envs step as batched tensors, the
replay buffer is preallocated tensors there, and the training loop never waits on the host
except to log. Section 5.1, Figures 3b-d and 7, Appendix H.2.1 of the paper (Bi-DexHands).

    python hasac_isaacgym.py --env-id balance
    python hasac_isaacgym.py --env-id transport --num-envs 1024 --compile
    python hasac_isaacgym.py --env-id ShadowHandOver --cuda --num-envs 20 --gamma 0.95 --n-step 20

Runs on Python 3.8 (Isaac Gym's), so no 3.9+ syntax at run time (nor in the hasac_utils
modules it imports), and without stable-baselines3.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import random
import sys
from dataclasses import dataclass
from typing import Literal, NamedTuple, Optional

try:  # Isaac Gym must be imported before torch; it exists only where Isaac Gym is installed (see hasac_utils.envs.dexhands)
    import isaacgym  # noqa: F401
except ImportError:
    pass
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

from hasac_utils.checkpoints import load_learner
from hasac_utils.evaluation import training_rng_preserved
from hasac_utils.runs import one_line_errors, parse_args, start_run


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = False
    """if toggled, train on the GPU (an error if none is available); Bi-DexHands needs it"""
    matmul_precision: Literal["highest", "high", "medium"] = "highest"
    """`torch.set_float32_matmul_precision`: highest (exact float32), high (TF32 on GPUs), medium (also bfloat16)"""
    track: bool = False
    """if toggled, this experiment will be tracked with Weights and Biases"""
    wandb_project_name: str = "hasac"
    """the wandb's project name"""
    wandb_entity: Optional[str] = None
    """the entity (team) of wandb's project"""
    capture_video: bool = False
    """not supported here (batched on-device envs have no per-env renderer in the loop); kept for the shared flag set"""
    save_model: bool = False
    """save the latest weights to `runs/{run_name}/{exp_name}.cleanrl_model` (each evaluation, the end, Ctrl-C)"""
    resume: Optional[str] = None
    """continue a --save-model run in its run dir, its checkpoint's flags as defaults: `--resume PATH` alone continues it"""
    save_buffer: bool = False
    """with --save-model: also write the replay buffer when the run stops, so that --resume continues it exactly"""

    # Algorithm specific arguments
    env_id: str = "balance"
    """the environment id: a VMAS scenario (e.g. balance, transport, wheel) or a Bi-DexHands task (e.g. ShadowHandOver)"""
    total_timesteps: int = 10_240_000
    """total environment steps, summed over the parallel envs (a multiple of --num-envs: 40,000 steps of 256 envs)"""
    num_envs: int = 256
    """the number of parallel environments (all stepped as one batch on the device)"""
    buffer_size: int = 1_000_000
    """the replay memory buffer size (transitions, all envs together)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    tau: float = 0.005
    """target smoothing coefficient"""
    batch_size: int = 1000
    """the batch size of sample from the replay memory"""
    learning_starts: int = 25_600
    """env steps of uniform random actions before learning starts"""
    train_interval: int = 1
    """loop steps (each `num_envs` env steps) between training phases"""
    gradient_steps: int = 4
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
    n_step: int = 10
    """the number of steps of the n-step return"""
    hidden_dim: int = 256
    """the width of both hidden layers of the actors and the critic"""
    share_param: bool = False
    """if toggled, all agents share one actor (their spaces must be equal)"""
    fixed_order: bool = False
    """if toggled, update the agents in the order 1..N instead of a random permutation"""
    eval_interval: int = 500_000
    """env steps between deterministic evaluations (VMAS only: Isaac Gym holds one simulation per process)"""
    eval_episodes: int = 64
    """episodes per evaluation (one batch of that many envs)"""
    eval_checkpoint: Optional[str] = None
    """evaluate a saved `.cleanrl_model` (VMAS) instead of training"""

    # isaacgym specific arguments
    episode_length: Optional[int] = None
    """the time limit in steps (a bootstrapped truncation); default: VMAS 100, Bi-DexHands the official per-task length"""
    log_interval: int = 50_000
    """env steps between logs, the only points where the loop waits for the device (losses, returns, SPS, NaN check)"""
    compile: bool = False
    """if toggled, torch.compile the update and the acting step (as in LeanRL)"""
    cudagraphs: bool = False
    """if toggled, capture the update and the acting step in CUDA graphs (tensordict's CudaGraphModule, as LeanRL; GPU only)"""


# ENVIRONMENTS: the place to edit when adding one. Every env sits behind one batched interface, all tensors on the device
# reset(seed) -> obs [E, N, obs_dim], state [E, S], avail None
# step(actions [E, N, act_dim]) -> obs, state, avail, reward [E], terminated [E], truncated [E], info
# info["final_state"] [E, S] is the true next state (before any reset) and info["valid"] [E] says
# which envs' transitions belong to an episode (see each adapter for when one does not).
PAPER_VMAS_SCENARIOS = ("transport", "balance", "wheel", "dispersion", "navigation")
# Our choice for VMAS, which has no official HASAC setting: 100 steps lets transport's and
# balance's packages reach the goal from the start and keeps the idle tail of envs that
# finish early (see VmasEnv) short. `--episode-length` overrides it.
VMAS_EPISODE_STEPS = 100
# Bi-DexHands tasks of the paper -> the official HASAC configs' episode length (hands_episode_length)
DEXHANDS_EPISODE_STEPS = {
    "ShadowHandCatchAbreast": 150,
    "ShadowHandTwoCatchUnderarm": 75,
    "ShadowHandLiftUnderarm": 500,
    "ShadowHandOver": 75,
    "ShadowHandCatchOver2Underarm": 75,
    "ShadowHandPen": 125,
    "ShadowHandDoorCloseInward": 250,
    "ShadowHandDoorOpenInward": 250,
    "ShadowHandDoorOpenOutward": 250,
}


def observations_from_state(state: torch.Tensor, obs_index: torch.Tensor) -> torch.Tensor:
    """Every agent's observation gathered from the state: [..., S] -> [..., N, obs_dim].

    obs_index [N, obs_dim] holds state columns; index S is a zero column (the padding of
    smaller agents). Both backends' observations are slices of their state, so the replay
    buffer stores only the state.
    """
    return F.pad(state, (0, 1))[..., obs_index]


class VmasEnv:
    """A VMAS scenario: `num_envs` envs stepped as one batch of tensors on `device`.

    VMAS has no global state: the state is the concatenation of the agents' observations.
    Team reward: the mean over agents. transport, balance and wheel hand every agent a copy
    of one shared reward, which the mean returns unchanged (a sum would scale it by N);
    where rewards are individual (dispersion) the mean is the sum / N, the same optimum.
    Per-env resets in VMAS are a Python loop over envs, so all envs reset together at the
    shared time limit; an env that terminates earlier idles until then and its idle steps
    are not transitions (info["valid"] is False for them).
    """

    def __init__(
        self, scenario: str, num_envs: int, device, episode_length: Optional[int] = None, seed: int = 0, **scenario_kwargs
    ):
        import vmas

        valid_ids = list(vmas.scenarios) + list(vmas.mpe_scenarios) + list(vmas.debug_scenarios)
        if scenario not in valid_ids:
            raise ValueError(
                f"unknown env id {scenario!r}; valid: the VMAS scenarios {', '.join(valid_ids)}, "
                f"or a Bi-DexHands task {', '.join(DEXHANDS_EPISODE_STEPS)}"
            )
        from vmas.simulator.environment import Environment

        # VMAS keeps one random state for all its envs (a class attribute swapped in around every reset and step, and
        # overwritten by seeding): each VmasEnv gets its own, so that the eval envs' seeded resets never rewind the
        # training envs' initial states, and a run's training does not depend on when it evaluates.
        self.shared_random_state, self.random_state = Environment.vmas_random_state, list(Environment.vmas_random_state)
        with self.own_random_state():
            kwargs = dict(num_envs=num_envs, device=device, continuous_actions=True, seed=seed)
            self.env = vmas.make_env(scenario, **kwargs, **scenario_kwargs)
            observations = self.env.reset()
        self.device, self.num_envs, self.n_agents = torch.device(device), num_envs, self.env.n_agents
        self.episode_length = episode_length or VMAS_EPISODE_STEPS
        if not all(isinstance(o, torch.Tensor) and o.dim() == 2 for o in observations):
            raise ValueError(f"VMAS scenario {scenario!r} has structured observations; this script takes flat ones")
        self.obs_dims = [o.shape[-1] for o in observations]
        self.act_dims = [space.shape[0] for space in self.env.action_space]
        self.obs_dim, self.act_dim, self.state_dim = max(self.obs_dims), max(self.act_dims), sum(self.obs_dims)
        self.obs_index = torch.full((self.n_agents, self.obs_dim), self.state_dim, dtype=torch.long, device=self.device)
        for i, start in enumerate([sum(self.obs_dims[:i]) for i in range(self.n_agents)]):
            self.obs_index[i, : self.obs_dims[i]] = torch.arange(start, start + self.obs_dims[i])
        self.action_low = torch.zeros(self.n_agents, self.act_dim, device=self.device)
        self.action_high = torch.zeros(self.n_agents, self.act_dim, device=self.device)
        for i, space in enumerate(self.env.action_space):
            self.action_low[i, : self.act_dims[i]] = torch.as_tensor(space.low, device=self.device)
            self.action_high[i, : self.act_dims[i]] = torch.as_tensor(space.high, device=self.device)
        self.action_mask = (
            torch.arange(self.act_dim, device=self.device) < torch.tensor(self.act_dims, device=self.device)[:, None]
        )
        self.finished = torch.zeros(num_envs, dtype=torch.bool, device=self.device)  # terminated, idling until the reset
        self.elapsed = 0  # steps since the common reset: a host counter, so the time limit needs no sync

    @contextlib.contextmanager
    def own_random_state(self):
        others = list(self.shared_random_state)
        self.shared_random_state[:] = self.random_state
        try:
            yield
        finally:
            self.random_state = list(self.shared_random_state)
            self.shared_random_state[:] = others

    def reset(self, seed: Optional[int] = None):
        with self.own_random_state():
            state = torch.cat(self.env.reset(seed=seed), -1)  # [E, S]
        self.finished.zero_()
        self.elapsed = 0
        return observations_from_state(state, self.obs_index), state, None

    def step(self, actions: torch.Tensor):
        valid = ~self.finished
        with self.own_random_state():
            observations, rewards, dones, _ = self.env.step([actions[:, i, : self.act_dims[i]] for i in range(self.n_agents)])
        state = torch.cat(observations, -1)  # N x [E, obs_i] -> [E, S]
        reward = torch.stack(rewards, -1).mean(-1)  # [E, N] -> [E]
        terminated = dones & valid
        self.finished |= terminated
        self.elapsed += 1
        truncated = (valid & ~terminated) if self.elapsed >= self.episode_length else torch.zeros_like(terminated)
        info = {"final_state": state, "valid": valid}
        if self.elapsed >= self.episode_length:  # every env's episode ends here: one batched reset
            _, state, _ = self.reset()
        return observations_from_state(state, self.obs_index), state, None, reward, terminated, truncated, info

    def close(self):
        pass


def make_env(args: Args, num_envs: int, seed: int = 0, device="cpu"):
    """The batched env for --env-id on `device` (the run's, not the saved --cuda of a checkpoint's Args); raises
    ValueError naming the valid ids."""
    if args.env_id in DEXHANDS_EPISODE_STEPS:  # Isaac Gym's backend, imported only where it is chosen
        from hasac_utils.envs.dexhands import DexHandsEnv

        episode_length = args.episode_length or DEXHANDS_EPISODE_STEPS[args.env_id]
        envs = DexHandsEnv(args.env_id, num_envs, device, episode_length, seed, observations_from_state)
    else:
        envs = VmasEnv(args.env_id, num_envs, device, args.episode_length, seed)
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


def critic_step(learner: Learner, batch: Batch):
    """The first half of one HASAC update: the critic's step, and what the actor steps read.

    Returns (actions [B, N, act_dim]: the current policies' actions at s, the temperatures
    alphas [N] as they were before this update, the critic's state features [2, B, H],
    qf1_loss, qf2_loss, qf1_values). A separate function so that --compile and --cudagraphs
    can compile or capture it once.
    """
    actors, qf, mask = learner.actors, learner.qf, learner.action_mask
    obs_dim, act_dim = batch.obs.shape[-1], batch.actions.shape[-1]
    alphas = torch.stack(learner.log_alphas).detach().exp()  # [N]

    # The current policies' actions at s' (for the critic's target) and at s (for the actor
    # steps), in one batched call: no actor changes before the actor steps. (hasac_continuous.py
    # draws the actions at s with gradient and lets each agent's step differentiate its draw;
    # here every actor step is compiled or captured alone, and no autograd graph can pass from
    # this half to them, so each actor step draws its agent's actions again.)
    with torch.no_grad():
        weights = stack_actor_weights(actors, learner.policy_of_agent, obs_dim, act_dim)
        both_obs = torch.cat([batch.next_obs, batch.obs]).transpose(0, 1)  # [N, 2B, obs_dim]
        both_actions, both_log_probs = sample_actions(both_obs, weights, mask)
        next_actions, actions = both_actions.transpose(0, 1).split(len(batch.obs))  # [B, N, act_dim] each
        next_log_probs = both_log_probs.T[: len(batch.obs)]  # [B, N]
        actions = actions.contiguous()

    # Critic: joint soft policy evaluation with fresh next actions (Eq. 5-6)
    with torch.no_grad():
        target = critic_target(learner.qf_target, batch, next_actions, next_log_probs, alphas)
    q_values = qf(batch.state, batch.actions.flatten(1))  # [2, B, 1]
    qf1_loss, qf2_loss = F.mse_loss(q_values[0], target), F.mse_loss(q_values[1], target)
    learner.q_optimizer.zero_grad(set_to_none=True)
    (qf1_loss + qf2_loss).backward()
    learner.q_optimizer.step()

    with torch.no_grad():
        state_features = qf.state_features(batch.state)
    return actions, alphas, state_features, qf1_loss.detach(), qf2_loss.detach(), q_values[0].detach().mean()


def actor_step(learner: Learner, batch: Batch, actions, alphas, state_features, agents: slice, resample: bool):
    """One step of Eq. 10 for the one agent in the slice `agents` (slicing keeps its agent axis: [B, 1, ...]),
    then its temperature; with `resample`, the joint action [B, N, act_dim] with its entries re-drawn from the
    updated policy, for the agents after it (returned, not written into `actions`: a CUDA graph's in-place writes
    to its inputs reach only the graph's own copies). Its actions at s are drawn afresh, so with --share-param each
    agent's step sees the shared actor as the earlier agents' steps left it.
    Returns (actor loss, temperature losses [G] or None, entropy, the new actions or None). The critic is frozen by
    the caller.
    """
    policy = learner.policy_of_agent[agents.start]
    actor = learner.actors[policy]
    new_actions, new_log_probs = actor(batch.obs[:, agents])  # [B, G, act_dim_i], [B, G]
    joint_action = actions.clone()
    joint_action[:, agents, : actor.act_dim] = new_actions
    loss = actor_loss(learner.qf, state_features, joint_action, new_log_probs, alphas[agents])
    learner.actor_optimizers[policy].zero_grad(set_to_none=True)
    loss.backward()
    learner.actor_optimizers[policy].step()
    alpha_losses = []
    if learner.alpha_optimizers is not None:
        for g, i in enumerate(range(agents.start, agents.stop)):
            temperature_loss = alpha_loss(learner.log_alphas[i], new_log_probs[:, g], learner.target_entropies[i])
            learner.alpha_optimizers[i].zero_grad(set_to_none=True)
            temperature_loss.backward()
            learner.alpha_optimizers[i].step()
            alpha_losses.append(temperature_loss.detach())
    resampled = None
    if resample:  # later agents act against this agent's updated policy; the loss's copy of `actions` is reused
        with torch.no_grad():
            resampled = joint_action.detach()
            resampled[:, agents, : actor.act_dim] = actor(batch.obs[:, agents])[0]
    entropy = -new_log_probs.detach().mean()
    return loss.detach(), torch.stack(alpha_losses) if alpha_losses else None, entropy, resampled


def hasac_update_with(critic_step_fn, actor_step_fn, learner: Learner, batch: Batch, agent_order, tau: float) -> dict:
    """`hasac_update` with the two halves given: eager, compiled or CUDA-graph replays of
    `critic_step` and `actor_step` (see `make_update`)."""
    actions, alphas, state_features, qf1_loss, qf2_loss, qf1_values = critic_step_fn(learner, batch)

    # Actors: heterogeneous-agent soft policy improvement, one agent after another (Eq. 10).
    # With --share-param the shared actor takes one step per agent, in the same order, as the
    # official implementation does: each agent's step sees the earlier agents' new actions.
    groups = [slice(i, i + 1) for i in agent_order]
    learner.qf.requires_grad_(False)
    actor_losses, alpha_losses, entropies = [], [], []
    for step, agents in enumerate(groups):
        loss, temperature_losses, entropy, resampled = actor_step_fn(
            learner, batch, actions, alphas, state_features, agents, step < len(groups) - 1
        )
        actions = actions if resampled is None else resampled
        actor_losses.append(loss)
        entropies.append(entropy)
        if temperature_losses is not None:
            alpha_losses.append(temperature_losses)
    learner.qf.requires_grad_(True)

    soft_update(learner.qf_target, learner.qf, tau)
    return {
        "qf1_loss": qf1_loss,
        "qf2_loss": qf2_loss,
        "qf1_values": qf1_values,
        "actor_loss": torch.stack(actor_losses).mean(),
        "alpha_loss": torch.cat(alpha_losses).mean() if alpha_losses else None,
        "entropy": torch.stack(entropies).mean(),
        "alphas": alphas,
    }


def hasac_update(learner: Learner, batch: Batch, agent_order, tau: float) -> dict:
    """One full HASAC update: the critic, then each agent in `agent_order` in turn, then the
    target critic. Returns the losses as tensors (no host sync here)."""
    return hasac_update_with(critic_step, actor_step, learner, batch, agent_order, tau)


def build_learner(envs, args: Args, device: torch.device) -> Learner:
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
        torch.full((), float(math.log(args.alpha)), device=device, requires_grad=args.autotune) for _ in range(envs.n_agents)
    ]
    policy_of_agent = [0] * envs.n_agents if args.share_param else list(range(envs.n_agents))
    capturable = args.cudagraphs  # optimiser steps inside a CUDA graph keep their step count on the device
    return Learner(
        actors=actors,
        policy_of_agent=policy_of_agent,
        actor_optimizers=[
            optim.Adam(actor.parameters(), lr=args.policy_lr, fused=True, capturable=capturable) for actor in actors
        ],
        qf=qf,
        qf_target=qf_target,
        q_optimizer=optim.Adam(qf.parameters(), lr=args.q_lr, fused=True, capturable=capturable),
        log_alphas=log_alphas,
        alpha_optimizers=[optim.Adam([log_alpha], lr=args.alpha_lr, capturable=capturable) for log_alpha in log_alphas]
        if args.autotune
        else None,
        # -dim(A^i) on the policy's normalised [-1, 1] action (SAC's heuristic, and where the
        # official implementation's log-probs live); log_probs here are in the env's units, so
        # the target shifts by the rescaling's log-Jacobian and does not depend on those units.
        target_entropies=[float(torch.log(actors[p].action_scale).sum()) - actors[p].act_dim for p in policy_of_agent],
        action_mask=torch.as_tensor(envs.action_mask, device=device).unsqueeze(1),
    )


@torch.no_grad()
def act(learner: Learner, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
    """obs [E, N, obs_dim] -> actions [E, N, act_dim] from every agent's policy at once."""
    weights = stack_actor_weights(learner.actors, learner.policy_of_agent, obs.shape[-1], learner.action_mask.shape[-1])
    actions, _ = sample_actions(obs.transpose(0, 1), weights, learner.action_mask, deterministic)
    return actions.transpose(0, 1)


def make_update(learner: Learner, compile: bool = False, cudagraphs: bool = False):
    """-> update(batch, agent_order, tau) -> metrics: `hasac_update` eager, with both halves
    torch.compile'd, as CUDA-graph replays, or both (LeanRL's --compile / --cudagraphs).

    The halves are compiled, not the whole update, because the agent order is random:
    one compiled graph of the whole update per permutation would be N! graphs; this is one
    for the critic and at most two per agent.
    """
    critic_fn, actor_fn = critic_step, actor_step
    if compile:
        torch._inductor.config.fallback_random = True  # compiled code draws the same noise as eager: the same update
        # each agent's step (and each agent's optimiser step) compiles once per agent: let all N stay compiled
        limit = 4 * len(learner.policy_of_agent) + 8
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, limit)
        critic_fn, actor_fn = torch.compile(critic_step), torch.compile(actor_step)
    if cudagraphs:
        # tensordict's CudaGraphModule (as in LeanRL) replaces a hand-written capture: it runs the first calls, captures
        # one and replays it after, each call one real update. A graph fixes its non-tensor arguments, so each agent's
        # step, with and without resampling, is a graph of its own. Without CUDA it warns and calls the step directly.
        from tensordict.nn import CudaGraphModule  # only --cudagraphs needs tensordict: the script runs without it

        warmup = 3  # calls before the capture: a compiled step needs them to finish compiling (tensordict's advice)
        critic_graph = CudaGraphModule(functools.partial(critic_fn, learner), warmup=warmup)
        actor_graphs = {
            (i, resample): CudaGraphModule(
                functools.partial(actor_fn, learner, agents=slice(i, i + 1), resample=resample), warmup=warmup
            )
            for i in range(len(learner.policy_of_agent))
            for resample in (True, False)
        }

        def critic_fn(learner, batch):
            return critic_graph(batch)

        def actor_fn(learner, batch, actions, alphas, state_features, agents, resample):
            return actor_graphs[agents.start, resample](batch, actions, alphas, state_features)

    return lambda batch, agent_order, tau: hasac_update_with(critic_fn, actor_fn, learner, batch, agent_order, tau)


def make_act(learner: Learner, compile: bool = False, cudagraphs: bool = False):
    """-> policy(obs [E, N, obs_dim]) -> actions [E, N, act_dim]: `act`, compiled and/or as a CUDA-graph replay."""
    if compile:
        torch._inductor.config.fallback_random = True  # the same noise as eager
    policy = functools.partial(torch.compile(act) if compile else act, learner)
    if cudagraphs:
        from tensordict.nn import CudaGraphModule  # see make_update

        policy = CudaGraphModule(policy, warmup=3)
    return policy


class ReplayBuffer:
    """Preallocated tensors on the training device: one ring of transitions per env, with
    n-step returns computed on the device when sampling.

    Hand-written because stable-baselines3's buffers are numpy arrays on the host (every add
    and sample would cross to the CPU and back, and synchronise) and because SB3 does not
    install on Isaac Gym's Python 3.8.
    Each env writes at its own head, which only a valid transition advances (an idle or
    post-reset step is overwritten by the env's next one), so an env's ring holds its
    episodes back to back. One slot per ring always stays free, so the slot being written
    is never read. The n-step window starts at a sampled transition and stops at the
    episode's end (termination or truncation) or at the env's newest transition, never
    crossing the write head into older data.
    """

    def __init__(self, buffer_size: int, num_envs: int, state_dim: int, action_dim: int, n_step: int, gamma: float, device):
        self.capacity, self.n_step = buffer_size // num_envs, n_step  # per env
        shape = (num_envs, self.capacity)
        self.states = torch.zeros(*shape, state_dim, device=device)
        self.next_states = torch.zeros(*shape, state_dim, device=device)  # the true next state, also at episode ends
        self.actions = torch.zeros(*shape, action_dim, device=device)
        self.rewards = torch.zeros(shape, device=device)
        self.terminations = torch.zeros(shape, dtype=torch.bool, device=device)
        self.episode_ends = torch.zeros(shape, dtype=torch.bool, device=device)  # terminated or truncated
        self.heads = torch.zeros(num_envs, dtype=torch.long, device=device)  # the slot each env writes next
        self.counts = torch.zeros(num_envs, dtype=torch.long, device=device)  # valid transitions held per env
        self.env_index = torch.arange(num_envs, device=device)
        self.discounts = gamma ** torch.arange(n_step + 1, device=device, dtype=torch.float32)  # gamma^k

    def add(self, state, next_state, actions, rewards, terminations, truncations, valid):
        """One step of every env: [E, S], [E, S], [E, N * act_dim], [E], [E], [E], [E] (bool)."""
        slot = (self.env_index, self.heads)
        self.states[slot], self.next_states[slot], self.actions[slot] = state, next_state, actions
        self.rewards[slot], self.terminations[slot], self.episode_ends[slot] = (
            rewards,
            terminations,
            terminations | truncations,
        )
        self.heads = (self.heads + valid) % self.capacity
        self.counts = torch.clamp(self.counts + valid, max=self.capacity - 1)

    def sample(self, batch_size: int):
        """Uniform over the stored transitions -> (state [B, S], actions [B, N * act_dim],
        n-step reward [B, 1], next state [B, S], terminated [B, 1], gamma^k [B, 1])."""
        env_ids = torch.multinomial(self.counts.float(), batch_size, replacement=True)  # envs in proportion to what they hold
        ages = (torch.rand(batch_size, device=self.counts.device) * self.counts[env_ids]).long()  # 0: the newest
        return self.n_step_transitions(env_ids, ages)

    def n_step_transitions(self, env_ids: torch.Tensor, ages: torch.Tensor):
        """The n-step transitions starting `ages` [B] transitions before each env's newest."""
        offsets = torch.arange(self.n_step, device=ages.device)
        slots = (self.heads[env_ids, None] - 1 - ages[:, None] + offsets) % self.capacity  # [B, n]
        rows = env_ids[:, None]
        available = offsets <= ages[:, None]  # [B, n]: up to the env's newest transition
        ends = self.episode_ends[rows, slots] & available
        ended_before = (ends.cumsum(1) - ends.long()) > 0  # an earlier step of the window ended the episode
        in_window = available & ~ended_before  # [B, n], a prefix of k >= 1 steps
        steps = in_window.sum(1)  # [B]: k
        rewards = (self.rewards[rows, slots] * in_window * self.discounts[: self.n_step]).sum(1, keepdim=True)
        last = slots.gather(1, (steps - 1)[:, None]).squeeze(1)
        first = slots[:, 0]
        return (
            self.states[env_ids, first],
            self.actions[env_ids, first],
            rewards,
            self.next_states[env_ids, last],
            self.terminations[env_ids, last].float()[:, None],
            self.discounts[steps][:, None],
        )


def sample_batch(rb: ReplayBuffer, batch_size: int, envs) -> Batch:
    """A uniform sample of n-step transitions, every agent's observation gathered from the stored states."""
    state, actions, rewards, next_state, terminations, discounts = rb.sample(batch_size)
    obs, next_obs = observations_from_state(state, envs.obs_index), observations_from_state(next_state, envs.obs_index)
    actions = actions.view(-1, envs.n_agents, envs.act_dim)
    return Batch(obs, state, actions, rewards, next_obs, next_state, terminations, discounts)


@training_rng_preserved()
def evaluate(learner: Learner, envs, n_episodes: int, seed: int, device) -> list:
    """Team returns of `n_episodes` episodes with deterministic actions (tanh of the mean): one batch of envs, one
    episode each, stepped to the time limit (so no env's share of episodes can favour short ones)."""
    obs, _, _ = envs.reset(seed=seed)
    returns = torch.zeros(envs.num_envs, device=device)
    for _ in range(envs.episode_length):
        obs, _, _, reward, _, _, info = envs.step(act(learner, obs, deterministic=True))
        returns += reward * info["valid"]
    return returns[:n_episodes].tolist()


def learner_to_evaluate(saved_args: Args, device: torch.device) -> Learner:
    """--eval-checkpoint's Learner for the saved run's Args, its env on this run's `device` (not the saved --cuda)."""
    if saved_args.env_id in DEXHANDS_EPISODE_STEPS:  # refused before any env is built, which would start a simulation
        raise ValueError("Bi-DexHands checkpoints cannot be evaluated here (Isaac Gym holds one simulation per process)")
    return build_learner(make_env(saved_args, 1, device=device), saved_args, device)


def check_finite_actions(run, actions: torch.Tensor, global_step: int):
    """A non-finite update poisons the actors, so their actions show it (Run.log_losses checks the losses)."""
    if not torch.isfinite(actions).all():
        run.writer.close()
        raise SystemExit(
            f"error: the actions are not finite at global_step={global_step}; stopping (try lower learning rates)"
        )


if __name__ == "__main__":
    args = parse_args(Args, __file__, no_video="batched on-device envs")
    device = torch.device("cuda" if args.cuda else "cpu")
    if args.eval_checkpoint is None:
        with one_line_errors():  # a bad env id ends the run here, before anything is written
            envs = make_env(args, args.num_envs, args.seed, device)

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_float32_matmul_precision(args.matmul_precision)

    if args.eval_checkpoint is not None:  # evaluate a saved VMAS run, then stop
        with one_line_errors(f"cannot evaluate checkpoint {args.eval_checkpoint!r}: "):  # missing, foreign, stale: one line
            saved_args, learner = load_learner(
                args.eval_checkpoint, __file__, Args, functools.partial(learner_to_evaluate, device=device)
            )
            eval_envs = make_env(saved_args, args.eval_episodes, args.seed, device)
        returns = evaluate(learner, eval_envs, args.eval_episodes, args.seed, device)
        mean, std = np.mean(returns), np.std(returns)
        print(f"{saved_args.env_id}: eval/episodic_return {mean:.2f} +- {std:.2f} over {len(returns)} episodes")
        sys.exit(0)

    # ALGO LOGIC: the learner (eager, compiled or CUDA-graphed), the on-device replay memory and the evaluation envs
    learner = build_learner(envs, args, device)
    update = make_update(learner, args.compile, args.cudagraphs)
    policy = make_act(learner, args.compile, args.cudagraphs)
    n_agents, act_dim = envs.n_agents, envs.act_dim
    rb = ReplayBuffer(args.buffer_size, args.num_envs, envs.state_dim, n_agents * act_dim, args.n_step, args.gamma, device)
    # Isaac Gym holds one simulation per process, so Bi-DexHands runs no separate evaluation
    # (the official configs turn it off too): its curve is the training episodes' returns.
    eval_envs = make_env(args, args.eval_episodes, args.seed + 10_000, device) if isinstance(envs, VmasEnv) else None

    # TRY NOT TO MODIFY: start the game, or continue it (--resume restores the step, the learner, the generators and the
    # buffer: after the reset, which may seed the generators)
    obs, state, _ = envs.reset(seed=args.seed)
    run = start_run(args, __file__, learner, rb, device)
    rb, global_step, metrics = run.rb, run.global_step, None
    action_low, action_high = envs.action_low, envs.action_high  # [N, act_dim], 0 on padded dims
    # running sums on the device, read only at log time: [E] per env, scalars over finished episodes
    episode_return, episode_length = torch.zeros(args.num_envs, device=device), torch.zeros(args.num_envs, device=device)
    finished_returns, finished_lengths, finished_episodes = (torch.zeros((), device=device) for _ in range(3))
    with run.graceful_stop():
        for iteration in range(global_step // args.num_envs + 1, args.total_timesteps // args.num_envs + 1):
            # ALGO LOGIC: put action logic here
            if global_step < args.learning_starts:
                actions = action_low + (action_high - action_low) * torch.rand(args.num_envs, n_agents, act_dim, device=device)
            else:
                actions = policy(obs)

            # TRY NOT TO MODIFY: execute the game and log data.
            try:
                next_obs, next_state, _, rewards, terminations, truncations, infos = envs.step(actions)
            except Exception:  # VMAS refuses non-finite actions: name the non-finite loss instead of its assert
                if metrics is not None:
                    run.log_losses(metrics, global_step)
                check_finite_actions(run, actions, global_step)
                raise
            valid = infos["valid"]
            global_step += args.num_envs
            episode_return += rewards * valid
            episode_length += valid
            done = terminations | truncations
            finished_returns += (episode_return * done).sum()
            finished_lengths += (episode_length * done).sum()
            finished_episodes += done.sum()
            episode_return *= ~done
            episode_length *= ~done

            # TRY NOT TO MODIFY: save data to replay buffer; the true final state where an episode ended
            rb.add(state, infos["final_state"], actions.flatten(1), rewards, terminations, truncations, valid)
            obs, state = next_obs, next_state

            # TRY NOT TO MODIFY: logging, the one place the loop waits for the device (.item()), every log_interval env
            # steps; before the training phase, so that training's own speed window starts after it.
            if global_step // args.log_interval > (global_step - args.num_envs) // args.log_interval:
                run.recent_returns.clear()  # the progress line's return: the mean of this log window's episodes
                if finished_episodes.item() > 0:
                    mean_return = (finished_returns / finished_episodes).item()
                    run.log_episodes(global_step, [mean_return], [(finished_lengths / finished_episodes).item()])
                    finished_returns.zero_(), finished_lengths.zero_(), finished_episodes.zero_()
                if metrics is not None:
                    run.log_losses(metrics, global_step)
                    check_finite_actions(run, actions, global_step)
                run.progress(global_step)

            # ALGO LOGIC: training.
            if global_step > run.learning_starts and iteration % args.train_interval == 0:
                run.end_warm_up(global_step)  # its losses are read at the next log time, not here: no wait for the device
                for _ in range(args.gradient_steps):
                    agent_order = list(range(n_agents)) if args.fixed_order else random.sample(range(n_agents), n_agents)
                    metrics = update(sample_batch(rb, args.batch_size, envs), agent_order, args.tau)

            if run.evaluation_due(global_step):
                if eval_envs is not None:
                    returns = evaluate(learner, eval_envs, args.eval_episodes, args.seed + 10_000, device)
                    run.log_evaluation(global_step, returns)
                run.save(global_step)
            if run.stop_requested:
                break
    envs.close()
    if eval_envs is not None:
        eval_envs.close()
    run.finish(global_step)
