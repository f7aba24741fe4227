"""Google Research Football (gfootball) for hasac_discrete.py: one academy scenario behind the pettingzoo ParallelEnv
calls its MultiAgentVecEnv makes. gfootball compiles from source (CI cannot install it), so the script imports this
module only for a football env id, and the adapter imports gfootball only when it is built."""

from typing import Optional

import gymnasium as gym
import numpy as np

FOOTBALL_INSTALL = (
    "Google Research Football (gfootball) is not installed; it compiles from source (about 10 minutes on 2 cores): "
    "bash benchmark/install_football.sh installs the system packages (apt-get install ...) and then "
    "pip install gfootball into this Python"
)


class FootballParallelEnv:
    """One gfootball academy scenario, its `n_players` left-team players controlled by the agents; ValueError naming
    the install steps where gfootball is missing.

    Each controlled player observes its Simple115 vector. The global state is the paper's (Appendix H.2.4) and the
    official wrapper's: the components all players' Simple115 vectors share, plus the concatenation of the
    agent-specific part (the one-hot of the player the vector belongs to). Dense rewards (scoring plus checkpoints).
    An episode ends on a goal, a lost ball (possession change or out of play, as the scenario defines) or the
    scenario's time limit; only the time limit is a truncation.
    """

    ACTIVE_PLAYER = slice(97, 108)  # Simple115v2: the one-hot of the player this vector is for

    def __init__(self, scenario: str, n_players: int, render_mode: Optional[str] = None):
        try:
            import gfootball.env as football_env
        except ImportError:
            raise ValueError(FOOTBALL_INSTALL) from None

        self.possible_agents = [f"player_{i}" for i in range(n_players)]
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
        return gym.spaces.Discrete(self.n_actions)

    def observation_space(self, agent):
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
