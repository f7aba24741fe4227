"""Tests for hasac_smac.py: a smoke run on SMAX's 3m that reaches updates and logs the win rate;
the SMAX adapter's shapes, masks, terminal observations and win / loss / time-limit detection
against SMAX's own state; parity with hasac_discrete.py (the shared machinery is textually the
same, and with every action available and every agent alive the two scripts compute the same
update bit for bit); dead-agent masks, the FP critic state, value normalisation; bad input."""

import copy
import importlib
import importlib.util
import inspect
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    EXPOSED_NAMES,
    ROOT,
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

from hasac_utils.checkpoints import load_learner
from hasac_utils.evaluation import episode_shares
from hasac_utils.runs import make_run_dir

SMAC = ROOT / "hasac_smac.py"
hs = importlib.import_module("hasac_smac")
hd = importlib.import_module("hasac_discrete")

# jax compiles SMAX's batched step in ~10 s per process: the subprocesses share a persistent cache
JAX_ENV = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}

# Like conftest's TINY, but the evaluation uses as many envs as training (one jit compilation):
# 300 loop steps of 2 envs, updates where global_step > 200 and loop step % 10 == 0.
SMAC_TINY = [*TINY[: TINY.index("--eval-episodes")], "--eval-episodes", "2", "--hidden-dim", "32"]
LOSS_TAGS = [
    "losses/qf1_loss",
    "losses/qf2_loss",
    "losses/qf1_values",
    "losses/actor_loss",
    "losses/alpha",
    "losses/alpha/agent_0",
    "losses/alpha/agent_2",
    "losses/alpha_loss",
    "losses/entropy",
]


def load_smac(path: str):
    """-> (the saved Args, a Learner holding the checkpoint's state), as --eval-checkpoint loads it."""
    return load_learner(path, "hasac_smac.py", hs.Args, lambda a: hs.build_learner(hs.make_env(a, 1), a, torch.device("cpu")))


