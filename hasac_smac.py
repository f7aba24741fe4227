"""HASAC on the StarCraft Multi-Agent Challenge: SMAX (jaxmarl, pure JAX, CPU) by default, StarCraft II when installed.

Heterogeneous-Agent Soft Actor-Critic (Liu et al., "Maximum Entropy Heterogeneous-Agent
Reinforcement Learning", ICLR 2024): a centralised twin soft Q-function on (global state,
one-hot joint action) and one categorical actor per agent, trained with straight-through
Gumbel-Softmax and updated one agent after the other in a random order against the
already-updated agents' new actions (Algorithm 2). SMAC is the paper's Section 5, Table 1, Figure 9
(Appendix H.2.3 for the per-map settings). On top of hasac_discrete.py: per-state available
actions, dead agents masked out of their actor and temperature losses, the agent-specific
critic state (FP), Huber loss and value normalisation, and the win rate.

    python hasac_smac.py --env-id 3m  # SMAX: pip install jaxmarl (requirements.txt)
    python hasac_smac.py --env-id 3s5z --gamma 0.99 --n-step 20  # benchmark/hasac_smac.sh has every map's settings
    python hasac_smac.py --env-id MMM2 --backend sc2  # real StarCraft II: see hasac_utils/envs/starcraft2.py
"""

import functools
import io
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
from hasac_utils.evaluation import episode_shares, training_rng_preserved
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
    """not supported here (SMAX renders through matplotlib animations, StarCraft II through replays); an error if given"""
    save_model: bool = False
    """save the latest weights to `runs/{run_name}/{exp_name}.cleanrl_model` (each evaluation, the end, Ctrl-C)"""
    resume: Optional[str] = None
    """continue a --save-model run in its run dir, its checkpoint's flags as defaults: `--resume PATH` alone continues it"""
    save_buffer: bool = False
    """with --save-model: also write the replay buffer when the run stops, so that --resume continues it exactly"""

    # Algorithm specific arguments
    env_id: str = "3m"
    """the SMAC map, e.g. 3m, 3s5z or 6h_vs_8z (SMAX has 11 of them; --backend sc2 has every SMAC map)"""
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
    policy_lr: float = 3e-4
    """the learning rate of the actors' optimisers"""
    q_lr: float = 5e-4
    """the learning rate of the Q network optimiser"""
    alpha: float = 0.2
    """the temperature (initial temperature with --autotune)"""
    autotune: bool = True
    """automatic tuning of each agent's temperature toward target entropy --target-entropy-scale x log|available actions|"""
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

    # SMAC specific arguments
    backend: Literal["smax", "sc2"] = "smax"
    """`smax`: jaxmarl's SMAX (JAX, no game needed); `sc2`: the real SMAC on StarCraft II (oxwhirl/smac)"""
    state_type: Literal["EP", "FP"] = "EP"
    """the critic's state: `EP` the global state; `FP` one row per agent, the state plus the agent's own features and id"""
    use_huber_loss: bool = True
    """if toggled, the critic regresses with a Huber loss (delta --huber-delta) instead of MSE (the official SMAC setup)"""
    huber_delta: float = 10.0
    """the Huber loss's delta"""
    use_valuenorm: bool = True
    """if toggled, the critic learns values normalised by running statistics of its targets, as the official SMAC setup does"""
    use_policy_active_masks: bool = True
    """if toggled, dead agents' samples are left out of their actor and temperature losses"""
    actor_loss: Literal["gumbel", "expected"] = "gumbel"
    """the actor loss: gumbel (straight-through Gumbel-Softmax, the paper's) or expected (exact over own actions)"""
    target_entropy_scale: float = 0.5
    """with --autotune, each agent's target entropy as a fraction in [0, 1] of log|available actions| in each state"""
    eval_checkpoint: Optional[str] = None
    """evaluate a saved `.cleanrl_model` instead of training"""


# ENVIRONMENTS: the place to edit when adding one. Every env sits behind one batched interface (SMAC's, batched over envs)
# reset(seed) -> obs [E, N, obs_dim], state [E, S], avail [E, N, act_dim] (True: the agent may take it)
# step(actions [E, N, act_dim] one-hot) -> obs, state, avail, reward [E], terminated [E], truncated [E], info
# All torch tensors on the CPU. Finished envs reset at once; info holds the true final
# observation, state, available actions and alive flags of every env ("final_obs" [E, N, obs_dim],
# "final_state" [E, S], "final_avail" [E, N, act_dim], "final_alive" [E, N]: equal to the returned
# ones where no episode ended), "battle_won" [E] and "alive" [E, N] (of the returned observations).
# SMAX (jaxmarl) reimplements these SMAC maps; its units, rules and time scale differ from StarCraft II's.
SMAX_MAPS = ("3m", "8m", "2s3z", "3s5z", "5m_vs_6m", "10m_vs_11m", "27m_vs_30m", "3s5z_vs_3s6z", "3s_vs_5z", "6h_vs_8z", "25m")
# every map of oxwhirl/smac's registry (smac.env.starcraft2.maps.smac_maps)
SC2_MAPS = tuple(
    (
        "3m 8m 25m 5m_vs_6m 8m_vs_9m 10m_vs_11m 27m_vs_30m MMM MMM2 2s3z 3s5z 3s5z_vs_3s6z 3s_vs_3z 3s_vs_4z "
        "3s_vs_5z 1c3s5z 2m_vs_1z corridor 6h_vs_8z 2s_vs_1sc so_many_baneling bane_vs_bane 2c_vs_64zg"
    ).split()
)
BACKENDS = {"smax": SMAX_MAPS, "sc2": SC2_MAPS}


