"""Tests for hasac_discrete.py: smoke runs on the matrix game and real discrete MPE envs, the
escape from (A, A) to (C, C) on the matrix game, parity of the shared pieces with
hasac_continuous.py, straight-through Gumbel-Softmax against an independent float64
computation with the same noise, action masks, target entropies, checkpoints and bad input."""

import copy
import difflib
import importlib
import inspect
import math
import re
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    EXPOSED_NAMES,
    MINI,
    ROOT,
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

from hasac_utils.runs import parse_args

DISCRETE = ROOT / "hasac_discrete.py"
hd = importlib.import_module("hasac_discrete")
hc = importlib.import_module("hasac_continuous")

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
MATRIX_PROBABILITY_TAGS = ["charts/p_AA", "charts/p_BB", "charts/p_CC"]


# ---------------------------------------------------------------------------------------------
# 1. smoke runs
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def matrix_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("matrix")
    result = run_script(cwd, "--env-id", "matrix-game", "--save-model", *TINY, script=DISCRETE)
    assert_ok(result)
    return cwd, run_dir(cwd), result


def test_smoke_matrix_game(matrix_run):
    _, path, result = matrix_run
    scalars = read_scalars(path)
    for tag in (
        LOSS_TAGS + MATRIX_PROBABILITY_TAGS + ["losses/alpha/agent_1", "charts/episodic_return", "eval/episodic_return"]
    ):
        assert_finite_series(scalars, tag)
    assert "losses/alpha/agent_2" not in scalars
    assert [s for s, _ in scalars["losses/qf1_loss"]] == TINY_UPDATE_STEPS
    assert [s for s, _ in scalars["charts/p_CC"]] == TINY_UPDATE_STEPS  # once per training phase
    for step in TINY_UPDATE_STEPS:  # diagonal of a product of two distributions
        diagonal = [dict(scalars[tag])[step] for tag in MATRIX_PROBABILITY_TAGS]
        assert all(0 <= p <= 1 for p in diagonal) and sum(diagonal) <= 1 + 1e-6
    assert all(v == 1 for _, v in scalars["charts/episodic_length"])  # one-step episodes
    assert {v for _, v in scalars["charts/episodic_return"]} <= {5, 10, 20, -20, -7.5, -5, 0, -2.5, 15, 12.5, 7.5}
    assert scalars["eval/episodic_return"][-1][1] in (5, 10, 20, -20)  # greedy actions: one joint action
    assert "charts/score_rate" not in scalars
    for step in TINY_UPDATE_STEPS:  # each agent's own policy, whose product's diagonal is the joint p_XX
        policies = np.array([[dict(scalars[f"charts/pi_{a}/agent_{i}"])[step] for a in "ABC"] for i in range(2)])
        np.testing.assert_allclose(policies.sum(-1), 1, atol=1e-5)
        np.testing.assert_allclose(
            np.diag(np.outer(*policies)), [dict(scalars[t])[step] for t in MATRIX_PROBABILITY_TAGS], atol=1e-6
        )
    assert re.search(r"agent 1 policy: pi_A=0\.\d{4}, pi_B=0\.\d{4}, pi_C=0\.\d{4}", result.stdout)


def test_smoke_expected_actor_loss(tmp_path):
    result = run_script(tmp_path, "--env-id", "simple_speaker_listener_v4", "--actor-loss", "expected", *TINY, script=DISCRETE)
    assert_ok(result)
    scalars = read_scalars(run_dir(tmp_path))
    for tag in LOSS_TAGS:
        assert_finite_series(scalars, tag)
    assert [s for s, _ in scalars["losses/actor_loss"]] == TINY_UPDATE_STEPS


def test_smoke_simple_spread(tmp_path):
    result = run_script(tmp_path, "--env-id", "simple_spread_v3", *TINY, script=DISCRETE)
    assert_ok(result)
    scalars = read_scalars(run_dir(tmp_path))
    for tag in LOSS_TAGS + ["charts/episodic_return", "charts/episodic_length", "eval/episodic_return"]:
        assert_finite_series(scalars, tag)
    assert [s for s, _ in scalars["losses/qf1_loss"]] == TINY_UPDATE_STEPS
    assert all(v == 25 for _, v in scalars["charts/episodic_length"])
    first, last = scalars["losses/alpha"][0][1], scalars["losses/alpha"][-1][1]
    assert first == pytest.approx(0.2, rel=1e-3) and last != first  # autotune moves the temperatures
    assert not any(tag.startswith("charts/p_") for tag in scalars)
    assert re.search(r"global_step=600, eval/episodic_return=-?\d+\.\d+", result.stdout)


@pytest.mark.parametrize("env_id", ["simple_reference_v3", "simple_speaker_listener_v4"])
def test_other_mpe_tasks_train(tmp_path, env_id):
    result = run_script(tmp_path, "--env-id", env_id, *MINI, script=DISCRETE)
    assert_ok(result)
    scalars = read_scalars(run_dir(tmp_path))
    for tag in ("losses/qf1_loss", "losses/actor_loss", "eval/episodic_return"):
        assert_finite_series(scalars, tag)