@pytest.fixture(autouse=True)
def _jax_cache(monkeypatch, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "jax_cache"
    for key, value in {**JAX_ENV, "JAX_COMPILATION_CACHE_DIR": str(cache)}.items():
        monkeypatch.setitem(SUBPROCESS_ENV, key, value)


# ---------------------------------------------------------------------------------------------
# 1. smoke run on SMAX 3m
# ---------------------------------------------------------------------------------------------
def test_smoke_3m_reaches_updates_and_logs_win_rate(tmp_path):
    result = run_script(tmp_path, "--env-id", "3m", "--save-model", *SMAC_TINY, script=SMAC)
    assert_ok(result)
    path = run_dir(tmp_path)
    scalars = read_scalars(path)
    for tag in LOSS_TAGS + [
        "charts/episodic_return",
        "charts/episodic_length",
        "charts/win_rate",
        "eval/episodic_return",
        "eval/win_rate",
    ]:
        assert_finite_series(scalars, tag)
    assert "losses/alpha/agent_3" not in scalars  # 3m: three agents
    assert [s for s, _ in scalars["losses/qf1_loss"]] == TINY_UPDATE_STEPS
    assert all(v in (0.0, 0.5, 1.0) for _, v in scalars["charts/win_rate"])  # 2 envs: 0, 1 or 2 battles end at once
    assert all(1 <= v <= 101 for _, v in scalars["charts/episodic_length"])  # SMAX's step limit: 101 steps
    assert all(0 <= v <= 2 + 1e-5 for _, v in scalars["charts/episodic_return"])  # damage fraction + win bonus 1
    assert scalars["eval/win_rate"][-1][1] in (0.0, 0.5, 1.0)
    assert re.search(r"global_step=600, eval/episodic_return=\d+\.\d+, eval/win_rate=\d\.\d{3}", result.stdout)
    assert "submoduled" not in result.stdout  # jaxmarl's import notes are silenced

    checkpoint = path / "hasac_smac.cleanrl_model"
    saved = torch.load(checkpoint, weights_only=False)
    assert saved["global_step"] == 600 and saved["learner"]["value_norm"]["debiasing_term"] > 0
    args, learner = load_smac(str(checkpoint))
    assert args.env_id == "3m" and args.hidden_dim == 32
    for actor, state_dict in zip(learner.actors, saved["learner"]["actors"]):
        for name, value in actor.state_dict().items():
            assert torch.equal(value, state_dict[name])
    # the ValueNorm statistics travel with the weights: a fresh one would denormalise every Q value wrongly
    assert set(saved["learner"]["value_norm"]) == {"running_mean", "running_mean_sq", "debiasing_term"}
    for name, value in learner.value_norm.state_dict().items():
        assert torch.equal(value, saved["learner"]["value_norm"][name]), name
    result = run_script(
        tmp_path, "--eval-checkpoint", str(checkpoint.relative_to(tmp_path)), "--eval-episodes", "2", script=SMAC
    )
    assert_ok(result)
    assert re.search(
        r"3m: eval/episodic_return \d+\.\d+ \+- \d+\.\d+, eval/win_rate \d\.\d{3} over 2 episodes", result.stdout
    ), result.stdout


# ---------------------------------------------------------------------------------------------
# 2. the SMAX adapter against SMAX's own state
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smax_3m():
    envs = hs.make_env(hs.Args(env_id="3m"), 2)
    envs.reset(seed=0)
    return envs


def _observed_by_smax(envs, e):
    """Env e's observations, state and available actions straight from SMAX's own functions."""
    import jax

    env_state = jax.tree.map(lambda x: x[e], envs.states)
    obs, avail = envs.env.get_obs(env_state), envs.env.get_avail_actions(env_state)
    return (
        np.stack([np.asarray(obs[a]) for a in envs.env.agents]),
        np.asarray(envs.env.get_world_state(env_state)),
        np.stack([np.asarray(avail[a]) for a in envs.env.agents]).astype(bool),
        env_state,
    )


def _set_units(envs, **fields):
    """Replace SMAX unit fields ([E, units, ...] arrays) of every env's state."""
    import jax.numpy as jnp

    envs.states = envs.states.replace(state=envs.states.state.replace(**{k: jnp.asarray(v) for k, v in fields.items()}))


def test_adapter_shapes_and_observations_match_smax(smax_3m):
    envs = smax_3m
    assert (envs.n_agents, envs.obs_dim, envs.act_dim, envs.state_dim) == (3, 75, 8, 72)
    assert envs.own_features == slice(65, 75) and envs.episode_limit == 101  # SMAX's max_steps (100) + 1
    obs, state, avail = envs.reset(seed=3)
    assert obs.shape == (2, 3, 75) and state.shape == (2, 72) and avail.shape == (2, 3, 8)
    assert obs.dtype == torch.float32 and avail.dtype == torch.bool
    for e in range(2):
        smax_obs, smax_state, smax_avail, _ = _observed_by_smax(envs, e)
        np.testing.assert_array_equal(obs[e].numpy(), smax_obs)
        np.testing.assert_array_equal(state[e].numpy(), smax_state)
        np.testing.assert_array_equal(avail[e].numpy(), smax_avail)
    # reset: nothing in range, so move (0-3) and stop (4), no attack (5-7)
    assert avail[..., :5].all() and not avail[..., 5:].any()
    # DLPack: the tensors share the jax buffers
    observed = envs._reset(envs.key)[1]
    assert torch.from_dlpack(observed[0]).data_ptr() == observed[0].unsafe_buffer_pointer()


def test_masks_dead_units_and_attack_ranges(smax_3m):
    """A dead ally can only `stop`; attacks are available exactly for live enemies within range."""
    envs = smax_3m
    envs.reset(seed=1)
    s = envs.states.state
    positions = np.array(s.unit_positions)  # [E, 6, 2]: allies 0-2, enemies 3-5
    positions[:, 3] = positions[:, 0] + [3.0, 0.0]  # enemy 0 within ally 0's range (marines: 5)
    positions[:, 4] = positions[:, 0] + [0.0, 4.0]  # enemy 1 too
    health, alive = np.array(s.unit_health), np.array(s.unit_alive)
    health[:, 1], alive[:, 1] = 0.0, False  # ally 1 dead
    health[:, 4], alive[:, 4] = 0.0, False  # enemy 1 dead: not a target
    _set_units(envs, unit_positions=positions, unit_health=health, unit_alive=alive)
    import jax

    observed = jax.vmap(envs.observe)(envs.states)
    avail, alive_flags = torch.from_dlpack(observed[2]), torch.from_dlpack(observed[3])
    for e in range(2):
        np.testing.assert_array_equal(avail[e].numpy(), _observed_by_smax(envs, e)[2])
        distance = np.linalg.norm(positions[e, 3:] - positions[e, 0], axis=-1)
        np.testing.assert_array_equal(avail[e, 0, 5:].numpy(), (distance < 5.0) & alive[e, 3:])
    assert avail[:, 0, 5].all() and not avail[:, 0, 6].any()  # enemy 0 in range; enemy 1 dead
    assert torch.equal(avail[:, 1], F.one_hot(torch.tensor([4, 4]), 8).bool())  # dead: only stop
    assert torch.equal(alive_flags, torch.tensor([[True, False, True]] * 2))


def _step_with_known_keys(envs, actions):
    """envs.step, plus each env's final SMAX state recomputed from the same keys and state through
    `transition` (the adapter splits its key into one step key and one reset key per env)."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(envs.key, 2 * envs.num_envs + 1)
    choice = jnp.asarray(actions.argmax(-1).numpy(), jnp.int32)
    expected = jax.vmap(envs.transition)(keys[1 : envs.num_envs + 1], envs.states, choice)
    return envs.step(actions), expected


def test_win_detection_and_terminal_observation(smax_3m):
    """All enemies next to our marines with 1 health: every ally shoots its enemy, the battle is won.
    The adapter reports terminated (not truncated), battle_won, SMAX's win bonus in the reward, the
    true final observation in info (not the new episode's first one), and resets the env."""
    envs = smax_3m
    envs.reset(seed=2)
    s = envs.states.state
    positions, health = np.array(s.unit_positions), np.array(s.unit_health)
    positions[:, 3:] = positions[:, :3] + [1.5, 0.0]
    health[:, 3:] = 1.0
    _set_units(envs, unit_positions=positions, unit_health=health)
    actions = F.one_hot(torch.tensor([5, 6, 7]), 8).float().expand(2, -1, -1)  # ally i attacks enemy i
    (obs, state, avail, reward, terminated, truncated, info), expected = _step_with_known_keys(envs, actions)
    final_state, smax_reward, smax_terminated, smax_truncated, smax_won = expected
    unit_alive = np.asarray(final_state.state.unit_alive)
    assert not unit_alive[:, 3:].any() and unit_alive[:, :3].any(-1).all()  # SMAX's own state: enemies all dead
    assert info["battle_won"].all() and terminated.all() and not truncated.any()
    np.testing.assert_array_equal(info["battle_won"].numpy(), np.asarray(smax_won))
    np.testing.assert_allclose(reward.numpy(), np.asarray(smax_reward))
    assert (reward >= 1.0).all()  # SMAX's win bonus
    import jax

    final_observed = jax.vmap(envs.observe)(final_state)
    np.testing.assert_array_equal(info["final_obs"].numpy(), np.asarray(final_observed[0]))
    np.testing.assert_array_equal(info["final_state"].numpy(), np.asarray(final_observed[1]))
    np.testing.assert_array_equal(info["final_avail"].numpy(), np.asarray(final_observed[2]))
    assert not torch.equal(info["final_obs"], obs)  # the returned observation starts a new battle
    assert (np.asarray(envs.states.state.step) == 0).all() and np.asarray(envs.states.state.unit_alive).all()
    assert info["alive"].all()


def test_loss_and_time_limit_detection(smax_3m):
    envs = smax_3m
    noop = F.one_hot(torch.full((2, 3), 4), 8).float()
    # every ally dead: the battle is lost (terminated, no win, no win bonus)
    envs.reset(seed=4)
    s = envs.states.state
    health, alive = np.array(s.unit_health), np.array(s.unit_alive)
    health[:, :3], alive[:, :3] = 0.0, False
    _set_units(envs, unit_health=health, unit_alive=alive)
    _, _, _, reward, terminated, truncated, info = envs.step(noop)
    assert terminated.all() and not truncated.any() and not info["battle_won"].any() and (reward < 1.0).all()
    assert not info["final_alive"].any() and info["alive"].all()
    # SMAX's step limit with the battle going on: a truncation, which the target bootstraps through
    envs.reset(seed=5)
    _set_units(envs, step=np.full(2, envs.episode_limit - 1, np.int32))
    _, _, _, _, terminated, truncated, info = envs.step(noop)
    assert truncated.all() and not terminated.any() and not info["battle_won"].any()
    # jaxmarl's own auto-resetting step reports the same step limit as `done`
    import jax

    key = jax.random.PRNGKey(0)
    _, env_state = envs.env.reset(key)
    env_state = env_state.replace(state=env_state.state.replace(step=jax.numpy.asarray(envs.episode_limit - 1)))
    _, _, _, dones, infos = envs.env.step(key, env_state, {a: 4 for a in envs.env.agents})
    assert bool(dones["__all__"]) and "battle_won" not in infos


# ---------------------------------------------------------------------------------------------
# 3. parity with hasac_discrete.py
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["__init__", "layers", "padded_layers"])
def test_actor_is_textually_identical(method):
    assert inspect.getsource(getattr(hs.Actor, method)) == inspect.getsource(getattr(hd.Actor, method))


def test_same_module_level_names():
    for name in EXPOSED_NAMES:
        assert hasattr(hs, name), name
    assert set(hd.Learner._fields) <= set(hs.Learner._fields) and hs.Batch._fields[: len(hd.Batch._fields)] == hd.Batch._fields
    for name in ("critic_target", "actor_loss", "alpha_loss", "hasac_update", "build_learner", "evaluate", "make_env"):
        discrete, smac = inspect.signature(getattr(hd, name)).parameters, inspect.signature(getattr(hs, name)).parameters
        assert list(smac)[: len(discrete)] == list(discrete), name  # extra arguments only after, with defaults
        assert all(p.default is not inspect.Parameter.empty for p in list(smac.values())[len(discrete) :]), name


class _Dims:  # what build_learner reads from an env: SMAX 3m's sizes, without starting jax
    n_agents, obs_dim, act_dim, state_dim = 3, 75, 8, 72
    obs_dims, act_dims = [75] * 3, [8] * 3
    action_mask = np.ones((3, 8), bool)
    own_features = slice(65, 75)


def _learners(hidden_dim=32, **smac_args):
    """A hasac_smac Learner and a hasac_discrete Learner holding the same weights and temperatures."""
    torch.manual_seed(0)
    args = hs.Args(hidden_dim=hidden_dim, use_huber_loss=False, use_valuenorm=False, alpha=0.3, **smac_args)
    smac = hs.build_learner(_Dims, args, torch.device("cpu"))
    actors = [hd.Actor(75, 8, hidden_dim) for _ in smac.actors]
    for actor, source in zip(actors, smac.actors):
        actor.load_state_dict(source.state_dict())
    qf, qf_target = hd.SoftQNetwork(smac.qf.state_dim, 24, hidden_dim), hd.SoftQNetwork(smac.qf.state_dim, 24, hidden_dim)
    qf.load_state_dict(smac.qf.state_dict())
    qf_target.load_state_dict(smac.qf_target.state_dict())
    log_alphas = [la.detach().clone().requires_grad_() for la in smac.log_alphas]
    discrete = hd.Learner(
        actors=actors,
        policy_of_agent=list(smac.policy_of_agent),
        actor_optimizers=[torch.optim.Adam(a.parameters(), lr=args.policy_lr, fused=True) for a in actors],
        qf=qf,
        qf_target=qf_target,
        q_optimizer=torch.optim.Adam(qf.parameters(), lr=args.q_lr, fused=True),
        log_alphas=log_alphas,
        actor_loss=smac.actor_loss,
        alpha_optimizers=[torch.optim.Adam([la], lr=args.alpha_lr) for la in log_alphas],
        target_entropies=list(smac.target_entropies),
        action_mask=smac.action_mask.clone(),
    )
    return smac, discrete


def _random_batch(generator, batch_size=64, state_dim=72, dead=None, avail=None):
    one_hot = lambda: F.one_hot(torch.randint(0, 8, (batch_size, 3), generator=generator), 8).float()  # noqa: E731
    fields = dict(
        obs=torch.randn(batch_size, 3, 75, generator=generator),
        state=torch.randn(batch_size, state_dim, generator=generator),
        actions=one_hot(),
        rewards=torch.randn(batch_size, 1, generator=generator),
        next_obs=torch.randn(batch_size, 3, 75, generator=generator),
        next_state=torch.randn(batch_size, state_dim, generator=generator),
        terminations=(torch.rand(batch_size, 1, generator=generator) < 0.2).float(),
        discounts=torch.full((batch_size, 1), 0.99**5),
    )
    return fields


def _all_parameters(learner):
    return (
        [p for a in learner.actors for p in a.parameters()]
        + list(learner.qf.parameters())
        + list(learner.qf_target.parameters())
        + list(learner.log_alphas)
    )


@pytest.mark.parametrize(
    "share_param, actor_loss", [(False, "gumbel"), (True, "gumbel"), (False, "expected"), (True, "expected")]
)
def test_update_matches_hasac_discrete_with_all_actions_available(share_param, actor_loss):
    """Same weights, same batch, same agent order, same noise: with every action available and
    every agent alive, hasac_smac's masked update is hasac_discrete's update, bit for bit (with
    --share-param: one step of the shared actor per agent in both), with either actor loss."""
    smac, discrete = _learners(share_param=share_param, actor_loss=actor_loss)
    generator = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(0)
    for step in range(3):
        fields = _random_batch(generator)
        everything = torch.ones(64, 3, 8, dtype=torch.bool)
        smac_batch = hs.Batch(**fields, avail=everything, next_avail=everything.clone(), alive=torch.ones(64, 3))
        order = rng.permutation(3)
        torch.manual_seed(100 + step)
        smac_metrics = hs.hasac_update(smac, smac_batch, order, 0.005)
        torch.manual_seed(100 + step)
        discrete_metrics = hd.hasac_update(discrete, hd.Batch(**fields), order, 0.005)
        for name in ("qf1_loss", "qf2_loss", "qf1_values", "actor_loss", "alpha_loss", "entropy", "alphas"):
            assert torch.equal(smac_metrics[name], discrete_metrics[name]), (step, name)
    for p_smac, p_discrete in zip(_all_parameters(smac), _all_parameters(discrete)):
        assert torch.equal(p_smac, p_discrete)
    assert not torch.equal(smac.actors[0].fc1.weight, _learners(share_param=share_param)[0].actors[0].fc1.weight)  # it moved


# ---------------------------------------------------------------------------------------------
# 4. SMAC specifics: dead agents, FP state, value normalisation, Huber loss
# ---------------------------------------------------------------------------------------------
def test_dead_agents_are_masked_out_of_actor_and_temperature_losses():
    """The masked losses equal the plain losses over the samples in which the agent is alive."""
    smac, _ = _learners()
    generator = torch.Generator().manual_seed(2)
    fields = _random_batch(generator)
    alive = (torch.rand(64, generator=generator) < 0.5).float()
    features = smac.qf.state_features(fields["state"])
    log_probs, alphas = -torch.rand(64, 1, generator=generator), torch.tensor([0.3])
    masked = hs.actor_loss(smac.qf, features, fields["actions"], log_probs, alphas, mask=alive[:, None])
    rows = alive.bool()
    alive_only = hs.actor_loss(
        smac.qf, smac.qf.state_features(fields["state"][rows]), fields["actions"][rows], log_probs[rows], alphas
    )
    torch.testing.assert_close(masked, alive_only)
    target = 0.5 * torch.log(torch.randint(1, 9, (64,), generator=generator).double()).float()
    log_alpha = torch.tensor(math.log(0.3))
    torch.testing.assert_close(
        hs.alpha_loss(log_alpha, log_probs[:, 0], target, mask=alive),
        hs.alpha_loss(log_alpha, log_probs[rows, 0], target[rows]),
    )


@pytest.mark.parametrize("actor_loss", ["gumbel", "expected"])
def test_update_leaves_a_dead_agent_untouched_and_uses_available_actions(actor_loss):
    """Agent 0 dead in every sample (only `stop` available, alive 0): its actor and temperature do
    not move; agents 1 and 2 do; no sampled action is ever an unavailable one."""
    smac, _ = _learners(actor_loss=actor_loss)
    generator = torch.Generator().manual_seed(3)
    fields = _random_batch(generator)
    avail = torch.rand(64, 3, 8, generator=generator) < 0.6
    avail[..., 4] = True  # stop is always available
    avail[:, 0] = F.one_hot(torch.tensor(4), 8).bool()
    alive = torch.ones(64, 3)
    alive[:, 0] = 0
    before = copy.deepcopy([a.state_dict() for a in smac.actors]), [la.item() for la in smac.log_alphas]
    metrics = hs.hasac_update(smac, hs.Batch(**fields, avail=avail, next_avail=avail.clone(), alive=alive), [0, 1, 2], 0.005)
    for name, value in smac.actors[0].state_dict().items():
        assert torch.equal(value, before[0][0][name]), name
    assert smac.log_alphas[0].item() == before[1][0] and smac.log_alphas[1].item() != before[1][1]
    assert not torch.equal(smac.actors[1].fc1.weight, before[0][1]["fc1.weight"])
    assert torch.isfinite(metrics["actor_loss"]) and torch.isfinite(metrics["alpha_loss"])
    torch.manual_seed(0)
    actions = hs.act(smac, fields["obs"], avail=avail)
    assert avail[actions.bool()].all() and (actions[:, 0, 4] == 1).all()


def test_expected_actor_loss_with_masks_dead_agents_and_fp_rows_matches_independent_float64():
    """--actor-loss expected on SMAC's inputs: per-state available actions (action 6 never available), the agent dead in
    some samples, FP's one critic row per agent and value normalisation. Against float64 written here: every own action
    scored by the full critic on its own joint action, denormalised, averaged over the rows; the alive samples averaged.
    An unavailable action has probability exactly 0, and its logit gets no gradient."""
    torch.manual_seed(0)
    batch_size, rows, state_dim, slot, agent, alpha = 48, 3, 11, 8, 2, 0.4
    actor, qf, value_norm = hs.Actor(6, 8, 16), hs.SoftQNetwork(state_dim, 3 * slot, 16), hs.ValueNorm()
    with torch.no_grad():
        actor.fc_logits.weight.mul_(100)
        actor.fc_logits.bias[6] = 50.0  # the unavailable action would dominate
    value_norm.update(torch.randn(100) * 4 + 3)
    obs, state = torch.randn(batch_size, 1, 6), torch.randn(batch_size, rows, state_dim)
    avail = torch.rand(batch_size, 1, 8) < 0.6
    avail[..., 4], avail[..., 6] = True, False
    alive = (torch.rand(batch_size, 1) < 0.7).float()
    others = F.one_hot(torch.randint(0, slot, (batch_size, 3)), slot).float()
    others[:, agent] = 0
    log_policy = actor.log_policy(obs, action_mask=avail)
    loss, expected_log_prob = hs.expected_actor_loss(
        qf, qf.state_features(state), others, agent * slot, log_policy, alpha, alive, value_norm
    )
    loss.backward()
    assert (log_policy.exp()[~avail] == 0).all()
    assert actor.fc_logits.weight.grad[6].abs().max() == 0 and actor.fc_logits.bias.grad[6] == 0
    assert all(p.grad is None for p in qf.parameters())

    a = copy.deepcopy(actor).double()
    logits = a.fc_logits(a.norm2(F.relu(a.fc2(a.norm1(F.relu(a.fc1(a.input_norm(obs[:, 0].double()))))))))
    log_pi = F.log_softmax(logits.masked_fill(~avail[:, 0], -1e10), -1)  # [B, 8]
    mean, std = value_norm.mean_std()
    w, b = [x.detach().double() for x in qf.weights], [x.detach().double() for x in qf.biases]
    q = torch.zeros(batch_size, 8, dtype=torch.float64)
    for action in range(8):
        joint_action = others.clone()
        joint_action[:, agent, action] = 1
        for r in range(rows):  # each FP row with the same joint action; min over the twins, then denormalised
            x = torch.cat([state[:, r], joint_action.flatten(1)], -1).double()
            twins = [F.relu(F.relu(x @ w[0][j].T + b[0][j]) @ w[1][j].T + b[1][j]) @ w[2][j].T + b[2][j] for j in range(2)]
            q[:, action] += (torch.minimum(*twins)[:, 0] * std.double() + mean.double()) / rows
    per_sample = (log_pi.exp() * (alpha * log_pi - q)).sum(-1)
    ref_loss = (per_sample * alive[:, 0]).sum() / alive.sum()
    ref_loss.backward()
    torch.testing.assert_close(loss.double(), ref_loss.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        expected_log_prob[:, 0].double(), (log_pi.exp() * log_pi).sum(-1).detach(), rtol=1e-5, atol=1e-6
    )
    for p, ref in zip(actor.parameters(), a.parameters()):
        torch.testing.assert_close(p.grad.double(), ref.grad, rtol=1e-4, atol=1e-6)


def test_fp_state_gives_one_critic_row_per_agent():
    obs, state = torch.randn(5, 3, 75), torch.randn(5, 72)
    fp = hs.critic_state(obs, state, slice(65, 75), "FP")
    assert fp.shape == (5, 3, 72 + 10 + 3)
    for i in range(3):
        assert torch.equal(fp[:, i, :72], state) and torch.equal(fp[:, i, 72:82], obs[:, i, 65:])
        assert torch.equal(fp[:, i, 82:], F.one_hot(torch.tensor(i), 3).float().expand(5, -1))
    assert hs.critic_state(obs, state, slice(65, 75), "EP") is state
    torch.manual_seed(0)
    qf = hs.SoftQNetwork(85, 24, 16)
    joint_action = F.one_hot(torch.randint(0, 8, (5, 3)), 8).float().flatten(1)
    rows = qf(fp, joint_action)  # [2, B, N]
    assert rows.shape == (2, 5, 3)
    for i in range(3):
        torch.testing.assert_close(rows[:, :, i : i + 1], qf(fp[:, i], joint_action))
    smac, _ = _learners(state_type="FP")
    assert smac.qf.state_dim == 85
    fields = _random_batch(torch.Generator().manual_seed(4))
    fields["state"], fields["next_state"] = (
        hs.critic_state(fields[o], fields[s], slice(65, 75), "FP") for o, s in (("obs", "state"), ("next_obs", "next_state"))
    )
    metrics = hs.hasac_update(smac, hs.Batch(**fields), [2, 0, 1], 0.005)
    assert all(torch.isfinite(metrics[name]) for name in ("qf1_loss", "actor_loss", "alpha_loss"))


def test_value_norm_statistics_match_an_independent_computation():
    """Debiased exponential moving averages of the batch means and mean squares, computed here in float64 from the
    batches: normalize gives (x - mean) / std with those, and denormalize undoes it."""
    beta, generator = 0.9, torch.Generator().manual_seed(0)
    norm, batches = hs.ValueNorm(beta=beta), [torch.randn(50, generator=generator) * (t + 1) + 2 * t for t in range(6)]
    for batch in batches:
        norm.update(batch)
    weights = torch.tensor([(1 - beta) * beta ** (len(batches) - 1 - t) for t in range(len(batches))], dtype=torch.float64)
    mean = sum(w * b.double().mean() for w, b in zip(weights, batches)) / weights.sum()
    mean_sq = sum(w * (b.double() ** 2).mean() for w, b in zip(weights, batches)) / weights.sum()
    x = torch.randn(20, generator=generator) * 4
    torch.testing.assert_close(
        norm.normalize(x).double(), (x.double() - mean) / (mean_sq - mean**2).sqrt(), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(norm.denormalize(norm.normalize(x)), x, rtol=1e-5, atol=1e-4)


def test_value_norm_and_huber_loss():
    norm = hs.ValueNorm()
    for _ in range(200):
        norm.update(torch.randn(1000) * 5 + 3)
    mean, std = norm.mean_std()
    assert abs(mean.item() - 3) < 0.1 and abs(std.item() - 5) < 0.2
    # both flags on (the official SMAC setup): targets normalised, Huber loss, Q values reported in reward units
    torch.manual_seed(0)
    args = hs.Args(hidden_dim=16)
    assert args.use_huber_loss and args.use_valuenorm and args.huber_delta == 10.0
    learner = hs.build_learner(_Dims, args, torch.device("cpu"))
    fields = _random_batch(torch.Generator().manual_seed(5))
    fields["rewards"] = fields["rewards"] * 100 + 500
    metrics = hs.hasac_update(learner, hs.Batch(**fields), [0, 1, 2], 0.005)
    assert learner.value_norm.debiasing_term > 0 and learner.value_norm.mean_std()[0] > 400
    assert metrics["qf1_loss"] < 50  # normalised targets: a Huber loss of order 1, not of order 500^2


# ---------------------------------------------------------------------------------------------
# 5. bad input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, expected",
    [
        (["--env-id", "MMM2"], ["unknown map 'MMM2'", "smax backend", "3s5z_vs_3s6z", "6h_vs_8z", "--backend sc2"]),
        (["--env-id", "4m", "--backend", "sc2"], ["unknown map '4m'", "sc2 backend", "MMM2", "corridor", "8m_vs_9m"]),
        (
            ["--env-id", "3m", "--backend", "sc2"],
            ["pip install git+https://github.com/oxwhirl/smac.git", "StarCraft II", "unrelated"],
        ),
        (["--capture-video"], ["--capture-video is not supported"]),
        (["--target-entropy-scale", "2"], ["--target-entropy-scale", "[0, 1]"]),
    ],
)
def test_bad_input_one_line_error(tmp_path, args, expected):
    pytest.importorskip("jax")
    if "sc2" in args and importlib.util.find_spec("smac") is not None and importlib.util.find_spec("smac.env") is not None:
        pytest.skip("SMAC is installed here")
    result = run_script(tmp_path, *args, *SMAC_TINY, script=SMAC)
    assert_one_line_error(result, expected, tmp_path)


@pytest.mark.parametrize(
    "flag, value, choices",
    [
        ("--backend", "pysc2", ["smax", "sc2"]),
        ("--state-type", "AS", ["EP", "FP"]),
        ("--matmul-precision", "tf32", ["highest", "high", "medium"]),
        ("--actor-loss", "exact", ["gumbel", "expected"]),
    ],
)
def test_bad_choice_names_the_choices(tmp_path, flag, value, choices):
    result = run_script(tmp_path, flag, value, *SMAC_TINY, script=SMAC)
    assert_choice_error(result, flag, value, choices, tmp_path)


# ---------------------------------------------------------------------------------------------
# 6. evaluation never touches training; what the loop stores is what happened
# ---------------------------------------------------------------------------------------------
def test_evaluation_has_no_side_effect_on_training(tmp_path):
    """SMAX 3m: the same run with an evaluation every 100 env steps logs exactly the training numbers of the run
    that evaluates only at the end."""
    runs = {}
    for name, interval in (("quiet", "100000"), ("evaluating", "100")):
        result = run_script(tmp_path / name, "--env-id", "3m", *SMAC_TINY, "--eval-interval", interval, script=SMAC)
        assert_ok(result)
        runs[name] = read_scalars(run_dir(tmp_path / name))
    assert [s for s, _ in runs["evaluating"]["eval/win_rate"]] == list(range(100, 601, 100))
    for tag in LOSS_TAGS + ["charts/episodic_return", "charts/win_rate"]:
        assert runs["evaluating"][tag] == runs["quiet"][tag], tag


def _rigged_step(envs):
    """Env 0: every enemy next to an ally with 1 health, allies attack: won (terminated). Env 1: at SMAX's step limit,
    standing still: truncated."""
    envs.reset(seed=3)
    s = envs.states.state
    positions, health, step = np.array(s.unit_positions), np.array(s.unit_health), np.array(s.step)
    positions[0, 3:] = positions[0, :3] + [1.5, 0.0]
    health[0, 3:] = 1.0
    step[1] = envs.episode_limit - 1
    _set_units(envs, unit_positions=positions, unit_health=health, step=step)
    return torch.stack([F.one_hot(torch.tensor([5, 6, 7]), 8), F.one_hot(torch.tensor([4, 4, 4]), 8)]).float()


def _replay_buffer(envs, n_envs):
    import gymnasium as gym
    from stable_baselines3.common.buffers import NStepReplayBuffer

    width = envs.n_agents * (envs.obs_dim + envs.act_dim + 1) + envs.state_dim
    return NStepReplayBuffer(
        100,
        gym.spaces.Box(-np.inf, np.inf, (width,)),
        gym.spaces.Box(0.0, 1.0, (envs.n_agents * envs.act_dim,)),
        "cpu",
        n_envs=n_envs,
        handle_timeout_termination=True,
        n_steps=3,
        gamma=0.99,
    )


def _stored_parts(envs, row):
    n, sizes = envs.n_agents, (envs.n_agents * envs.obs_dim, envs.state_dim, envs.n_agents * envs.act_dim, envs.n_agents)
    obs, state, avail, alive = np.split(row, np.cumsum(sizes)[:-1])
    return obs.reshape(n, -1), state, avail.reshape(n, -1) > 0.5, alive > 0.5


def test_what_the_loop_stores_is_what_happened_smax(smax_3m):
    """The loop's storing code (transition_to_store, then the replay buffer's add) on a won battle and a time limit:
    done for both, the time-out flag only for the time limit, the stored next row is SMAX's own final observation,
    state, available actions and alive flags (recomputed from the same keys), and the envs go on from a new battle."""
    import jax

    envs = smax_3m
    actions = _rigged_step(envs)
    obs, state, avail = (torch.from_dlpack(x) for x in jax.vmap(envs.observe)(envs.states)[:3])
    (next_obs, _, _, rewards, terminations, truncations, infos), expected = _step_with_known_keys(envs, actions)
    rb = _replay_buffer(envs, 2)
    real_next, dones, timeouts = hs.transition_to_store(terminations, truncations, infos)
    rb.add(
        hs.replay_row(obs, state, avail, torch.ones(2, 3)),
        real_next,
        actions.reshape(2, -1).numpy(),
        rewards.numpy(),
        dones,
        timeouts,
    )
    assert rb.dones[0].tolist() == [1.0, 1.0] and rb.timeouts[0].tolist() == [0.0, 1.0]
    final = jax.vmap(envs.observe)(expected[0])
    for e in range(2):
        for stored, smax in zip(_stored_parts(envs, rb.next_observations[0, e]), final):
            np.testing.assert_allclose(stored, np.asarray(smax[e]).astype(np.float32))
        assert not np.array_equal(next_obs[e].numpy(), np.asarray(final[0][e]))  # the loop goes on from the reset
    assert (np.asarray(envs.states.state.step) == 0).all()


@pytest.mark.parametrize("state_type, alive_masks", [("EP", True), ("FP", False)])
def test_sample_batch_gives_back_what_replay_row_stored(smax_3m, state_type, alive_masks):
    """sample_batch unpacks the loop's replay rows into the Batch the update reads: each sampled transition (a won
    battle in env 0, a time limit in env 1, with agent 1 dead before the step) comes back with its env's observations,
    critic state (--state-type), available actions, alive flags (only with --use-policy-active-masks), action, and the
    true final observation and available actions as its next ones."""
    import jax

    envs = smax_3m
    actions = _rigged_step(envs)
    obs, state, avail = (torch.from_dlpack(x) for x in jax.vmap(envs.observe)(envs.states)[:3])
    alive = torch.tensor([[1.0, 0.0, 1.0]] * 2)
    _, _, _, rewards, terminations, truncations, infos = envs.step(actions)
    rb = _replay_buffer(envs, 2)
    real_next, dones, timeouts = hs.transition_to_store(terminations, truncations, infos)
    rb.add(
        hs.replay_row(obs, state, avail, alive), real_next, actions.reshape(2, -1).numpy(), rewards.numpy(), dones, timeouts
    )
    np.random.seed(0)
    batch = hs.sample_batch(rb, 16, envs, state_type, alive_masks)
    expected_state = hs.critic_state(obs, state, envs.own_features, state_type)
    expected_next_state = hs.critic_state(infos["final_obs"], infos["final_state"], envs.own_features, state_type)
    envs_sampled = set()
    for b in range(16):
        e = next(e for e in range(2) if torch.equal(batch.obs[b], obs[e]))
        envs_sampled.add(e)
        assert torch.equal(batch.state[b], expected_state[e]) and torch.equal(batch.avail[b], avail[e])
        assert torch.equal(batch.actions[b], actions[e])
        assert torch.equal(batch.next_obs[b], infos["final_obs"][e])
        assert torch.equal(batch.next_avail[b], infos["final_avail"][e])
        assert torch.equal(batch.next_state[b], expected_next_state[e])
        assert batch.alive is None or torch.equal(batch.alive[b], alive[e])
    assert envs_sampled == {0, 1} and (batch.alive is None) != alive_masks
    assert batch.state.shape == ((16, 72) if state_type == "EP" else (16, 3, 72 + 10 + 3))
    assert batch.avail.dtype == torch.bool and batch.next_avail.dtype == torch.bool


class StandInStarCraft2Env:
    """A stand-in for smac's StarCraft2Env (oxwhirl/smac, smac/env/starcraft2/starcraft2.py), following its public
    step contract without a game: reset() starts an episode; step(actions) -> (reward, terminated, info) with
    info["battle_won"], "dead_allies", "dead_enemies"; a battle's end (here: scripted at a step) takes precedence over
    the step limit; at the limit `terminated` is True, `timeouts` is raised, and info["episode_limit"] is set only
    with continuing_episode=True (smac's default is False). Observations encode (episode, step)."""

    battle_ends_at = {}  # episode index -> (step, won)

    def __init__(self, map_name="3m", continuing_episode=False, reward_scale=True, reward_scale_rate=20, **_):
        self.n_agents, self.n_enemies, self.episode_limit, self.continuing_episode = 3, 3, 4, continuing_episode
        self.timeouts, self.episode, self.steps, self.battle_over = 0, -1, 0, False

    def get_env_info(self):
        return {"n_agents": 3, "obs_shape": 5, "n_actions": 6, "state_shape": 4, "episode_limit": self.episode_limit}

    def get_obs_own_feats_size(self):
        return 2

    def reset(self):
        self.episode, self.steps, self.battle_over = self.episode + 1, 0, False
        return self.get_obs(), self.get_state()

    def get_obs(self):
        return [np.array([self.episode, self.steps, i, 0, 1], np.float32) for i in range(3)]

    def get_state(self):
        return np.array([self.episode, self.steps, 0, 1], np.float32)

    def get_avail_actions(self):
        return [[0, 1, 1, 1, 1, 1] for _ in range(3)]

    def get_unit_by_id(self, i):
        return type("Unit", (), {"health": 0.0 if self.battle_over and i == 0 else 45.0})()

    def step(self, actions):
        self.steps += 1
        end = self.battle_ends_at.get(self.episode)
        info = {"battle_won": False, "dead_allies": 0, "dead_enemies": 0}
        if end is not None and end[0] == self.steps:
            self.battle_over, info["battle_won"] = True, end[1]
            info["dead_allies"], info["dead_enemies"] = (0, 3) if end[1] else (3, 0)
            return (20.0 if end[1] else 0.0), True, info
        if self.steps >= self.episode_limit:
            if self.continuing_episode:
                info["episode_limit"] = True
            self.timeouts += 1
            return 1.0, True, info
        return 1.0, False, info

    def close(self):
        pass


@pytest.fixture
def stand_in_smac(monkeypatch):
    import sys
    import types

    smac_env = types.ModuleType("smac.env")
    smac_env.StarCraft2Env = StandInStarCraft2Env
    monkeypatch.setitem(sys.modules, "smac", types.ModuleType("smac"))
    monkeypatch.setitem(sys.modules, "smac.env", smac_env)
    monkeypatch.setattr(StandInStarCraft2Env, "battle_ends_at", {1: (2, True), 3: (4, False)})  # episode 0: the launch
    return StandInStarCraft2Env


def test_what_the_loop_stores_is_what_happened_sc2(stand_in_smac):
    """The StarCraft II adapter with smac's default flags (no info["episode_limit"]), after the launch's episode 0 and
    the loop's reset: episode 1 is won at step 2 (terminated), episode 2 runs into the 4-step limit (truncated),
    episode 3 is lost at step 4, the limit's step
    (terminated: the battle's end comes first). Stored: done for all three, the time-out flag only for the limit, and
    the true final observation and state, while the loop goes on from the new episode."""
    envs = hs.make_env(hs.Args(env_id="3m", backend="sc2"), 1)
    rb = _replay_buffer(envs, 1)
    obs, state, avail = envs.reset()
    alive, flags = torch.ones(1, 3), []
    for t in range(10):
        actions = F.one_hot(torch.ones(1, 3, dtype=torch.long), 6).float()
        next_obs, next_state, next_avail, rewards, terminations, truncations, infos = envs.step(actions)
        real_next, dones, timeouts = hs.transition_to_store(terminations, truncations, infos)
        rb.add(
            hs.replay_row(obs, state, avail, alive),
            real_next,
            actions.reshape(1, -1).numpy(),
            rewards.numpy(),
            dones,
            timeouts,
        )
        stored_obs, stored_state, _, _ = _stored_parts(envs, rb.next_observations[t, 0])
        episode, step = stored_state[:2]
        if dones[0]:
            flags.append((int(episode), int(step), bool(terminations[0]), bool(truncations[0]), bool(rb.timeouts[t, 0])))
            assert next_state[0, :2].tolist() == [episode + 1, 0]  # the loop goes on from the reset
        assert stored_obs[:, :2].tolist() == [[episode, step]] * 3 and step >= 1  # the true final observation
        obs, state, avail, alive = next_obs, next_state, next_avail, infos["alive"]
    assert flags == [(1, 2, True, False, False), (2, 4, False, True, True), (3, 4, True, False, False)]


def test_evaluate_gives_each_env_its_share_of_episodes(stand_in_smac):
    """Two StarCraft II stand-ins: env 0 wins every battle at its first step (return 20), env 1 runs every episode
    into the 4-step limit (return 4). 4 episodes are 2 of each, not the first 4 to end (all env 0's)."""
    envs = hs.make_env(hs.Args(env_id="3m", backend="sc2"), 2)
    envs.envs[0].battle_ends_at = {episode: (1, True) for episode in range(20)}
    envs.envs[1].battle_ends_at = {}
    learner = hs.build_learner(envs, hs.Args(hidden_dim=16), torch.device("cpu"))
    wins = []
    assert hs.evaluate(learner, envs, 4, seed=0, device="cpu", wins=wins) == [20.0, 20.0, 4.0, 4.0]
    assert wins == [True, True, False, False]
    assert list(episode_shares(7, 3)) == [3, 2, 2]


def test_sc2_backend_that_fails_to_start_ends_in_one_line_before_any_run(tmp_path):
    """A StarCraft II that is missing or fails to launch (here: a `smac` whose reset raises as pysc2 does) ends the
    run with one line before runs/ is written."""
    package = tmp_path / "fake_smac" / "smac" / "env"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text(
        "import inspect\n"
        "class StarCraft2Env:\n"
        "    def __init__(self, **kwargs):\n        pass\n"
        "    def get_env_info(self):\n"
        "        return {'n_agents': 3, 'obs_shape': 5, 'n_actions': 6, 'state_shape': 4, 'episode_limit': 60}\n"
        "    def get_obs_own_feats_size(self):\n        return 2\n"
        "    def reset(self):\n        raise FileNotFoundError('No such file or directory: ~/StarCraftII/Versions')\n"
    )
    env = {**SUBPROCESS_ENV, "PYTHONPATH": str(tmp_path / "fake_smac")}
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(SMAC), "--backend", "sc2", *SMAC_TINY],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_line_error(result, ["StarCraft II did not start (FileNotFoundError", "StarCraftII/Versions"], tmp_path)


