"""HASAC for discrete actions: the paper's matrix game, discrete-action MPE and Google Research Football.

Heterogeneous-Agent Soft Actor-Critic (Liu et al., "Maximum Entropy Heterogeneous-Agent
Reinforcement Learning", ICLR 2024): a centralised twin soft Q-function on (global state,
one-hot joint action) and one categorical actor per agent, trained with straight-through
Gumbel-Softmax and updated one agent after the other in a random order against the
already-updated agents' new actions (Algorithm 2). The matrix game is Section 3.2 / Figure 1.

    python hasac_discrete.py --env-id matrix-game  # seconds: the joint policy escapes from (A, A) to (C, C)
    python hasac_discrete.py --env-id simple_spread_v3 --n-step 20 --policy-lr 5e-4 --q-lr 5e-4
    python hasac_discrete.py --env-id academy_3_vs_1_with_keeper  # needs gfootball: bash benchmark/install_football.sh
"""

import itertools
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
    env_id: str = "simple_spread_v3"
    """the environment id: `matrix-game`, an MPE task (simple_spread_v3, ...) or a football academy scenario"""
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
    """automatic tuning of each agent's temperature toward target entropy --target-entropy-scale x log|A^i|"""
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

    # discrete specific arguments
    actor_loss: Literal["gumbel", "expected"] = "gumbel"
    """the actor loss: gumbel (straight-through Gumbel-Softmax, the paper's) or expected (exact over own actions)"""
    target_entropy_scale: float = 0.5
    """with --autotune, each agent's target entropy as a fraction of its maximum entropy log|A^i|, in [0, 1]"""
    matrix_init_bias: bool = True
    """matrix-game only: both actors start from the paper's biased policy (0.6, 0.2, 0.2) over (A, B, C)"""
    eval_checkpoint: Optional[str] = None
    """evaluate (and with --capture-video, record) a saved `.cleanrl_model` instead of training"""


# ENVIRONMENTS: the place to edit when adding one. Every env sits behind one batched interface
# reset(seed) -> obs [E, N, obs_dim], state [E, S], avail [E, N, act_dim] (True: the agent may take it)
# step(actions [E, N, act_dim] one-hot) -> obs, state, avail, reward [E], terminated [E], truncated [E], info
MATRIX_GAME = "matrix-game"
# Section 3.2, Figure 1: rows are agent 1's action, columns agent 2's, in the order A, B, C
MATRIX_PAYOFF = np.array([[5, -20, -20], [-20, 10, -20], [-20, -20, 20]], np.float32)
MATRIX_ACTIONS = "ABC"
MATRIX_INIT_POLICY = (0.6, 0.2, 0.2)  # the paper's start, biased toward the suboptimal equilibrium (A, A)
# The common defaults (10M steps, 10k warm-up, [256, 256] nets) would take hours on a one-step game; these apply to
# every flag not given on the command line (__main__ hands them to parse_args), and the run takes about a minute.
# The actors learn slower than the critic (policy_lr 1e-3 against q_lr 3e-3), so that they follow its estimate of the
# payoff (two timescales): with equal rates the actors first step on a barely trained critic, whose Q is near 0
# everywhere, the entropy term alone pulls them toward uniform, and at alpha 5 one seed in three crossed into the basin
# of (C, C) instead of the QRE at (A, A). A faster critic instead (q_lr 1e-2) fixed alpha 5 but left one seed in three
# far from the QRE at alpha 15 and 20 after 20k steps. 40k steps (about 4000 updates) let --actor-loss expected settle.
MATRIX_GAME_DEFAULTS = dict(total_timesteps=40_000, num_envs=10, learning_starts=100, buffer_size=1000, batch_size=128)
MATRIX_GAME_DEFAULTS |= dict(train_interval=10, gradient_steps=10, hidden_dim=64, policy_lr=1e-3, q_lr=3e-3)
MATRIX_GAME_DEFAULTS |= dict(eval_interval=1000, eval_episodes=10)
MPE_TASKS = ("simple_spread_v3", "simple_reference_v3", "simple_speaker_listener_v4")
MPE_EPISODE_STEPS = 25
# football academy scenario -> the number of left-team players the agents control (the official setup)
FOOTBALL_SCENARIOS = {"academy_pass_and_shoot_with_keeper": 2, "academy_run_pass_and_shoot_with_keeper": 2}
FOOTBALL_SCENARIOS |= {"academy_3_vs_1_with_keeper": 3, "academy_counterattack_easy": 4, "academy_counterattack_hard": 4}
FOOTBALL_SCENARIOS |= {"academy_corner": 11, "academy_single_goal_versus_lazy": 11}