@functools.lru_cache(maxsize=None)
def smax_functions(map_name: str, num_envs: int):
    """SMAX's env and its pure functions for one map, with the jitted batched reset and step for
    `num_envs` envs. Cached: adapters of the same size (training and evaluation envs with the
    default sizes) share one compilation, which takes seconds.

    -> (env, observe, transition, reset(key) -> (env states, observed), step(key, env states, actions [E, N] int32)
    -> (key, env states, observed, final observed, reward [E], terminated [E], truncated [E], won [E])),
    where observed = (obs [E, N, obs_dim], state [E, S], avail [E, N, act_dim] bool, alive [E, N] bool).
    """
    import jax
    import jax.numpy as jnp

    # jaxmarl prints notes about optional envs on import, and its optional-MABrax import sets
    # sys.stdout back to sys.__stdout__ (which defeats contextlib.redirect_stdout): swap both
    saved_stdout = sys.stdout, sys.__stdout__
    sys.stdout = sys.__stdout__ = io.StringIO()
    try:
        import jaxmarl
        from jaxmarl.environments.smax import map_name_to_scenario
    finally:
        sys.stdout, sys.__stdout__ = saved_stdout

    env = jaxmarl.make("HeuristicEnemySMAX", scenario=map_name_to_scenario(map_name))
    allies, n_allies = env.agents, env.num_allies

    def observe(env_state):  # one battle -> obs [N, obs_dim], state [S], avail [N, act_dim] bool, alive [N] bool
        obs, avail = env.get_obs(env_state), env.get_avail_actions(env_state)
        return (
            jnp.stack([obs[agent] for agent in allies]),
            env.get_world_state(env_state),
            jnp.stack([avail[agent] for agent in allies]).astype(bool),
            env_state.state.unit_alive[:n_allies],
        )

    def transition(key, env_state, actions):
        """One battle's step without reset: -> (next env state, team reward, terminated, truncated, won)."""
        _, next_state, rewards, dones, _ = env.step_env(key, env_state, {agent: actions[i] for i, agent in enumerate(allies)})
        unit_alive = next_state.state.unit_alive
        allies_dead, enemies_dead = ~unit_alive[:n_allies].any(), ~unit_alive[n_allies:].any()
        terminated = allies_dead | enemies_dead
        truncated = dones["__all__"] & ~terminated  # SMAX's `done` also holds its step limit: a time limit, not a battle's end
        won = enemies_dead & ~allies_dead  # SMAX pays its win bonus exactly then; `info` has no win flag
        return next_state, rewards[allies[0]], terminated, truncated, won  # every ally gets the same team reward

    def reset_one(key):
        # strong dtypes: the step's outputs have them, and a weakly typed input would compile the step twice
        return jax.tree.map(lambda x: jnp.asarray(x, x.dtype), env.reset(key)[1])

    def reset(key):
        env_states = jax.vmap(reset_one)(jax.random.split(key, num_envs))
        return env_states, jax.vmap(observe)(env_states)

    def step(key, env_states, actions):
        key, *keys = jax.random.split(key, 2 * num_envs + 1)
        step_keys, reset_keys = jnp.stack(keys[:num_envs]), jnp.stack(keys[num_envs:])
        final_states, reward, terminated, truncated, won = jax.vmap(transition)(step_keys, env_states, actions)
        done = terminated | truncated
        fresh_states = jax.vmap(reset_one)(reset_keys)  # jaxmarl's own auto-reset computes these every step too
        next_states = jax.tree.map(
            lambda fresh, final: jnp.where(done.reshape((-1,) + (1,) * (final.ndim - 1)), fresh, final),
            fresh_states,
            final_states,
        )
        observed, final_observed = jax.vmap(observe)(next_states), jax.vmap(observe)(final_states)
        return key, next_states, observed, final_observed, reward, terminated, truncated, won

    return env, observe, transition, jax.jit(reset), jax.jit(step)


