"""Speed of the HASAC scripts: ms per full update, its achieved GFLOP/s, and env-steps/s.

    python benchmark/speed.py                      # the issue's four tasks, default config
    python benchmark/speed.py --tasks Ant-4x2 --threads 2 --train-steps 40000
    python benchmark/speed.py --matmul-precision highest   # exact float32 only
    python benchmark/speed.py --script hasac_isaacgym --threads 1   # transport at 256/1024/4096 envs, eager and --compile
    python benchmark/speed.py --script hasac_smac --actor-loss gumbel expected --train-steps 0   # SMAX 3m and 3s5z

Per task and `--matmul-precision` (the script's flag; highest = exact float32) it prints
- update ms: one full update (critic + every agent's sequential actor step + Polyak), the
  median of `--repeats` timed updates at the default batch size, on real replay data;
- GFLOP/s: the update's FLOPs (torch.utils.flop_counter) over its time, and that as a
  fraction of a plain float32 torch.mm (highest precision) measured in the same process on the same thread count;
- env-steps/s: a real training run of the script (subprocess), measured between the
  first `charts/SPS` log after learning starts and the last one, so warm-up is excluded.
For hasac_discrete.py and hasac_smac.py, the same per `--actor-loss` too (hasac_smac with the FP critic state of
the official SMAC configs and benchmark/hasac_smac.sh).
For hasac_isaacgym.py, per number of parallel envs (`--envs`), mode (`--modes`) and precision: env-steps/s
of the loop's collection part, and ms per full update.
"""

import argparse
import importlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TASKS = {
    "hasac_continuous": ["Ant-4x2", "HalfCheetah-6x1", "ManyAgentSwimmer-10x2", "simple_spread_v3"],
    "hasac_isaacgym": ["transport"],
    "hasac_discrete": ["simple_spread_v3"],
    "hasac_smac": ["3m", "3s5z"],
}


def matmul_gflops(threads: int, repeats: int = 200) -> float:
    """Rate of a plain torch.mm of the update's typical shape ([1000, 256] @ [256, 256])."""
    a, b = torch.randn(1000, 256), torch.randn(256, 256)
    for _ in range(20):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * 1000 * 256 * 256 * repeats / (time.perf_counter() - start) / 1e9


def real_batch(module, args, envs, learner):
    """A batch of real transitions: a short random rollout through the script's own buffer layout."""
    obs, state, _ = envs.reset(seed=0)
    observations, states, actions = [], [], []
    while len(observations) * envs.num_envs < args.batch_size * 2:
        action = np.random.uniform(envs.action_low, envs.action_high, (envs.num_envs, envs.n_agents, envs.act_dim)).astype(
            np.float32
        )
        observations.append(obs)
        states.append(state)
        actions.append(action)
        obs, state, *_ = envs.step(action)
    obs = torch.as_tensor(np.concatenate(observations)[: args.batch_size])
    state = torch.as_tensor(np.concatenate(states)[: args.batch_size])
    action = torch.as_tensor(np.concatenate(actions)[: args.batch_size])
    n = len(obs)
    return module.Batch(
        obs,
        state,
        action,
        torch.randn(n, 1),
        obs.roll(1, 0),
        state.roll(1, 0),
        torch.zeros(n, 1),
        torch.full((n, 1), args.gamma**args.n_step),
    )


def real_discrete_batch(module, args, envs):
    """hasac_discrete / hasac_smac: a batch of real transitions from a short rollout of uniformly random available actions,
    with the masks (and, for hasac_smac, the critic state and alive flags) as the scripts' loops build them."""
    obs, state, avail = envs.reset(seed=0)
    rows = []
    while len(rows) * envs.num_envs < args.batch_size * 2:
        action = module.random_available_actions(np.asarray(avail))
        rows.append((np.asarray(obs), np.asarray(state), action, np.asarray(avail)))
        obs, state, avail, *_ = envs.step(action)
    obs, state, action, avail = (torch.as_tensor(np.concatenate(x)[: args.batch_size]) for x in zip(*rows))
    n = len(obs)
    obs, state = obs.float(), state.float()
    next_obs, next_state = obs.roll(1, 0), state.roll(1, 0)
    if hasattr(module, "critic_state"):  # hasac_smac
        state = module.critic_state(obs, state, envs.own_features, args.state_type)
        next_state = module.critic_state(next_obs, next_state, envs.own_features, args.state_type)
    fields = dict(obs=obs, state=state, actions=action.float(), rewards=torch.randn(n, 1), next_obs=next_obs)
    fields.update(next_state=next_state, terminations=torch.zeros(n, 1), discounts=torch.full((n, 1), args.gamma**args.n_step))
    if hasattr(module, "critic_state"):
        fields.update(avail=avail.bool(), next_avail=avail.bool().roll(1, 0), alive=torch.ones(n, envs.n_agents))
    return module.Batch(**fields)


