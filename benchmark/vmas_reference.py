"""Reference returns for the VMAS results: what VMAS's own hand-written policy for a scenario (the `HeuristicPolicy`
class in `vmas.scenarios.<scenario>`) and uniform random actions score under hasac_isaacgym.py's evaluation protocol:
its VmasEnv adapter (team reward, time limit), one episode per env from one seeded reset, summed to the time limit.

VMAS is not in the paper and the official implementation has no VMAS config, so these are the yardsticks the quick
VMAS curves are read against (benchmark/quick.sh adds them to the table).

    python benchmark/vmas_reference.py --env-ids balance transport
    python benchmark/vmas_reference.py --env-ids balance --steps 64000 128000   # plot.py --reference strings too
"""

import argparse
import importlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hasac_isaacgym import VmasEnv  # noqa: E402  (the training script's own adapter, so the protocol is the same)


def episode_returns(env_id: str, heuristic, episodes: int, seed: int, episode_length: int) -> torch.Tensor:
    """[episodes] team returns of a VMAS `HeuristicPolicy` (None: uniform random actions) on `episodes` envs stepped to
    the time limit."""
    envs = VmasEnv(env_id, episodes, "cpu", episode_length, seed)
    generator = torch.Generator().manual_seed(seed)
    obs, _, _ = envs.reset(seed=seed)
    returns = torch.zeros(episodes)
    with torch.no_grad():
        for _ in range(envs.episode_length):
            if heuristic is not None:  # each agent's action from its own observation, within its action bounds
                per_agent = [
                    heuristic.compute_action(obs[:, i, : envs.obs_dims[i]], float(envs.action_high[i, 0]))
                    for i in range(envs.n_agents)
                ]
                actions = torch.nn.functional.pad(torch.stack(per_agent, 1), (0, envs.act_dim - per_agent[0].shape[-1]))
            else:  # the warm-up's actions: uniform on the action box
                uniform = torch.rand(episodes, envs.n_agents, envs.act_dim, generator=generator)
                actions = envs.action_low + uniform * (envs.action_high - envs.action_low)
            obs, _, _, reward, _, _, info = envs.step(actions)
            returns += reward * info["valid"]
    return returns


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--env-ids", nargs="+", default=["balance", "transport"], help="VMAS scenarios with a heuristic")
    parser.add_argument("--episodes", type=int, default=64, help="episodes per policy (hasac_isaacgym's --eval-episodes)")
    parser.add_argument("--seed", type=int, default=10_001, help="the reset seed (training seed 1's evaluation seed)")
    parser.add_argument("--episode-length", type=int, default=None, help="the time limit (default: the script's, 100)")
    parser.add_argument("--steps", nargs="*", type=int, default=[], help="also print plot.py --reference strings")
    args = parser.parse_args(argv)
    if args.episodes <= 0:
        parser.error(f"--episodes must be positive, got {args.episodes}")
    references = []
    for env_id in args.env_ids:
        try:
            heuristic = importlib.import_module(f"vmas.scenarios.{env_id}").HeuristicPolicy(continuous_action=True)
        except (ImportError, AttributeError):
            parser.error(f"VMAS scenario {env_id!r} has no HeuristicPolicy (balance, transport, wheel, navigation have)")
        for policy, acting in (("heuristic", heuristic), ("random", None)):
            returns = episode_returns(env_id, acting, args.episodes, args.seed, args.episode_length)
            mean, std = returns.mean().item(), returns.std(correction=1).item()  # the sample std (ddof 1)
            print(f"{env_id}: VMAS {policy} policy {mean:.4g} +- {std:.4g} over {args.episodes} episodes", flush=True)
            if args.steps:
                values = ",".join([f"{mean:.2f}"] * len(args.steps))
                references.append(f"{env_id}:VMAS {policy} policy ({args.episodes} episodes, sample std {std:.2f})={values}")
    for text in references:
        print(f"--reference={text}")


if __name__ == "__main__":
    main()
