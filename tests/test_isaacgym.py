"""Tests for hasac_isaacgym.py: a VMAS smoke run, parity with hasac_continuous.py, --compile
against eager, the on-device n-step replay buffer, the VMAS adapter and bad input."""

import ast
import copy
import functools
import importlib
import importlib.util
import random
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import (
    ROOT,
    SUBPROCESS_ENV,
    assert_choice_error,
    assert_finite_series,
    assert_ok,
    assert_one_line_error,
    read_scalars,
    run_dir,
    run_script,
)

from hasac_utils.checkpoints import load_learner
from hasac_utils.runs import make_run_dir

ISAACGYM = ROOT / "hasac_isaacgym.py"
isaacgym = importlib.import_module("hasac_isaacgym")
continuous = importlib.import_module("hasac_continuous")

LOSS_TAGS = [
    "losses/qf1_values",
    "losses/qf1_loss",
    "losses/qf2_loss",
    "losses/actor_loss",
    "losses/entropy",
    "losses/alpha",
    "losses/alpha_loss",
]
# 8 transport envs, 20-step episodes, 100 loop steps; updates from step 160, logs every 160 steps.
SMOKE = [
    "--env-id",
    "transport",
    "--num-envs",
    "8",
    "--episode-length",
    "20",
    "--total-timesteps",
    "800",
    "--learning-starts",
    "160",
    "--train-interval",
    "5",
    "--gradient-steps",
    "2",
    "--batch-size",
    "64",
    "--buffer-size",
    "2000",
    "--n-step",
    "3",
    "--hidden-dim",
    "32",
    "--log-interval",
    "160",
    "--eval-interval",
    "100000",
    "--eval-episodes",
    "2",
]


def test_smoke_transport(tmp_path):
    result = run_script(tmp_path, *SMOKE, script=ISAACGYM)
    assert_ok(result)
    assert "warm-up done: training starts" in result.stdout
    scalars = read_scalars(run_dir(tmp_path))
    for tag in LOSS_TAGS + [f"losses/alpha/agent_{i}" for i in range(4)]:
        assert_finite_series(scalars, tag)
        assert [step for step, _ in scalars[tag]] == [320, 480, 640, 800], tag  # the logs after training started
    for tag in ("charts/episodic_return", "charts/episodic_length", "charts/SPS", "eval/episodic_return"):
        assert_finite_series(scalars, tag)
    assert all(length == 20 for _, length in scalars["charts/episodic_length"])  # transport never ends early at random
    alphas = [v for _, v in scalars["losses/alpha"]]
    assert alphas[-1] != alphas[0]  # the temperatures were tuned


def test_script_parses_as_python_38():
    """Isaac Gym runs on Python 3.8: the script and the hasac_utils modules it imports. The check itself must catch
    3.9+ syntax (it does for these two; it is best-effort, so they also avoid 3.9+ library calls by hand)."""
    for newer in ("with (open('a') as a, open('b') as b):\n    pass\n", "match x:\n    case 1:\n        pass\n"):
        with pytest.raises(SyntaxError):
            ast.parse(newer, feature_version=(3, 8))
    utils = ["__init__.py", "runs.py", "checkpoints.py", "evaluation.py", "envs/__init__.py", "envs/dexhands.py"]
    for path in [ISAACGYM, *(ROOT / "hasac_utils" / name for name in utils)]:
        ast.parse(path.read_text(), feature_version=(3, 8))


def _vmas_spec(scenario="transport", num_envs=4):
    return isaacgym.make_env(isaacgym.Args(env_id=scenario, episode_length=10), num_envs)


def _random_batch(envs, batch_size=48, seed=0):
    generator = torch.Generator().manual_seed(seed)
    n, act_dim = envs.n_agents, envs.act_dim
    state, next_state = (
        torch.randn(batch_size, envs.state_dim, generator=generator),
        torch.randn(batch_size, envs.state_dim, generator=generator),
    )
    actions = (torch.rand(batch_size, n, act_dim, generator=generator) * 2 - 1) * envs.action_mask
    return isaacgym.Batch(
        isaacgym.observations_from_state(state, envs.obs_index),
        state,
        actions,
        torch.randn(batch_size, 1, generator=generator),
        isaacgym.observations_from_state(next_state, envs.obs_index),
        next_state,
        (torch.rand(batch_size, 1, generator=generator) < 0.2).float(),
        torch.full((batch_size, 1), 0.99**3),
    )