class SMAXVecEnv:
    """`num_envs` SMAX battles (jaxmarl's HeuristicEnemySMAX: our team against SMAX's scripted
    enemies) stepped by one jitted, vmapped call, with SMAC's interface.

    SMAX's own reward, used as is: each step, the enemy team's lost health as a fraction of its
    total (each unit's share normalised by its type's health) plus 1 when the battle is won, so a
    won battle returns exactly 2 (a draw, both teams dead, is no win). SMAX's own step limit
    (`max_steps` = 100 for every map; it is tested before the step is counted, so episodes last
    at most 101 steps) ends an episode as a truncation. jaxmarl's `step` auto-resets, returning
    the new episode's first observation in place of the last one, and reports the step limit as
    `done`; so this adapter calls the non-resetting `step_env`, tells a battle's end (all allies
    or all enemies dead) from the step limit, keeps the final observation and resets the finished
    envs itself, in the same jitted call. Arrays reach torch through DLPack (no copy). Dead units
    can only take `stop` (SMAX's no-op, action 4).
    """

    def __init__(self, map_name: str, num_envs: int):
        import jax

        self.jax, self.num_envs = jax, num_envs
        env, self.observe, self.transition, self._reset, self._step = smax_functions(map_name, num_envs)
        self.env = env
        self.n_agents, self.n_enemies = env.num_allies, env.num_enemies
        self.obs_dims, self.act_dims = [env.obs_size] * self.n_agents, [env.num_ally_actions] * self.n_agents
        self.state_dim = env.state_size
        self.obs_dim, self.act_dim = env.obs_size, env.num_ally_actions
        self.action_mask = np.ones((self.n_agents, self.act_dim), bool)  # [N, act_dim]: every agent has all actions
        self.own_features = slice(env.obs_size - len(env.own_features), env.obs_size)  # obs ends with its unit's own features
        self.episode_limit = env.max_steps + 1  # SMAX tests its limit before counting the step
        self.key = self.states = None

    @staticmethod
    def _to_torch(arrays):
        return [torch.from_dlpack(array) for array in arrays]

    def reset(self, seed: Optional[int] = None):
        # committed to the device like the step's outputs, so the step compiles once, not twice
        self.key = self.jax.device_put(self.jax.random.PRNGKey(0 if seed is None else seed), self.jax.devices("cpu")[0])
        self.key, reset_key = self.jax.random.split(self.key)
        self.states, observed = self._reset(reset_key)
        obs, state, avail, _ = self._to_torch(observed)
        return obs, state, avail

    def step(self, actions):
        choice = torch.as_tensor(actions).argmax(-1).to(torch.int32)  # one-hot [E, N, act_dim] -> action index [E, N]
        self.key, self.states, observed, final, reward, terminated, truncated, won = self._step(
            self.key, self.states, self.jax.dlpack.from_dlpack(choice)
        )
        obs, state, avail, alive = self._to_torch(observed)
        info = dict(zip(("final_obs", "final_state", "final_avail", "final_alive"), self._to_torch(final)))
        info.update(battle_won=torch.from_dlpack(won), alive=alive)
        return obs, state, avail, *self._to_torch((reward, terminated, truncated)), info

    def close(self):
        pass


def make_env(args: Args, num_envs: int, render_mode=None):
    """The batched SMAC adapter for map --env-id on --backend; raises ValueError naming the backend's maps.
    `render_mode`: not supported here (no renderer), kept for the shared signature."""
    env_id, backend = args.env_id, args.backend
    if env_id not in BACKENDS[backend]:
        hint = "; SMAX lacks it: try --backend sc2" if backend == "smax" and env_id in SC2_MAPS else ""
        raise ValueError(f"unknown map {env_id!r} for the {backend} backend; valid: {', '.join(BACKENDS[backend])}{hint}")
    if backend == "sc2":
        from hasac_utils.envs.starcraft2 import StarCraft2VecEnv  # optional: SMAC and StarCraft II install apart

        envs = StarCraft2VecEnv(env_id, num_envs)
    else:
        envs = SMAXVecEnv(env_id, num_envs)
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