class MatrixGameVecEnv:
    """The paper's single-state cooperative matrix game (Section 3.2, Figure 1), batched over envs.

    Two agents pick A, B or C once; the team reward is MATRIX_PAYOFF of the joint action, and
    the episode then ends (a real termination: nothing to bootstrap). There is one state, so
    the observations and the state are a constant 1.
    """

    def __init__(self, num_envs: int, render_mode=None):
        if render_mode is not None:
            raise ValueError("--capture-video: matrix-game has nothing to render; record an MPE or football env")
        self.num_envs, self.n_agents = num_envs, 2
        self.obs_dims, self.act_dims, self.state_dim = [1, 1], [3, 3], 1
        self.obs_dim, self.act_dim = 1, 3
        self.action_mask = np.ones((self.n_agents, self.act_dim), bool)  # [N, act_dim]

    def _observe(self):
        obs = np.ones((self.num_envs, self.n_agents, self.obs_dim), np.float32)
        avail = np.broadcast_to(self.action_mask, (self.num_envs, self.n_agents, self.act_dim)).copy()
        return obs, np.ones((self.num_envs, self.state_dim), np.float32), avail

    def reset(self, seed: Optional[int] = None):
        return self._observe()

    def step(self, actions: np.ndarray):
        choice = actions.argmax(-1)  # one-hot [E, 2, 3] -> action index [E, 2]
        reward = MATRIX_PAYOFF[choice[:, 0], choice[:, 1]]
        obs, state, avail = self._observe()
        terminated, truncated = np.ones(self.num_envs, bool), np.zeros(self.num_envs, bool)
        info = {"final_obs": dict(enumerate(obs)), "final_state": dict(enumerate(state)), "scored": {}}
        return obs, state, avail, reward, terminated, truncated, info

    def close(self):
        pass


def make_pettingzoo_env(env_id: str, render_mode: Optional[str] = None):
    """One pettingzoo ParallelEnv (or the football adapter) for `env_id`; raises ValueError naming the valid ids."""
    if env_id in MPE_TASKS:
        import importlib

        module = importlib.import_module(f"mpe2.{env_id}")
        return module.parallel_env(continuous_actions=False, max_cycles=MPE_EPISODE_STEPS, render_mode=render_mode)
    if env_id in FOOTBALL_SCENARIOS:
        from hasac_utils.envs.football import FootballParallelEnv  # gfootball is optional: imported only when chosen

        return FootballParallelEnv(env_id, FOOTBALL_SCENARIOS[env_id], render_mode)
    raise ValueError(f"unknown env id {env_id!r}; valid: {', '.join((MATRIX_GAME,) + MPE_TASKS + tuple(FOOTBALL_SCENARIOS))}")