def _all_tensors(learner):
    modules = [*learner.actors, learner.qf, learner.qf_target]
    return [p.detach() for m in modules for p in m.parameters()] + [a.detach() for a in learner.log_alphas]


def _continuous_twin(learner, envs, args):
    """A hasac_continuous.py Learner for the same agent spaces, holding `learner`'s weights."""
    spec = SimpleNamespace(
        n_agents=envs.n_agents,
        obs_dims=envs.obs_dims,
        act_dims=envs.act_dims,
        act_dim=envs.act_dim,
        state_dim=envs.state_dim,
        action_low=envs.action_low.numpy(),
        action_high=envs.action_high.numpy(),
        action_mask=envs.action_mask.numpy(),
    )
    twin = continuous.build_learner(
        spec,
        continuous.Args(
            **{
                k: getattr(args, k)
                for k in ("hidden_dim", "share_param", "autotune", "alpha", "policy_lr", "q_lr", "alpha_lr")
            }
        ),
        torch.device("cpu"),
    )
    for mine, theirs in zip(learner.actors, twin.actors):
        theirs.load_state_dict(mine.state_dict())
    twin.qf.load_state_dict(learner.qf.state_dict())
    twin.qf_target.load_state_dict(learner.qf_target.state_dict())
    return twin


@pytest.mark.parametrize(
    "scenario, share_param, autotune", [("transport", False, True), ("transport", True, True), ("balance", False, False)]
)
def test_update_matches_hasac_continuous(scenario, share_param, autotune, monkeypatch):
    """Same weights, batch and agent order -> the same updated parameters and losses, twice in a
    row (with --share-param: one step of the shared actor per agent, as hasac_continuous.py takes).
    hasac_continuous.py draws each agent's actions at s once (the draw its own step then differentiates);
    this script draws them again inside each actor step, which its compiled and CUDA-graph halves need.
    Both are the algorithm; their random streams differ, so the sampling noise is zero here (actions
    tanh(mean), log-probs of the mean), and the two must agree bit for bit."""
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)
    envs = _vmas_spec(scenario)
    args = isaacgym.Args(hidden_dim=32, share_param=share_param, autotune=autotune, alpha=0.3)
    learner = isaacgym.build_learner(envs, args, torch.device("cpu"))
    twin = _continuous_twin(learner, envs, args)
    assert all(torch.equal(a, b) for a, b in zip(_all_tensors(learner), _all_tensors(twin)))
    before = [t.clone() for t in _all_tensors(learner)]
    for seed, order in (
        (0, list(reversed(range(envs.n_agents)))),
        (1, random.Random(3).sample(range(envs.n_agents), envs.n_agents)),
    ):
        batch = _random_batch(envs, seed=seed)
        mine = isaacgym.hasac_update(learner, batch, order, 0.01)
        theirs = continuous.hasac_update(twin, batch, np.array(order), 0.01)
        for a, b in zip(_all_tensors(learner), _all_tensors(twin)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        for name in ("qf1_loss", "qf2_loss", "qf1_values", "actor_loss", "entropy", "alphas", "alpha_loss"):
            if theirs[name] is None:
                assert mine[name] is None
            else:
                torch.testing.assert_close(mine[name], theirs[name], rtol=0, atol=0)
    assert all(not torch.equal(a, b) for a, b in zip(_all_tensors(learner)[: -envs.n_agents], before)), (
        "an update left some weights unchanged"
    )


def test_compile_gives_the_eager_update():
    """torch.compile of both halves of the update and of the acting step: the same numbers as
    eager mode within float tolerance (same seed, same noise: fallback_random)."""
    spec = SimpleNamespace(
        n_agents=2,
        obs_dims=[5, 3],
        act_dims=[2, 1],
        obs_dim=5,
        act_dim=2,
        state_dim=6,
        action_low=torch.tensor([[-1.0, -1.0], [0.0, 0.0]]),
        action_high=torch.tensor([[1.0, 1.0], [2.0, 0.0]]),
        action_mask=torch.tensor([[True, True], [True, False]]),
        obs_index=torch.tensor([[0, 1, 2, 3, 4], [3, 4, 5, 6, 6]]),
    )
    args = isaacgym.Args(hidden_dim=16)
    torch.manual_seed(0)
    eager = isaacgym.build_learner(spec, args, torch.device("cpu"))
    compiled = copy.deepcopy(eager)
    initial = [t.clone() for t in _all_tensors(eager)]
    eager_update, compiled_update = isaacgym.make_update(eager), isaacgym.make_update(compiled, compile=True)
    for step in range(3):
        batch = _random_batch(spec, batch_size=32, seed=step)
        torch.manual_seed(100 + step)
        expected = eager_update(batch, [1, 0], 0.05)
        torch.manual_seed(100 + step)
        got = compiled_update(batch, [1, 0], 0.05)
        for a, b in zip(_all_tensors(compiled), _all_tensors(eager)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        for name in ("qf1_loss", "actor_loss", "alpha_loss"):
            torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5)
    assert all(not torch.equal(a, b) for a, b in zip(_all_tensors(compiled)[: -spec.n_agents], initial)), (
        "the updates left weights unchanged"
    )
    obs = torch.randn(7, 2, 5)
    torch.manual_seed(9)
    expected_actions = isaacgym.act(eager, obs)
    torch.manual_seed(9)
    torch.testing.assert_close(isaacgym.make_act(compiled, compile=True)(obs), expected_actions, rtol=1e-4, atol=1e-5)


def _two_agent_spec():
    """Two agents of different observation and action sizes (the padding paths), as in the --compile test."""
    return SimpleNamespace(
        n_agents=2,
        obs_dims=[5, 3],
        act_dims=[2, 1],
        obs_dim=5,
        act_dim=2,
        state_dim=6,
        action_low=torch.tensor([[-1.0, -1.0], [0.0, 0.0]]),
        action_high=torch.tensor([[1.0, 1.0], [2.0, 0.0]]),
        action_mask=torch.tensor([[True, True], [True, False]]),
        obs_index=torch.tensor([[0, 1, 2, 3, 4], [3, 4, 5, 6, 6]]),
    )


def _assert_wrapped_is_eager(device, compile, steps, tolerance):
    """make_update / make_act with --cudagraphs (and --compile or not) against eager `hasac_update` / `act` from the
    same weights, batches, agent orders and seeds. The order alternates, so each agent's step runs both with and without
    resampling; `steps` updates take each of those steps through its warm-up calls, the capture and replays."""
    spec = _two_agent_spec()
    torch.manual_seed(0)
    eager = isaacgym.build_learner(spec, isaacgym.Args(hidden_dim=16, cudagraphs=device.type == "cuda"), device)
    wrapped = copy.deepcopy(eager)
    wrapped_update, policy = isaacgym.make_update(wrapped, compile, True), isaacgym.make_act(wrapped, compile, True)
    for step in range(steps):
        batch = isaacgym.Batch(*(t.to(device) for t in _random_batch(spec, batch_size=32, seed=step)))
        order = [1, 0] if step % 2 else [0, 1]
        torch.manual_seed(100 + step)
        expected = isaacgym.hasac_update(eager, batch, order, 0.05)
        torch.manual_seed(100 + step)
        got = wrapped_update(batch, order, 0.05)
        for a, b in zip(_all_tensors(wrapped), _all_tensors(eager)):
            torch.testing.assert_close(a, b, **tolerance)
        for name in ("qf1_loss", "qf2_loss", "qf1_values", "actor_loss", "alpha_loss", "entropy"):
            torch.testing.assert_close(got[name], expected[name], **tolerance)
    obs = torch.randn(7, 2, 5, device=device)
    for seed in range(4):  # the replays too must draw fresh noise, eager's
        torch.manual_seed(seed)
        expected_actions = isaacgym.act(eager, obs)
        torch.manual_seed(seed)
        torch.testing.assert_close(policy(obs), expected_actions, **tolerance)


def test_cudagraphs_wiring_without_cuda_gives_the_eager_update(monkeypatch):
    """Without CUDA, tensordict's CudaGraphModule warns and calls each wrapped step directly, on copies of its inputs,
    as its graphs would: --cudagraphs' wiring (the learner bound, not an input; the resampled actions returned, not
    written into an input) must give eager's numbers bit for bit. No graph is captured here: see the CUDA test."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the pass-through, also where a GPU exists
    with pytest.warns(UserWarning, match="without CUDA"):
        _assert_wrapped_is_eager(torch.device("cpu"), compile=False, steps=4, tolerance=dict(rtol=0, atol=0))


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="--cudagraphs needs a CUDA GPU (CUDA graphs do not exist on the CPU)"
)
@pytest.mark.parametrize("compile", [False, True])
def test_cudagraphs_give_the_eager_update(compile):
    """--cudagraphs, alone and with --compile: eager's numbers through the warm-up calls, the capture and the replays
    (same seeds; CUDA graphs replay the generator's next draws, and inductor's fallback_random draws eager's)."""
    _assert_wrapped_is_eager(torch.device("cuda"), compile, steps=10, tolerance=dict(rtol=1e-4, atol=1e-5))


def _reference_n_step(history, n_step, gamma):
    """Independent n-step targets from one env's list of valid transitions (dicts), oldest first."""
    out = []
    for start in range(len(history)):
        reward, k = 0.0, 0
        for j in range(start, min(start + n_step, len(history))):
            reward += gamma ** (j - start) * history[j]["reward"]
            k += 1
            if history[j]["ended"]:
                break
        last = history[start + k - 1]
        out.append((history[start]["state"], reward, last["next_state"], float(last["terminated"]), gamma**k))
    return out


def test_replay_buffer_n_step_returns_match_an_independent_computation():
    torch.manual_seed(0)
    num_envs, capacity, n_step, gamma, state_dim = 3, 9, 4, 0.9, 2
    rb = isaacgym.ReplayBuffer(capacity * num_envs, num_envs, state_dim, 1, n_step, gamma, "cpu")
    histories = [[] for _ in range(num_envs)]
    for t in range(40):  # wraps each ring several times
        state, next_state = torch.randn(num_envs, state_dim), torch.randn(num_envs, state_dim)
        rewards = torch.randn(num_envs)
        terminated = torch.rand(num_envs) < 0.15
        truncated = ~terminated & (torch.rand(num_envs) < 0.15)
        valid = torch.rand(num_envs) < 0.8
        rb.add(state, next_state, torch.randn(num_envs, 1), rewards, terminated & valid, truncated & valid, valid)
        for e in range(num_envs):
            if valid[e]:
                histories[e].append(
                    {
                        "state": state[e],
                        "next_state": next_state[e],
                        "reward": rewards[e].item(),
                        "terminated": bool(terminated[e]),
                        "ended": bool(terminated[e] | truncated[e]),
                    }
                )
    checked = 0
    for e in range(num_envs):
        kept = histories[e][-(capacity - 1) :]  # one slot per ring stays free
        assert rb.counts[e].item() == len(kept)
        # a window never reads past the newest transition: compute on what the ring holds
        expected = _reference_n_step(kept, n_step, gamma)
        ages = torch.arange(len(kept) - 1, -1, -1)  # oldest first
        got = rb.n_step_transitions(torch.full((len(kept),), e), ages)
        for i, (state, reward, next_state, terminated, discount) in enumerate(expected):
            torch.testing.assert_close(got[0][i], state)
            torch.testing.assert_close(got[2][i, 0], torch.tensor(reward), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(got[3][i], next_state)
            assert got[4][i, 0].item() == terminated and got[5][i, 0].item() == pytest.approx(discount)
            checked += 1
    assert checked >= 3 * (capacity - 1) - 3
    state, actions, rewards, next_state, terminations, discounts = rb.sample(256)
    assert state.shape == (256, state_dim) and rewards.shape == terminations.shape == discounts.shape == (256, 1)
    powers = torch.tensor([gamma**k for k in range(1, n_step + 1)])
    assert torch.isclose(discounts, powers).any(1).all()  # gamma^k with 1 <= k <= n


def test_vmas_adapter_resets_together_at_the_time_limit():
    envs = isaacgym.make_env(isaacgym.Args(env_id="transport", episode_length=5), 3)
    obs, state, avail = envs.reset(seed=0)
    assert avail is None and obs.shape == (3, 4, envs.obs_dim) and state.shape == (3, envs.state_dim)
    torch.testing.assert_close(obs, isaacgym.observations_from_state(state, envs.obs_index))
    for t in range(1, 6):
        obs, state, _, reward, terminated, truncated, info = envs.step(torch.zeros(3, 4, envs.act_dim))
        assert reward.shape == (3,) and info["valid"].all() and not terminated.any()
        assert truncated.all() == (t == 5) and truncated.any() == (t == 5)
    assert not torch.equal(info["final_state"], state)  # the true final state, then the reset one
    assert envs.elapsed == 0


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--env-id", "not_a_scenario"], "unknown env id 'not_a_scenario'; valid: the VMAS scenarios"),
        (["--env-id", "ShadowHandOver"], "Isaac Gym is not installed"),
        (["--cudagraphs"], "--cudagraphs needs a GPU"),
        (["--num-envs", "0"], "--num-envs must be positive"),
    ],
)
def test_bad_input_one_line_error(tmp_path, args, expected):
    result = run_script(tmp_path, *args, script=ISAACGYM)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


def test_bad_choice_names_the_choices(tmp_path):
    result = run_script(tmp_path, "--matmul-precision", "low", script=ISAACGYM)
    assert_choice_error(result, "--matmul-precision", "low", ["highest", "high", "medium"], tmp_path)


def test_smoke_run_prints_progress_with_time_left(tmp_path):
    result = run_script(tmp_path, *SMOKE, "--total-timesteps", "480", script=ISAACGYM)
    assert_ok(result)
    lines = [line for line in result.stdout.splitlines() if line.startswith("global_step=") and "time left" in line]
    assert len(lines) == 3, result.stdout
    assert re.fullmatch(
        r"global_step=480/480 \(100\.0%\), SPS=\d+, recent episodic_return=-?\d+\.\d+, time left ~0m00s", lines[-1]
    ), lines[-1]


def test_the_log_line_where_training_starts_reads_the_warm_up(tmp_path):
    """With --log-interval 200 the first update (step 200, --train-interval 5) falls on a log step. The log comes before
    that training phase, so it still reads the warm-up; training's speed window starts after it. (Restarted first, the
    window was empty: SPS=0 and a time left of ~55555555h.)"""
    result = run_script(tmp_path, *SMOKE, "--total-timesteps", "400", "--log-interval", "200", script=ISAACGYM)
    assert_ok(result)
    lines = re.findall(
        r"global_step=(\d+)/400 \(\d+\.\d%\), SPS=(\d+), recent episodic_return=\S+, time left (.*)", result.stdout
    )
    assert [(step, left) for step, _, left in lines] == [("200", "unknown until training starts"), ("400", "~0m00s")]
    assert all(int(sps) > 0 for _, sps, _ in lines), lines


def test_non_finite_update_stops_the_run_naming_loss_and_step(tmp_path):
    """An absurd learning rate makes the actors' actions NaN at once, which VMAS refuses with an assert at the next
    step, long before the next log (800): the run stops with one line naming the loss, not VMAS's traceback."""
    flags = ["--total-timesteps", "800", "--log-interval", "800", "--q-lr", "1e12", "--policy-lr", "1e12"]
    result = run_script(tmp_path, *SMOKE, *flags, script=ISAACGYM)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    message = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"error: (losses/\w+ is (nan|inf|-inf)|the actions are not finite) at global_step=\d+; .*", message)


