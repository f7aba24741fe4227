"""The real StarCraft Multi-Agent Challenge (oxwhirl/smac on StarCraft II) behind hasac_smac.py's batched interface, for
`--backend sc2`; hasac_smac.py imports it only then, since SMAC installs from git and StarCraft II by hand (SC2_INSTALL)."""

from typing import Optional

import numpy as np
import torch

SC2_INSTALL = (
    "the sc2 backend needs SMAC and StarCraft II: pip install git+https://github.com/oxwhirl/smac.git "
    "(the PyPI package named `smac` is an unrelated optimiser), StarCraft II (Linux: "
    "https://github.com/Blizzard/s2client-proto#downloads, unzipped to ~/StarCraftII or $SC2PATH) and the SMAC maps "
    "(https://github.com/oxwhirl/smac/releases/download/v0.1-beta1/SMAC_Maps.zip, into $SC2PATH/Maps/SMAC_Maps)"
)
# SMAC's shaped reward (damage, kills, win bonus) scaled so that the largest episode return, a won battle, is 20
SC2_REWARD_SCALE_RATE = 20


class StarCraft2VecEnv:
    """`num_envs` real SMAC battles (oxwhirl/smac's StarCraft2Env, one StarCraft II process each) stepped in turn.

    SMAC's default shaped reward, scaled so a won battle returns 20 (SC2_REWARD_SCALE_RATE). SMAC
    reports its episode limit as `terminated`; here that is a truncation. SMAC says so in
    info["episode_limit"] only when built with continuing_episode=True (not its default), so this
    adapter reads the env's time-out counter instead (`timeouts`, which SMAC's step raises exactly
    when the limit ends an episode whose battle is not over), whatever the flags. Dead units can
    only take no-op (action 0).
    """

    def __init__(self, map_name: str, num_envs: int):
        try:
            from smac.env import StarCraft2Env
        except ImportError:
            raise ValueError(SC2_INSTALL) from None
        scale = dict(reward_scale=True, reward_scale_rate=SC2_REWARD_SCALE_RATE)
        self.envs = [StarCraft2Env(map_name=map_name, **scale) for _ in range(num_envs)]
        env_info = self.envs[0].get_env_info()
        self.num_envs, self.n_agents = num_envs, env_info["n_agents"]
        self.obs_dim, self.act_dim, self.state_dim = env_info["obs_shape"], env_info["n_actions"], env_info["state_shape"]
        self.obs_dims, self.act_dims = [self.obs_dim] * self.n_agents, [self.act_dim] * self.n_agents
        self.action_mask = np.ones((self.n_agents, self.act_dim), bool)  # [N, act_dim]
        own_size = self.envs[0].get_obs_own_feats_size()  # SMAC's observation ends with the unit's own features
        self.own_features = slice(self.obs_dim - own_size, self.obs_dim)
        self.episode_limit = env_info["episode_limit"]
        self.reset()  # StarCraft II launches on the first reset: a missing or broken install fails here, before any run starts

    def _observe(self, env):  # -> obs [N, obs_dim], state [S], avail [N, act_dim] bool, alive [N] bool
        alive = [env.get_unit_by_id(i).health > 0 for i in range(self.n_agents)]
        return (
            np.asarray(env.get_obs(), np.float32),
            np.asarray(env.get_state(), np.float32),
            np.asarray(env.get_avail_actions(), bool),
            np.asarray(alive),
        )

    def reset(self, seed: Optional[int] = None):
        # StarCraft2Env seeds its game at creation, not per reset
        try:
            for env in self.envs:
                env.reset()
        except Exception as error:  # StarCraft II missing or failing to start: a pysc2/OS error deep in the launch
            raise ValueError(f"StarCraft II did not start ({type(error).__name__}: {error}); {SC2_INSTALL}") from None
        observed = [self._observe(env) for env in self.envs]
        return tuple(torch.as_tensor(np.stack(parts)) for parts in list(zip(*observed))[:3])

    def step(self, actions):
        choice = torch.as_tensor(actions).argmax(-1).numpy()  # one-hot [E, N, act_dim] -> action index [E, N]
        reward = np.empty(self.num_envs, np.float32)
        terminated, truncated, won = (np.zeros(self.num_envs, bool) for _ in range(3))
        next_observed, final_observed = [], []
        for e, env in enumerate(self.envs):
            timeouts = env.timeouts
            reward[e], done, env_info = env.step(choice[e].tolist())
            truncated[e] = done and env.timeouts > timeouts
            terminated[e] = done and not truncated[e]
            won[e] = env_info.get("battle_won", False)
            final_observed.append(self._observe(env))
            if done:
                env.reset()
            next_observed.append(self._observe(env) if done else final_observed[-1])
        obs, state, avail, alive = (torch.as_tensor(np.stack(parts)) for parts in zip(*next_observed))
        final = (torch.as_tensor(np.stack(parts)) for parts in zip(*final_observed))
        info = dict(zip(("final_obs", "final_state", "final_avail", "final_alive"), final))
        info.update(battle_won=torch.as_tensor(won), alive=alive)
        return obs, state, avail, torch.as_tensor(reward), torch.as_tensor(terminated), torch.as_tensor(truncated), info

    def close(self):
        for env in self.envs:
            env.close()