class MultiAgentVecEnv:
    """`num_envs` pettingzoo parallel envs stepped in turn, padded to the largest agent.

    Team reward: in MPE the sum of all agents' rewards, as the official implementation does;
    football hands every agent a copy of its one team reward. Finished envs reset at once; the
    true final observation and state come back in info["final_obs"] / info["final_state"], and
    football's "was there a goal" in info["scored"].
    """

    def __init__(self, env_id: str, num_envs: int, render_mode=None):
        self.envs = [make_pettingzoo_env(env_id, render_mode) for _ in range(num_envs)]
        env = self.envs[0]
        self.agents = env.possible_agents
        self.num_envs, self.n_agents = num_envs, len(self.agents)
        self.act_dims = [int(env.action_space(a).n) for a in self.agents]
        self.act_dim = max(self.act_dims)
        # the only unavailable actions are the padding of smaller action sets (speaker-listener)
        self.action_mask = np.arange(self.act_dim) < np.array(self.act_dims)[:, None]  # [N, act_dim]
        env.reset(seed=0)
        self.state_dim = env.state().shape[0]
        self.obs_dims = [env.observation_space(a).shape[0] for a in self.agents]
        self.obs_dim = max(self.obs_dims)
        self.sum_rewards = env_id in MPE_TASKS

    def _observe(self, env, agent_obs):
        obs = np.zeros((self.n_agents, self.obs_dim), np.float32)
        for i, agent in enumerate(self.agents):
            obs[i, : self.obs_dims[i]] = agent_obs[agent]
        return obs, np.asarray(env.state(), np.float32)

    def _avail(self):
        return np.broadcast_to(self.action_mask, (self.num_envs, self.n_agents, self.act_dim)).copy()

    def reset(self, seed: Optional[int] = None):
        observed = [
            self._observe(env, env.reset(seed=None if seed is None else seed + i)[0]) for i, env in enumerate(self.envs)
        ]
        return np.stack([o for o, _ in observed]), np.stack([s for _, s in observed]), self._avail()

    def step(self, actions: np.ndarray):
        obs = np.empty((self.num_envs, self.n_agents, self.obs_dim), np.float32)
        state = np.empty((self.num_envs, self.state_dim), np.float32)
        reward = np.empty(self.num_envs, np.float32)
        terminated, truncated = np.zeros(self.num_envs, bool), np.zeros(self.num_envs, bool)
        info = {"final_obs": {}, "final_state": {}, "scored": {}}
        choice = actions.argmax(-1)  # one-hot [E, N, act_dim] -> action index [E, N]
        for e, env in enumerate(self.envs):
            agent_actions = {a: int(choice[e, i]) for i, a in enumerate(self.agents)}
            agent_obs, rewards, terms, truncs, agent_infos = env.step(agent_actions)
            reward[e] = sum(rewards.values()) if self.sum_rewards else rewards[self.agents[0]]
            obs[e], state[e] = self._observe(env, agent_obs)
            terminated[e] = any(terms.values())
            truncated[e] = any(truncs.values()) and not terminated[e]
            if terminated[e] or truncated[e]:
                info["final_obs"][e], info["final_state"][e] = obs[e].copy(), state[e].copy()
                if "episode_score" in agent_infos.get(self.agents[0], {}):
                    info["scored"][e] = agent_infos[self.agents[0]]["episode_score"] > 0
                obs[e], state[e] = self._observe(env, env.reset()[0])
        return obs, state, self._avail(), reward, terminated, truncated, info

    def close(self):
        for env in self.envs:
            env.close()


def make_env(args: Args, num_envs: int, render_mode=None):
    if args.env_id == MATRIX_GAME:
        envs = MatrixGameVecEnv(num_envs, render_mode)
    else:
        envs = MultiAgentVecEnv(args.env_id, num_envs, render_mode)
    if args.share_param and (len(set(envs.obs_dims)) > 1 or len(set(envs.act_dims)) > 1):
        raise ValueError(
            f"--share-param needs equal agent spaces; {args.env_id} has obs dims {envs.obs_dims} "
            f"and action dims {envs.act_dims}"
        )
    return envs


def random_available_actions(avail: np.ndarray) -> np.ndarray:
    """Uniform random warm-up actions among the available ones: avail [E, N, A] -> one-hot [E, N, A].

    The argmax of i.i.d. uniform scores is uniform over the entries it may pick from."""
    scores = np.where(avail, np.random.random(avail.shape), -1.0)
    return np.eye(avail.shape[-1], dtype=np.float32)[scores.argmax(-1)]


