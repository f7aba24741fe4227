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
from conftest import ROOT, SUBPROCESS_ENV, assert_finite_series, assert_ok, assert_one_line_error, read_scalars, run_dir, run_script

SMAC = ROOT / "hasac_smac.py"
hs = importlib.import_module("hasac_smac")
hd = importlib.import_module("hasac_discrete")

# jax compiles SMAX's batched step in ~10 s per process: the subprocesses share a persistent cache
JAX_ENV = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}

# Like conftest's TINY, but the evaluation uses as many envs as training (one jit compilation):
# 300 loop steps of 2 envs, updates where global_step > 200 and loop step % 10 == 0.
SMAC_TINY = [
    "--total-timesteps", "600", "--num-envs", "2", "--learning-starts", "200", "--train-interval", "10",
    "--gradient-steps", "2", "--batch-size", "64", "--buffer-size", "10000", "--n-step", "5",
    "--eval-interval", "100000", "--eval-episodes", "2", "--hidden-dim", "32",
]  # fmt: skip
TINY_UPDATE_STEPS = list(range(220, 601, 20))
LOSS_TAGS = [
    "losses/qf1_loss", "losses/qf2_loss", "losses/qf1_values", "losses/actor_loss", "losses/alpha",
    "losses/alpha/agent_0", "losses/alpha/agent_2", "losses/alpha_loss", "losses/entropy",
]  # fmt: skip


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
    for tag in LOSS_TAGS + ["charts/episodic_return", "charts/episodic_length", "charts/win_rate", "eval/episodic_return", "eval/win_rate"]:
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
    assert saved["global_step"] == 600 and saved["value_norm"]["debiasing_term"] > 0
    args, learner = hs.load_checkpoint(str(checkpoint), torch.device("cpu"))
    assert args.env_id == "3m" and args.hidden_dim == 32
    for actor, state_dict in zip(learner.actors, saved["actors"]):
        for name, value in actor.state_dict().items():
            assert torch.equal(value, state_dict[name])
    assert torch.equal(learner.value_norm.running_mean, saved["value_norm"]["running_mean"])
    result = run_script(tmp_path, "--eval-checkpoint", str(checkpoint.relative_to(tmp_path)), "--eval-episodes", "2", script=SMAC)
    assert_ok(result)
    assert re.search(r"3m: eval/episodic_return \d+\.\d+ \+- \d+\.\d+, eval/win_rate \d\.\d{3} over 2 episodes", result.stdout), result.stdout


# ---------------------------------------------------------------------------------------------
# 2. the SMAX adapter against SMAX's own state
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smax_3m():
    envs = hs.make_env("3m", 2)
    envs.reset(seed=0)
    return envs


def _observed_by_smax(envs, e):
    """Env e's observations, state and available actions straight from SMAX's own functions."""
    import jax

    env_state = jax.tree.map(lambda x: x[e], envs.states)
    obs, avail = envs.env.get_obs(env_state), envs.env.get_avail_actions(env_state)
    return (
        np.stack([np.asarray(obs[a]) for a in envs.env.agents]), np.asarray(envs.env.get_world_state(env_state)),
        np.stack([np.asarray(avail[a]) for a in envs.env.agents]).astype(bool), env_state,
    )  # fmt: skip


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
SHARED_WITH_DISCRETE = ["linear", "layer_norm", "stack_actor_weights", "masked_logits", "sample_actions", "soft_update",
                        "random_available_actions", "act"]  # fmt: skip


@pytest.mark.parametrize("name", SHARED_WITH_DISCRETE)
def test_discrete_machinery_is_textually_identical(name):
    assert inspect.getsource(getattr(hs, name)) == inspect.getsource(getattr(hd, name))


@pytest.mark.parametrize("method", ["__init__", "layers", "padded_layers"])
def test_actor_is_textually_identical(method):
    assert inspect.getsource(getattr(hs.Actor, method)) == inspect.getsource(getattr(hd.Actor, method))


def test_same_module_level_names():
    names = ["Args", "make_env", "Actor", "SoftQNetwork", "stack_actor_weights", "sample_actions", "Batch",
             "critic_target", "actor_loss", "alpha_loss", "soft_update", "Learner", "build_learner", "hasac_update",
             "act", "evaluate", "save_checkpoint", "load_checkpoint", "check_args"]  # fmt: skip
    for name in names:
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
    actors = [hd.Actor(75, 8, hidden_dim) for _ in range(3)]
    for actor, source in zip(actors, smac.actors):
        actor.load_state_dict(source.state_dict())
    qf, qf_target = hd.SoftQNetwork(smac.qf.state_dim, 24, hidden_dim), hd.SoftQNetwork(smac.qf.state_dim, 24, hidden_dim)
    qf.load_state_dict(smac.qf.state_dict())
    qf_target.load_state_dict(smac.qf_target.state_dict())
    log_alphas = [la.detach().clone().requires_grad_() for la in smac.log_alphas]
    discrete = hd.Learner(
        actors=actors, policy_of_agent=list(smac.policy_of_agent),
        actor_optimizers=[torch.optim.Adam(a.parameters(), lr=args.policy_lr, fused=True) for a in actors],
        qf=qf, qf_target=qf_target, q_optimizer=torch.optim.Adam(qf.parameters(), lr=args.q_lr, fused=True),
        log_alphas=log_alphas, alpha_optimizers=[torch.optim.Adam([la], lr=args.alpha_lr) for la in log_alphas],
        target_entropies=list(smac.target_entropies), action_mask=smac.action_mask.clone(),
    )  # fmt: skip
    return smac, discrete


