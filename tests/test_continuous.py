"""Tests for hasac_continuous.py: smoke runs on real MaMuJoCo and MPE envs, every env id,
the squashed-Gaussian log-probability, the critic target and actor loss against independent
float64 computations, one full sequential HASAC update against an independent float64
re-implementation of the paper's update, determinism, checkpoints, and bad input."""

import copy
import importlib.util
import math
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    CONTINUOUS,
    MINI,
    SUBPROCESS_ENV,
    TINY,
    TINY_UPDATE_STEPS,
    assert_choice_error,
    assert_finite_series,
    assert_ok,
    assert_one_line_error,
    read_scalars,
    run_dir,
    run_script,
)
from torch.distributions import AffineTransform, Normal, TanhTransform, TransformedDistribution

import hasac_continuous as hc
from hasac_utils.checkpoints import load_learner, save_checkpoint
from hasac_utils.envs import mamujoco
from hasac_utils.evaluation import episode_shares
from hasac_utils.runs import make_run_dir


def load_continuous(path: str):
    """-> (the saved Args, a Learner holding the checkpoint's state), as --eval-checkpoint loads it."""
    return load_learner(
        path, "hasac_continuous.py", hc.Args, lambda a: hc.build_learner(hc.make_env(a, 1), a, torch.device("cpu"))
    )


MAMUJOCO_IDS = [
    "Ant-2x4",
    "Ant-4x2",
    "Ant-8x1",
    "HalfCheetah-2x3",
    "HalfCheetah-3x2",
    "HalfCheetah-6x1",
    "Walker2d-2x3",
    "Walker2d-6x1",
    "HumanoidStandup-17x1",
    "ManyAgentSwimmer-10x2",
]
MPE_IDS = ["simple_spread_v3", "simple_reference_v3", "simple_speaker_listener_v4"]
LOSS_TAGS = [
    "losses/qf1_loss",
    "losses/qf2_loss",
    "losses/qf1_values",
    "losses/actor_loss",
    "losses/alpha",
    "losses/alpha/agent_0",
    "losses/alpha_loss",
    "losses/entropy",
]
# TINY: 300 loop steps of 2 envs; updates where global_step > 200 and loop step % 10 == 0


# ---------------------------------------------------------------------------------------------
# independent float64 reference computations (written from the paper's equations, not from the script)
# ---------------------------------------------------------------------------------------------
def actor_params64(actor):
    """The actor's layers as float64 leaves: fc1 (w, b), fc2 (w, b), head (w, b)."""
    return [p.detach().double().clone().requires_grad_() for p in actor.parameters()]


def actor_head64(params, obs, act_dim):
    """MLP: ReLU, tanh on the last hidden layer, one head -> mean, log_std clamped to [-20, 2]."""
    w1, b1, w2, b2, wh, bh = params
    hidden = torch.tanh(torch.relu(obs @ w1.T + b1) @ w2.T + b2)
    head = hidden @ wh.T + bh
    return head[..., :act_dim], head[..., act_dim:].clamp(-20, 2)


def squashed_gaussian64(mean, log_std, noise, low, high):
    """u = mean + std * noise; a = tanh(u) rescaled from [-1, 1] to [low, high]; log pi(a) by
    torch.distributions (the cached transforms invert exactly, so no atanh of a saturated a)."""
    low, high = torch.as_tensor(low, dtype=torch.float64), torch.as_tensor(high, dtype=torch.float64)
    std = log_std.exp()
    u = mean + std * noise.double()
    tanh = TanhTransform(cache_size=1)
    affine = AffineTransform(loc=(high + low) / 2, scale=(high - low) / 2, cache_size=1)
    dist = TransformedDistribution(Normal(mean, std), [tanh, affine])
    action = affine(tanh(u))
    return action, dist.log_prob(action).sum(-1)


def twin_q64(params, state, joint_action_flat):
    """Both twins from raw [2, out, in] weights and [2, out] biases: ReLU, ReLU, linear -> [2, B, 1]."""
    weights, biases = params[:3], params[3:]
    x = torch.cat([state, joint_action_flat], -1).double()
    out = []
    for j in range(2):
        h = torch.relu(x @ weights[0][j].T + biases[0][j])
        h = torch.relu(h @ weights[1][j].T + biases[1][j])
        out.append(h @ weights[2][j].T + biases[2][j])
    return torch.stack(out)


def qf_params64(qf, requires_grad=False):
    return [p.detach().double().clone().requires_grad_(requires_grad) for p in [*qf.weights, *qf.biases]]


# ---------------------------------------------------------------------------------------------
# 1. smoke runs
# ---------------------------------------------------------------------------------------------
def test_smoke_ant(tmp_path):
    # bfloat16 matmul products (float32 on CPUs without native bfloat16); the other runs are exact float32
    result = run_script(tmp_path, "--env-id", "Ant-4x2", "--matmul-precision", "medium", *TINY)
    assert_ok(result)
    scalars = read_scalars(run_dir(tmp_path))
    for tag in LOSS_TAGS + ["eval/episodic_return"] + [f"losses/alpha/agent_{i}" for i in range(4)]:
        assert_finite_series(scalars, tag)
    assert [s for s, _ in scalars["losses/qf1_loss"]] == TINY_UPDATE_STEPS
    assert [s for s, _ in scalars["eval/episodic_return"]] == [600]
    assert "losses/alpha/agent_4" not in scalars


def test_smoke_mpe(spread_run):
    _, path, result = spread_run
    scalars = read_scalars(path)
    for tag in LOSS_TAGS + ["charts/episodic_return", "charts/episodic_length", "eval/episodic_return"]:
        assert_finite_series(scalars, tag)
    assert [s for s, _ in scalars["losses/qf1_loss"]] == TINY_UPDATE_STEPS
    # 25-step MPE episodes in 2 lock-stepped envs: one logged mean return every 25 loop steps
    assert [s for s, _ in scalars["charts/episodic_return"]] == list(range(50, 601, 50))
    assert all(v == 25 for _, v in scalars["charts/episodic_length"])
    # losses/alpha is the mean of the per-agent temperatures (3 agents), and autotune moves them
    per_agent = [dict(scalars[f"losses/alpha/agent_{i}"]) for i in range(3)]
    for step, alpha in scalars["losses/alpha"]:
        assert alpha == pytest.approx(np.mean([a[step] for a in per_agent]), rel=1e-5)
    first, last = scalars["losses/alpha"][0][1], scalars["losses/alpha"][-1][1]
    assert first == pytest.approx(0.2, rel=1e-3) and last != first
    assert re.search(r"global_step=600, eval/episodic_return=-?\d+\.\d+", result.stdout)
    # progress: every 60 env steps (a tenth of the run), steps done of the total, recent SPS, return, time left; no
    # estimate during the warm-up (to step 200), whose random actions run far faster than training
    progress = re.findall(
        r"global_step=(\d+)/600 \(\d+\.\d%\), SPS=\d+, recent episodic_return=(\S+), time left (.*)", result.stdout
    )
    assert [int(step) for step, _, _ in progress] == list(range(60, 601, 60)), result.stdout
    assert all(math.isfinite(float(r)) for _, r, _ in progress)  # the first MPE episodes end at step 50
    for step, _, left in progress:
        assert re.fullmatch("unknown until training starts" if int(step) <= 200 else r"~\d+m\d\ds", left), (step, left)