def critic_state(obs: torch.Tensor, state: torch.Tensor, own_features: slice, state_type: str) -> torch.Tensor:
    """The critic's state. EP: the env's global state [B, S]. FP (the official SMAC option):
    one row per agent, the global state plus that agent's own features and one-hot id,
    [B, N, S + own + N]; the critic then scores every row and the losses average over them."""
    if state_type == "EP":
        return state
    n_agents = obs.shape[1]
    agent_ids = torch.eye(n_agents, dtype=state.dtype, device=state.device).expand(len(state), -1, -1)
    return torch.cat([state.unsqueeze(1).expand(-1, n_agents, -1), obs[..., own_features], agent_ids], -1)


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

    def forward(self, obs: torch.Tensor, deterministic: bool = False, action_mask: Optional[torch.Tensor] = None):
        """obs [..., obs_dim] (padding beyond obs_dim is ignored), action_mask [..., act_dim] (None: all)
        -> one-hot action [..., act_dim], log_prob [...]."""
        mask = None if action_mask is None else action_mask[..., : self.act_dim]
        return sample_actions(obs[..., : self.obs_dim], self.layers(), mask, deterministic)

    def log_policy(self, obs: torch.Tensor, action_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """obs [..., obs_dim] (padding beyond obs_dim is ignored), action_mask [..., act_dim] (None: all)
        -> log pi(. | o) over all actions [..., act_dim]; an unavailable action has probability exactly 0."""
        mask = None if action_mask is None else action_mask[..., : self.act_dim]
        return F.log_softmax(masked_logits(obs[..., : self.obs_dim], self.layers(), mask), -1)


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
    The state is [B, S] (EP) or R rows per sample [B, R, S] (FP: one per agent), each row
    scored with the sample's joint action: Q values come back as [2, B, R] (R = 1 for EP).
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
        """The state's part of both twins' first layer: [B, S] -> [2, B, hidden] ([B, R, S] -> [2, B * R, hidden]).

        The critic has no normalisation layer, so this is exact and can be computed once per
        update for all the sequential actor steps, which change only the action part.
        """
        state = state.flatten(0, -2)  # FP: the rows of one sample stay next to each other
        w1_state = self.weights[0][:, :, : self.state_dim]
        return torch.baddbmm(self.biases[0].unsqueeze(1), state.expand(2, -1, -1), w1_state.transpose(1, 2))

    def q_values(self, state_features: torch.Tensor, joint_action: torch.Tensor) -> torch.Tensor:
        """[2, B * R, hidden], joint action [B, N * act_dim] -> Q_1, Q_2 as [2, B, R]."""
        rows = state_features.shape[1] // len(joint_action)
        if rows > 1:  # FP: every agent's row is scored with the same joint action
            joint_action = joint_action.repeat_interleave(rows, 0)
        w1_action = self.weights[0][:, :, self.state_dim :]
        # activations in place: one [2, B, hidden] buffer less per layer
        hidden = torch.baddbmm(state_features, joint_action.expand(2, -1, -1), w1_action.transpose(1, 2)).relu_()
        hidden = linear(hidden, self.weights[1], self.biases[1]).relu_()
        return linear(hidden, self.weights[2], self.biases[2]).view(2, -1, rows)

    def forward(self, state: torch.Tensor, joint_action: torch.Tensor) -> torch.Tensor:
        return self.q_values(self.state_features(state), joint_action)


def own_action_q_values(qf, state_features, others_action: torch.Tensor, first_column: int, n_actions: int):
    """Q_1, Q_2 for each of one agent's n_actions: [2, B * R, hidden], others_action [B, N * act_dim] (zero in the
    agent's block, which starts at first_column) -> [2, B, R, n_actions].

    The first layer is linear in the one-hot joint action, so own action a adds column a of the agent's block of
    first-layer weights to one shared pre-activation: the first layer runs once, layers 2-3 on B x n_actions rows.
    """
    rows = state_features.shape[1] // len(others_action)
    if rows > 1:  # FP: every agent's row is scored with the same joint action
        others_action = others_action.repeat_interleave(rows, 0)
    w1_action = qf.weights[0][:, :, qf.state_dim :]
    shared = torch.baddbmm(state_features, others_action.expand(2, -1, -1), w1_action.transpose(1, 2))  # [2, B * R, H]
    own_columns = w1_action[:, :, first_column : first_column + n_actions].transpose(1, 2)  # [2, n_actions, hidden]
    hidden = (shared.unsqueeze(2) + own_columns.unsqueeze(1)).relu_().flatten(1, 2)  # [2, B * R * n_actions, hidden]
    hidden = linear(hidden, qf.weights[1], qf.biases[1]).relu_()
    return linear(hidden, qf.weights[2], qf.biases[2]).view(2, -1, rows, n_actions)


class ValueNorm(nn.Module):
    """Running mean and variance of the critic's targets (the official implementation's ValueNorm,
    from MAPPO): debiased exponential moving averages with weight `beta` per update. With it the
    critic regresses normalised targets; every Q value used as a value is denormalised first."""

    def __init__(self, beta: float = 0.99999, epsilon: float = 1e-5):
        super().__init__()
        self.beta, self.epsilon = beta, epsilon
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("running_mean_sq", torch.zeros(()))
        self.register_buffer("debiasing_term", torch.zeros(()))

    def mean_std(self):
        mean = self.running_mean / self.debiasing_term.clamp(min=self.epsilon)
        mean_sq = self.running_mean_sq / self.debiasing_term.clamp(min=self.epsilon)
        return mean, (mean_sq - mean**2).clamp(min=1e-2).sqrt()

    @torch.no_grad()
    def update(self, x: torch.Tensor):
        self.running_mean.lerp_(x.mean(), 1 - self.beta)
        self.running_mean_sq.lerp_((x**2).mean(), 1 - self.beta)
        self.debiasing_term.lerp_(torch.ones(()), 1 - self.beta)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean_std()
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean_std()
        return x * std + mean


class Batch(NamedTuple):
    obs: torch.Tensor  # [B, N, obs_dim]
    state: torch.Tensor  # [B, S] (EP) or [B, N, S_FP] (FP)
    actions: torch.Tensor  # [B, N, act_dim]
    rewards: torch.Tensor  # [B, 1] n-step discounted reward sum
    next_obs: torch.Tensor  # [B, N, obs_dim] k <= n steps later
    next_state: torch.Tensor  # [B, S] or [B, N, S_FP]
    terminations: torch.Tensor  # [B, 1] 1 if the episode really ended within the k steps
    discounts: torch.Tensor  # [B, 1] gamma^k
    avail: Optional[torch.Tensor] = None  # [B, N, act_dim] bool, the actions available at s (None: all)
    next_avail: Optional[torch.Tensor] = None  # [B, N, act_dim] bool, at s'
    alive: Optional[torch.Tensor] = None  # [B, N] 1.0 where the agent is alive at s (None: all)


def masked_mean(x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The mean of x over the entries where mask (same shape, 0/1) is 1; the plain mean without a mask."""
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def critic_target(
    qf_target, batch: Batch, next_actions, next_log_probs, alphas, value_norm: Optional[ValueNorm] = None
) -> torch.Tensor:
    """Soft n-step Bellman target y [B, R] (Eq. 5-6, Algorithm 2; R = 1 for EP, N for FP).

    next_actions [B, N, act_dim] and next_log_probs [B, N] are fresh samples from the current
    policies. The entropy term is sum_i alpha^i log pi^i, which matches each actor's loss
    when temperatures are per agent (the official implementation instead tunes one separate
    critic temperature on sum_i log pi^i). With `value_norm` the target critic's normalised
    values are denormalised, so y is in reward units.
    """
    next_q = qf_target(batch.next_state, next_actions.flatten(1)).min(0).values  # [B, R]
    if value_norm is not None:
        next_q = value_norm.denormalize(next_q)
    soft_value = next_q - (next_log_probs * alphas).sum(-1, keepdim=True)
    return batch.rewards + batch.discounts * (1 - batch.terminations) * soft_value


def actor_loss(
    qf,
    state_features,
    joint_action,
    log_probs,
    alphas,
    mask: Optional[torch.Tensor] = None,
    value_norm: Optional[ValueNorm] = None,
) -> torch.Tensor:
    """Eq. 10: E[alpha^i log pi^i(a^i|o^i) - min_j Q_j(s, a)] for the agents being updated.

    log_probs [B, G] and alphas [G] of the G agents updated in this step (one, or all with
    --share-param); joint_action [B, N, act_dim] holds their fresh actions. `mask` [B, G]
    (use_policy_active_masks) leaves out the samples in which none of them is alive; FP's
    R rows per sample are averaged.
    """
    min_q = qf.q_values(state_features, joint_action.flatten(1)).min(0).values  # [B, R]
    if value_norm is not None:
        min_q = value_norm.denormalize(min_q)
    per_sample = (log_probs * alphas).sum(-1) - min_q.mean(-1)  # [B]
    return masked_mean(per_sample, None if mask is None else mask.amax(-1))


def expected_actor_loss(
    qf,
    state_features,
    others_action,
    first_column: int,
    log_policy,
    alpha,
    mask: Optional[torch.Tensor] = None,
    value_norm: Optional[ValueNorm] = None,
):
    """Eq. 10 in closed form over agent i's own actions: E_s[sum_a pi^i(a|o^i) (alpha^i log pi^i(a|o^i) - min_j Q_j(s,
    a^{-i}, a))], with others_action [B, N, act_dim] (zero in agent i's slot) and log_policy [B, 1, A^i]. It is the
    expectation that the straight-through estimator samples, with no noise and no use of the critic's slope at one-hot
    points: the exact HASAC step. `mask` [B, 1] leaves out the samples where the agent is dead; FP's R rows are averaged.
    Returns the loss and E_pi[log pi^i] [B, 1] (minus the exact entropy), for the temperature.
    """
    n_actions = log_policy.shape[-1]
    with torch.no_grad():  # the critic is frozen and the other agents' actions are data: Q carries no gradient
        min_q = own_action_q_values(qf, state_features, others_action.flatten(1), first_column, n_actions).min(0).values
        if value_norm is not None:
            min_q = value_norm.denormalize(min_q)
        min_q = min_q.mean(1)  # [B, A^i]
    log_policy = log_policy[:, 0]  # [B, A^i]
    policy = log_policy.exp()  # unavailable actions have probability exactly 0
    per_sample = (policy * (alpha * log_policy - min_q)).sum(-1)  # [B]
    return masked_mean(per_sample, None if mask is None else mask.amax(-1)), (policy * log_policy).sum(-1, keepdim=True)


def alpha_loss(
    log_alpha: torch.Tensor, log_probs: torch.Tensor, target_entropy, mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Appendix H.1: J(alpha) = E[-alpha (log pi + target entropy)], optimised on log alpha.
    target_entropy: a float, or one per sample [B]; mask [B] leaves dead agents' samples out."""
    return masked_mean(-log_alpha.exp() * (log_probs.detach() + target_entropy), mask)


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
    target_entropies: list  # target_entropy_scale * log|A^i|: the targets when every action is available
    action_mask: torch.Tensor  # [N, 1, act_dim]
    target_entropy_scale: Optional[float] = None  # per-state targets scale * log|available actions| (batches with `avail`)
    value_norm: Optional[ValueNorm] = None  # None: the critic learns raw values
    huber_delta: Optional[float] = None  # None: MSE critic loss


def hasac_update(learner: Learner, batch: Batch, agent_order, tau: float) -> dict:
    """One full HASAC update: the critic, then each agent in `agent_order` in turn, then the
    target critic. Returns the losses as tensors (no host sync here).

    Where the batch has them, the env's available actions at s and s' mask every sample, and
    (use_policy_active_masks) the alive flags leave dead agents out of their actor and temperature losses."""
    actors, qf, mask = learner.actors, learner.qf, learner.action_mask
    obs_dim, act_dim = batch.obs.shape[-1], batch.actions.shape[-1]
    alphas = torch.stack(learner.log_alphas).detach().exp()  # [N]
    if batch.avail is not None:  # [N, 1, act_dim] & [N, B, act_dim] at s'
        mask = mask & batch.next_avail.transpose(0, 1)

    # Critic: joint soft policy evaluation (Eq. 5-6), with fresh next actions from the current
    # policies, every agent's in one batched call
    with torch.no_grad():
        weights = stack_actor_weights(actors, learner.policy_of_agent, obs_dim, act_dim)
        next_actions, next_log_probs = sample_actions(batch.next_obs.transpose(0, 1), weights, mask)  # [N, B, act_dim], [N, B]
        target = critic_target(
            learner.qf_target, batch, next_actions.transpose(0, 1), next_log_probs.T, alphas, learner.value_norm
        )
        if learner.value_norm is not None:  # statistics of the real targets, then regress their normalised values
            learner.value_norm.update(target)
            target = learner.value_norm.normalize(target)
    q_values = qf(batch.state, batch.actions.flatten(1))  # [2, B, R]
    if learner.huber_delta is None:
        qf1_loss, qf2_loss = F.mse_loss(q_values[0], target), F.mse_loss(q_values[1], target)
    else:  # robust to the large errors of early targets (official SMAC setup)
        qf1_loss, qf2_loss = (F.huber_loss(q_values[j], target, delta=learner.huber_delta) for j in range(2))
    learner.q_optimizer.zero_grad(set_to_none=True)
    (qf1_loss + qf2_loss).backward()
    learner.q_optimizer.step()

    # Actors: heterogeneous-agent soft policy improvement, one agent after another (Eq. 10).
    # With --share-param the shared actor takes one step per agent, in the same order, as the
    # official implementation does: each agent's step sees the earlier agents' new actions.
    # Every agent's actions at s, drawn with gradient before any actor step. Detached, they are the joint action the
    # agents start from; each agent's own step differentiates its draw when its actor has not moved since (always,
    # unless the actor is shared), which saves drawing them a second time.
    avails = {i: None if batch.avail is None else batch.avail[:, i : i + 1] for i in agent_order}  # [B, 1, act_dim]
    # (The expected loss differentiates no sampled action: its draws need no graph.)
    with torch.set_grad_enabled(learner.actor_loss == "gumbel"):
        draws = {i: actors[learner.policy_of_agent[i]](batch.obs[:, i : i + 1], action_mask=avails[i]) for i in agent_order}
    actions = torch.zeros_like(batch.actions)  # [B, N, act_dim]
    for i, (new_actions, _) in draws.items():
        actions[:, i : i + 1, : new_actions.shape[-1]] = new_actions.detach()
    with torch.no_grad():
        state_features = qf.state_features(batch.state)
    qf.requires_grad_(False)
    actor_losses, alpha_losses, entropies, stepped = [], [], [], set()
    for step, i in enumerate(agent_order):
        policy, avail = learner.policy_of_agent[i], avails[i]
        actor, agent = actors[policy], slice(i, i + 1)
        alive = None if batch.alive is None else batch.alive[:, agent]  # [B, 1]
        if learner.actor_loss == "expected":
            others_action = actions.clone()
            others_action[:, agent] = 0
            log_policy = actor.log_policy(batch.obs[:, agent], action_mask=avail)  # [B, 1, act_dim_i]
            loss, new_log_probs = expected_actor_loss(
                qf, state_features, others_action, i * act_dim, log_policy, alphas[i], alive, learner.value_norm
            )
        else:
            # a shared actor has moved since the draw: draw again
            new_actions, new_log_probs = actor(batch.obs[:, agent], action_mask=avail) if policy in stepped else draws[i]
            stepped.add(policy)
            joint_action = actions.clone()
            joint_action[:, agent, : actor.act_dim] = new_actions
            loss = actor_loss(
                qf, state_features, joint_action, new_log_probs, alphas[agent], mask=alive, value_norm=learner.value_norm
            )
        learner.actor_optimizers[policy].zero_grad(set_to_none=True)
        loss.backward()
        learner.actor_optimizers[policy].step()
        actor_losses.append(loss.detach())
        entropies.append(-masked_mean(new_log_probs.detach(), alive))
        if learner.alpha_optimizers is not None:
            target_entropy = learner.target_entropies[i]
            if avail is not None:  # a fraction of the maximum entropy in each state: log|available actions|
                target_entropy = (learner.target_entropy_scale * avail[:, 0].sum(-1).double().log()).float()
            alive_i = None if alive is None else alive[:, 0]
            temperature_loss = alpha_loss(learner.log_alphas[i], new_log_probs[:, 0], target_entropy, mask=alive_i)
            learner.alpha_optimizers[i].zero_grad(set_to_none=True)
            temperature_loss.backward()
            learner.alpha_optimizers[i].step()
            alpha_losses.append(temperature_loss.detach())
        if step < len(agent_order) - 1:  # later agents act against this agent's updated policy
            with torch.no_grad():
                resampled, _ = actor(batch.obs[:, agent], action_mask=avail)
                actions[:, agent, : actor.act_dim] = resampled
    qf.requires_grad_(True)

    soft_update(learner.qf_target, qf, tau)
    qf1_values = q_values[0].detach() if learner.value_norm is None else learner.value_norm.denormalize(q_values[0].detach())
    return {
        "qf1_loss": qf1_loss.detach(),
        "qf2_loss": qf2_loss.detach(),
        "qf1_values": qf1_values.mean(),
        "actor_loss": torch.stack(actor_losses).mean(),
        "alpha_loss": torch.stack(alpha_losses).mean() if alpha_losses else None,
        "entropy": torch.stack(entropies).mean(),
        "alphas": alphas,
    }


def build_learner(envs: SMAXVecEnv, args: Args, device: torch.device) -> Learner:
    n_policies = 1 if args.share_param else envs.n_agents
    actors = [Actor(envs.obs_dims[i], envs.act_dims[i], args.hidden_dim).to(device) for i in range(n_policies)]
    state_dim = critic_state(
        torch.zeros(1, envs.n_agents, envs.obs_dim), torch.zeros(1, envs.state_dim), envs.own_features, args.state_type
    ).shape[-1]
    qf = SoftQNetwork(state_dim, envs.n_agents * envs.act_dim, args.hidden_dim).to(device)
    qf_target = SoftQNetwork(state_dim, envs.n_agents * envs.act_dim, args.hidden_dim).to(device)
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
        # entropy then lowers alpha, which decays to zero. This is not copied. SMAC's available
        # actions change with every state (enemies in range, dead units), so the update uses
        # target_entropy_scale * log|available actions| per sample; these are the targets
        # when every action is available.
        target_entropies=[args.target_entropy_scale * math.log(dim) for dim in envs.act_dims],
        action_mask=torch.as_tensor(envs.action_mask, device=device).unsqueeze(1),
        target_entropy_scale=args.target_entropy_scale,
        value_norm=ValueNorm().to(device) if args.use_valuenorm else None,
        huber_delta=args.huber_delta if args.use_huber_loss else None,
    )