def _random_batch(generator, batch_size=64, state_dim=72, dead=None, avail=None):
    one_hot = lambda: F.one_hot(torch.randint(0, 8, (batch_size, 3), generator=generator), 8).float()  # noqa: E731
    fields = dict(
        obs=torch.randn(batch_size, 3, 75, generator=generator), state=torch.randn(batch_size, state_dim, generator=generator),
        actions=one_hot(), rewards=torch.randn(batch_size, 1, generator=generator),
        next_obs=torch.randn(batch_size, 3, 75, generator=generator), next_state=torch.randn(batch_size, state_dim, generator=generator),
        terminations=(torch.rand(batch_size, 1, generator=generator) < 0.2).float(), discounts=torch.full((batch_size, 1), 0.99**5),
    )  # fmt: skip
    return fields


def _all_parameters(learner):
    return [p for a in learner.actors for p in a.parameters()] + list(learner.qf.parameters()) + list(learner.qf_target.parameters()) + list(learner.log_alphas)  # fmt: skip


def test_update_matches_hasac_discrete_with_all_actions_available():
    """Same weights, same batch, same agent order, same noise: with every action available and
    every agent alive, hasac_smac's masked update is hasac_discrete's update, bit for bit."""
    smac, discrete = _learners()
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
    assert not torch.equal(smac.actors[0].fc1.weight, _learners()[0].actors[0].fc1.weight)  # the updates did move it


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
    alive_only = hs.actor_loss(smac.qf, smac.qf.state_features(fields["state"][rows]), fields["actions"][rows], log_probs[rows], alphas)
    torch.testing.assert_close(masked, alive_only)
    target = 0.5 * torch.log(torch.randint(1, 9, (64,), generator=generator).double()).float()
    log_alpha = torch.tensor(math.log(0.3))
    torch.testing.assert_close(hs.alpha_loss(log_alpha, log_probs[:, 0], target, mask=alive), hs.alpha_loss(log_alpha, log_probs[rows, 0], target[rows]))


def test_update_leaves_a_dead_agent_untouched_and_uses_available_actions():
    """Agent 0 dead in every sample (only `stop` available, alive 0): its actor and temperature do
    not move; agents 1 and 2 do; no sampled action is ever an unavailable one."""
    smac, _ = _learners()
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
    fields["state"], fields["next_state"] = (hs.critic_state(fields[o], fields[s], slice(65, 75), "FP") for o, s in (("obs", "state"), ("next_obs", "next_state")))  # fmt: skip
    metrics = hs.hasac_update(smac, hs.Batch(**fields), [2, 0, 1], 0.005)
    assert all(torch.isfinite(metrics[name]) for name in ("qf1_loss", "actor_loss", "alpha_loss"))


def test_value_norm_and_huber_loss():
    norm = hs.ValueNorm()
    x = torch.randn(1000) * 5 + 3
    torch.testing.assert_close(norm.denormalize(norm.normalize(x)), x)
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
        (["--env-id", "3m", "--backend", "sc2"], ["pip install git+https://github.com/oxwhirl/smac.git", "StarCraft II", "unrelated"]),
        (["--backend", "pysc2"], ["unknown --backend 'pysc2'", "smax, sc2"]),
        (["--state-type", "AS"], ["unknown --state-type 'AS'", "EP", "FP"]),
        (["--capture-video"], ["--capture-video is not supported"]),
        (["--target-entropy-scale", "2"], ["--target-entropy-scale", "[0, 1]"]),
        (["--matmul-precision", "tf32"], ["unknown --matmul-precision 'tf32'", "highest, high, medium"]),
    ],
)
def test_bad_input_one_line_error(tmp_path, args, expected):
    pytest.importorskip("jax")
    if "sc2" in args and importlib.util.find_spec("smac") is not None and importlib.util.find_spec("smac.env") is not None:
        pytest.skip("SMAC is installed here")
    result = run_script(tmp_path, *args, *SMAC_TINY, script=SMAC)
    assert_one_line_error(result, expected, tmp_path)