def test_evaluation_leaves_the_training_random_streams_alone():
    """VMAS keeps one random state for all its envs, and seeding one env (as evaluate's reset does) re-seeds it and,
    through torch.manual_seed, the CUDA generators: without isolation every evaluation would rewind the training
    envs' next initial states to the eval seed's. Training with evaluations in between must see what it sees without."""

    def training_draws(evaluate_between: bool):
        random.seed(1), np.random.seed(1), torch.manual_seed(1)
        envs = isaacgym.make_env(isaacgym.Args(env_id="transport", episode_length=3), 4, seed=1)
        learner = isaacgym.build_learner(envs, isaacgym.Args(hidden_dim=16), torch.device("cpu"))
        obs, states = envs.reset(seed=1)[0], []
        for _ in range(3):
            if evaluate_between:
                eval_envs = isaacgym.make_env(isaacgym.Args(env_id="transport", episode_length=3), 2, seed=7)
                assert len(isaacgym.evaluate(learner, eval_envs, 2, seed=7, device="cpu")) == 2
            for _ in range(3):  # to the time limit: the training envs reset from VMAS's random state
                obs, state = envs.step(isaacgym.act(learner, obs))[:2]
            states.append(state)
        return torch.stack(states), torch.rand(3), np.random.rand(3), random.random()

    quiet, evaluated = training_draws(False), training_draws(True)
    torch.testing.assert_close(evaluated[0], quiet[0], rtol=0, atol=0)
    torch.testing.assert_close(evaluated[1], quiet[1], rtol=0, atol=0)
    assert np.array_equal(evaluated[2], quiet[2]) and evaluated[3] == quiet[3]