def replay_row(obs: torch.Tensor, state: torch.Tensor, avail: torch.Tensor, alive: torch.Tensor) -> np.ndarray:
    """What the replay buffer stores of a step, one row per env: observations, the env's state, the available actions
    and the alive flags (0/1 floats), [E, N * obs_dim + S + N * act_dim + N]; `sample_batch` rebuilds the critic's FP
    state from the first two, so that the buffer holds the env's state once, not once per agent."""
    return torch.cat([obs.flatten(1), state, avail.flatten(1).float(), alive.float()], 1).numpy()


def sample_batch(rb, batch_size: int, envs: SMAXVecEnv, state_type: str, alive_masks: bool) -> Batch:
    """A uniform sample of n-step transitions from the replay buffer, unpacked from `replay_row`s into a Batch with the
    critic's `state_type` state, and the alive flags where `alive_masks` (--use-policy-active-masks) asks for them."""
    data = rb.sample(batch_size)
    n_agents, obs_dim, act_dim = envs.n_agents, envs.obs_dim, envs.act_dim

    def unpack(rows: torch.Tensor):  # -> obs [B, N, obs_dim], critic state, avail [B, N, act_dim] bool, alive [B, N]
        obs, state, avail, alive = rows.split((n_agents * obs_dim, envs.state_dim, n_agents * act_dim, n_agents), 1)
        obs = obs.view(-1, n_agents, obs_dim)
        return obs, critic_state(obs, state, envs.own_features, state_type), avail.view(-1, n_agents, act_dim) > 0.5, alive

    obs, state, avail, alive = unpack(data.observations)
    next_obs, next_state, next_avail, _ = unpack(data.next_observations)
    actions = data.actions.view(-1, n_agents, act_dim)
    alive = alive if alive_masks else None
    return Batch(obs, state, actions, data.rewards, next_obs, next_state, data.dones, data.discounts, avail, next_avail, alive)


