"""Speed of hasac_isaacgym.py: env-steps/s of the acting loop and ms per full update, eager
and --compile, at several numbers of parallel VMAS envs (CPU unless --cuda).

    python benchmark/speed_isaacgym.py                          # transport, 256 / 1024 / 4096 envs
    python benchmark/speed_isaacgym.py --envs 1024 --modes eager --threads 2

Per row it prints
- env-steps/s: `--steps` loop steps of the training loop's collection part (the policy's
  acting step, the VMAS step, the replay-buffer write), after a warm-up that also compiles;
- update ms: the median of `--repeats` full updates (critic, every agent's sequential actor
  step, Polyak) at the script's default batch size and width, random agent orders, on
  transitions from a random rollout. The update does not depend on the number of envs; it
  is measured per row to show the spread.
"""

import argparse
import os
import random
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(module, env_id: str, num_envs: int, compile: bool, steps: int, repeats: int, device):
    args = module.Args(env_id=env_id, num_envs=num_envs, compile=compile)
    envs = module.make_env(env_id, num_envs, device, args.episode_length, args.seed)
    learner = module.build_learner(envs, args, device)
    update, policy = module.make_update(learner, compile), module.make_act(learner, compile)
    n_agents, act_dim = envs.n_agents, envs.act_dim
    rb = module.ReplayBuffer(max(args.buffer_size, 4 * num_envs * args.n_step), num_envs, envs.state_dim, n_agents * act_dim, args.n_step, args.gamma, device)  # fmt: skip
    obs, state, _ = envs.reset(seed=0)

    def collect(n: int, random_actions: bool):
        nonlocal obs, state
        for _ in range(n):
            if random_actions:
                actions = envs.action_low + (envs.action_high - envs.action_low) * torch.rand(num_envs, n_agents, act_dim, device=device)
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
        return module.Batch(module.observations_from_state(s, envs.obs_index), s, a.view(-1, n_agents, act_dim), r,
                            module.observations_from_state(ns, envs.obs_index), ns, term, disc)  # fmt: skip

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
    parser.add_argument("--env-id", default="transport", help="a VMAS scenario")
    parser.add_argument("--envs", type=int, nargs="+", default=[256, 1024, 4096], help="numbers of parallel envs")
    parser.add_argument("--modes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--steps", type=int, default=30, help="timed loop steps per row")
    parser.add_argument("--repeats", type=int, default=10, help="timed updates per row")
    parser.add_argument("--cuda", action="store_true", help="measure on the GPU")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    sys.path.insert(0, ROOT)
    import hasac_isaacgym as module

    device = torch.device("cuda" if options.cuda else "cpu")
    print(f"hasac_isaacgym {options.env_id} on {device}, {options.threads} threads, torch {torch.__version__}")
    print(f"{'envs':>6s} {'mode':>8s} {'agents':>6s} {'env-steps/s':>12s} {'update ms':>10s}")
    for mode in options.modes:
        for num_envs in options.envs:
            torch.manual_seed(0)
            torch._dynamo.reset()  # each row compiles afresh for its own learner (and stays under the recompile limit)
            sps, update_ms, n_agents = measure(module, options.env_id, num_envs, mode == "compile", options.steps, options.repeats, device)
            print(f"{num_envs:6d} {mode:>8s} {n_agents:6d} {sps:12.0f} {update_ms:10.1f}", flush=True)


if __name__ == "__main__":
    main()