def time_update(module, task: str, repeats: int, precision: str, actor_loss: str = "gumbel"):
    torch.set_float32_matmul_precision(precision)
    if hasattr(module, "critic_state"):  # hasac_smac on SMAX, with the FP state of the official configs
        args = module.Args(env_id=task, matmul_precision=precision, actor_loss=actor_loss, state_type="FP")
        envs = module.make_env(args, args.num_envs)
    elif hasattr(module, "random_available_actions"):  # hasac_discrete
        args = module.Args(env_id=task, matmul_precision=precision, actor_loss=actor_loss)
        envs = module.make_env(args, args.num_envs)
    else:
        args = module.Args(env_id=task, matmul_precision=precision)
        envs = module.make_env(args, args.num_envs)
    learner = module.build_learner(envs, args, torch.device("cpu"))
    if hasattr(module, "random_available_actions"):
        batch = real_discrete_batch(module, args, envs)
    else:
        batch = real_batch(module, args, envs, learner)
    envs.close()
    order = np.arange(envs.n_agents)
    for _ in range(5):
        module.hasac_update(learner, batch, np.random.permutation(order), args.tau)
    with FlopCounterMode(display=False) as counter:
        module.hasac_update(learner, batch, order, args.tau)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        module.hasac_update(learner, batch, np.random.permutation(order), args.tau)
        times.append(time.perf_counter() - start)
    return statistics.median(times), counter.get_total_flops(), envs.n_agents


