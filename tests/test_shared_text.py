"""The scripts share text on purpose: every module-level function or class that two scripts both define is textually
identical in them, unless the table below names the scripts whose versions differ and why. A `diff` between two
scripts then shows only what the families need, and a fix made in one script cannot silently miss the others.

The check reads the files (no import), so it runs everywhere, SMAX and Isaac Gym or not.
"""

import ast
import collections

import pytest
from conftest import ROOT

SCRIPTS = ("hasac_continuous", "hasac_discrete", "hasac_smac", "hasac_isaacgym")

# name -> (the groups of scripts whose versions are identical, each group as one string; why they differ).
# A name absent from this table must be identical in every script that defines it.
DIFFERENT = {
    "Args": ("continuous | discrete | smac | isaacgym", "each family's own flags and defaults"),
    "make_env": ("continuous | discrete | smac | isaacgym", "the environment adapters are what a family is"),
    "MultiAgentVecEnv": ("continuous | discrete", "continuous and discrete action spaces"),
    "make_pettingzoo_env": ("continuous | discrete", "MaMuJoCo and MPE against MPE and football"),
    "Actor": ("continuous isaacgym | discrete | smac", "Gaussian against categorical; SMAC masks per state"),
    "sample_actions": ("continuous isaacgym | discrete smac", "squashed Gaussian against Gumbel-Softmax"),
    "act": ("continuous isaacgym | discrete smac", "only discrete actions have availability masks"),
    "Batch": ("continuous discrete isaacgym | smac", "SMAC stores availability and alive masks"),
    "SoftQNetwork": ("continuous discrete isaacgym | smac", "SMAC's FP state: one critic row per agent"),
    "critic_target": ("continuous discrete isaacgym | smac", "dead agents and FP rows"),
    "actor_loss": ("continuous discrete isaacgym | smac", "dead agents and FP rows"),
    "alpha_loss": ("continuous discrete isaacgym | smac", "dead agents are left out of the temperature loss"),
    "own_action_q_values": ("discrete | smac", "FP rows"),
    "expected_actor_loss": ("discrete | smac", "per-state masks, dead agents and FP rows"),
    "Learner": ("continuous isaacgym | discrete | smac", "the discrete loss choice; SMAC's ValueNorm and Huber loss"),
    "hasac_update": (
        "continuous | discrete | smac | isaacgym",
        "the same steps (test_discrete and test_isaacgym check them against continuous's): the expected loss, "
        "SMAC's masks and ValueNorm, isaacgym's halves for torch.compile and CUDA graphs",
    ),
    "build_learner": ("continuous | discrete | smac | isaacgym", "each family's actors, target entropies and optimisers"),
    "transition_to_store": ("continuous discrete | smac", "SMAC stores the next availability masks too"),
    "replay_row": (
        "continuous | discrete | smac",
        "full-state MaMuJoCo stores the state alone; discrete has no full-state observations; SMAC stores masks too",
    ),
    "sample_batch": (
        "continuous | discrete | smac | isaacgym",
        "full-state observations, SMAC's FP state and masks, isaacgym's own on-device buffer",
    ),
    "evaluate": ("continuous | discrete | smac | isaacgym", "masks, win rates, and on-device envs"),
}


def _definitions():
    """name -> {script: source text of its top-level definition, decorators included}."""
    found = collections.defaultdict(dict)
    for script in SCRIPTS:
        source = (ROOT / f"{script}.py").read_text()
        lines = source.splitlines()
        for node in ast.parse(source).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
                found[node.name][script.removeprefix("hasac_")] = "\n".join(lines[start - 1 : node.end_lineno])
    return {name: versions for name, versions in found.items() if len(versions) > 1}


DEFINITIONS = _definitions()


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_shared_definitions_are_identical_or_their_difference_is_named(name):
    versions = DEFINITIONS[name]
    groups = collections.defaultdict(list)
    for script, text in versions.items():
        groups[text].append(script)
    found = sorted(sorted(group) for group in groups.values())
    expected = [sorted(versions)]  # one group: every script that defines it
    if name in DIFFERENT:
        expected = sorted(sorted(group.split()) for group in DIFFERENT[name][0].split("|"))
    assert found == expected, f"{name}: identical in {found}, expected {expected}"


def test_every_named_difference_is_still_shared():
    """A stale entry (a name no longer defined in two scripts) would hide nothing, but it misleads a reader."""
    assert set(DIFFERENT) <= set(DEFINITIONS), set(DIFFERENT) - set(DEFINITIONS)


def test_the_shared_definitions_include_the_core():
    """The functions that make the algorithm: defined in every script, so a rename cannot slip out. (The run operations
    live once, in hasac_utils, and no script defines them.)"""
    for name in ("critic_target", "actor_loss", "alpha_loss", "soft_update"):
        assert set(DEFINITIONS[name]) == {script.removeprefix("hasac_") for script in SCRIPTS}, name
    for name in ("build_learner", "evaluate", "linear", "stack_actor_weights", "sample_batch", "act", "hasac_update"):
        assert len(DEFINITIONS[name]) == len(SCRIPTS), name
    run_operations = ("save_checkpoint", "load_checkpoint", "resume_training", "load_buffer", "check_args", "make_run_dir")
    assert not set(run_operations) & set(_all_top_level_names()), "a run operation is defined in a script again"


def _all_top_level_names() -> set:
    names = set()
    for script in SCRIPTS:
        tree = ast.parse((ROOT / f"{script}.py").read_text())
        names |= {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    return names