# ---------------------------------------------------------------------------------------------
# 2. the matrix game: from the biased start to (C, C)
# ---------------------------------------------------------------------------------------------
def _matrix_learner(alpha, seed, hidden_dim=64, lr=3e-3):
    envs = hd.make_env(hd.Args(env_id="matrix-game"), 1)
    torch.manual_seed(seed)
    args = hd.Args(env_id="matrix-game", hidden_dim=hidden_dim, autotune=False, alpha=alpha, policy_lr=lr, q_lr=lr)
    return hd.build_learner(envs, args, torch.device("cpu"))


def _uniform_matrix_batch(batch_size, generator):
    """One-step transitions of uniformly random joint actions with their payoffs."""
    choice = torch.randint(0, 3, (batch_size, 2), generator=generator)
    ones = torch.ones(batch_size, 2, 1)
    return hd.Batch(
        obs=ones,
        state=torch.ones(batch_size, 1),
        actions=F.one_hot(choice, 3).float(),
        rewards=torch.as_tensor(hd.MATRIX_PAYOFF)[choice[:, 0], choice[:, 1]].unsqueeze(-1),
        next_obs=ones,
        next_state=torch.ones(batch_size, 1),
        terminations=torch.ones(batch_size, 1),
        discounts=torch.full((batch_size, 1), 0.99),
    )


def test_biased_start_is_the_papers_policy():
    learner = _matrix_learner(1.0, 0)
    np.testing.assert_allclose(hd.matrix_policies(learner), [[0.6, 0.2, 0.2], [0.6, 0.2, 0.2]], rtol=1e-5)
    greedy = hd.act(learner, torch.ones(4, 2, 1), deterministic=True)
    assert (greedy.argmax(-1) == 0).all()  # (A, A)
    args = hd.Args(env_id="matrix-game", hidden_dim=64, matrix_init_bias=False)
    unbiased = hd.build_learner(hd.make_env(hd.Args(env_id="matrix-game"), 1), args, torch.device("cpu"))
    np.testing.assert_allclose(hd.matrix_policies(unbiased), np.full((2, 3), 1 / 3), atol=0.01)  # gain 0.01: near uniform


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hasac_with_temperature_one_escapes_to_cc(seed):
    """Figure 1 / 3a: temperature 1, from (0.6, 0.2, 0.2) for both agents, 300 updates on
    uniformly explored one-step transitions: the greedy joint action becomes (C, C)."""
    learner = _matrix_learner(1.0, seed)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    for _ in range(300):
        metrics = hd.hasac_update(learner, _uniform_matrix_batch(128, generator), rng.permutation(2), 0.005)
    assert torch.isfinite(metrics["qf1_loss"]) and torch.isfinite(metrics["actor_loss"])
    joint = np.outer(*hd.matrix_policies(learner))
    greedy = hd.act(learner, torch.ones(1, 2, 1), deterministic=True)[0].argmax(-1)
    assert greedy.tolist() == [2, 2], joint
    assert joint[2, 2] > 0.3 and joint[0, 0] < 0.1, joint


# ---------------------------------------------------------------------------------------------
# 3. parity with hasac_continuous.py: the shared pieces
# ---------------------------------------------------------------------------------------------
def test_update_is_the_continuous_one_plus_the_expected_loss():
    """hasac_update is the continuous script's, line for line, with only lines added, and the added lines are the
    --actor-loss expected branch (so the continuous script's float64 tests check the gumbel path's numbers)."""
    code = lambda f: [line.split("  # ")[0].strip() for line in inspect.getsource(f).splitlines()]  # noqa: E731 (shapes may differ)
    discrete, continuous = code(hd.hasac_update), code(hc.hasac_update)
    added = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, continuous, discrete, autojunk=False).get_opcodes():
        assert tag in ("equal", "insert"), (tag, continuous[i1:i2], discrete[j1:j2])
        added += discrete[j1:j2] if tag == "insert" else []
    branch = "\n".join(added)
    assert 'if learner.actor_loss == "expected":' in branch and "expected_actor_loss(" in branch and len(added) <= 12, added


def test_same_module_level_names():
    for name in EXPOSED_NAMES:
        assert hasattr(hd, name) and hasattr(hc, name), name
    common = set(hc.Args.__dataclass_fields__) & set(hd.Args.__dataclass_fields__)
    assert set(hc.Learner._fields) == set(hd.Learner._fields) - {"actor_loss"}  # the discrete family's one addition
    assert len(common) >= 28