def training_sps(script: str, task: str, threads: int, train_steps: int, precision: str, extra=()) -> float:
    """Env-steps/s of a real run after warm-up, from the wall times of its `charts/SPS` logs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    learning_starts = 10_000
    with tempfile.TemporaryDirectory() as workdir:
        command = [
            sys.executable,
            os.path.join(ROOT, f"{script}.py"),
            "--env-id",
            task,
            "--total-timesteps",
            str(learning_starts + train_steps),
            "--eval-interval",
            str(10**9),
            "--eval-episodes",
            "1",
            "--matmul-precision",
            precision,
            *extra,
        ]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        subprocess.run(command, cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL)
        run_dir = os.path.join(workdir, "runs", os.listdir(os.path.join(workdir, "runs"))[0])
        events = EventAccumulator(run_dir, size_guidance={"scalars": 0})
        events.Reload()
        logs = [e for e in events.Scalars("charts/SPS") if e.step > learning_starts]
    if len(logs) < 2:
        raise SystemExit(f"error: --train-steps {train_steps} is too short to time {task}; use at least 20000")
    return (logs[-1].step - logs[0].step) / (logs[-1].wall_time - logs[0].wall_time)


def isaacgym_row(module, env_id: str, num_envs: int, compile: bool, precision: str, steps: int, repeats: int, device):
    """hasac_isaacgym.py: env-steps/s of the collection part of the loop (acting, the VMAS step,
    the replay write) and the median ms of full updates; eager or --compile."""
    args = module.Args(env_id=env_id, num_envs=num_envs, compile=compile, matmul_precision=precision)
    torch.set_float32_matmul_precision(precision)
    envs = module.make_env(args, num_envs, args.seed, device)
    learner = module.build_learner(envs, args, device)
    update, policy = module.make_update(learner, compile), module.make_act(learner, compile)
    n_agents, act_dim = envs.n_agents, envs.act_dim
    rb = module.ReplayBuffer(
        max(args.buffer_size, 4 * num_envs * args.n_step),
        num_envs,
        envs.state_dim,
        n_agents * act_dim,
        args.n_step,
        args.gamma,
        device,
    )
    obs, state, _ = envs.reset(seed=0)

    def collect(n: int, random_actions: bool):
        nonlocal obs, state
        for _ in range(n):
            if random_actions:
                actions = envs.action_low + (envs.action_high - envs.action_low) * torch.rand(
                    num_envs, n_agents, act_dim, device=device
                )
            else:
                actions = policy(obs)
            next_obs, next_state, _, rewards, terminated, truncated, info = envs.step(actions)
            rb.add(state, info["final_state"], actions.flatten(1), rewards, terminated, truncated, info["valid"])
            obs, state = next_obs, next_state

    collect(max(2, -(-args.batch_size // num_envs)), random_actions=True)
    collect(3, random_actions=False)  # warm-up (and compilation) of the acting step
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    collect(steps, random_actions=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    env_steps_per_s = steps * num_envs / (time.perf_counter() - start)

    def sample_batch():
        s, a, r, ns, term, disc = rb.sample(args.batch_size)
        return module.Batch(
            module.observations_from_state(s, envs.obs_index),
            s,
            a.view(-1, n_agents, act_dim),
            r,
            module.observations_from_state(ns, envs.obs_index),
            ns,
            term,
            disc,
        )

    orders = [random.sample(range(n_agents), n_agents) for _ in range(repeats + 8)]
    for order in orders[:8]:  # warm-up: compiles every agent's step variant
        update(sample_batch(), order, args.tau)
    times = []
    for order in orders[8:]:
        batch = sample_batch()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        metrics = update(batch, order, args.tau)
        metrics["qf1_loss"].item()  # wait for the device
        times.append(time.perf_counter() - start)
    return env_steps_per_s, statistics.median(times) * 1e3, n_agents


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", default="hasac_continuous", choices=sorted(DEFAULT_TASKS), help="which script to measure")
    parser.add_argument("--tasks", nargs="+", help="env ids (default: the script's benchmark set)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, for the update and the training run")
    parser.add_argument("--repeats", type=int, default=30, help="timed updates per task")
    parser.add_argument(
        "--train-steps", type=int, default=30_000, help="env steps of training after warm-up for env-steps/s; 0 skips it"
    )
    parser.add_argument(
        "--envs", type=int, nargs="+", default=[256, 1024, 4096], help="hasac_isaacgym: numbers of parallel envs"
    )
    parser.add_argument(
        "--modes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"], help="hasac_isaacgym: modes"
    )
    parser.add_argument("--steps", type=int, default=30, help="hasac_isaacgym: timed loop steps per row")
    parser.add_argument("--cuda", action="store_true", help="hasac_isaacgym: measure on the GPU")
    losses = ["gumbel", "expected"]
    parser.add_argument(
        "--actor-loss", nargs="+", default=["gumbel"], choices=losses, help="discrete scripts: the losses to time"
    )
    parser.add_argument(
        "--matmul-precision",
        nargs="+",
        default=["highest", "medium"],
        choices=["highest", "high", "medium"],
        help="the script's --matmul-precision values to measure",
    )
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    sys.path.insert(0, ROOT)
    module = importlib.import_module(options.script)
    if options.script == "hasac_isaacgym":
        device = torch.device("cuda" if options.cuda else "cpu")
        print(f"hasac_isaacgym on {device}, {options.threads} threads, torch {torch.__version__}")
        print(
            f"{'task':12s} {'envs':>6s} {'mode':>8s} {'precision':>9s} {'agents':>6s} {'env-steps/s':>12s} {'update ms':>10s}"
        )
        for task in options.tasks or DEFAULT_TASKS[options.script]:
            for mode in options.modes:
                for precision in options.matmul_precision:
                    for num_envs in options.envs:
                        torch.manual_seed(0)
                        # each row compiles afresh for its own learner (and stays under the recompile limit)
                        torch._dynamo.reset()
                        sps, update_ms, n_agents = isaacgym_row(
                            module,
                            task,
                            num_envs,
                            mode == "compile",
                            precision,
                            options.steps,
                            min(options.repeats, 10),
                            device,
                        )
                        print(
                            f"{task:12s} {num_envs:6d} {mode:>8s} {precision:>9s} {n_agents:6d} {sps:12.0f} {update_ms:10.1f}",
                            flush=True,
                        )
        return
    mm_rate = matmul_gflops(options.threads)
    print(f"{options.script}, {options.threads} threads, torch {torch.__version__}; plain torch.mm: {mm_rate:.0f} GFLOP/s")
    discrete = options.script in ("hasac_discrete", "hasac_smac")
    extra = ["--state-type", "FP"] if options.script == "hasac_smac" else []
    columns = ["actor loss", "precision", "agents", "update ms", "GFLOP", "GFLOP/s", "of mm", "env-steps/s"]
    print(f"{'task':24s} " + " ".join(f"{c:>{max(len(c), 6)}s}" for c in columns))
    for task in options.tasks or DEFAULT_TASKS[options.script]:
        for actor_loss in options.actor_loss if discrete else ["-"]:
            for precision in options.matmul_precision:
                loss_args = dict(actor_loss=actor_loss) if discrete else {}
                seconds, flops, n_agents = time_update(module, task, options.repeats, precision, **loss_args)
                rate = flops / seconds / 1e9
                run_extra = [*extra, "--actor-loss", actor_loss] if discrete else []
                sps = float("nan")
                if options.train_steps:
                    sps = training_sps(options.script, task, options.threads, options.train_steps, precision, run_extra)
                cells = f"{actor_loss:>10s} {precision:>9s} {n_agents:6d} {seconds * 1e3:9.1f} {flops / 1e9:6.2f} {rate:7.0f}"
                print(f"{task:24s} {cells} {rate / mm_rate:6.0%} {sps:11.0f}", flush=True)


if __name__ == "__main__":
    main()