def test_the_progress_line_where_training_starts_reads_the_warm_up(tmp_path):
    """With --train-interval 20 the first update (step 240) falls on a progress line (every 60 steps). The line comes
    before that training phase, so it still reads the warm-up; the speed window of training starts after it. (Restarted
    first, the window was empty: SPS=0 and a time left of ~44444444h.)"""
    result = run_script(tmp_path, "--env-id", "simple_spread_v3", *TINY, "--train-interval", "20")
    assert_ok(result)
    progress = re.findall(
        r"global_step=(\d+)/600 \(\d+\.\d%\), SPS=(\d+), recent episodic_return=\S+, time left (.*)", result.stdout
    )
    assert [int(step) for step, _, _ in progress] == list(range(60, 601, 60)), result.stdout
    assert "global_step=240/600" in result.stdout.split("global_step=240, warm-up done")[0]
    for step, sps, left in progress:
        assert int(sps) > 0, (step, sps)
        assert re.fullmatch("unknown until training starts" if int(step) <= 240 else r"~\d+m\d\ds", left), (step, left)


# ---------------------------------------------------------------------------------------------
# 2. every env id reaches gradient updates; partitions the library lacks
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", MAMUJOCO_IDS + MPE_IDS)
def test_every_env_id_trains(tmp_path, env_id):
    result = run_script(tmp_path, "--env-id", env_id, *MINI)
    assert_ok(result)
    scalars = read_scalars(run_dir(tmp_path))
    assert_finite_series(scalars, "losses/qf1_loss")
    assert_finite_series(scalars, "losses/actor_loss")
    assert_finite_series(scalars, "eval/episodic_return")
    assert "settotalmass" not in result.stderr and not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_mujoco_warnings_other_than_the_settotalmass_deprecation_are_printed(capsys):
    mamujoco.print_mujoco_warning("compiler attribute 'settotalmass' is deprecated and will be removed")
    mamujoco.print_mujoco_warning("Nan, Inf or huge value in QACC at DOF 0")
    assert capsys.readouterr().err == "MuJoCo warning: Nan, Inf or huge value in QACC at DOF 0\n"


@pytest.mark.parametrize(
    "env_id, n_agents, act_dim",
    [
        ("Ant-8x1", 8, 1),
        ("HalfCheetah-3x2", 3, 2),
        ("Walker2d-6x1", 6, 1),
        ("HumanoidStandup-17x1", 17, 1),
        ("ManyAgentSwimmer-10x2", 10, 2),
    ],
)
def test_partitions_the_library_lacks(env_id, n_agents, act_dim):
    envs = hc.make_env(hc.Args(env_id=env_id), 1)
    try:
        assert envs.n_agents == n_agents and envs.act_dims == [act_dim] * n_agents
        env = envs.envs[0]
        labels = [[node.label for node in part] for part in env.agent_action_partitions]
        if env_id == "HalfCheetah-3x2":  # the official grouping, not consecutive joints
            assert labels == [["bfoot", "bshin"], ["bthigh", "ffoot"], ["fshin", "fthigh"]]
        # every actuator is driven by exactly one agent's action dim
        n_actuators = env.single_agent_env.action_space.shape[0]
        assert n_agents * act_dim == n_actuators
        local = {a: np.arange(i * act_dim, (i + 1) * act_dim, dtype=np.float64) + 1 for i, a in enumerate(envs.agents)}
        global_action = env.map_local_actions_to_global_action(local)
        assert sorted(global_action.tolist()) == list(range(1, n_actuators + 1))
        for i, part in enumerate(env.agent_action_partitions):
            for k, node in enumerate(part):
                assert global_action[node.act_ids] == local[envs.agents[i]][k]
    finally:
        envs.close()


def test_agent_obsk_gives_library_local_observations():
    from gymnasium_robotics import mamujoco_v1

    envs = hc.make_env(hc.Args(env_id="Ant-4x2", agent_obsk=1), 1)
    library = mamujoco_v1.parallel_env("Ant", "4x2", agent_obsk=1)
    try:
        library_dims = [library.observation_space(a).shape[0] for a in library.possible_agents]
        assert envs.obs_dims == library_dims
        assert envs.obs_dims != [envs.state_dim + envs.n_agents] * envs.n_agents
        obs, state, _ = envs.reset(seed=3)
        library_obs, _ = library.reset(seed=3)
        for i, agent in enumerate(library.possible_agents):
            np.testing.assert_allclose(obs[0, i, : library_dims[i]], library_obs[agent], rtol=1e-6, atol=1e-6)
    finally:
        envs.close()
        library.close()


def test_default_mamujoco_observation_is_full_state_plus_id():
    envs = hc.make_env(hc.Args(env_id="Ant-4x2"), 1)
    try:
        obs, state, _ = envs.reset(seed=0)
        n, s = envs.n_agents, envs.state_dim
        assert envs.obs_dims == [s + n] * n and obs.shape == (1, n, s + n)
        for i in range(n):
            assert np.argmax(obs[0, i, s:]) == i  # one-hot id, standardised with the state
            np.testing.assert_array_equal(obs[0, i, :s], obs[0, 0, :s])
            assert obs[0, i].mean() == pytest.approx(0, abs=1e-5) and obs[0, i].std() == pytest.approx(1, rel=1e-4)
    finally:
        envs.close()


def test_full_state_observations_rebuilt_from_the_stored_state_match_the_env():
    """The training loop stores only the state the env returns and rebuilds the actors'
    observations with `full_state_observations(state, n_agents)` (its `unpack`), so that must
    give back the observations the actors act on."""
    envs = hc.make_env(hc.Args(env_id="Ant-4x2"), 1)
    try:
        obs, state, _ = envs.reset(seed=0)
        actions = np.random.default_rng(0).uniform(envs.action_low, envs.action_high, (1, envs.n_agents, envs.act_dim))
        next_obs, next_state, *_ = envs.step(actions.astype(np.float32))
        for o, st in ((obs, state), (next_obs, next_state)):
            rebuilt = hc.full_state_observations(torch.as_tensor(st), envs.n_agents).numpy()
            np.testing.assert_allclose(
                rebuilt,
                o,
                atol=1e-4,
                err_msg="observations rebuilt from the stored (standardised) state differ from those the actors act on",
            )
    finally:
        envs.close()


# ---------------------------------------------------------------------------------------------
# 3. squashed Gaussian with rescaled bounds
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "low, high, mean_shift",
    [
        ([0.0] * 3, [1.0] * 3, 0.0),  # MPE-like bounds
        ([-1.0] * 3, [1.0] * 3, 0.0),  # MaMuJoCo bounds
        ([-2.0, 0.0, -0.4], [0.5, 3.0, 0.4], 0.0),  # asymmetric, per dim
        ([0.0] * 3, [1.0] * 3, 8.0),  # saturated tanh: needs the stable log(1 - tanh^2)
    ],
)
def test_sample_actions_log_prob_matches_torch_distributions(low, high, mean_shift):
    torch.manual_seed(0)
    actor = hc.Actor(5, 3, 16, np.array(low, np.float32), np.array(high, np.float32))
    with torch.no_grad():
        actor.fc_head.bias[:3] += mean_shift
    obs = torch.randn(64, 5)
    torch.manual_seed(123)
    action, log_prob = actor(obs)
    torch.manual_seed(123)
    noise = torch.randn(64, 3)  # the same draw the script makes

    mean, log_std = actor_head64(actor_params64(actor), obs.double(), 3)
    ref_action, ref_log_prob = squashed_gaussian64(mean, log_std, noise, low, high)
    assert action.dtype == torch.float32 and log_prob.shape == (64,)
    torch.testing.assert_close(action.double(), ref_action.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_prob.double(), ref_log_prob.detach(), rtol=1e-4, atol=2e-4)
    assert torch.isfinite(log_prob).all()
    assert (action >= torch.tensor(low)).all() and (action <= torch.tensor(high)).all()

    # deterministic: tanh(mean) rescaled
    det_action, _ = actor(obs, deterministic=True)
    low64, high64 = torch.tensor(low, dtype=torch.float64), torch.tensor(high, dtype=torch.float64)
    expected = torch.tanh(mean) * (high64 - low64) / 2 + (high64 + low64) / 2
    torch.testing.assert_close(det_action.double(), expected.detach(), rtol=1e-5, atol=1e-5)