def transition_to_store(terminations, truncations, infos):
    """What the replay buffer stores as the next row of one vector step: the true final observation, state, available
    actions and alive flags (where an episode ended the env has already reset), done = terminated or truncated, and the
    time-out flag that makes a truncation bootstrap."""
    real_next = replay_row(infos["final_obs"], infos["final_state"], infos["final_avail"], infos["final_alive"])
    timeouts = [{"TimeLimit.truncated": bool(t)} for t in truncations]
    return real_next, (terminations | truncations).numpy(), timeouts


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


@training_rng_preserved()
def evaluate(
    learner: Learner,
    envs: SMAXVecEnv,
    n_episodes: int,
    seed: int,
    device,
    frames: Optional[list] = None,
    wins: Optional[list] = None,
):
    """Team returns of `n_episodes` episodes with deterministic actions (argmax of the available actions), each env
    running its share. With `wins`, whether each of those episodes was won is appended to it, in the same order.
    `frames`: not supported here (no renderer), kept for the shared signature."""
    obs, _, avail = envs.reset(seed=seed)
    shares = episode_shares(n_episodes, envs.num_envs)
    returns, won, episode_return = [[] for _ in shares], [[] for _ in shares], np.zeros(envs.num_envs)
    while any(len(r) < share for r, share in zip(returns, shares)):
        actions = act(learner, obs.to(device), deterministic=True, avail=avail.to(device))
        obs, _, avail, reward, terminated, truncated, info = envs.step(actions.cpu())
        episode_return += reward.numpy()
        for e in np.flatnonzero((terminated | truncated).numpy()):
            if len(returns[e]) < shares[e]:
                returns[e].append(episode_return[e])
                won[e].append(bool(info["battle_won"][e]))
            episode_return[e] = 0.0
    if wins is not None:
        wins.extend(w for env_wins in won for w in env_wins)
    return [r for env_returns in returns for r in env_returns]


