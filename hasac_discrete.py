"""HASAC for discrete actions: the paper's matrix game, discrete-action MPE and Google Research Football.

Heterogeneous-Agent Soft Actor-Critic (Liu et al., "Maximum Entropy Heterogeneous-Agent
Reinforcement Learning", ICLR 2024): a centralised twin soft Q-function on (global state,
one-hot joint action) and one categorical actor per agent, trained with straight-through
Gumbel-Softmax and updated one agent after the other in a random order against the
already-updated agents' new actions (Algorithm 2). The matrix game is Section 3.2 / Figure 1.

    python hasac_discrete.py --env-id matrix-game  # seconds: the joint policy escapes from (A, A) to (C, C)
    python hasac_discrete.py --env-id simple_spread_v3 --n-step 20 --policy-lr 5e-4 --q-lr 5e-4
    python hasac_discrete.py --env-id academy_3_vs_1_with_keeper  # needs gfootball: see FOOTBALL_INSTALL
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
# The common defaults (10M steps, 10k warm-up, [256, 256] nets) would take hours on a one-step
# game; these apply to every flag not given on the command line (see parse_args), and the run takes about a minute.
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
FOOTBALL_INSTALL = (
    "Google Research Football (gfootball) is not installed; it compiles from source (about 10 minutes on 2 cores): "
    "bash benchmark/install_football.sh installs the system packages (apt-get install ...) and then "
    "pip install gfootball into this Python"
)


class MatrixGameVecEnv:
    """The paper's single-state cooperative matrix game (Section 3.2, Figure 1), batched over envs.

    Two agents pick A, B or C once; the team reward is MATRIX_PAYOFF of the joint action, and
    the episode then ends (a real termination: nothing to bootstrap). There is one state, so
    the observations and the state are a constant 1.
    """

    def __init__(self, num_envs: int):
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


class FootballParallelEnv:
    """One gfootball academy scenario behind the pettingzoo ParallelEnv calls MultiAgentVecEnv makes.

    Each controlled player observes its Simple115 vector. The global state is the paper's (Appendix H.2.4) and the
    official wrapper's: the components all players' Simple115 vectors share, plus the concatenation of the
    agent-specific part (the one-hot of the player the vector belongs to). Dense rewards (scoring plus checkpoints).
    An episode ends on a goal, a lost ball (possession change or out of play, as the scenario defines) or the
    scenario's time limit; only the time limit is a truncation.
    """

    ACTIVE_PLAYER = slice(97, 108)  # Simple115v2: the one-hot of the player this vector is for

    def __init__(self, scenario: str, render_mode: Optional[str] = None):
        import gfootball.env as football_env

        self.possible_agents = [f"player_{i}" for i in range(FOOTBALL_SCENARIOS[scenario])]
        self.env = football_env.create_environment(
            env_name=scenario,
            representation="simple115v2",
            rewards="scoring,checkpoints",
            number_of_left_players_agent_controls=len(self.possible_agents),
            stacked=False,
            render=render_mode is not None,
            write_goal_dumps=False,
            write_full_episode_dumps=False,
        )
        self.n_actions = int(np.ravel(getattr(self.env.action_space, "nvec", getattr(self.env.action_space, "n", 19)))[0])
        self.obs = np.zeros((len(self.possible_agents), 115), np.float32)
        self.episode_score = 0.0

    def action_space(self, agent):
        import gymnasium as gym

        return gym.spaces.Discrete(self.n_actions)

    def observation_space(self, agent):
        import gymnasium as gym

        return gym.spaces.Box(-np.inf, np.inf, (self.obs.shape[1],), np.float32)

    def state(self) -> np.ndarray:  # [115 - 11 + 11 * N]
        common = np.concatenate([self.obs[0, : self.ACTIVE_PLAYER.start], self.obs[0, self.ACTIVE_PLAYER.stop :]])
        return np.concatenate([common, self.obs[:, self.ACTIVE_PLAYER].ravel()])

    def _agent_dict(self, values):
        return {agent: values[i] for i, agent in enumerate(self.possible_agents)}

    def reset(self, seed: Optional[int] = None):
        # gfootball draws each episode's engine seed from Python's `random` (seeded by the script), so `seed` is not used
        self.obs = np.asarray(self.env.reset(), np.float32).reshape(len(self.possible_agents), -1)
        self.episode_score = 0.0
        return self._agent_dict(self.obs), {}

    def step(self, actions: dict):
        obs, reward, done, info = self.env.step([int(actions[agent]) for agent in self.possible_agents])
        self.obs = np.asarray(obs, np.float32).reshape(len(self.possible_agents), -1)
        self.episode_score += float(info.get("score_reward", 0.0))
        # gfootball pays each controlled player its own reward: the same scoring reward, but a checkpoint only to the
        # player who carries the ball there. The team reward is the first player's, as in the official wrapper.
        rewards = self._agent_dict(np.broadcast_to(np.asarray(reward, np.float32).ravel(), (len(self.possible_agents),)))
        # gfootball's `done` does not tell the time limit from a goal or a lost ball; its steps_left does. The official
        # wrapper never marks a time-out (no bad_transition), so it terminates there too; here a time-out bootstraps.
        timed_out = bool(done) and self.env.unwrapped.observation()[0]["steps_left"] == 0
        infos = self._agent_dict([{"episode_score": self.episode_score}] * len(self.possible_agents))
        terminated = self._agent_dict([bool(done) and not timed_out] * len(self.possible_agents))
        return (
            self._agent_dict(self.obs),
            rewards,
            terminated,
            self._agent_dict([timed_out] * len(self.possible_agents)),
            infos,
        )

    def render(self):
        return self.env.render(mode="rgb_array")

    def close(self):
        self.env.close()


def make_pettingzoo_env(env_id: str, render_mode: Optional[str] = None):
    """One pettingzoo ParallelEnv (or the football adapter) for `env_id`; raises ValueError naming the valid ids."""
    if env_id in MPE_TASKS:
        import importlib

        module = importlib.import_module(f"mpe2.{env_id}")
        return module.parallel_env(continuous_actions=False, max_cycles=MPE_EPISODE_STEPS, render_mode=render_mode)
    if env_id in FOOTBALL_SCENARIOS:
        try:
            import gfootball.env  # noqa: F401
        except ImportError:
            raise ValueError(FOOTBALL_INSTALL) from None
        return FootballParallelEnv(env_id, render_mode)
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
        return MatrixGameVecEnv(num_envs)
    return MultiAgentVecEnv(args.env_id, num_envs, render_mode)


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
    batched matmul per layer (a Python loop over agents would run N small matmuls)."""
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
    """--capture-video renders one frame at the start: without a working renderer (football needs OpenGL) the run ends
    here rather than at its first evaluation, hours in."""
    if args.env_id == MATRIX_GAME:
        raise ValueError("--capture-video: matrix-game has nothing to render; record an MPE or football env")
    envs = make_env(args, 1, "rgb_array")
    try:
        envs.reset(seed=args.seed)
        envs.envs[0].render()
    except Exception as error:  # each renderer fails in its own way
        raise ValueError(f"rendering failed ({error})") from None
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