# ALGO LOGIC: initialize agent here:
MASKED_LOGIT = -1e10  # unavailable actions: exp underflows to an exact 0 probability, and no NaN


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x @ weight.T + bias for one layer ([out, in]) or a stack of layers ([K, out, in], x [K, B, in])."""
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    return torch.baddbmm(bias.unsqueeze(-2), x, weight.transpose(-1, -2))


def layer_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, feature_mask=None, eps: float = 1e-5
) -> torch.Tensor:
    """LayerNorm over the last dim with one layer's weight [D] or a stack [K, D] (x [K, B, D]).

    `feature_mask` ([D] or [K, D]) leaves zero-padded input features out of the mean and
    variance, so a padded agent normalises exactly as its own unpadded observation would.
    """
    if weight.dim() == 2:  # stacked: [K, D] -> [K, 1, D]
        weight, bias = weight.unsqueeze(1), bias.unsqueeze(1)
        feature_mask = None if feature_mask is None else feature_mask.unsqueeze(1)
    if feature_mask is None:
        normalised = F.layer_norm(x, x.shape[-1:], eps=eps)
    else:
        count = feature_mask.sum(-1, keepdim=True)
        centred = (x - (x * feature_mask).sum(-1, keepdim=True) / count) * feature_mask
        normalised = centred * torch.rsqrt(centred.pow(2).sum(-1, keepdim=True) / count + eps)
    return normalised * weight + bias


class Actor(nn.Module):
    """One agent's categorical policy over its discrete actions (the official discrete actor).

    MLP: LayerNorm on the input features, then Linear-ReLU-LayerNorm twice, then a linear layer
    to the logits; orthogonal init (gain sqrt(2), the logits layer 0.01: a near-uniform start).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int):
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.input_norm = nn.LayerNorm(obs_dim)
        self.fc1, self.norm1 = nn.Linear(obs_dim, hidden_dim), nn.LayerNorm(hidden_dim)
        self.fc2, self.norm2 = nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim)
        self.fc_logits = nn.Linear(hidden_dim, act_dim)
        for layer, gain in ((self.fc1, math.sqrt(2)), (self.fc2, math.sqrt(2)), (self.fc_logits, 0.01)):
            nn.init.orthogonal_(layer.weight, gain)
            nn.init.zeros_(layer.bias)
        self.register_buffer("obs_mask", torch.ones(obs_dim), persistent=False)

    def init_policy(self, probabilities):
        """Start from a fixed policy whatever the observation: zero logits weights, bias log p."""
        with torch.no_grad():
            self.fc_logits.weight.zero_()
            self.fc_logits.bias.copy_(torch.log(torch.as_tensor(probabilities, dtype=torch.float32)))

    def layers(self):
        """(obs_mask, norm0 w, b, w1, b1, norm1 w, b, w2, b2, norm2 w, b, w_logits, b_logits): `sample_actions`'s weights."""
        modules = (self.input_norm, self.fc1, self.norm1, self.fc2, self.norm2, self.fc_logits)
        return (self.obs_mask, *(tensor for module in modules for tensor in (module.weight, module.bias)))

    def padded_layers(self, obs_dim: int, act_dim: int):
        """`layers()` zero-padded to (obs_dim, act_dim), for stacking with other agents'.
        Padded logits are masked out by the action mask."""
        if (obs_dim, act_dim) == (self.obs_dim, self.act_dim):
            return self.layers()
        pad_in, pad_out = (0, obs_dim - self.obs_dim), (0, act_dim - self.act_dim)
        *input_side, w_logits, b_logits = self.layers()  # the first four take obs_dim features, the last two act_dim
        padded_input = [F.pad(tensor, pad_in) if k < 4 else tensor for k, tensor in enumerate(input_side)]
        return (*padded_input, F.pad(w_logits, (0, 0, *pad_out)), F.pad(b_logits, pad_out))

    def forward(self, obs: torch.Tensor, deterministic: bool = False):
        """obs [..., obs_dim] (padding beyond obs_dim is ignored) -> one-hot action [..., act_dim], log_prob [...]."""
        return sample_actions(obs[..., : self.obs_dim], self.layers(), None, deterministic)

    def log_policy(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [..., obs_dim] (padding beyond obs_dim is ignored) -> log pi(. | o) over all actions [..., act_dim]."""
        return F.log_softmax(masked_logits(obs[..., : self.obs_dim], self.layers()), -1)


def stack_actor_weights(actors, policy_of_agent, obs_dim: int, act_dim: int):
    """All agents' weights stacked on a leading agent dim, so acting for every agent is one
    batched matmul per layer (a Python loop over agents would run N small matmuls). Written by
    hand, not with torch.func (stack_module_state + vmap over functional_call): that needs equal
    parameter shapes, so heterogeneous agents would need this padding anyway, and it took 1.35x
    as long for this forward pass (4 agents, batch 1000, one CPU thread)."""
    per_agent = [actors[p].padded_layers(obs_dim, act_dim) for p in policy_of_agent]
    return tuple(torch.stack(layer) for layer in zip(*per_agent))


def masked_logits(obs, weights, action_mask=None) -> torch.Tensor:
    """obs [..., obs_dim] with one agent's `Actor.layers()`, or [N, B, obs_dim] with
    `stack_actor_weights` -> logits [..., act_dim], MASKED_LOGIT where `action_mask` is False."""
    obs_mask, norm0_w, norm0_b, w1, b1, norm1_w, norm1_b, w2, b2, norm2_w, norm2_b, w_logits, b_logits = weights
    features = layer_norm(obs, norm0_w, norm0_b, obs_mask)
    hidden = layer_norm(linear(features, w1, b1).relu_(), norm1_w, norm1_b)  # relu in place: one buffer less
    hidden = layer_norm(linear(hidden, w2, b2).relu_(), norm2_w, norm2_b)
    logits = linear(hidden, w_logits, b_logits)
    if action_mask is not None:  # masked_fill: the masked logits get no gradient
        logits = logits.masked_fill(~action_mask, MASKED_LOGIT)
    return logits


def sample_actions(obs, weights, action_mask=None, deterministic: bool = False):
    """Straight-through Gumbel-Softmax actions and their log-probabilities.

    obs [..., obs_dim] with one agent's `Actor.layers()`, or [N, B, obs_dim] with
    `stack_actor_weights`; `action_mask` (bool, broadcastable to [N, B, act_dim]) hides
    unavailable actions. Returns a one-hot action [..., act_dim] and log pi(action) [...].
    The forward value is an exact categorical sample (Gumbel-max), so rollouts use this too;
    the gradient is that of the Gumbel-Softmax relaxation (temperature 1). Deterministic:
    the most probable available action.
    """
    logits = masked_logits(obs, weights, action_mask)
    log_policy = F.log_softmax(logits, -1)  # [..., act_dim]
    if deterministic:
        action = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    else:
        gumbel_noise = -torch.empty_like(logits).exponential_().log()  # -log(Exp(1)) ~ Gumbel(0, 1)
        soft = F.softmax(logits + gumbel_noise, -1)
        hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(logits.dtype)
        action = hard - soft.detach() + soft  # straight-through: one-hot forward, soft gradient
    return action, (action * log_policy).sum(-1)


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


def own_action_q_values(qf, state_features, others_action: torch.Tensor, first_column: int, n_actions: int):
    """Q_1, Q_2 for each of one agent's n_actions: [2, B, hidden], others_action [B, N * act_dim] (zero in the agent's
    block, which starts at first_column) -> [2, B, n_actions].

    The first layer is linear in the one-hot joint action, so own action a adds column a of the agent's block of
    first-layer weights to one shared pre-activation: the first layer runs once, layers 2-3 on B x n_actions rows.
    """
    w1_action = qf.weights[0][:, :, qf.state_dim :]
    shared = torch.baddbmm(state_features, others_action.expand(2, -1, -1), w1_action.transpose(1, 2))  # [2, B, hidden]
    own_columns = w1_action[:, :, first_column : first_column + n_actions].transpose(1, 2)  # [2, n_actions, hidden]
    hidden = (shared.unsqueeze(2) + own_columns.unsqueeze(1)).relu_().flatten(1, 2)  # [2, B * n_actions, hidden]
    hidden = linear(hidden, qf.weights[1], qf.biases[1]).relu_()
    return linear(hidden, qf.weights[2], qf.biases[2]).view(2, -1, n_actions)


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


def expected_actor_loss(qf, state_features, others_action, first_column: int, log_policy, alpha):
    """Eq. 10 in closed form over agent i's own actions: E_s[sum_a pi^i(a|o^i) (alpha^i log pi^i(a|o^i) - min_j Q_j(s,
    a^{-i}, a))], with others_action [B, N, act_dim] (zero in agent i's slot) and log_policy [B, 1, A^i]. It is the
    expectation that the straight-through estimator samples, with no noise and no use of the critic's slope at one-hot
    points: the exact HASAC step. Returns the loss and E_pi[log pi^i] [B, 1] (minus the exact entropy), for the temperature.
    """
    n_actions = log_policy.shape[-1]
    with torch.no_grad():  # the critic is frozen and the other agents' actions are data: Q carries no gradient
        min_q = own_action_q_values(qf, state_features, others_action.flatten(1), first_column, n_actions).min(0).values
    log_policy = log_policy[:, 0]  # [B, A^i]
    policy = log_policy.exp()  # unavailable actions have probability exactly 0
    per_sample = (policy * (alpha * log_policy - min_q)).sum(-1)  # [B]
    return per_sample.mean(), (policy * log_policy).sum(-1, keepdim=True)


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
    actor_loss: Literal["gumbel", "expected"]  # straight-through Gumbel-Softmax, or exact over own actions
    alpha_optimizers: Optional[list]  # None: fixed temperature
    target_entropies: list  # target_entropy_scale * log|A^i|
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
    # (The expected loss differentiates no sampled action: its draws need no graph.)
    with torch.set_grad_enabled(learner.actor_loss == "gumbel"):
        draws = {i: actors[learner.policy_of_agent[i]](batch.obs[:, i : i + 1]) for i in agent_order}  # [B, 1, act_dim_i]
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
        if learner.actor_loss == "expected":
            others_action = actions.clone()
            others_action[:, agent] = 0
            log_policy = actor.log_policy(batch.obs[:, agent])  # [B, 1, act_dim_i]
            loss, new_log_probs = expected_actor_loss(qf, state_features, others_action, i * act_dim, log_policy, alphas[i])
        else:
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
    actors = [Actor(envs.obs_dims[i], envs.act_dims[i], args.hidden_dim).to(device) for i in range(n_policies)]
    if args.env_id == MATRIX_GAME and args.matrix_init_bias:  # the paper's biased start (Section 3.2)
        for actor in actors:
            actor.init_policy(MATRIX_INIT_POLICY)
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
        actor_loss=args.actor_loss,
        alpha_optimizers=[optim.Adam([log_alpha], lr=args.alpha_lr) for log_alpha in log_alphas] if args.autotune else None,
        # Appendix H.1: a fraction of agent i's maximum entropy log|A^i|. The official implementation
        # computes its discrete target from np.prod(Discrete(n).shape), which is 1 (a Discrete
        # space's shape is ()), so the target works out to log 1 = 0: every policy with any
        # entropy then lowers alpha, which decays to zero. This is not copied. The masks here are
        # fixed per agent (they only hide the padding of smaller action sets), so |A^i| is the
        # agent's own action count; with masks that vary by state it would be the mean over the
        # batch of the available actions.
        target_entropies=[args.target_entropy_scale * math.log(dim) for dim in envs.act_dims],
        action_mask=torch.as_tensor(envs.action_mask, device=device).unsqueeze(1),
    )


def replay_row(obs: np.ndarray, state: np.ndarray) -> np.ndarray:
    """What the replay buffer stores of a step: obs [E, N, obs_dim] and state [E, S] -> [E, N * obs_dim + S]."""
    return np.concatenate([obs.reshape(len(obs), -1), state], 1)


def sample_batch(rb, batch_size: int, envs: MultiAgentVecEnv) -> Batch:
    """A uniform sample of n-step transitions from the replay buffer, unpacked from `replay_row`s into a Batch."""
    data = rb.sample(batch_size)
    stored_obs_dim = data.observations.shape[1] - envs.state_dim

    def unpack(rows: torch.Tensor):  # [B, stored_obs_dim + S] -> obs [B, N, obs_dim], state [B, S]
        return rows[:, :stored_obs_dim].view(-1, envs.n_agents, envs.obs_dim), rows[:, stored_obs_dim:]

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
def act(
    learner: Learner, obs: torch.Tensor, deterministic: bool = False, avail: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """obs [E, N, obs_dim], avail [E, N, act_dim] (None: every agent's own actions) -> one-hot
    actions [E, N, act_dim] from every agent's policy at once."""
    weights = stack_actor_weights(learner.actors, learner.policy_of_agent, obs.shape[-1], learner.action_mask.shape[-1])
    mask = learner.action_mask if avail is None else learner.action_mask & avail.transpose(0, 1).bool()  # [N, E, act_dim]
    actions, _ = sample_actions(obs.transpose(0, 1), weights, mask, deterministic)
    return actions.transpose(0, 1)


@torch.no_grad()
def matrix_policies(learner: Learner) -> np.ndarray:
    """The matrix game's learned policies as [2, 3]: row i is pi^i over (A, B, C). The joint policy is their outer product."""
    obs = torch.ones(2, 1, 1, device=learner.action_mask.device)  # [N, 1, obs_dim]: the one state
    weights = stack_actor_weights(learner.actors, learner.policy_of_agent, 1, learner.action_mask.shape[-1])
    return F.softmax(masked_logits(obs, weights, learner.action_mask), -1)[:, 0].cpu().numpy()


def log_matrix_policies(writer, learner: Learner, global_step: int):
    """Each agent's policy and the joint policy's diagonal: the escape from (A, A) toward (C, C) of Figure 3a."""
    policies = matrix_policies(learner)
    for k, a in enumerate(MATRIX_ACTIONS):
        writer.add_scalar(f"charts/p_{a}{a}", policies[0, k] * policies[1, k], global_step)
        for i in range(len(policies)):
            writer.add_scalar(f"charts/pi_{a}/agent_{i}", policies[i, k], global_step)


def print_matrix_policies(learner: Learner):
    """The joint policy's diagonal and each agent's policy, to hold against the QRE of Table 3."""
    policies = matrix_policies(learner)
    joint_policy = np.outer(policies[0], policies[1])
    print("  joint policy: " + ", ".join(f"p_{a}{a}={joint_policy[k, k]:.3f}" for k, a in enumerate(MATRIX_ACTIONS)))
    for i, policy in enumerate(policies):
        print(f"  agent {i} policy: " + ", ".join(f"pi_{a}={p:.4f}" for a, p in zip(MATRIX_ACTIONS, policy)))


@training_rng_preserved()
def evaluate(
    learner: Learner, envs: MultiAgentVecEnv, n_episodes: int, seed: int, device, frames: Optional[list] = None, wins=None
):
    """Team returns of `n_episodes` episodes with deterministic actions (argmax of the available actions), each env
    running its share. With `frames`, env 0's first episode is rendered into it. With `wins` (football), whether each
    of those episodes was won (our team scored: the paper's winning rate) is appended to it, in the same order."""
    obs, _, avail = envs.reset(seed=seed)
    shares = episode_shares(n_episodes, envs.num_envs)
    returns, episode_return, env_wins = [[] for _ in shares], np.zeros(envs.num_envs), [[] for _ in shares]
    while any(len(r) < share for r, share in zip(returns, shares)):
        if frames is not None and not returns[0]:
            frames.append(envs.envs[0].render())
        actions = act(
            learner, torch.as_tensor(obs, device=device), deterministic=True, avail=torch.as_tensor(avail, device=device)
        )
        obs, _, avail, reward, terminated, truncated, info = envs.step(actions.cpu().numpy())
        episode_return += reward
        for e in np.flatnonzero(terminated | truncated):
            if len(returns[e]) < shares[e]:
                returns[e].append(episode_return[e])
                env_wins[e].append(info["scored"].get(e, False))
            episode_return[e] = 0.0
    if wins is not None:
        wins.extend(itertools.chain.from_iterable(env_wins))
    return [r for env_returns in returns for r in env_returns]


if __name__ == "__main__":
    args = parse_args(Args, __file__, env_defaults={MATRIX_GAME: MATRIX_GAME_DEFAULTS})
    device = torch.device("cuda" if args.cuda else "cpu")
    if args.eval_checkpoint is None:
        with one_line_errors():  # a bad env id or --share-param ends the run here, before anything is written
            envs = make_env(args, args.num_envs)
            if args.capture_video:
                check_rendering(make_env, args, hint=None)  # MuJoCo's OpenGL hint does not apply to these envs

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
                check_rendering(make_env, saved_args, hint=None)
        eval_envs = make_env(
            saved_args, min(args.eval_episodes, saved_args.num_envs), "rgb_array" if args.capture_video else None
        )
        frames = [] if args.capture_video else None
        wins = [] if saved_args.env_id in FOOTBALL_SCENARIOS else None
        returns = evaluate(learner, eval_envs, args.eval_episodes, args.seed, device, frames, wins)
        mean, std = np.mean(returns), np.std(returns)
        score_rate = f", eval/score_rate {np.mean(wins):.3f}" if wins is not None else ""
        print(f"{saved_args.env_id}: eval/episodic_return {mean:.2f} +- {std:.2f}{score_rate} over {len(returns)} episodes")
        if frames:
            render_video(frames, f"videos/{os.path.basename(os.path.dirname(os.path.abspath(args.eval_checkpoint)))}")
        sys.exit(0)

    # ALGO LOGIC: the learner, the replay memory (n-step returns, time limits: stable-baselines3's) and the eval envs
    learner = build_learner(envs, args, device)
    n_agents, act_dim = envs.n_agents, envs.act_dim
    rb = NStepReplayBuffer(
        args.buffer_size,
        gym.spaces.Box(-np.inf, np.inf, (n_agents * envs.obs_dim + envs.state_dim,), np.float32),  # replay_row's width
        gym.spaces.Box(0.0, 1.0, (n_agents * act_dim,), np.float32),  # one-hot joint actions: the critic's input as is
        device,
        n_envs=args.num_envs,
        handle_timeout_termination=True,
        n_steps=args.n_step,
        gamma=args.gamma,
    )
    eval_envs = make_env(args, min(args.eval_episodes, args.num_envs), "rgb_array" if args.capture_video else None)

    # TRY NOT TO MODIFY: start the game, or continue it (--resume restores the step, the learner, the generators and the
    # buffer: after the reset, which may seed the generators)
    obs, state, avail = envs.reset(seed=args.seed)
    run = start_run(args, __file__, learner, rb, device)
    rb, global_step = run.rb, run.global_step
    episode_return, episode_length = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=int)
    with run.graceful_stop():
        for iteration in range(global_step // args.num_envs + 1, args.total_timesteps // args.num_envs + 1):
            # ALGO LOGIC: put action logic here
            if global_step < args.learning_starts:
                actions = random_available_actions(avail)
            else:
                obs_t, avail_t = torch.as_tensor(obs, device=device), torch.as_tensor(avail, device=device)
                actions = act(learner, obs_t, avail=avail_t).cpu().numpy()

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, next_state, next_avail, rewards, terminations, truncations, infos = envs.step(actions)
            global_step += args.num_envs
            episode_return += rewards
            episode_length += 1
            done = terminations | truncations
            run.log_episodes(global_step, episode_return[done], episode_length[done])
            episode_return[done], episode_length[done] = 0.0, 0
            if infos["scored"]:  # football: the paper's winning rate, of the episodes that ended here
                run.writer.add_scalar("charts/score_rate", np.mean(list(infos["scored"].values())), global_step)

            # TRY NOT TO MODIFY: save data to replay buffer; the true final observation where an episode ended
            real_next_obs, real_next_state, dones, timeouts = transition_to_store(
                next_obs, next_state, terminations, truncations, infos
            )
            flat_actions = actions.reshape(args.num_envs, -1)
            real_next_rows = replay_row(real_next_obs, real_next_state)
            rb.add(replay_row(obs, state), real_next_rows, flat_actions, rewards, dones, timeouts)
            obs, state, avail = next_obs, next_state, next_avail
            run.progress(global_step)  # before training: training's own speed window starts after this line

            # ALGO LOGIC: training.
            if global_step > run.learning_starts and iteration % args.train_interval == 0:
                run.end_warm_up(global_step)
                for _ in range(args.gradient_steps):
                    batch = sample_batch(rb, args.batch_size, envs)
                    agent_order = np.arange(n_agents) if args.fixed_order else np.random.permutation(n_agents)
                    metrics = hasac_update(learner, batch, agent_order, args.tau)
                run.log_losses(metrics, global_step)
                if args.env_id == MATRIX_GAME:
                    log_matrix_policies(run.writer, learner, global_step)

            if run.evaluation_due(global_step):
                frames = [] if args.capture_video else None
                wins = [] if args.env_id in FOOTBALL_SCENARIOS else None
                returns = evaluate(learner, eval_envs, args.eval_episodes, args.seed + 10_000, device, frames, wins)
                rates = {} if wins is None else {"score_rate": np.mean(wins)}
                run.log_evaluation(global_step, returns, frames, **rates)
                if args.env_id == MATRIX_GAME:
                    print_matrix_policies(learner)
                run.save(global_step)
            if run.stop_requested:
                break
    envs.close()
    eval_envs.close()
    run.finish(global_step)
