"""Tests for hasac_discrete.py's Google Research Football backend (hasac_utils/envs/football.py) on the real game: a
smoke run that reaches updates and logs the score rates, and the adapter's contract (shapes, masks, the global state
against its definition from the raw observation, episode ends stored as they happened). They run where gfootball is
installed (bash benchmark/install_football.sh) and are skipped elsewhere, as in CI; the missing-gfootball error runs
only there."""

import importlib
import importlib.util
import re

import numpy as np
import pytest
import conftest
from conftest import TINY, TINY_UPDATE_STEPS, assert_finite_series, assert_ok, assert_one_line_error, read_scalars, run_dir
from test_discrete import DISCRETE, LOSS_TAGS

hd = importlib.import_module("hasac_discrete")
HAS_FOOTBALL = importlib.util.find_spec("gfootball") is not None
needs_football = pytest.mark.skipif(not HAS_FOOTBALL, reason="gfootball is not installed (bash benchmark/install_football.sh)")
THREE_VS_ONE, RPS = "academy_3_vs_1_with_keeper", "academy_run_pass_and_shoot_with_keeper"


def run_script(cwd, *args):
    return conftest.run_script(cwd, *args, script=DISCRETE, timeout=900)


@pytest.mark.skipif(HAS_FOOTBALL, reason="gfootball is installed here: the error for a missing one cannot happen")
def test_without_gfootball_one_line_error(tmp_path):
    result = run_script(tmp_path, "--env-id", "academy_corner", *TINY)
    assert_one_line_error(result, ["gfootball", "benchmark/install_football.sh", "apt-get install", "pip install"], tmp_path)


@needs_football
def test_smoke_3_vs_1_reaches_updates_and_logs_the_score_rates(tmp_path):
    budget = [a if a != "100000" else "300" for a in TINY]  # --eval-interval 300: one evaluation mid-run, one at the end
    result = run_script(tmp_path, "--env-id", THREE_VS_ONE, *budget)
    assert_ok(result)
    scalars = read_scalars(run_dir(tmp_path))
    for tag in LOSS_TAGS + ["charts/episodic_return", "charts/score_rate", "eval/episodic_return", "eval/score_rate"]:
        assert_finite_series(scalars, tag)
    assert [step for step, _ in scalars["losses/qf1_loss"]] == TINY_UPDATE_STEPS
    assert [step for step, _ in scalars["eval/score_rate"]] == [300, 600]
    assert all(0 <= rate <= 1 for _, rate in scalars["charts/score_rate"] + scalars["eval/score_rate"])
    assert "eval/score_rate=" in result.stdout


@needs_football
def test_eval_checkpoint_prints_the_score_rate(tmp_path):
    assert_ok(run_script(tmp_path, "--env-id", THREE_VS_ONE, *TINY, "--save-model"))
    checkpoint = next(run_dir(tmp_path).glob("*.cleanrl_model"))
    result = run_script(tmp_path, "--eval-checkpoint", str(checkpoint.relative_to(tmp_path)), "--eval-episodes", "2")
    assert_ok(result)
    assert re.search(
        rf"^{THREE_VS_ONE}: eval/episodic_return \S+ \+- \S+, eval/score_rate [01]\.\d{{3}} over 2", result.stdout, re.M
    )


def raw_state(env) -> np.ndarray:
    """The official wrapper's global state, built from gfootball's raw observation (not from Simple115): teams' positions
    and directions (each padded with -1 to 11 players), ball position and direction, the ball owner's one-hot, the game
    mode's one-hot, then each controlled player's one-hot of the player it controls."""
    raws = env.env.unwrapped.observation()
    raw = raws[0]
    parts = []
    for key in ("left_team", "left_team_direction", "right_team", "right_team_direction"):
        block = -np.ones(22, np.float32)
        block[: raw[key].size] = raw[key].ravel()
        parts.append(block)
    parts += [raw["ball"], raw["ball_direction"], np.eye(3)[raw["ball_owned_team"] + 1], np.eye(7)[raw["game_mode"]]]
    parts += [np.eye(11)[r["active"]] for r in raws]
    return np.concatenate([np.asarray(p, np.float32).ravel() for p in parts])


@needs_football
def test_adapter_shapes_masks_and_the_global_state():
    envs = hd.make_env(hd.Args(env_id=THREE_VS_ONE), 2)
    n, state_dim = 3, 115 - 11 + 11 * 3
    assert (envs.n_agents, envs.obs_dim, envs.act_dim, envs.state_dim) == (n, 115, 19, state_dim)
    obs, state, avail = envs.reset(seed=3)
    assert obs.shape == (2, n, 115) and state.shape == (2, state_dim) and avail.shape == (2, n, 19) and avail.all()
    rng = np.random.default_rng(0)
    for _ in range(30):
        actions = np.eye(19, dtype=np.float32)[rng.integers(0, 19, (2, n))]
        obs, state, avail, reward, terminated, truncated, info = envs.step(actions)
        for e, env in enumerate(envs.envs):
            np.testing.assert_allclose(state[e], raw_state(env), atol=1e-6)
            np.testing.assert_allclose(state[e], env.state(), atol=0)
            for i in range(n):  # each player's own observation is its Simple115 row: the common part plus its one-hot
                np.testing.assert_array_equal(obs[e, i, 97:108], state[e, 104 + 11 * i : 115 + 11 * i])
        assert reward.shape == (2,) and avail.all()
    envs.close()


@needs_football
def test_time_limit_truncates_and_a_lost_ball_terminates():
    """RPS with every player idle runs to the scenario's time limit (400 steps): a truncation, stored with the time-out
    flag that makes the target bootstrap. Random play loses the ball (or scores) first: a termination, stored without
    it. Either way the stored next state is the final one, and the env has reset."""
    envs = hd.make_env(hd.Args(env_id=RPS), 1)
    envs.reset(seed=0)
    idle = np.zeros((1, 2, 19), np.float32)
    idle[..., 0] = 1  # gfootball's action 0 is idle
    for t in range(1, 500):
        obs, state, _, _, terminated, truncated, info = envs.step(idle)
        if terminated[0] or truncated[0]:
            break
    assert t == 401 and truncated[0] and not terminated[0], (t, terminated, truncated)
    _, real_next_state, dones, timeouts = hd.transition_to_store(obs, state, terminated, truncated, info)
    assert dones[0] and timeouts[0]["TimeLimit.truncated"] and not info["scored"][0]
    assert not np.array_equal(real_next_state[0], state[0])  # the final state, not the new episode's first
    rng, ends = np.random.default_rng(1), []
    for _ in range(2000):
        actions = np.eye(19, dtype=np.float32)[rng.integers(0, 19, (1, 2))]
        obs, state, _, _, terminated, truncated, info = envs.step(actions)
        if terminated[0] or truncated[0]:
            ends.append((bool(terminated[0]), bool(truncated[0])))
            if terminated[0]:
                break
    assert ends and ends[-1] == (True, False), ends
    _, _, dones, timeouts = hd.transition_to_store(obs, state, terminated, truncated, info)
    assert dones[0] and not timeouts[0]["TimeLimit.truncated"]
    envs.close()
