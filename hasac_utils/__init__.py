"""Run operations shared by every hasac_*.py script and forked by none, as cleanrl_utils is for CleanRL: checkpoint
and replay-buffer files and --resume (`checkpoints`), the run's folder, command line, writer, progress line and
graceful stop (`runs`), what evaluation needs around it (`evaluation`), and the optional backends that CI cannot
install (`envs`: StarCraft II, Google Research Football, Bi-DexHands), each imported only when chosen.

Plain functions (and one `Run` record of a training run's state); it never imports a script.
"""