# ---------------------------------------------------------------------------------------------
# 7. checkpoints, interruption, budgets, progress
# ---------------------------------------------------------------------------------------------
def test_eval_checkpoint_of_a_non_checkpoint_or_another_scripts_checkpoint(tmp_path):
    (tmp_path / "notes.cleanrl_model").write_text("not a checkpoint")
    result = run_script(tmp_path, "--eval-checkpoint", "notes.cleanrl_model", script=SMAC)
    assert_one_line_error(result, ["cannot load checkpoint 'notes.cleanrl_model'", "not a checkpoint"], tmp_path)
    torch.save({"script": "hasac_discrete.py", "args": {"env_id": "matrix-game"}}, tmp_path / "d.cleanrl_model")
    result = run_script(tmp_path, "--eval-checkpoint", "d.cleanrl_model", script=SMAC)
    assert_one_line_error(result, ["not a hasac_smac.py checkpoint (written by hasac_discrete.py)"], tmp_path)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--gamma", "2"], ["--gamma must be in [0, 1], got 2"]),
        (["--total-timesteps", "200"], ["--total-timesteps (200) must exceed --learning-starts (200)"]),
        (["--buffer-size", "32"], ["--buffer-size (32) must be at least --batch-size (64)"]),
        (["--total-timesteps", "601"], ["multiple of --num-envs 2: 600 or 602"]),
    ],
)
def test_impossible_budgets_one_line_error(tmp_path, args, expected):
    assert_one_line_error(run_script(tmp_path, *SMAC_TINY, *args, script=SMAC), expected, tmp_path)