def test_padded_action_dims_are_zero_and_masked_out_of_log_prob():
    """Heterogeneous agents (speaker: obs 3, act 3; listener: obs 5, act 5) stacked and padded."""
    torch.manual_seed(0)
    dims = [(3, 3), (5, 5)]
    actors = [hc.Actor(o, a, 16, np.zeros(a, np.float32), np.ones(a, np.float32)) for o, a in dims]
    weights = hc.stack_actor_weights(actors, [0, 1], 5, 5)
    mask = torch.tensor([[True] * 3 + [False] * 2, [True] * 5]).unsqueeze(1)  # [N, 1, act_dim]
    obs = torch.randn(2, 32, 5)
    obs[0, :, 3:] = 100.0  # padding the speaker's actor must ignore
    torch.manual_seed(7)
    action, log_prob = hc.sample_actions(obs, weights, mask)
    torch.manual_seed(7)
    noise = torch.randn(2, 32, 5)
    assert action.shape == (2, 32, 5) and log_prob.shape == (2, 32)
    assert (action[0, :, 3:] == 0).all()
    for i, (o, a) in enumerate(dims):
        mean, log_std = actor_head64(actor_params64(actors[i]), obs[i, :, :o].double(), a)
        ref_action, ref_log_prob = squashed_gaussian64(mean, log_std, noise[i, :, :a], [0.0] * a, [1.0] * a)
        torch.testing.assert_close(action[i, :, :a].double(), ref_action.detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(log_prob[i].double(), ref_log_prob.detach(), rtol=1e-4, atol=2e-4)
    # act() applies the learner's mask the same way: padded dims are exactly zero
    det_action, _ = hc.sample_actions(obs, weights, mask, deterministic=True)
    assert (det_action[0, :, 3:] == 0).all()


# ---------------------------------------------------------------------------------------------
# 4. critic target and actor loss
# ---------------------------------------------------------------------------------------------
def _critic_setup(seed=8):
    torch.manual_seed(seed)
    n_agents, act_dim, state_dim, batch = 3, 2, 6, 5
    qf = hc.SoftQNetwork(state_dim, n_agents * act_dim, 16)
    with torch.no_grad():  # equal output biases, so which twin is the min varies from row to row
        qf.biases[2].zero_()
    gamma = 0.9
    batch_data = hc.Batch(
        obs=torch.zeros(batch, n_agents, 4),
        state=torch.randn(batch, state_dim),
        actions=torch.rand(batch, n_agents, act_dim) * 2 - 1,
        rewards=torch.tensor([[1.0], [0.5], [-0.3], [2.0], [0.0]]),
        next_obs=torch.zeros(batch, n_agents, 4),
        next_state=torch.randn(batch, state_dim),
        # row 1 and 4 terminated; row 2 a truncation after 3 < n = 5 steps (bootstraps)
        terminations=torch.tensor([[0.0], [1.0], [0.0], [0.0], [1.0]]),
        discounts=torch.tensor([[gamma**5], [gamma**2], [gamma**3], [gamma**1], [gamma**5]]),
    )
    return qf, batch_data, n_agents, act_dim


def test_critic_target_matches_float64_reference():
    qf_target, batch, n_agents, act_dim = _critic_setup()
    next_actions = torch.rand(len(batch.state), n_agents, act_dim) * 2 - 1
    next_log_probs = torch.randn(len(batch.state), n_agents) * 3
    alphas = torch.tensor([0.05, 0.2, 1.5])

    q = twin_q64(qf_params64(qf_target), batch.next_state.double(), next_actions.flatten(1).double())  # [2, B, 1]
    assert (q[0] < q[1]).any() and (q[1] < q[0]).any(), "want both twins to be the min somewhere"
    soft_value = q.min(0).values - (alphas.double() * next_log_probs.double()).sum(-1, keepdim=True)
    expected = batch.rewards.double() + batch.discounts.double() * (1 - batch.terminations.double()) * soft_value

    with torch.no_grad():
        target = hc.critic_target(qf_target, batch, next_actions, next_log_probs, alphas)
    assert target.shape == (5, 1)
    torch.testing.assert_close(target.double(), expected, rtol=1e-5, atol=1e-5)
    assert target[1].item() == batch.rewards[1].item() and target[4].item() == batch.rewards[4].item()
    # the truncated row bootstraps with gamma^3
    assert target[2].item() != pytest.approx(batch.rewards[2].item(), abs=1e-3)
    # Q(s, a) through the network's own forward agrees with the raw-parameter computation
    with torch.no_grad():
        forward = qf_target(batch.next_state, next_actions.flatten(1))
    torch.testing.assert_close(forward.double(), q, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("agents", [[1], [0, 1, 2]])  # one agent's step; a shared actor's step
def test_actor_loss_matches_float64_reference(agents):
    qf, batch, n_agents, act_dim = _critic_setup()
    joint_action = (torch.rand(len(batch.state), n_agents, act_dim) * 2 - 1).requires_grad_()
    log_probs = torch.randn(len(batch.state), len(agents))
    alphas = torch.tensor([0.05, 0.2, 1.5])[agents]

    joint64 = joint_action.detach().double().requires_grad_()
    q = twin_q64(qf_params64(qf), batch.state.double(), joint64.flatten(1))
    assert (q[0] < q[1]).any() and (q[1] < q[0]).any(), "want both twins to be the min somewhere"
    expected = ((alphas.double() * log_probs.double()).sum(-1) - q.min(0).values.squeeze(-1)).mean()
    expected.backward()

    with torch.no_grad():
        state_features = qf.state_features(batch.state)
    loss = hc.actor_loss(qf, state_features, joint_action, log_probs, alphas)
    loss.backward()
    assert loss.shape == ()
    torch.testing.assert_close(loss.double(), expected.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(joint_action.grad.double(), joint64.grad, rtol=1e-4, atol=1e-6)


def test_alpha_loss_and_soft_update():
    log_alpha = torch.tensor(math.log(0.3), requires_grad=True)
    log_probs = torch.randn(50, requires_grad=True)
    loss = hc.alpha_loss(log_alpha, log_probs, -2.0)
    expected = (-0.3 * (log_probs.detach() - 2.0)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(expected.item(), rel=1e-5)  # d/dlog_alpha of -e^la (..)
    assert log_probs.grad is None  # the temperature loss never moves the policy

    torch.manual_seed(0)
    target, online = hc.SoftQNetwork(4, 2, 8), hc.SoftQNetwork(4, 2, 8)
    before = [p.detach().clone() for p in target.parameters()]
    hc.soft_update(target, online, 0.1)
    for new, old, o in zip(target.parameters(), before, online.parameters()):
        torch.testing.assert_close(new.detach(), 0.9 * old + 0.1 * o.detach(), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# 8. one full sequential HASAC update
# ---------------------------------------------------------------------------------------------
def _random_batch(envs, batch_size, gamma=0.99, n_step=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, obs_dim, act_dim = envs.n_agents, envs.obs_dim, envs.act_dim
    obs_mask = torch.as_tensor(np.arange(obs_dim) < np.array(envs.obs_dims)[:, None], dtype=torch.float32)
    low, high = torch.as_tensor(envs.action_low), torch.as_tensor(envs.action_high)
    k = torch.randint(1, n_step + 1, (batch_size, 1), generator=g)
    return hc.Batch(
        obs=torch.randn(batch_size, n, obs_dim, generator=g) * obs_mask,
        state=torch.randn(batch_size, envs.state_dim, generator=g),
        actions=low + (high - low) * torch.rand(batch_size, n, act_dim, generator=g),  # padded dims: low = high = 0
        rewards=torch.randn(batch_size, 1, generator=g),
        next_obs=torch.randn(batch_size, n, obs_dim, generator=g) * obs_mask,
        next_state=torch.randn(batch_size, envs.state_dim, generator=g),
        terminations=(torch.rand(batch_size, 1, generator=g) < 0.3).float(),
        discounts=gamma ** k.float(),
    )


def _learner(env_id, share_param=False, alphas=(0.1, 0.4, 0.25), **args):
    envs = hc.make_env(hc.Args(env_id=env_id), 1)
    envs.close()
    torch.manual_seed(0)
    learner = hc.build_learner(
        envs, hc.Args(env_id=env_id, share_param=share_param, **{"hidden_dim": 32, **args}), torch.device("cpu")
    )
    with torch.no_grad():
        for i, log_alpha in enumerate(learner.log_alphas):  # a different temperature per agent
            log_alpha.fill_(math.log(alphas[i % len(alphas)]))
    return envs, learner


def _pin_log_std(actor, value):
    """Make the actor's log_std head output `value` for every input (the head is [mean, log_std])."""
    with torch.no_grad():
        actor.fc_head.weight[actor.act_dim :] = 0.0
        actor.fc_head.bias[actor.act_dim :] = value


def reference_update(learner, envs, batch, agent_order, tau, q_lr, policy_lr, resample=True):
    """One HASAC update (Algorithm 2 of the paper) in float64 with plain SGD, independent of the script.

    The policies' log_std is pinned below the clamp (std = e^-20), so a sampled action is
    tanh(mean) rescaled up to ~1e-8 and the noise drops out of every gradient: log pi differs
    from its noise-free value by -0.5 noise^2, whose gradient is zero. So the update is
    deterministic and this reference needs none of the script's random draws. (The critic
    target's *value* still carries -alpha^i * 0.5 * noise^2: tests that let the critic learn
    use temperatures ~1e-12.) Steps: critic on the current policies' next actions; then each
    agent in `agent_order` (a shared actor too: one step per agent, on the shared parameters)
    against the already-updated agents' new actions and the others' current ones, under the
    updated critic; then Polyak.
    """
    n, act_dim = envs.n_agents, envs.act_dim
    shared = len(learner.actors) == 1
    actors = [actor_params64(actor) for actor in learner.actors]
    policy_of_agent = [0] * n if shared else list(range(n))
    qf, qft = qf_params64(learner.qf, requires_grad=True), qf_params64(learner.qf_target)
    alphas = torch.stack([la.detach().double() for la in learner.log_alphas]).exp()
    b = {k: v.double() for k, v in batch._asdict().items()}

    def policy(i, obs):  # agent i: action [B, a_i], log_prob [B] (noise-free)
        a_i = envs.act_dims[i]
        mean, log_std = actor_head64(actors[policy_of_agent[i]], obs[:, i, : envs.obs_dims[i]], a_i)
        return squashed_gaussian64(mean, log_std, torch.zeros_like(mean), envs.action_low[i, :a_i], envs.action_high[i, :a_i])

    def joint(per_agent):  # list of [B, a_i] -> [B, N, act_dim], zero-padded
        return torch.stack([F.pad(a, (0, act_dim - a.shape[-1])) for a in per_agent], 1)

    # critic: y = R + gamma^k (1 - term) (min_j Qtarg_j(s', a') - sum_i alpha^i log pi^i(a'^i|o'^i))
    with torch.no_grad():
        nxt = [policy(i, b["next_obs"]) for i in range(n)]
        next_q = twin_q64(qft, b["next_state"], joint([a for a, _ in nxt]).flatten(1)).min(0).values
        soft_value = next_q - (alphas * torch.stack([lp for _, lp in nxt], -1)).sum(-1, keepdim=True)
        y = b["rewards"] + b["discounts"] * (1 - b["terminations"]) * soft_value
    q = twin_q64(qf, b["state"], b["actions"].flatten(1))
    qf1_loss, qf2_loss = ((q[0] - y) ** 2).mean(), ((q[1] - y) ** 2).mean()
    grads = torch.autograd.grad(qf1_loss + qf2_loss, qf)
    qf = [(p - q_lr * g).detach() for p, g in zip(qf, grads)]

    # actors, one after another (Eq. 10): J = E[alpha^i log pi^i - min_j Q_j(s, a)]
    with torch.no_grad():
        current = [policy(i, b["obs"])[0] for i in range(n)]
    actor_losses = []
    for i in (int(i) for i in agent_order):
        fresh_action, fresh_log_prob = policy(i, b["obs"])  # from agent i's policy as it is now (a shared one has moved)
        joint_action = joint([fresh_action if j == i else current[j] for j in range(n)])
        min_q = twin_q64(qf, b["state"], joint_action.flatten(1)).min(0).values.squeeze(-1)
        loss = (alphas[i] * fresh_log_prob - min_q).mean()
        k = policy_of_agent[i]
        grads = torch.autograd.grad(loss, actors[k])
        actors[k] = [(p - policy_lr * g).detach().requires_grad_() for p, g in zip(actors[k], grads)]
        actor_losses.append(loss.item())
        if resample:  # later agents see this agent's action from its updated policy
            with torch.no_grad():
                current[i] = policy(i, b["obs"])[0]

    qft = [(1 - tau) * t + tau * p for t, p in zip(qft, qf)]
    return {
        "actors": actors,
        "qf": qf,
        "qf_target": qft,
        "qf1_loss": qf1_loss.item(),
        "qf2_loss": qf2_loss.item(),
        "actor_loss": float(np.mean(actor_losses)),
    }


def _with_sgd(learner, q_lr, policy_lr):
    return learner._replace(
        actor_optimizers=[torch.optim.SGD(actor.parameters(), lr=policy_lr) for actor in learner.actors],
        q_optimizer=torch.optim.SGD(learner.qf.parameters(), lr=q_lr),
    )


def _max_diff(tensors, reference):
    return max((t.detach().double() - r.detach().double()).abs().max().item() for t, r in zip(tensors, reference))


@pytest.mark.parametrize(
    "env_id, share_param, agent_order, q_lr, alphas",
    [
        # the critic frozen (lr 0): real, different temperatures reach each agent's step
        ("simple_speaker_listener_v4", False, [1, 0], 0.0, (0.3, 1.5)),  # heterogeneous, padded
        ("HalfCheetah-3x2", False, [2, 0, 1], 0.0, (0.5, 0.05, 2.0)),
        ("simple_spread_v3", True, [2, 0, 1], 0.0, (0.1, 0.4, 0.25)),  # one shared actor, one step per agent
        # the critic learns first and the actors step against the updated critic
        ("simple_speaker_listener_v4", False, [0, 1], 0.05, (1e-12, 3e-12)),
        ("HalfCheetah-3x2", False, [1, 2, 0], 0.05, (1e-12, 2e-12, 3e-12)),
        ("simple_spread_v3", True, [1, 2, 0], 0.05, (1e-12,)),
    ],
)
def test_hasac_update_matches_float64_reference(env_id, share_param, agent_order, q_lr, alphas):
    policy_lr, tau = 1.0, 0.3
    envs, learner = _learner(env_id, share_param, alphas, autotune=False)
    for actor in learner.actors:
        _pin_log_std(actor, -25.0)
    with torch.no_grad():  # a target critic apart from the online one, so Polyak averaging shows
        for p in learner.qf_target.parameters():
            p.add_(0.1 * torch.randn_like(p))
    learner = _with_sgd(learner, q_lr, policy_lr)
    batch = _random_batch(envs, 64)
    initial = copy.deepcopy(learner)

    metrics = hc.hasac_update(learner, batch, agent_order, tau)
    ref = reference_update(initial, envs, batch, agent_order, tau, q_lr, policy_lr)

    tol = 1e-6  # float32 against float64: the differences seen are ~5e-8
    for actor, ref_params, old in zip(learner.actors, ref["actors"], initial.actors):
        assert _max_diff(actor.parameters(), ref_params) < tol
        assert _max_diff(actor.parameters(), old.parameters()) > 1e-3  # it moved
    assert _max_diff([*learner.qf.weights, *learner.qf.biases], ref["qf"]) < tol
    assert _max_diff([*learner.qf_target.weights, *learner.qf_target.biases], ref["qf_target"]) < tol
    assert _max_diff(learner.qf_target.parameters(), initial.qf_target.parameters()) > 1e-3
    if q_lr > 0:
        assert _max_diff(learner.qf.parameters(), initial.qf.parameters()) > 1e-3
        assert metrics["qf1_loss"].item() == pytest.approx(ref["qf1_loss"], rel=1e-4)
        assert metrics["qf2_loss"].item() == pytest.approx(ref["qf2_loss"], rel=1e-4)
        assert metrics["actor_loss"].item() == pytest.approx(ref["actor_loss"], rel=1e-4, abs=1e-5)
    assert metrics["alpha_loss"] is None
    assert all(p.requires_grad for p in learner.qf.parameters())  # the critic is unfrozen again

    if not share_param:  # the reference can tell: later agents must see earlier agents' *new* actions
        stale = reference_update(initial, envs, batch, agent_order, tau, q_lr, policy_lr, resample=False)
        assert _max_diff(stale["actors"][agent_order[0]], ref["actors"][agent_order[0]]) < 1e-12
        assert _max_diff(learner.actors[agent_order[-1]].parameters(), stale["actors"][agent_order[-1]]) > 20 * tol


def test_temperatures_move_toward_each_agents_target_entropy():
    """J(alpha^i) = E[-alpha^i (log pi^i + target^i)], target^i = -dim(A^i) on the normalised
    [-1, 1] action, i.e. -dim(A^i) + dim(A^i) log(1/2) for MPE's [0, 1] bounds; one Adam step each:
    an agent far less random than its target (std e^-20: log pi ~ +19 per dim) must raise its
    temperature; one more random than its target (std 1 on [0, 1]: log pi ~ 0 per dim) must
    lower it. Adam's first step moves log alpha by alpha_lr, whatever the gradient's size."""
    envs, learner = _learner("simple_speaker_listener_v4", alphas=(0.2,), autotune=True, alpha_lr=1e-3)
    assert learner.target_entropies == pytest.approx([-3 + 3 * math.log(0.5), -5 + 5 * math.log(0.5)])
    _pin_log_std(learner.actors[0], -25.0)  # speaker
    _pin_log_std(learner.actors[1], 0.0)  # listener
    before = [la.item() for la in learner.log_alphas]
    metrics = hc.hasac_update(learner, _random_batch(envs, 256), [0, 1], 0.005)
    after = [la.item() for la in learner.log_alphas]
    assert after[0] - before[0] == pytest.approx(1e-3, rel=1e-3)
    assert after[1] - before[1] == pytest.approx(-1e-3, rel=1e-3)
    assert metrics["alpha_loss"] is not None and torch.isfinite(metrics["alpha_loss"])
    torch.testing.assert_close(metrics["alphas"], torch.tensor([0.2, 0.2]))  # the values the update used


def test_hasac_update_scores_each_sampled_action_under_the_right_policy_and_observation(monkeypatch):
    """The entropy terms inside the update, with real temperatures and real noise: wrapping (not
    replacing) `critic_target` and `actor_loss` records what the update hands them. Each log-prob
    must be the float64 density of the action it came with, under the current policy of that
    agent at o' (critic target) or o (actor step), and the temperatures exp(log_alpha^i)."""
    envs, learner = _learner("simple_speaker_listener_v4", alphas=(0.3, 1.5), autotune=True)
    for actor in learner.actors:
        _pin_log_std(actor, -1.0)  # moderate pre-tanh values: the actions invert accurately
    batch = _random_batch(envs, 128)
    seen = {"critic_target": [], "actor_loss": []}
    critic_target, actor_loss = hc.critic_target, hc.actor_loss

    def log_prob64(i, obs, action):  # log pi^i(action | obs) under agent i's current policy
        a_i = envs.act_dims[i]
        low, high = (torch.as_tensor(x[i, :a_i], dtype=torch.float64) for x in (envs.action_low, envs.action_high))
        mean, log_std = actor_head64(actor_params64(learner.actors[i]), obs[:, i, : envs.obs_dims[i]].double(), a_i)
        u = torch.atanh(((action[:, :a_i].double() - (high + low) / 2) / ((high - low) / 2)).clamp(-1 + 1e-12, 1 - 1e-12))
        _, log_prob = squashed_gaussian64(mean, log_std, (u - mean) / log_std.exp(), low.numpy(), high.numpy())
        return log_prob.detach()

    def spy_critic_target(qf_target, b, next_actions, next_log_probs, alphas):
        seen["critic_target"].append([log_prob64(i, b.next_obs, next_actions[:, i]) for i in range(envs.n_agents)])
        seen["critic_target"][-1] += [next_actions.detach().clone(), next_log_probs.detach().clone(), alphas.clone()]
        return critic_target(qf_target, b, next_actions, next_log_probs, alphas)

    def spy_actor_loss(qf, state_features, joint_action, log_probs, alphas):
        agent = len(seen["actor_loss"])  # agent_order below is [0, 1]
        seen["actor_loss"].append(
            (log_prob64(agent, batch.obs, joint_action[:, agent]), log_probs.detach().clone(), alphas.clone())
        )
        return actor_loss(qf, state_features, joint_action, log_probs, alphas)

    monkeypatch.setattr(hc, "critic_target", spy_critic_target)
    monkeypatch.setattr(hc, "actor_loss", spy_actor_loss)
    hc.hasac_update(learner, batch, [0, 1], 0.005)

    assert len(seen["critic_target"]) == 1 and len(seen["actor_loss"]) == 2, "the update no longer calls these by name"
    *expected, next_actions, next_log_probs, alphas = seen["critic_target"][0]
    torch.testing.assert_close(alphas, torch.tensor([0.3, 1.5]))
    assert (next_actions[:, 0, 3:] == 0).all()  # the speaker's padded dims
    torch.testing.assert_close(next_log_probs.double(), torch.stack(expected, -1), rtol=1e-4, atol=5e-4)
    for agent, (expected, log_probs, alphas) in enumerate(seen["actor_loss"]):
        torch.testing.assert_close(log_probs.double().squeeze(-1), expected, rtol=1e-4, atol=5e-4)
        torch.testing.assert_close(alphas, torch.tensor([[0.3], [1.5]][agent]))
    # and it can tell o from o': the same actions scored at o are far off
    wrong = torch.stack([log_prob64(i, batch.obs, next_actions[:, i]) for i in range(2)], -1)
    assert (wrong - next_log_probs.double()).abs().max() > 0.1


def test_hasac_update_with_adam_moves_everything_and_polyak_averages_the_target():
    envs, learner = _learner("simple_speaker_listener_v4")
    batch = _random_batch(envs, 64)
    old = copy.deepcopy(learner)
    tau = 0.05
    hc.hasac_update(learner, batch, [0, 1], tau)
    for actor, old_actor in zip(learner.actors, old.actors):
        for p, q in zip(actor.parameters(), old_actor.parameters()):
            assert not torch.equal(p, q)
    for p, q in zip(learner.qf.parameters(), old.qf.parameters()):
        assert not torch.equal(p, q)
    for new_t, old_t, online in zip(learner.qf_target.parameters(), old.qf_target.parameters(), learner.qf.parameters()):
        torch.testing.assert_close(new_t, (1 - tau) * old_t + tau * online, rtol=0, atol=1e-7)
    assert all(a.item() != b.item() for a, b in zip(learner.log_alphas, old.log_alphas))
    # the critic's step does not depend on the actor steps that follow it: a learner whose
    # actors cannot move (zero learning rate) ends with exactly the same critic
    frozen = copy.deepcopy(old)
    for opt in frozen.actor_optimizers:
        for group in opt.param_groups:
            group["lr"] = 0.0
    torch.manual_seed(5)
    hc.hasac_update(frozen, batch, [0, 1], tau)
    torch.manual_seed(5)
    again = copy.deepcopy(old)
    hc.hasac_update(again, batch, [0, 1], tau)
    for p, q in zip(frozen.qf.parameters(), again.qf.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(frozen.actors[0].parameters(), old.actors[0].parameters()):
        assert torch.equal(p, q)


@pytest.fixture
def matmul_precision():
    yield torch.set_float32_matmul_precision
    torch.set_float32_matmul_precision("highest")


def _cpu_has_bfloat16_matmul() -> bool:
    """Whether --matmul-precision medium changes a float32 matmul here (it does only on CPUs with native bfloat16)."""
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 64, generator=generator), torch.randn(64, 64, generator=generator)
    exact = a @ b
    torch.set_float32_matmul_precision("medium")
    try:
        return not torch.equal(a @ b, exact)
    finally:
        torch.set_float32_matmul_precision("highest")


@pytest.mark.skipif(not _cpu_has_bfloat16_matmul(), reason="this CPU has no native bfloat16: medium computes exact float32")
def test_medium_matmul_precision_update_stays_close_to_float32(matmul_precision):
    """--matmul-precision medium rounds matmul inputs to bfloat16 (8 significant bits) where the
    CPU has native bfloat16; one update must still land within a few bfloat16 ulps of float32."""
    envs, learner = _learner("Ant-4x2", hidden_dim=256)
    batch = _random_batch(envs, 256)
    results = {}
    for precision in ("highest", "medium"):
        matmul_precision(precision)
        updated = copy.deepcopy(learner)
        torch.manual_seed(3)
        results[precision] = (hc.hasac_update(updated, batch, [2, 0, 3, 1], 0.005), updated)
    (exact, exact_learner), (medium, medium_learner) = results["highest"], results["medium"]
    for name in ("qf1_loss", "qf2_loss", "qf1_values", "actor_loss", "entropy"):
        torch.testing.assert_close(medium[name], exact[name], rtol=3e-2, atol=3e-3, msg=name)

    def step(updated):  # how far the update moved every actor and critic weight
        parameters = lambda lrn: [p for net in [*lrn.actors, lrn.qf] for p in net.parameters()]  # noqa: E731
        return torch.cat([(p - q).flatten() for p, q in zip(parameters(updated), parameters(learner))])

    exact_step = step(exact_learner)
    assert (step(medium_learner) - exact_step).norm() < 0.2 * exact_step.norm()


# ---------------------------------------------------------------------------------------------
# 5. determinism
# ---------------------------------------------------------------------------------------------
def test_same_seed_same_losses_different_seed_different_losses(spread_run, tmp_path):
    _, first_path, _ = spread_run
    same = run_script(tmp_path / "same", "--env-id", "simple_spread_v3", "--seed", "1", "--save-model", *TINY)
    other = run_script(tmp_path / "other", "--env-id", "simple_spread_v3", "--seed", "2", "--save-model", *TINY)
    assert_ok(same)
    assert_ok(other)
    first, second, third = (read_scalars(p) for p in (first_path, run_dir(tmp_path / "same"), run_dir(tmp_path / "other")))
    for tag in ("losses/qf1_loss", "losses/actor_loss"):
        assert len(first[tag]) == len(TINY_UPDATE_STEPS)
        assert first[tag] == second[tag], tag
        assert [v for _, v in first[tag]] != [v for _, v in third[tag]], tag
    assert first["charts/episodic_return"] == second["charts/episodic_return"]


# ---------------------------------------------------------------------------------------------
# 6. checkpoints
# ---------------------------------------------------------------------------------------------
def test_save_model_then_eval_checkpoint(spread_run):
    cwd, path, _ = spread_run
    checkpoint = path / "hasac_continuous.cleanrl_model"
    assert checkpoint.is_file()
    assert torch.load(checkpoint, weights_only=False)["global_step"] == 600
    result = run_script(cwd, "--eval-checkpoint", str(checkpoint.relative_to(cwd)), "--eval-episodes", "2")
    assert_ok(result)
    match = re.search(r"simple_spread_v3: eval/episodic_return (-?\d+\.\d+) \+- (\d+\.\d+) over 2 episodes", result.stdout)
    assert match, result.stdout
    assert math.isfinite(float(match.group(1)))


def test_load_checkpoint_restores_exact_weights(tmp_path):
    envs = hc.make_env(hc.Args(env_id="simple_speaker_listener_v4"), 1)
    envs.close()
    args = hc.Args(env_id="simple_speaker_listener_v4", hidden_dim=32, seed=9)
    torch.manual_seed(1)
    learner = hc.build_learner(envs, args, torch.device("cpu"))
    with torch.no_grad():
        for p in [*learner.actors[0].parameters(), *learner.actors[1].parameters(), *learner.qf.parameters()]:
            p.add_(torch.randn_like(p))
        learner.log_alphas[1].fill_(-3.0)
    path = str(tmp_path / "model.cleanrl_model")
    save_checkpoint(path, "hasac_continuous.py", args, 1234, learner)

    torch.manual_seed(2)
    fresh = hc.build_learner(envs, args, torch.device("cpu"))
    assert not torch.equal(fresh.actors[1].fc1.weight, learner.actors[1].fc1.weight)
    saved_args, loaded = load_continuous(path)
    assert saved_args == args
    for a, b in zip(loaded.actors, learner.actors):
        state_a, state_b = a.state_dict(), b.state_dict()
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            assert torch.equal(state_a[key], state_b[key]), key
    for module in ("qf", "qf_target"):
        for p, q in zip(getattr(loaded, module).parameters(), getattr(learner, module).parameters()):
            assert torch.equal(p, q)
    assert [la.item() for la in loaded.log_alphas] == [la.item() for la in learner.log_alphas]
    obs = torch.randn(4, 2, envs.obs_dim)
    assert torch.equal(hc.act(loaded, obs, deterministic=True), hc.act(learner, obs, deterministic=True))


# ---------------------------------------------------------------------------------------------
# 7. bad input: one clear line, non-zero exit, no traceback
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, expected",
    [
        (["--env-id", "Foo-2x2"], ["unknown env id", *MAMUJOCO_IDS, *MPE_IDS]),
        (["--env-id", "Ant-3x3"], ["Ant", "3x3", "impossible"]),
        (
            ["--env-id", "simple_speaker_listener_v4", "--share-param"],
            ["--share-param", "obs dims [3, 11]", "action dims [3, 5]"],
        ),
        (["--env-id", "simple_spread_v3", "--agent-obsk", "1"], ["--agent-obsk", "MaMuJoCo"]),
        (["--eval-checkpoint", "missing.cleanrl_model"], ["cannot load checkpoint", "missing.cleanrl_model"]),
    ],
)
def test_bad_input_one_line_error(tmp_path, args, expected):
    result = run_script(tmp_path, *args, *MINI)
    assert_one_line_error(result, expected, tmp_path)


def test_bad_choice_names_the_choices(tmp_path):
    result = run_script(tmp_path, "--matmul-precision", "low", *MINI)
    assert_choice_error(result, "--matmul-precision", "low", ["highest", "high", "medium"], tmp_path)


def test_share_param_on_homogeneous_mamujoco_trains(tmp_path):
    result = run_script(tmp_path, "--env-id", "Ant-4x2", "--share-param", "--save-model", *MINI)
    assert_ok(result)
    path = run_dir(tmp_path)
    assert_finite_series(read_scalars(path), "losses/qf1_loss")
    assert len(torch.load(path / "hasac_continuous.cleanrl_model", weights_only=False)["learner"]["actors"]) == 1


# ---------------------------------------------------------------------------------------------
# interruption and non-finite losses
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("signal_name, exit_status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_ctrl_c_flushes_logs_and_saves_a_loadable_checkpoint(tmp_path, signal_name, exit_status):
    """SIGINT (Ctrl-C) or SIGTERM (a scheduler's stop) mid-training: TensorBoard scalars on disk, the latest weights
    loadable, and the shell's exit status for that signal, so a sweep can tell the run from a finished one."""
    args = ["--env-id", "simple_spread_v3", *TINY, "--total-timesteps", "10000000", "--save-model"]
    # A shell that starts jobs in the background (`cmd &`) ignores SIGINT in them, and Python keeps
    # an inherited "ignore": give the run the terminal's default, as for a user at a prompt.
    process = subprocess.Popen(
        [sys.executable, str(CONTINUOUS), *args],
        cwd=tmp_path,
        env=SUBPROCESS_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        for line in process.stdout:  # block until the run has taken gradient updates
            if "training starts" in line:
                break
        for line in process.stdout:  # and logged a few training phases' losses
            if "global_step=10000" in line:
                break
        process.send_signal(getattr(signal, signal_name))
        output = process.communicate(timeout=120)[0]
    finally:
        process.kill()
    assert process.returncode == exit_status, output
    assert "interrupted at global_step=" in output
    scalars = read_scalars(run_dir(tmp_path))
    assert_finite_series(scalars, "losses/qf1_loss")
    checkpoint = next(run_dir(tmp_path).glob("*.cleanrl_model"))
    saved_args, learner = load_continuous(str(checkpoint))
    saved_step = torch.load(checkpoint, weights_only=False)["global_step"]
    interrupted_step = int(re.search(r"interrupted at global_step=(\d+)", output).group(1))
    assert saved_args.env_id == "simple_spread_v3" and saved_step == interrupted_step >= 10000
    assert len(learner.actors) == 3


def test_non_finite_loss_stops_the_run_naming_loss_and_step(tmp_path):
    """An absurd critic learning rate blows the losses up: the run stops with one line."""
    result = run_script(tmp_path, "--env-id", "simple_spread_v3", *TINY, "--q-lr", "1e30")
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"error: losses/\w+ is (nan|inf|-inf) at global_step=\d+; .*", message), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------
# evaluation never touches training; what the loop stores is what happened
# ---------------------------------------------------------------------------------------------
def test_evaluation_has_no_side_effect_on_training(spread_run, tmp_path):
    """The same run with an evaluation every 100 env steps logs exactly the training numbers of the run that
    evaluates only at the end."""
    _, quiet_path, _ = spread_run
    result = run_script(
        tmp_path, "--env-id", "simple_spread_v3", "--seed", "1", "--save-model", *TINY, "--eval-interval", "100"
    )
    assert_ok(result)
    quiet, evaluating = read_scalars(quiet_path), read_scalars(run_dir(tmp_path))
    assert [s for s, _ in evaluating["eval/episodic_return"]] == list(range(100, 601, 100))
    for tag in LOSS_TAGS + ["charts/episodic_return"]:
        assert evaluating[tag] == quiet[tag], tag


def test_evaluate_gives_each_env_its_share_of_episodes():
    """Env 0's episodes last 5 steps and env 1's 25: 4 episodes are 2 of each (the first 4 to end would all be env
    0's), and each env's are the ones it runs alone from the same seed."""
    import mpe2.simple_spread_v3

    envs = hc.make_env(hc.Args(env_id="simple_spread_v3"), 2)
    envs.envs[0] = mpe2.simple_spread_v3.parallel_env(continuous_actions=True, max_cycles=5)
    torch.manual_seed(0)
    learner = hc.build_learner(envs, hc.Args(env_id="simple_spread_v3", hidden_dim=32), torch.device("cpu"))
    returns = hc.evaluate(learner, envs, 4, seed=3, device="cpu")
    alone = []
    for e, seed in enumerate((3, 4)):
        single = hc.make_env(hc.Args(env_id="simple_spread_v3"), 1)
        single.envs[0] = envs.envs[e]
        alone += hc.evaluate(learner, single, 2, seed=seed, device="cpu")
    assert returns == pytest.approx(alone, rel=1e-6)
    assert list(episode_shares(7, 3)) == [3, 2, 2] and list(episode_shares(2, 3)) == [1, 1, 0]


@pytest.mark.parametrize("env_id, steps", [("simple_spread_v3", 60), ("Hopper-3x1", 400)])
def test_what_the_loop_stores_is_what_happened(env_id, steps):
    """Drive the loop's storing code (transition_to_store, then the replay buffer's add) on real envs beside twin envs
    stepped by hand with the same seeds and actions: a time limit (MPE, 25 steps) is stored as done with the time-out
    flag, a fall (Hopper) as done without it, the stored next observation and state are the episode's true final ones,
    and the env the loop acts in next has reset."""
    import gymnasium as gym
    from stable_baselines3.common.buffers import NStepReplayBuffer

    envs = hc.make_env(hc.Args(env_id=env_id), 2)
    twins = [hc.make_pettingzoo_env(env_id, None) for _ in range(2)]
    n, obs_dim = envs.n_agents, envs.obs_dim
    stored_obs_dim = 0 if envs.full_state_obs else n * obs_dim  # the width of the script's replay_row, checked below

    def twin_obs(twin, observed):  # what the loop's obs for this env must be
        if envs.full_state_obs:
            return hc.full_state_observations(torch.as_tensor(twin.state(), dtype=torch.float32), n).numpy()
        return np.stack([np.pad(observed[a], (0, obs_dim - len(observed[a]))) for a in twin.possible_agents])

    def pack(obs, state):
        return hc.replay_row(obs, state, envs)

    rb = NStepReplayBuffer(
        1000,
        gym.spaces.Box(-np.inf, np.inf, (stored_obs_dim + envs.state_dim,)),
        gym.spaces.Box(-np.inf, np.inf, (n * envs.act_dim,)),
        "cpu",
        n_envs=2,
        handle_timeout_termination=True,
        n_steps=3,
        gamma=0.99,
    )
    obs, state, _ = envs.reset(seed=5)
    for e, twin in enumerate(twins):
        np.testing.assert_allclose(obs[e], twin_obs(twin, twin.reset(seed=5 + e)[0]), rtol=1e-6, atol=1e-6)
    rng, seen = np.random.default_rng(0), {"terminated": 0, "truncated": 0}
    for t in range(steps):
        actions = rng.uniform(envs.action_low, envs.action_high, (2, n, envs.act_dim)).astype(np.float32)
        next_obs, next_state, _, rewards, terminations, truncations, infos = envs.step(actions)
        real_next_obs, real_next_state, dones, timeouts = hc.transition_to_store(
            next_obs, next_state, terminations, truncations, infos
        )
        rb.add(pack(obs, state), pack(real_next_obs, real_next_state), actions.reshape(2, -1), rewards, dones, timeouts)
        for e, twin in enumerate(twins):
            observed, _, terms, truncs, _ = twin.step(
                {a: actions[e, i, : envs.act_dims[i]] for i, a in enumerate(twin.possible_agents)}
            )
            terminated, truncated = any(terms.values()), any(truncs.values()) and not any(terms.values())
            np.testing.assert_allclose(
                rb.next_observations[t, e], pack(twin_obs(twin, observed)[None], twin.state()[None])[0], rtol=1e-6, atol=1e-6
            )
            assert (rb.dones[t, e], rb.timeouts[t, e]) == (terminated or truncated, truncated)
            if terminated or truncated:
                seen["terminated" if terminated else "truncated"] += 1
                observed = twin.reset()[0]
            np.testing.assert_allclose(
                next_obs[e], twin_obs(twin, observed), rtol=1e-6, atol=1e-6
            )  # the loop goes on from the reset
        obs, state = next_obs, next_state
    assert seen["truncated" if env_id.startswith("simple") else "terminated"] >= 2, seen


def test_run_dirs_never_collide(tmp_path):
    names = [make_run_dir("simple_spread_v3__hasac_continuous__1__1700000000") for _ in range(3)]
    assert names == [f"simple_spread_v3__hasac_continuous__1__1700000000{suffix}" for suffix in ("", "_2", "_3")]
    assert all((tmp_path / "runs" / name).is_dir() for name in names)


def test_library_errors_other_than_a_missing_partition_are_not_swallowed(monkeypatch):
    import gymnasium_robotics.envs.multiagent_mujoco.obsk as obsk

    def broken(scenario, agent_conf):
        raise RuntimeError("the library broke")

    monkeypatch.setattr(obsk, "get_parts_and_edges", broken)
    with pytest.raises(RuntimeError, match="the library broke"):
        mamujoco.mamujoco_factorization("Ant", "4x2")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--gamma", "2"], ["--gamma must be in [0, 1], got 2"]),
        (["--total-timesteps", "100"], ["--total-timesteps (100) must exceed --learning-starts (100)"]),
        (["--buffer-size", "16"], ["--buffer-size (16) must be at least --batch-size (32)"]),
        (["--num-envs", "2", "--total-timesteps", "301"], ["multiple of --num-envs 2: 300 or 302"]),
        # Adam's own error came as a traceback after the run dir existed; the checkpoint's path had a missing folder
        (["--policy-lr", "-1"], ["--policy-lr must be a finite number >= 0, got -1.0"]),
        (["--q-lr", "nan"], ["--q-lr must be a finite number >= 0, got nan"]),
        (["--alpha", "inf"], ["--alpha must be positive and finite", "got inf"]),
        (["--exp-name", "sweep/a"], ["--exp-name", "no '/'", "'sweep/a'"]),
    ],
)
def test_impossible_budgets_one_line_error(tmp_path, args, expected):
    result = run_script(tmp_path, *MINI, *args)
    assert_one_line_error(result, expected, tmp_path)
    assert "--tau" not in result.stderr


@pytest.mark.skipif(importlib.util.find_spec("moviepy") is not None, reason="moviepy is installed here")
def test_capture_video_without_moviepy_fails_before_any_work(tmp_path):
    result = run_script(tmp_path, "--env-id", "simple_spread_v3", "--capture-video", *MINI)
    assert_one_line_error(result, ["--capture-video needs moviepy", "pip install moviepy"], tmp_path)


@pytest.mark.skipif(sys.platform != "linux", reason="MuJoCo renders without a display on other systems")
def test_capture_video_without_a_renderer_fails_before_any_work(tmp_path):
    """Without an OpenGL backend (no display, no MUJOCO_GL) MuJoCo cannot render: the run ends at its start with one
    line, not at its first evaluation (by default 200k steps in) with a traceback. moviepy, which the flag also needs,
    is a stand-in module here: the check under test is the renderer's."""
    (tmp_path / "fake" / "moviepy").mkdir(parents=True)
    (tmp_path / "fake" / "moviepy" / "__init__.py").write_text("")
    env = {
        k: v for k, v in SUBPROCESS_ENV.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MUJOCO_GL", "PYOPENGL_PLATFORM")
    }
    command = [sys.executable, str(CONTINUOUS), "--env-id", "Ant-4x2", "--capture-video", *MINI]
    result = subprocess.run(
        command, cwd=tmp_path, env={**env, "PYTHONPATH": str(tmp_path / "fake")}, capture_output=True, text=True
    )
    assert_one_line_error(result, ["rendering failed", "MUJOCO_GL=egl"], tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_track_without_wandb_fails_before_any_work(tmp_path):
    result = run_script(tmp_path, "--env-id", "simple_spread_v3", "--track", *MINI)
    assert_one_line_error(result, ["--track needs wandb", "pip install wandb"], tmp_path)


def test_eval_checkpoint_of_a_non_checkpoint_or_another_scripts_checkpoint(tmp_path):
    (tmp_path / "notes.cleanrl_model").write_text("not a checkpoint")
    result = run_script(tmp_path, "--eval-checkpoint", "notes.cleanrl_model", *MINI)
    assert_one_line_error(result, ["cannot load checkpoint 'notes.cleanrl_model'", "not a checkpoint"], tmp_path)
    torch.save(
        {"script": "hasac_discrete.py", "args": {"env_id": "matrix-game", "target_entropy_scale": 0.5}},
        tmp_path / "d.cleanrl_model",
    )
    result = run_script(tmp_path, "--eval-checkpoint", "d.cleanrl_model", *MINI)
    assert_one_line_error(result, ["not a hasac_continuous.py checkpoint (written by hasac_discrete.py)"], tmp_path)


def test_mpe_clip_actions_is_the_official_mapping():
    """--mpe-clip-actions: the actors act in [-1, 1] (no rescaling, so log-probs and the target entropy -dim(A^i) are the
    official ones), the env receives the action clipped to its [0, 1] Box (a negative output is zero force), warm-up
    stays uniform on the Box, and the flag is refused outside MPE."""
    clipped, plain = (
        hc.make_env(hc.Args(env_id="simple_spread_v3", mpe_clip_actions=True), 1),
        hc.make_env(hc.Args(env_id="simple_spread_v3"), 1),
    )
    np.testing.assert_array_equal(clipped.box_low, plain.action_low)  # the warm-up's bounds: the env's Box
    assert (clipped.action_low == -1).all() and (clipped.action_high == 1).all()
    learner = hc.build_learner(clipped, hc.Args(env_id="simple_spread_v3", hidden_dim=16), torch.device("cpu"))
    assert all((actor.action_scale == 1).all() and (actor.action_bias == 0).all() for actor in learner.actors)
    assert learner.target_entropies == [-5.0] * 3
    actions = np.random.default_rng(0).uniform(-1, 1, (1, 3, clipped.act_dim)).astype(np.float32)
    received, step = [], clipped.envs[0].step
    clipped.envs[0].step = lambda agent_actions: received.append(np.stack(list(agent_actions.values()))) or step(agent_actions)
    clipped.reset(seed=2), plain.reset(seed=2)
    for _ in range(3):
        obs, *_ = clipped.step(actions)
        expected, *_ = plain.step(np.clip(actions, 0, 1))
        np.testing.assert_array_equal(obs, expected)
        np.testing.assert_array_equal(received[-1], np.clip(actions[0], 0, 1))  # clipped here, not by a library warning
    with pytest.raises(ValueError, match="MPE only"):
        hc.make_env(hc.Args(env_id="Ant-4x2", mpe_clip_actions=True), 1)
