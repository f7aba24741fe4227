"""Env backends the scripts import only when chosen: the optional ones CI cannot install (StarCraft II, Google
Research Football, Bi-DexHands), and what Multi-Agent MuJoCo's library lacks for the paper's tasks."""