def test_shared_actor_takes_one_step_per_agent_against_the_earlier_agents_new_actions(monkeypatch):
    """With --share-param the one actor steps once per agent, in the permuted order, on that agent's observations; the
    agents after the first draw from the actor as the earlier steps left it (the update code is the continuous script's,
    whose float64 test checks the numbers)."""
    envs = hd.make_env(hd.Args(env_id="simple_spread_v3"), 1)
    envs.close()
    torch.manual_seed(0)
    learner = hd.build_learner(envs, hd.Args(env_id="simple_spread_v3", share_param=True, hidden_dim=16), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    n, batch_size = envs.n_agents, 8
    batch = hd.Batch(
        obs=torch.randn(batch_size, n, envs.obs_dim, generator=g),
        state=torch.randn(batch_size, envs.state_dim, generator=g),
        actions=F.one_hot(torch.randint(0, envs.act_dim, (batch_size, n), generator=g), envs.act_dim).float(),
        rewards=torch.randn(batch_size, 1, generator=g),
        next_obs=torch.randn(batch_size, n, envs.obs_dim, generator=g),
        next_state=torch.randn(batch_size, envs.state_dim, generator=g),
        terminations=torch.zeros(batch_size, 1),
        discounts=torch.full((batch_size, 1), 0.9),
    )
    actor, steps, seen = learner.actors[0], [], []
    forward = type(actor).forward

    def recording_forward(self, obs, *rest, **kwargs):
        seen.append((obs.detach().clone(), [p.detach().clone() for p in self.parameters()]))
        return forward(self, obs, *rest, **kwargs)

    monkeypatch.setattr(type(actor), "forward", recording_forward)
    optimizer_step = learner.actor_optimizers[0].step
    learner.actor_optimizers[0].step = lambda: (
        steps.append([p.detach().clone() for p in actor.parameters()]),
        optimizer_step(),
    )
    order = [2, 0, 1]
    hd.hasac_update(learner, batch, order, 0.005)
    assert len(steps) == n  # one step per agent, not one for all
    # each agent's step is taken with that agent's observations, drawn from the actor as it is after the earlier steps
    for k, i in enumerate(order):
        draws = [params for obs, params in seen if obs.shape[1] == 1 and torch.equal(obs[:, 0], batch.obs[:, i])]
        assert any(all(torch.equal(p, q) for p, q in zip(params, steps[k])) for params in draws), (k, i)
    assert learner.alpha_optimizers is not None and all(la.grad is not None for la in learner.log_alphas)


# ---------------------------------------------------------------------------------------------
# 4. straight-through Gumbel-Softmax and action masks
# ---------------------------------------------------------------------------------------------
def logits64(actor, obs):
    """The actor's logits in float64 through its own nn modules (nn.LayerNorm, not the script's)."""
    a = copy.deepcopy(actor).double()
    h = a.norm1(F.relu(a.fc1(a.input_norm(obs.double()))))
    return a.fc_logits(a.norm2(F.relu(a.fc2(h)))), a


def test_gumbel_softmax_matches_independent_computation_with_the_same_noise():
    torch.manual_seed(0)
    actor = hd.Actor(6, 5, 32)
    with torch.no_grad():  # logits of order 1, so the soft sample is far from one-hot
        actor.fc_logits.weight.mul_(100)
    obs, weights = torch.randn(256, 6), torch.randn(5)
    torch.manual_seed(42)
    action, log_prob = actor(obs)
    (action * weights).sum().backward()
    torch.manual_seed(42)
    gumbel = -torch.empty(256, 5).exponential_().log().double()  # the draw the script makes

    logits, ref_actor = logits64(actor, obs)
    soft = F.softmax(logits + gumbel, -1)
    index = soft.argmax(-1)
    assert torch.equal(action.argmax(-1), index)
    assert torch.equal(action.detach(), F.one_hot(index, 5).float())  # one-hot forward
    torch.testing.assert_close(
        log_prob.double(), F.log_softmax(logits, -1).gather(-1, index[:, None]).squeeze(-1).detach(), rtol=1e-5, atol=1e-5
    )
    (soft * weights.double()).sum().backward()  # straight-through: the soft sample's gradient
    for p, ref in zip(actor.parameters(), ref_actor.parameters()):
        torch.testing.assert_close(p.grad.double(), ref.grad, rtol=1e-4, atol=1e-6)
    # the forward samples are the categorical: empirical frequencies match softmax(logits)
    torch.manual_seed(3)
    obs_one = obs[:1].expand(20000, -1)
    counts = torch.bincount(actor(obs_one)[0].argmax(-1), minlength=5).double() / 20000
    torch.testing.assert_close(counts, F.softmax(logits[0], -1).detach(), atol=0.015, rtol=0)


def test_stacked_padded_actors_match_each_agents_own_forward():
    """speaker-listener: obs dims 3 and 11, action counts 3 and 5. The stacked call's input
    LayerNorm must ignore the observation padding, and the speaker's padded actions get probability 0."""
    envs = hd.make_env(hd.Args(env_id="simple_speaker_listener_v4"), 1)
    envs.close()
    torch.manual_seed(0)
    learner = hd.build_learner(envs, hd.Args(env_id="simple_speaker_listener_v4", hidden_dim=32), torch.device("cpu"))
    obs = torch.zeros(2, 64, envs.obs_dim)  # [N, B, obs_dim], zero-padded like the env's
    for i, dim in enumerate(envs.obs_dims):
        obs[i, :, :dim] = torch.randn(64, dim) * 3 + 1
    weights = hd.stack_actor_weights(learner.actors, learner.policy_of_agent, envs.obs_dim, envs.act_dim)
    stacked = F.softmax(hd.masked_logits(obs, weights, learner.action_mask), -1)
    for i, actor in enumerate(learner.actors):
        own, _ = logits64(actor, obs[i, :, : envs.obs_dims[i]])
        torch.testing.assert_close(
            stacked[i, :, : envs.act_dims[i]].double(), F.softmax(own, -1).detach(), rtol=1e-5, atol=1e-6
        )
    assert torch.equal(stacked[0, :, 3:], torch.zeros(64, 2))
    torch.manual_seed(1)
    actions = hd.act(learner, obs.transpose(0, 1).repeat(20, 1, 1))  # [E, N, act_dim]
    assert actions[:, 0, 3:].sum() == 0 and torch.equal(actions.sum(-1), torch.ones(actions.shape[:2]))


def test_masked_actions_get_zero_probability_and_zero_gradient():
    torch.manual_seed(0)
    actor = hd.Actor(4, 5, 16)
    with torch.no_grad():
        actor.fc_logits.bias.copy_(torch.tensor([0.0, 0.0, 50.0, 0.0, 50.0]))  # masked actions would dominate
    obs = torch.randn(512, 4)
    avail = torch.rand(512, 5) < 0.5
    avail[:, 0] = True  # at least one action available in every state
    avail[:, 2] = avail[:, 4] = False
    action, log_prob = hd.sample_actions(obs, actor.layers(), avail)
    (log_prob.sum() + (action * torch.randn(5)).sum()).backward()
    assert (action[~avail] == 0).all() and (action.sum(-1) == 1).all()
    assert torch.isfinite(log_prob).all()
    assert actor.fc_logits.bias.grad[[2, 4]].abs().max() == 0  # the masked logits get no gradient
    assert actor.fc_logits.weight.grad[[2, 4]].abs().max() == 0
    assert actor.fc_logits.bias.grad[[0, 1, 3]].abs().max() > 0
    probabilities = F.softmax(hd.masked_logits(obs, actor.layers(), avail), -1)
    assert (probabilities[~avail] == 0).all()
    greedy, _ = hd.sample_actions(obs, actor.layers(), avail, deterministic=True)
    assert avail[greedy.bool()].all()  # argmax among the available actions only
    # the learner's act() applies the env's per-state masks on top of the agents' own
    learner = hd.build_learner(
        hd.make_env(hd.Args(env_id="matrix-game"), 1), hd.Args(env_id="matrix-game", hidden_dim=16), torch.device("cpu")
    )
    env_avail = torch.tensor([[True, False, True], [False, True, False]]).expand(300, -1, -1)
    for deterministic in (False, True):
        actions = hd.act(learner, torch.ones(300, 2, 1), deterministic, avail=env_avail)
        assert env_avail[actions.bool()].all()


def test_warm_up_actions_are_uniform_over_the_available_ones():
    np.random.seed(0)
    avail = np.zeros((20000, 2, 5), bool)
    avail[:, 0, [0, 3]] = True
    avail[:, 1, :4] = True
    actions = hd.random_available_actions(avail)
    assert actions.shape == (20000, 2, 5) and (actions.sum(-1) == 1).all() and not actions[~avail].any()
    np.testing.assert_allclose(actions[:, 0].mean(0), [0.5, 0, 0, 0.5, 0], atol=0.015)
    np.testing.assert_allclose(actions[:, 1].mean(0), [0.25, 0.25, 0.25, 0.25, 0], atol=0.015)


# ---------------------------------------------------------------------------------------------
# 4b. --actor-loss expected: the exact expectation over the agent's own actions
# ---------------------------------------------------------------------------------------------
def min_q64(qf, state, joint_action):
    """min_j Q_j(s, a) [B] in float64, from the fused critic's raw weights, layer by layer."""
    x = torch.cat([state, joint_action.flatten(1)], -1).double()
    qf = copy.deepcopy(qf)
    twins = []
    for j in range(2):
        h = F.relu(x @ qf.weights[0][j].double().T + qf.biases[0][j].double())
        h = F.relu(h @ qf.weights[1][j].double().T + qf.biases[1][j].double())
        twins.append((h @ qf.weights[2][j].double().T + qf.biases[2][j].double())[:, 0])
    return torch.minimum(*twins)


def test_expected_actor_loss_and_gradient_match_independent_float64():
    """Three agents in slots of 5 actions; the updated agent (1) has 3 actions and the others' actions are fixed draws.
    The loss is sum_a pi(a) (alpha log pi(a) - min_j Q_j(s, a^-i, a)) averaged over the batch, every own action scored by
    the full critic on its own joint action; the second output is E_pi[log pi]."""
    torch.manual_seed(0)
    batch_size, state_dim, slot, alpha = 64, 7, 5, 0.7
    actor, qf = hd.Actor(4, 3, 16), hd.SoftQNetwork(state_dim, 3 * slot, 16)
    with torch.no_grad():
        actor.fc_logits.weight.mul_(100)  # logits of order 1: a policy far from uniform
    obs, state = torch.randn(batch_size, 1, 4), torch.randn(batch_size, state_dim)
    others = F.one_hot(torch.randint(0, slot, (batch_size, 3)), slot).float()
    others[:, 1] = 0
    loss, expected_log_prob = hd.expected_actor_loss(qf, qf.state_features(state), others, slot, actor.log_policy(obs), alpha)
    loss.backward()
    assert all(p.grad is None for p in qf.parameters())  # the critic is not trained by the actor loss

    logits, ref_actor = logits64(actor, obs[:, 0])
    log_policy = F.log_softmax(logits, -1)  # [B, 3]
    q = []
    for a in range(3):  # agent 1 takes its action a in every sample
        joint_action = others.clone()
        joint_action[:, 1, a] = 1
        q.append(min_q64(qf, state, joint_action))
    q = torch.stack(q, -1)  # [B, 3]
    ref_loss = (log_policy.exp() * (alpha * log_policy - q)).sum(-1).mean()
    ref_loss.backward()
    torch.testing.assert_close(loss.double(), ref_loss.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        expected_log_prob[:, 0].double(), (log_policy.exp() * log_policy).sum(-1).detach(), rtol=1e-5, atol=1e-6
    )
    for p, ref in zip(actor.parameters(), ref_actor.parameters()):
        torch.testing.assert_close(p.grad.double(), ref.grad, rtol=1e-4, atol=1e-6)


def test_expected_loss_steps_each_agent_against_the_earlier_agents_updated_actions(monkeypatch):
    """The sequential scheme under --actor-loss expected: the agents after the first see, in the earlier agents' slots,
    the actions those agents' actors drew after their own step; their own slot is empty."""
    envs = hd.make_env(hd.Args(env_id="simple_spread_v3"), 1)
    envs.close()
    torch.manual_seed(0)
    args = hd.Args(env_id="simple_spread_v3", hidden_dim=16, actor_loss="expected")
    learner = hd.build_learner(envs, args, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    n, batch_size, act_dim = envs.n_agents, 8, envs.act_dim
    batch = hd.Batch(
        obs=torch.randn(batch_size, n, envs.obs_dim, generator=g),
        state=torch.randn(batch_size, envs.state_dim, generator=g),
        actions=F.one_hot(torch.randint(0, act_dim, (batch_size, n), generator=g), act_dim).float(),
        rewards=torch.randn(batch_size, 1, generator=g),
        next_obs=torch.randn(batch_size, n, envs.obs_dim, generator=g),
        next_state=torch.randn(batch_size, envs.state_dim, generator=g),
        terminations=torch.zeros(batch_size, 1),
        discounts=torch.full((batch_size, 1), 0.9),
    )
    events = []  # ("draw", agent, actions, stepped) and ("loss", first_column, others_action)
    for i, actor in enumerate(learner.actors):

        def recording_forward(obs, deterministic=False, _i=i, _forward=actor.forward):
            actions, log_probs = _forward(obs, deterministic)
            events.append(("draw", _i, actions.detach().clone()))
            return actions, log_probs

        monkeypatch.setattr(actor, "forward", recording_forward)
    loss = hd.expected_actor_loss

    def recording_loss(qf, state_features, others_action, first_column, *rest):
        events.append(("loss", first_column // act_dim, others_action.clone()))
        return loss(qf, state_features, others_action, first_column, *rest)

    monkeypatch.setattr(hd, "expected_actor_loss", recording_loss)
    order = [2, 0, 1]
    hd.hasac_update(learner, batch, order, 0.005)
    losses = [(k, e) for k, e in enumerate(events) if e[0] == "loss"]
    assert [e[1] for _, e in losses] == order
    for position, (k, (_, i, others_action)) in enumerate(losses):
        assert others_action[:, i].abs().sum() == 0
        for j in range(n):
            if j == i:
                continue
            latest = [e[2] for e in events[:k] if e[0] == "draw" and e[1] == j][-1]  # j's latest draw before i's loss
            assert torch.equal(others_action[:, j], latest[:, 0]), (i, j)
            if j in order[:position]:  # drawn after j's own loss, i.e. from j's updated actor
                j_loss = next(m for m, e in losses if e[1] == j)
                assert any(e[0] == "draw" and e[1] == j for e in events[j_loss:k]), (i, j)
    assert all(la.grad is not None for la in learner.log_alphas)  # the temperatures use the exact entropy


def qre(alpha, iterations=3000):
    """The matrix game's quantal response equilibrium reached from the paper's biased start (Table 3): agents take exact
    soft best responses, pi^i proportional to exp(E_{a^-i}[r(a^i, a^-i)] / alpha), one after the other."""
    policies = [np.array(hd.MATRIX_INIT_POLICY, float) for _ in range(2)]
    payoff = hd.MATRIX_PAYOFF.astype(float)
    for _ in range(iterations):
        for i in range(2):
            q = payoff @ policies[1] if i == 0 else payoff.T @ policies[0]
            z = np.exp((q - q.max()) / alpha)
            policies[i] = z / z.sum()
    return np.array(policies)


def test_qre_of_the_matrix_game_is_table_3():
    np.testing.assert_allclose(qre(15)[0], [0.1278, 0.1354, 0.7368], atol=1e-4)
    np.testing.assert_allclose(qre(20)[1], [0.2514, 0.2790, 0.4697], atol=1e-4)


@pytest.mark.parametrize("alpha, seed", [(10.0, 0), (10.0, 1), (20.0, 0), (20.0, 1)])
def test_expected_loss_reaches_the_quantal_response_equilibrium(alpha, seed):
    """Appendix B, Table 3: with a fixed temperature, exact HASAC steps converge to the QRE; from uniformly explored
    one-step transitions the expected loss lands there (the straight-through loss lands 0.06 to 0.5 away)."""
    envs = hd.make_env(hd.Args(env_id="matrix-game"), 1)
    torch.manual_seed(seed)
    args = hd.Args(
        env_id="matrix-game", hidden_dim=64, autotune=False, alpha=alpha, policy_lr=3e-3, q_lr=3e-3, actor_loss="expected"
    )
    learner = hd.build_learner(envs, args, torch.device("cpu"))
    generator, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    for _ in range(1500):
        hd.hasac_update(learner, _uniform_matrix_batch(128, generator), rng.permutation(2), 0.005)
    gap = np.abs(hd.matrix_policies(learner) - qre(alpha)).max()
    assert gap < 0.05, (hd.matrix_policies(learner), qre(alpha))


# ---------------------------------------------------------------------------------------------
# 5. temperature: a positive target entropy per agent
# ---------------------------------------------------------------------------------------------
def test_target_entropy_is_a_fraction_of_each_agents_maximum_entropy():
    envs = hd.make_env(hd.Args(env_id="simple_speaker_listener_v4"), 1)
    envs.close()
    learner = hd.build_learner(
        envs, hd.Args(env_id="simple_speaker_listener_v4", hidden_dim=16, target_entropy_scale=0.3), torch.device("cpu")
    )
    assert learner.target_entropies == pytest.approx([0.3 * math.log(3), 0.3 * math.log(5)])
    assert all(t > 0 for t in learner.target_entropies)  # not the official implementation's 0


def test_temperature_rises_below_the_target_entropy_and_falls_above_it():
    """One Adam step on each log alpha^i moves it by alpha_lr: agent 0 almost deterministic
    (entropy ~0 < 0.5 log 3) raises its temperature; agent 1 uniform (log 3 > 0.5 log 3) lowers it."""
    envs = hd.make_env(hd.Args(env_id="matrix-game"), 1)
    torch.manual_seed(0)
    learner = hd.build_learner(
        envs, hd.Args(env_id="matrix-game", hidden_dim=16, alpha_lr=1e-3, matrix_init_bias=False), torch.device("cpu")
    )
    learner.actors[0].init_policy((0.998, 0.001, 0.001))
    learner.actors[1].init_policy((1 / 3, 1 / 3, 1 / 3))
    before = [la.item() for la in learner.log_alphas]
    metrics = hd.hasac_update(learner, _uniform_matrix_batch(256, torch.Generator().manual_seed(0)), [0, 1], 0.005)
    after = [la.item() for la in learner.log_alphas]
    assert after[0] - before[0] == pytest.approx(1e-3, rel=1e-3)
    assert after[1] - before[1] == pytest.approx(-1e-3, rel=1e-3)
    assert torch.isfinite(metrics["alpha_loss"])


# ---------------------------------------------------------------------------------------------
# 6. checkpoints and bad input
# ---------------------------------------------------------------------------------------------
def test_save_model_then_eval_checkpoint(matrix_run):
    cwd, path, _ = matrix_run
    checkpoint = path / "hasac_discrete.cleanrl_model"
    assert torch.load(checkpoint, weights_only=False)["global_step"] == 600
    result = run_script(cwd, "--eval-checkpoint", str(checkpoint.relative_to(cwd)), "--eval-episodes", "3", script=DISCRETE)
    assert_ok(result)
    match = re.search(r"matrix-game: eval/episodic_return (-?\d+\.\d+) \+- (\d+\.\d+) over 3 episodes", result.stdout)
    assert match and float(match.group(1)) in (5, 10, 20, -20), result.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--env-id", "Ant-4x2"],
            ["unknown env id", "matrix-game", "simple_spread_v3", "simple_speaker_listener_v4", "academy_corner"],
        ),
        (["--env-id", "matrix-game", "--target-entropy-scale", "1.5"], ["--target-entropy-scale", "[0, 1]"]),
        (
            ["--env-id", "simple_speaker_listener_v4", "--share-param"],
            ["--share-param", "obs dims [3, 11]", "action dims [3, 5]"],
        ),
    ],
)
def test_bad_input_one_line_error(tmp_path, args, expected):
    result = run_script(tmp_path, *args, *MINI, script=DISCRETE)
    assert_one_line_error(result, expected, tmp_path)


@pytest.mark.parametrize(
    "flag, value, choices",
    [("--matmul-precision", "bf16", ["highest", "high", "medium"]), ("--actor-loss", "exact", ["gumbel", "expected"])],
)
def test_bad_choice_names_the_choices(tmp_path, flag, value, choices):
    result = run_script(tmp_path, "--env-id", "matrix-game", flag, value, *MINI, script=DISCRETE)
    assert_choice_error(result, flag, value, choices, tmp_path)


def test_eval_checkpoint_of_a_non_checkpoint_or_another_scripts_checkpoint(tmp_path):
    (tmp_path / "notes.cleanrl_model").write_bytes(b"\x00\x01 not a checkpoint")
    result = run_script(tmp_path, "--eval-checkpoint", "notes.cleanrl_model", *MINI, script=DISCRETE)
    assert_one_line_error(result, ["cannot load checkpoint 'notes.cleanrl_model'", "not a checkpoint"], tmp_path)
    torch.save({"script": "hasac_continuous.py", "args": {"env_id": "Ant-4x2"}}, tmp_path / "c.cleanrl_model")
    result = run_script(tmp_path, "--eval-checkpoint", "c.cleanrl_model", *MINI, script=DISCRETE)
    assert_one_line_error(result, ["not a hasac_discrete.py checkpoint (written by hasac_continuous.py)"], tmp_path)


# ---------------------------------------------------------------------------------------------
# 7. per-env defaults, evaluation never touches training, what the loop stores is what happened
# ---------------------------------------------------------------------------------------------
def test_matrix_game_defaults_yield_to_flags_in_any_spelling_and_show_in_help(tmp_path, monkeypatch):
    def parse(*argv):  # as the script's __main__ parses its command line
        monkeypatch.setattr(sys, "argv", [str(DISCRETE), *argv])
        return parse_args(hd.Args, str(DISCRETE), env_defaults={hd.MATRIX_GAME: hd.MATRIX_GAME_DEFAULTS})

    args = parse("--env-id", "matrix-game", "--total_timesteps", "200", "--num-envs", "4")
    assert (args.total_timesteps, args.num_envs, args.learning_starts) == (200, 4, hd.MATRIX_GAME_DEFAULTS["learning_starts"])
    assert parse("--env_id=matrix-game").total_timesteps == hd.MATRIX_GAME_DEFAULTS["total_timesteps"]
    assert parse("--env-id", "simple_spread_v3").total_timesteps == hd.Args().total_timesteps
    result = run_script(tmp_path, "--env-id", "matrix-game", "--help", script=DISCRETE)
    assert_ok(result)
    help_text = re.sub(r"[\s│]+", " ", result.stdout)
    assert f"summed over the parallel envs (default: {hd.MATRIX_GAME_DEFAULTS['total_timesteps']})" in help_text, help_text


def test_evaluation_has_no_side_effect_on_training(tmp_path):
    """A discrete MPE run evaluating every 100 env steps logs exactly the training numbers of the same run evaluating
    only at the end."""
    logs = []
    for cwd, interval in ((tmp_path / "quiet", "100000"), (tmp_path / "evaluating", "100")):
        cwd.mkdir()
        assert_ok(run_script(cwd, "--env-id", "simple_spread_v3", *TINY, "--eval-interval", interval, script=DISCRETE))
        logs.append(read_scalars(run_dir(cwd)))
    quiet, evaluating = logs
    assert [s for s, _ in evaluating["eval/episodic_return"]] == list(range(100, 601, 100))
    for tag in LOSS_TAGS + ["charts/episodic_return"]:
        assert evaluating[tag] == quiet[tag], tag


def test_evaluate_gives_each_env_its_share_of_episodes():
    """Env 0's episodes last 5 steps and env 1's 25: 4 episodes are 2 of each, each the ones it runs alone."""
    import mpe2.simple_spread_v3

    envs = hd.make_env(hd.Args(env_id="simple_spread_v3"), 2)
    envs.envs[0] = mpe2.simple_spread_v3.parallel_env(continuous_actions=False, max_cycles=5)
    torch.manual_seed(0)
    learner = hd.build_learner(envs, hd.Args(env_id="simple_spread_v3", hidden_dim=32), torch.device("cpu"))
    returns = hd.evaluate(learner, envs, 4, seed=3, device="cpu")
    alone = []
    for e, seed in enumerate((3, 4)):
        single = hd.make_env(hd.Args(env_id="simple_spread_v3"), 1)
        single.envs[0] = envs.envs[e]
        alone += hd.evaluate(learner, single, 2, seed=seed, device="cpu")
    assert returns == pytest.approx(alone, rel=1e-6)


@pytest.mark.parametrize("env_id, steps", [("simple_spread_v3", 60), ("matrix-game", 3)])
def test_what_the_loop_stores_is_what_happened(env_id, steps):
    """Drive the loop's storing code (transition_to_store and replay_row, then the replay buffer's add) on real envs: an
    MPE time limit (25 steps) is stored as done with the time-out flag and the true final observation and state, beside
    twin envs stepped by hand; every matrix-game step is a real ending (done, no time-out)."""
    import gymnasium as gym
    from stable_baselines3.common.buffers import NStepReplayBuffer

    envs = hd.make_env(hd.Args(env_id=env_id), 2)
    n, obs_dim = envs.n_agents, envs.obs_dim
    twins = [hd.make_pettingzoo_env(env_id, None) for _ in range(2)] if env_id != "matrix-game" else None

    def twin_obs(twin, observed):
        return np.stack([np.pad(observed[a], (0, obs_dim - len(observed[a]))) for a in twin.possible_agents])

    def pack(obs, state):  # the row replay_row must give: every agent's observation, then the state
        return np.concatenate([obs.reshape(len(obs), -1), state], 1)

    rb = NStepReplayBuffer(
        1000,
        gym.spaces.Box(-np.inf, np.inf, (n * obs_dim + envs.state_dim,)),
        gym.spaces.Box(0.0, 1.0, (n * envs.act_dim,)),
        "cpu",
        n_envs=2,
        handle_timeout_termination=True,
        n_steps=3,
        gamma=0.99,
    )
    obs, state, avail = envs.reset(seed=5)
    if twins:
        for e, twin in enumerate(twins):
            np.testing.assert_allclose(obs[e], twin_obs(twin, twin.reset(seed=5 + e)[0]), rtol=1e-6)
    np.random.seed(0)
    seen = {"terminated": 0, "truncated": 0}
    for t in range(steps):
        actions = hd.random_available_actions(avail)
        next_obs, next_state, avail, rewards, terminations, truncations, infos = envs.step(actions)
        real_next_obs, real_next_state, dones, timeouts = hd.transition_to_store(
            next_obs, next_state, terminations, truncations, infos
        )
        real_next_rows = hd.replay_row(real_next_obs, real_next_state)
        rb.add(hd.replay_row(obs, state), real_next_rows, actions.reshape(2, -1), rewards, dones, timeouts)
        for e in range(2):
            if twins is None:  # one state, one step: the payoff ends the episode
                terminated, truncated = True, False
                np.testing.assert_array_equal(rb.next_observations[t, e], np.ones(n * obs_dim + envs.state_dim))
            else:
                twin = twins[e]
                observed, _, terms, truncs, _ = twin.step(
                    {a: int(actions[e, i].argmax()) for i, a in enumerate(twin.possible_agents)}
                )
                terminated, truncated = any(terms.values()), any(truncs.values()) and not any(terms.values())
                expected = pack(twin_obs(twin, observed)[None], np.asarray(twin.state(), np.float32)[None])[0]
                np.testing.assert_allclose(rb.next_observations[t, e], expected, rtol=1e-6, atol=1e-6)
                if terminated or truncated:
                    observed = twin.reset()[0]
                np.testing.assert_allclose(next_obs[e], twin_obs(twin, observed), rtol=1e-6, atol=1e-6)
            assert (rb.dones[t, e], rb.timeouts[t, e]) == (terminated or truncated, truncated)
            seen["terminated" if terminated else "truncated"] += terminated or truncated
        obs, state = next_obs, next_state
    assert seen["terminated" if env_id == "matrix-game" else "truncated"] >= 2, seen


def test_sample_batch_unpacks_what_replay_row_packed():
    """speaker-listener (obs dims 3 and 11, padded to 11): every sampled transition is one the loop stored, each agent's
    (padded) observation, the state, the one-hot actions and the next ones back in their own places."""
    import gymnasium as gym
    from stable_baselines3.common.buffers import NStepReplayBuffer

    envs = hd.make_env(hd.Args(env_id="simple_speaker_listener_v4"), 2)
    n, row_dim = envs.n_agents, envs.n_agents * envs.obs_dim + envs.state_dim
    rb = NStepReplayBuffer(
        100,
        gym.spaces.Box(-np.inf, np.inf, (row_dim,)),
        gym.spaces.Box(0.0, 1.0, (n * envs.act_dim,)),
        "cpu",
        n_envs=2,
        handle_timeout_termination=True,
        n_steps=1,
        gamma=0.99,
    )
    obs, state, avail = envs.reset(seed=0)
    np.random.seed(0)
    actions = hd.random_available_actions(avail)
    next_obs, next_state, _, rewards, terminations, truncations, infos = envs.step(actions)
    _, _, dones, timeouts = hd.transition_to_store(next_obs, next_state, terminations, truncations, infos)
    rb.add(hd.replay_row(obs, state), hd.replay_row(next_obs, next_state), actions.reshape(2, -1), rewards, dones, timeouts)
    batch = hd.sample_batch(rb, 32, envs)
    assert batch.obs.shape == batch.next_obs.shape == (32, n, envs.obs_dim) and batch.actions.shape == (32, n, envs.act_dim)
    stored = [(obs[e], state[e], actions[e], next_obs[e], next_state[e]) for e in range(2)]
    for b in range(32):
        sampled = (batch.obs[b], batch.state[b], batch.actions[b], batch.next_obs[b], batch.next_state[b])
        assert any(all(np.array_equal(x.numpy(), y) for x, y in zip(sampled, env_step)) for env_step in stored), b
    envs.close()
