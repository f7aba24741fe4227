"""Multi-Agent MuJoCo (gymnasium_robotics.mamujoco_v1) with what the library lacks for the paper's tasks: the paper's
scenario names, its agent partitions (HalfCheetah-3x2 as the official implementation groups it, Walker2d-6x1, ...), and
a MuJoCo warning handler without the 40 identical lines of HalfCheetah's deprecated attribute."""

import sys

PAPER_MAMUJOCO_TASKS = (
    *("Ant-2x4", "Ant-4x2", "Ant-8x1", "HalfCheetah-2x3", "HalfCheetah-3x2", "HalfCheetah-6x1", "Walker2d-2x3"),
    *("Walker2d-6x1", "HumanoidStandup-17x1", "ManyAgentSwimmer-10x2"),
)
# scenario names -> gymnasium_robotics.mamujoco_v1 scenarios: the library's own, and the paper's names for two of them
MAMUJOCO_SCENARIOS = {name: name for name in "Ant HalfCheetah Walker2d Hopper Humanoid HumanoidStandup Swimmer".split()}
MAMUJOCO_SCENARIOS |= {name: name for name in "Reacher Pusher ManySegmentSwimmer ManySegmentAnt CoupledHalfCheetah".split()}
MAMUJOCO_SCENARIOS |= {"ManyAgentSwimmer": "ManySegmentSwimmer", "ManyAgentAnt": "ManySegmentAnt"}
# The official implementation groups HalfCheetah-3x2's joints non-consecutively; other
# partitions the library lacks are its joints, in its order, split into consecutive groups.
OFFICIAL_JOINT_GROUPS = {("HalfCheetah", "3x2"): (("bfoot", "bshin"), ("bthigh", "ffoot"), ("fshin", "fthigh"))}


def make_mamujoco_env(scenario: str, agent_conf: str, agent_obsk: int, render_mode, max_episode_steps: int):
    """One pettingzoo ParallelEnv of `scenario` (a key of MAMUJOCO_SCENARIOS) split into `agent_conf` (e.g. 4x2), each
    agent observing its joints' `agent_obsk` nearest neighbours; ValueError for an impossible partition."""
    if agent_obsk < 0:
        raise ValueError("--agent-obsk must be >= 0")
    import mujoco
    from gymnasium_robotics import mamujoco_v1

    mujoco.set_mju_user_warning(print_mujoco_warning)
    scenario = MAMUJOCO_SCENARIOS[scenario]
    return mamujoco_v1.parallel_env(
        scenario,
        agent_conf,
        agent_obsk=agent_obsk,
        agent_factorization=mamujoco_factorization(scenario, agent_conf),
        render_mode=render_mode,
        max_episode_steps=max_episode_steps,
    )


def mamujoco_factorization(scenario: str, agent_conf: str):
    """The library's agent factorisation for `agent_conf`, or one built for a partition it lacks."""
    from gymnasium_robotics.envs.multiagent_mujoco.obsk import get_parts_and_edges

    try:
        get_parts_and_edges(scenario, agent_conf)
        return None  # the library has this partition
    except Exception as error:  # the library raises a bare Exception for a partition it lacks; anything else is a real error
        if not str(error).startswith("UNKNOWN partitioning config"):
            raise
    try:
        (joints,), edges, globals_ = get_parts_and_edges(scenario, None)
    except Exception:
        raise ValueError(f"{scenario} has no partition {agent_conf!r} (see gymnasium_robotics' MaMuJoCo docs)") from None
    n_joints = len(joints)
    groups = OFFICIAL_JOINT_GROUPS.get((scenario, agent_conf))
    if groups is None:
        n_agents, joints_per_agent = (int(x) for x in agent_conf.split("x")) if _is_nxk(agent_conf) else (0, 0)
        if n_agents * joints_per_agent != n_joints:
            raise ValueError(
                f"{scenario} has {n_joints} joints: partition {agent_conf!r} is impossible; "
                f"use NxK with N*K={n_joints} (e.g. {n_joints}x1) or one of the library's own"
            )
        by_index = [joints[i : i + joints_per_agent] for i in range(0, n_joints, joints_per_agent)]
        return {"partition": [tuple(p) for p in by_index], "edges": edges, "globals": globals_}
    by_label = {joint.label: joint for joint in joints}
    return {"partition": [tuple(by_label[j] for j in g) for g in groups], "edges": edges, "globals": globals_}


def _is_nxk(agent_conf: str) -> bool:
    parts = agent_conf.split("x")
    return len(parts) == 2 and all(p.isdigit() and int(p) > 0 for p in parts)


def print_mujoco_warning(message: str):
    """MuJoCo's warning handler, minus one line. MuJoCo 4 warns on every model compile that
    gymnasium's half_cheetah.xml uses the deprecated `settotalmass` (harmless): 40 identical
    lines, and a MUJOCO_LOG.TXT in the working directory, at the start of each HalfCheetah run."""
    if "settotalmass" not in message:
        print(f"MuJoCo warning: {message}", file=sys.stderr)