def parse_args(argv: list) -> Args:
    """The command line over the defaults of the env it names: with --env-id matrix-game, MATRIX_GAME_DEFAULTS stand in
    for the common defaults, so a flag given in any spelling tyro accepts wins, and --help lists the defaults that apply."""
    env_id = tyro.cli(Args, args=[arg for arg in argv if arg not in ("-h", "--help")]).env_id
    return tyro.cli(
        Args, args=argv, default=Args(env_id=MATRIX_GAME, **MATRIX_GAME_DEFAULTS) if env_id == MATRIX_GAME else Args()
    )


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
    args = parse_args(sys.argv[1:])
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
        if not 0 <= args.target_entropy_scale <= 1:
            raise ValueError(
                "--target-entropy-scale must be in [0, 1] (a fraction of the maximum entropy), "
                f"got {args.target_entropy_scale}"
            )
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
        wins = [] if saved_args.env_id in FOOTBALL_SCENARIOS else None
        returns = evaluate(learner, eval_envs, args.eval_episodes, args.seed, device, frames, wins)
        score_rate = f", eval/score_rate {np.mean(wins):.3f}" if wins is not None else ""
        print(
            f"{saved_args.env_id}: eval/episodic_return {np.mean(returns):.2f} +- {np.std(returns):.2f}{score_rate} "
            f"over {len(returns)} episodes"
        )
        if frames:
            render_video(frames, f"videos/{os.path.basename(os.path.dirname(os.path.abspath(args.eval_checkpoint)))}", fps=30)
        sys.exit(0)

    # ALGO LOGIC: the learner, the replay memory and the evaluation envs
    learner = build_learner(envs, args, device)
    n_agents, obs_dim, act_dim = envs.n_agents, envs.obs_dim, envs.act_dim
    stored_obs_dim = n_agents * obs_dim

    def pack(obs: np.ndarray, state: np.ndarray) -> np.ndarray:  # -> [E, stored_obs_dim + S]
        return np.concatenate([obs.reshape(len(obs), -1), state], 1)

    def unpack(flat: torch.Tensor):  # [B, stored_obs_dim + S] -> obs [B, N, obs_dim], state [B, S]
        return flat[:, :stored_obs_dim].view(-1, n_agents, obs_dim), flat[:, stored_obs_dim:]

    import gymnasium as gym
    from stable_baselines3.common.buffers import NStepReplayBuffer  # n-step returns, time limits and the write head

    rb = NStepReplayBuffer(
        args.buffer_size,
        gym.spaces.Box(-np.inf, np.inf, (stored_obs_dim + envs.state_dim,), np.float32),
        gym.spaces.Box(0.0, 1.0, (n_agents * act_dim,), np.float32),  # one-hot joint actions: the critic's input as is
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
        wins = [] if args.env_id in FOOTBALL_SCENARIOS else None
        returns = evaluate(learner, eval_envs, args.eval_episodes, args.seed + 10_000, device, frames, wins)
        writer.add_scalar("eval/episodic_return", np.mean(returns), global_step)
        print(f"global_step={global_step}, eval/episodic_return={np.mean(returns):.2f}")
        if wins is not None:
            writer.add_scalar("eval/score_rate", np.mean(wins), global_step)
            print(f"global_step={global_step}, eval/score_rate={np.mean(wins):.3f}")
        if args.env_id == MATRIX_GAME:  # the escape from (A, A) toward (C, C), Figure 3a; the QRE of Table 3
            policies = matrix_policies(learner)
            joint_policy = np.outer(policies[0], policies[1])
            print("  joint policy: " + ", ".join(f"p_{a}{a}={joint_policy[k, k]:.3f}" for k, a in enumerate(MATRIX_ACTIONS)))
            for i, policy in enumerate(policies):
                print(f"  agent {i} policy: " + ", ".join(f"pi_{a}={p:.4f}" for a, p in zip(MATRIX_ACTIONS, policy)))
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
    obs, state, avail = envs.reset(seed=args.seed)
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
                actions = random_available_actions(avail)
            else:
                actions = (
                    act(learner, torch.as_tensor(obs, device=device), avail=torch.as_tensor(avail, device=device))
                    .cpu()
                    .numpy()
                )

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, next_state, next_avail, rewards, terminations, truncations, infos = envs.step(actions)
            global_step += args.num_envs
            episode_return += rewards
            episode_length += 1
            done = terminations | truncations
            if done.any():
                writer.add_scalar("charts/episodic_return", episode_return[done].mean(), global_step)
                writer.add_scalar("charts/episodic_length", episode_length[done].mean(), global_step)
                recent_returns.extend(episode_return[done])
                episode_return[done], episode_length[done] = 0.0, 0
            if infos["scored"]:
                writer.add_scalar("charts/score_rate", np.mean(list(infos["scored"].values())), global_step)

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
            obs, state, avail = next_obs, next_state, next_avail

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
                if args.env_id == MATRIX_GAME:  # the escape from (A, A) toward (C, C), Figure 3a; the QRE of Table 3
                    policies = matrix_policies(learner)
                    for k, a in enumerate(MATRIX_ACTIONS):
                        writer.add_scalar(f"charts/p_{a}{a}", policies[0, k] * policies[1, k], global_step)
                        for i in range(n_agents):
                            writer.add_scalar(f"charts/pi_{a}/agent_{i}", policies[i, k], global_step)

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