if __name__ == "__main__":
    args = parse_args(Args, __file__, no_video="SMAX has no frame renderer here; StarCraft II saves replays")
    device = torch.device("cuda" if args.cuda else "cpu")
    if args.eval_checkpoint is None:
        with one_line_errors():  # a bad map or a failed StarCraft II launch ends the run before anything is written
            envs = make_env(args, args.num_envs)

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_float32_matmul_precision(args.matmul_precision)

    if args.eval_checkpoint is not None:  # evaluate a saved run, then stop
        with one_line_errors(f"cannot load checkpoint {args.eval_checkpoint!r}: "):
            build = built_on_one_env(make_env, build_learner, device)
            saved_args, learner = load_learner(args.eval_checkpoint, __file__, Args, build)
        with one_line_errors():
            eval_envs = make_env(saved_args, min(args.eval_episodes, saved_args.num_envs))
            wins = []
            returns = evaluate(learner, eval_envs, args.eval_episodes, args.seed, device, wins=wins)
        print(
            f"{saved_args.env_id}: eval/episodic_return {np.mean(returns):.2f} +- {np.std(returns):.2f}, "
            f"eval/win_rate {np.mean(wins):.3f} over {len(returns)} episodes"
        )
        sys.exit(0)

    # ALGO LOGIC: the learner, the replay memory (n-step returns, time limits: stable-baselines3's) and the eval envs
    learner = build_learner(envs, args, device)
    n_agents, act_dim = envs.n_agents, envs.act_dim
    row_dim = n_agents * (envs.obs_dim + act_dim + 1) + envs.state_dim  # replay_row's width
    rb = NStepReplayBuffer(
        args.buffer_size,
        gym.spaces.Box(-np.inf, np.inf, (row_dim,), np.float32),
        gym.spaces.Box(0.0, 1.0, (n_agents * act_dim,), np.float32),  # one-hot joint actions: the critic's input as is
        device,
        n_envs=args.num_envs,
        handle_timeout_termination=True,
        n_steps=args.n_step,
        gamma=args.gamma,
    )
    eval_envs = make_env(args, min(args.eval_episodes, args.num_envs))

    # TRY NOT TO MODIFY: start the game, or continue it (--resume restores the step, the learner, the generators and the
    # buffer: after the reset, which may seed the generators)
    obs, state, avail = envs.reset(seed=args.seed)
    run = start_run(args, __file__, learner, rb, device)
    rb, global_step = run.rb, run.global_step
    alive = torch.ones(args.num_envs, n_agents)  # every unit is alive when a battle starts
    episode_return, episode_length = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=int)
    with run.graceful_stop():
        for iteration in range(global_step // args.num_envs + 1, args.total_timesteps // args.num_envs + 1):
            # ALGO LOGIC: put action logic here
            if global_step < args.learning_starts:
                actions = torch.as_tensor(random_available_actions(avail.numpy()))
            else:
                actions = act(learner, obs.to(device), avail=avail.to(device)).cpu()

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, next_state, next_avail, rewards, terminations, truncations, infos = envs.step(actions)
            global_step += args.num_envs
            episode_return += rewards.numpy()
            episode_length += 1
            done = (terminations | truncations).numpy()
            run.log_episodes(global_step, episode_return[done], episode_length[done], wins=infos["battle_won"].numpy()[done])
            episode_return[done], episode_length[done] = 0.0, 0

            # TRY NOT TO MODIFY: save data to replay buffer; the true final observation where an episode ended
            real_next_rows, dones, timeouts = transition_to_store(terminations, truncations, infos)
            flat_actions = actions.reshape(args.num_envs, -1).numpy()
            rb.add(replay_row(obs, state, avail, alive), real_next_rows, flat_actions, rewards.numpy(), dones, timeouts)
            obs, state, avail, alive = next_obs, next_state, next_avail, infos["alive"]
            run.progress(global_step)  # before training: training's own speed window starts after this line

            # ALGO LOGIC: training.
            if global_step > run.learning_starts and iteration % args.train_interval == 0:
                run.end_warm_up(global_step)
                for _ in range(args.gradient_steps):
                    batch = sample_batch(rb, args.batch_size, envs, args.state_type, args.use_policy_active_masks)
                    agent_order = np.arange(n_agents) if args.fixed_order else np.random.permutation(n_agents)
                    metrics = hasac_update(learner, batch, agent_order, args.tau)
                run.log_losses(metrics, global_step)

            if run.evaluation_due(global_step):
                wins = []
                returns = evaluate(learner, eval_envs, args.eval_episodes, args.seed + 10_000, device, wins=wins)
                run.log_evaluation(global_step, returns, win_rate=np.mean(wins))
                run.save(global_step)
            if run.stop_requested:
                break
    envs.close()
    eval_envs.close()
    run.finish(global_step)