def _load_to_evaluate(path: str):
    """-> (saved Args, Learner) as --eval-checkpoint loads them: the script's builder, on the CPU."""
    build = functools.partial(isaacgym.learner_to_evaluate, device=torch.device("cpu"))
    return load_learner(path, str(ISAACGYM), isaacgym.Args, build)


@pytest.fixture(scope="module")
def transport_checkpoint(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("transport")
    result = run_script(cwd, *SMOKE, "--total-timesteps", "320", "--save-model", script=ISAACGYM)
    assert_ok(result)
    return cwd, next(run_dir(cwd).glob("*.cleanrl_model")), result


def test_save_model_then_eval_checkpoint(transport_checkpoint):
    cwd, checkpoint, result = transport_checkpoint
    assert f"--eval-checkpoint {checkpoint.relative_to(cwd)}" in result.stdout
    saved_args, learner = _load_to_evaluate(str(checkpoint))
    assert saved_args.env_id == "transport" and saved_args.episode_length == 20 and len(learner.actors) == 4
    evaluated = run_script(cwd, "--eval-checkpoint", str(checkpoint.relative_to(cwd)), "--eval-episodes", "3", script=ISAACGYM)
    assert_ok(evaluated)
    assert re.search(r"^transport: eval/episodic_return -?\d+\.\d+ \+- \d+\.\d+ over 3 episodes$", evaluated.stdout, re.M), (
        evaluated.stdout
    )
    assert len(list((cwd / "runs").iterdir())) == 1  # evaluating writes no run


def test_a_gpu_runs_checkpoint_loads_and_evaluates_on_the_cpu(transport_checkpoint, tmp_path):
    """The envs follow the loading device, not the saved --cuda: a checkpoint written with --cuda (marked so here)
    loads and evaluates on a machine without a GPU."""
    _, checkpoint, _ = transport_checkpoint
    saved = torch.load(checkpoint, weights_only=False)
    saved["args"]["cuda"] = True
    torch.save(saved, tmp_path / "gpu.cleanrl_model")
    saved_args, learner = _load_to_evaluate(str(tmp_path / "gpu.cleanrl_model"))
    assert saved_args.cuda and all(p.device.type == "cpu" for p in learner.qf.parameters())
    result = run_script(tmp_path, "--eval-checkpoint", "gpu.cleanrl_model", "--eval-episodes", "2", script=ISAACGYM)
    assert_ok(result)


def test_a_dexhands_checkpoint_is_refused_before_any_env_is_built(transport_checkpoint, tmp_path):
    """Isaac Gym holds one simulation per process, so a Bi-DexHands checkpoint is not evaluated here: the refusal
    reads the saved env id first (loading the learner built a DexHands env, which ended in Isaac Gym's install hint,
    and on a machine with Isaac Gym started a simulation before refusing)."""
    _, checkpoint, _ = transport_checkpoint
    saved = torch.load(checkpoint, weights_only=False)
    saved["args"]["env_id"] = "ShadowHandOver"
    torch.save(saved, tmp_path / "hands.cleanrl_model")
    result = run_script(tmp_path, "--eval-checkpoint", "hands.cleanrl_model", script=ISAACGYM)
    assert_one_line_error(result, ["Bi-DexHands checkpoints cannot be evaluated here"], tmp_path)


def test_eval_checkpoint_of_a_non_checkpoint_or_another_scripts_checkpoint(tmp_path):
    (tmp_path / "notes.cleanrl_model").write_text("not a checkpoint")
    result = run_script(tmp_path, "--eval-checkpoint", "notes.cleanrl_model", script=ISAACGYM)
    assert_one_line_error(result, ["cannot evaluate checkpoint 'notes.cleanrl_model'", "not a checkpoint"], tmp_path)
    torch.save({"script": "hasac_continuous.py", "args": {"env_id": "Ant-4x2"}}, tmp_path / "c.cleanrl_model")
    result = run_script(tmp_path, "--eval-checkpoint", "c.cleanrl_model", script=ISAACGYM)
    assert_one_line_error(result, ["not a hasac_isaacgym.py checkpoint (written by hasac_continuous.py)"], tmp_path)


def test_eval_checkpoint_of_a_missing_or_stale_file(transport_checkpoint, tmp_path):
    """A typo in the path, or a checkpoint whose run had a flag this version no longer has: one line, no traceback."""
    result = run_script(tmp_path, "--eval-checkpoint", "missing.cleanrl_model", script=ISAACGYM)
    assert_one_line_error(result, ["cannot evaluate checkpoint 'missing.cleanrl_model'", "No such file"], tmp_path)
    _, checkpoint, _ = transport_checkpoint
    saved = torch.load(checkpoint, weights_only=False)
    saved["args"]["a_removed_flag"] = 1
    torch.save(saved, tmp_path / "stale.cleanrl_model")
    result = run_script(tmp_path, "--eval-checkpoint", "stale.cleanrl_model", script=ISAACGYM)
    assert_one_line_error(result, ["cannot evaluate checkpoint 'stale.cleanrl_model'", "a_removed_flag"], tmp_path)


@pytest.mark.parametrize("signal_name, exit_status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_interrupt_saves_a_loadable_checkpoint_and_exits_with_the_signals_status(tmp_path, signal_name, exit_status):
    import signal

    args = [*SMOKE, "--total-timesteps", "100000000", "--save-model"]
    process = subprocess.Popen(
        [sys.executable, str(ISAACGYM), *args],
        cwd=tmp_path,
        env=SUBPROCESS_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background job inherits an ignored SIGINT
    )
    try:
        for line in process.stdout:  # block until the run has logged losses after training started
            if line.startswith("global_step=480/"):
                break
        process.send_signal(getattr(signal, signal_name))
        output = process.communicate(timeout=120)[0]
    finally:
        process.kill()
    assert process.returncode == exit_status, output
    interrupted_step = int(re.search(r"interrupted at global_step=(\d+)", output).group(1))
    checkpoint = next(run_dir(tmp_path).glob("*.cleanrl_model"))
    assert torch.load(checkpoint, weights_only=False)["global_step"] == interrupted_step >= 480
    assert_finite_series(read_scalars(run_dir(tmp_path)), "losses/qf1_loss")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--gamma", "2"], ["--gamma must be in [0, 1], got 2"]),
        (["--total-timesteps", "160"], ["--total-timesteps (160) must exceed --learning-starts (160)"]),
        (["--buffer-size", "32"], ["--buffer-size (32) must be at least --batch-size (64)"]),
        (["--total-timesteps", "801"], ["multiple of --num-envs 8: 800 or 808"]),
    ],
)
def test_impossible_budgets_one_line_error(tmp_path, args, expected):
    assert_one_line_error(run_script(tmp_path, *SMOKE, *args, script=ISAACGYM), expected, tmp_path)