@pytest.mark.parametrize("signal_name, exit_status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_interrupt_saves_a_loadable_checkpoint_and_exits_with_the_signals_status(tmp_path, signal_name, exit_status):
    """Also: the progress lines give steps out of the total, recent speed, return and win rate, and the time left."""
    import signal
    import subprocess
    import sys

    args = [*SMAC_TINY, "--total-timesteps", "40000", "--save-model"]  # a progress line every 4000 env steps
    process = subprocess.Popen(
        [sys.executable, str(SMAC), *args],
        cwd=tmp_path,
        env=SUBPROCESS_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background job inherits an ignored SIGINT
    )
    try:
        for line in process.stdout:  # block until the run has trained and printed its first progress line
            if line.startswith("global_step=4000/"):
                break
        process.send_signal(getattr(signal, signal_name))
        output = process.communicate(timeout=120)[0]
    finally:
        process.kill()
    assert process.returncode == exit_status, output
    assert re.search(
        r"^global_step=4000/40000 \(10\.0%\), SPS=\d+, recent episodic_return=\d+\.\d+, win_rate=\d\.\d{3}, "
        r"time left ~\d+m\d\ds$",
        line,
    ), line
    interrupted_step = int(re.search(r"interrupted at global_step=(\d+)", output).group(1))
    checkpoint = next(run_dir(tmp_path).glob("*.cleanrl_model"))
    assert torch.load(checkpoint, weights_only=False)["global_step"] == interrupted_step >= 4000
    assert load_smac(str(checkpoint))[0].env_id == "3m"


def test_run_dirs_never_collide(tmp_path):
    names = [make_run_dir("3m__hasac_smac__1__1700000000") for _ in range(2)]
    assert names == ["3m__hasac_smac__1__1700000000", "3m__hasac_smac__1__1700000000_2"]