def test_run_dirs_never_collide(tmp_path):
    names = [make_run_dir("transport__hasac_isaacgym__1__1700000000") for _ in range(2)]
    assert names == ["transport__hasac_isaacgym__1__1700000000", "transport__hasac_isaacgym__1__1700000000_2"]


# ---- benchmark/vmas_reference.py: the VMAS results' yardsticks ----
def test_vmas_reference_heuristic_beats_random_through_the_adapter_and_feeds_plot():
    """VMAS's own transport heuristic, run through this script's VmasEnv, scores far above random actions (it would
    not if the adapter mixed up agents' observations or actions, or lost the reward), and the --reference strings
    printed for quick.sh parse as plot.py's --reference rows."""
    reference_py = ROOT / "benchmark" / "vmas_reference.py"
    command = [sys.executable, str(reference_py), "--env-ids", "transport", "--episodes", "8", "--steps", "1000", "2000"]
    result = subprocess.run(command, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    means = dict(re.findall(r"transport: VMAS (\w+) policy (\S+) \+-", result.stdout))
    assert float(means["heuristic"]) > 2.0 and abs(float(means["random"])) < 0.5, result.stdout
    spec = importlib.util.spec_from_file_location("plot", ROOT / "benchmark" / "plot.py")
    plot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot)
    rows = [plot.reference(line.removeprefix("--reference=")) for line in result.stdout.splitlines() if "=" in line]
    assert [(row.env_id, len(row.values)) for row in rows] == [("transport", 2), ("transport", 2)]
    assert rows[0].values[0] == pytest.approx(float(means["heuristic"]), abs=0.01)
    bad = subprocess.run([sys.executable, str(reference_py), "--env-ids", "dispersion"], capture_output=True, text=True)
    assert bad.returncode == 2 and "has no HeuristicPolicy" in bad.stderr.splitlines()[-1]
