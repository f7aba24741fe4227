"""A run's life, the same in every script: the command line, the run folder, --resume, the writer, the progress line,
the graceful stop on Ctrl-C or SIGTERM, and the closing saves."""

import collections
import contextlib
import itertools
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import tyro

from hasac_utils.checkpoints import (
    check_resumable,
    load_buffer,
    read_checkpoint,
    resume_training,
    save_buffer,
    save_checkpoint,
    saved_args,
)


@contextlib.contextmanager
def one_line_errors(prefix: str = ""):
    """Bad input (a ValueError, which hasac_utils also raises for unreadable, foreign or stale checkpoints) ends the
    program with one `error:` line, never a traceback deep in a library."""
    try:
        yield
    except ValueError as error:
        raise SystemExit(f"error: {prefix}{error}") from None


def parse_args(Args, script: str, env_defaults: Optional[dict] = None, no_video: Optional[str] = None):
    """The command line, as tyro parses it over the defaults that apply, then checked (one line on bad input).

    The defaults: with `--resume PATH`, the checkpoint's run's own flags, so that `--resume PATH` alone continues it
    (flags given beside it still override, and those that may not change are refused in one line); otherwise those of
    `env_defaults[env_id]` for an env id listed there (hasac_discrete.py's matrix game), else Args' own. `no_video`:
    why this script cannot record videos (then --capture-video is refused)."""
    argv = sys.argv[1:]
    named = tyro.cli(Args, args=[arg for arg in argv if arg not in ("-h", "--help")])  # which env, which checkpoint
    default, checkpoint = Args(), None
    if named.env_id in (env_defaults or {}):
        default = Args(env_id=named.env_id, **env_defaults[named.env_id])
    if named.resume is not None and named.eval_checkpoint is None and os.path.isfile(named.resume):
        with one_line_errors(f"cannot resume from {named.resume!r}: "):
            checkpoint = read_checkpoint(named.resume, script, torch.device("cpu"))
            default = saved_args(checkpoint, Args)
    args = tyro.cli(Args, args=argv, default=default)
    with one_line_errors():
        if args.capture_video and no_video is not None:
            raise ValueError(f"--capture-video is not supported by {os.path.basename(script)} ({no_video}); drop it")
        check_args(args)
    if checkpoint is not None:
        with one_line_errors(f"cannot resume from {args.resume!r}: "):
            check_resumable(checkpoint, args)  # before anything is written
    return args


def check_args(args):
    """Bad flag combinations end the run with one line naming what is valid. Checks every script's shared flags, and
    each family's own where `args` has them."""
    positive = ("total_timesteps", "num_envs", "buffer_size", "batch_size", "train_interval", "gradient_steps", "n_step")
    for name in positive + ("hidden_dim", "eval_interval", "eval_episodes", "log_interval"):
        if getattr(args, name, 1) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if getattr(args, "episode_length", None) is not None and args.episode_length <= 0:
        raise ValueError(f"--episode-length must be positive, got {args.episode_length}")
    if not 0 < args.tau <= 1:
        raise ValueError(f"--tau must be in (0, 1], got {args.tau}")
    if not 0 <= args.gamma <= 1:
        raise ValueError(f"--gamma must be in [0, 1], got {args.gamma}")
    for name in ("policy_lr", "q_lr", "alpha_lr"):
        if not 0 <= getattr(args, name) < math.inf:
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {getattr(args, name)}")
    if not 0 < args.alpha < math.inf:
        raise ValueError(f"--alpha must be positive and finite (the initial value with --autotune), got {args.alpha}")
    if not 0 < getattr(args, "huber_delta", 1) < math.inf:
        raise ValueError(f"--huber-delta must be positive and finite, got {args.huber_delta}")
    if not 0 <= getattr(args, "target_entropy_scale", 0) <= 1:
        raise ValueError(
            f"--target-entropy-scale must be in [0, 1] (a fraction of the maximum entropy), got {args.target_entropy_scale}"
        )
    if not args.exp_name or os.sep in args.exp_name:
        raise ValueError(f"--exp-name names the run and its checkpoint file: no {os.sep!r}, got {args.exp_name!r}")
    if args.buffer_size // args.num_envs <= args.n_step:
        raise ValueError("--buffer-size / --num-envs must exceed --n-step")
    if args.buffer_size < args.batch_size:
        raise ValueError(f"--buffer-size ({args.buffer_size}) must be at least --batch-size ({args.batch_size})")
    if args.eval_checkpoint is None and args.total_timesteps % args.num_envs:
        lower = args.total_timesteps // args.num_envs * args.num_envs
        raise ValueError(
            f"--total-timesteps must be a multiple of --num-envs {args.num_envs}: "
            f"{lower or args.num_envs} or {lower + args.num_envs}"
        )
    if args.eval_checkpoint is None and args.total_timesteps <= args.learning_starts:
        raise ValueError(
            f"--total-timesteps ({args.total_timesteps}) must exceed --learning-starts ({args.learning_starts}), "
            "or nothing is trained"
        )
    if args.resume is not None and (args.eval_checkpoint is not None or not os.path.isfile(args.resume)):
        raise ValueError(f"--resume {args.resume!r} is not a file" if args.eval_checkpoint is None else "--resume trains")
    if args.save_buffer and not (args.save_model or args.resume):
        raise ValueError("--save-buffer writes the buffer beside the checkpoint: add --save-model")
    if args.cuda and not torch.cuda.is_available():
        raise ValueError("--cuda is set but torch.cuda.is_available() is False; train on the CPU with --no-cuda")
    if getattr(args, "cudagraphs", False) and not args.cuda:
        raise ValueError("--cudagraphs needs a GPU (CUDA graphs do not exist on the CPU): add --cuda, or use --compile alone")
    if args.capture_video:
        try:
            import moviepy  # noqa: F401  (gymnasium's save_video needs it; check before any long work)
        except ImportError:
            raise ValueError("--capture-video needs moviepy: pip install moviepy") from None
    if args.track:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ValueError("--track needs wandb: pip install wandb") from None


def make_run_dir(run_name: str) -> str:
    """Creates runs/{run_name} and returns the name. A run started in the same second with the same env and seed gets
    a suffix (_2, _3, ...) instead of mixing its logs and checkpoint into the other's folder."""
    for name in itertools.chain([run_name], (f"{run_name}_{k}" for k in itertools.count(2))):
        with contextlib.suppress(FileExistsError):
            os.makedirs(f"runs/{name}")
            return name


def code_version(root: str = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) -> str:
    """The commit of this checkout, `+modified` if tracked files differ from it; `unknown` outside a git checkout."""
    git = ["git", "-C", root]
    try:
        commit = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout
        changes = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.strip() + ("+modified" if changes.stdout.strip() else "")


def record_code_version(run_dir: str, global_step: int):
    """Appends `{UTC time} {code_version()} {step}` to runs/{run_name}/code_version.txt, one line per start or resume,
    so that a result names the code that made it (benchmark/plot.py reads it, and refuses to mix versions)."""
    with open(os.path.join(run_dir, "code_version.txt"), "a") as file:
        file.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {code_version()} {global_step}\n")


def progress_line(
    global_step: int, total_timesteps: int, recent_sps: float, recent_return: Optional[float], warming_up: bool, win_rate=None
) -> str:
    """How far along the run is, how fast it went lately, how well it does, and how long it still needs."""
    seconds_left = int((total_timesteps - global_step) / max(recent_sps, 1e-9))
    hours, minutes = divmod(seconds_left // 60, 60)
    left = f"~{hours}h{minutes:02d}m" if hours else f"~{minutes}m{seconds_left % 60:02d}s"
    if warming_up:  # no update yet: the warm-up runs far faster than training, so its speed tells nothing
        left = "unknown until training starts"
    returns = "n/a" if recent_return is None else f"{recent_return:.2f}"
    if recent_return is not None and win_rate is not None:
        returns += f", win_rate={win_rate:.3f}"
    return (
        f"global_step={global_step}/{total_timesteps} ({100 * global_step / total_timesteps:.1f}%), SPS={recent_sps:.0f}, "
        f"recent episodic_return={returns}, time left {left}"
    )


def render_video(frames: list, video_dir: str, fps: int = 30):
    from gymnasium.utils.save_video import save_video

    save_video(frames, video_dir, fps=fps, name_prefix="eval")
    print(f"video written to {video_dir}/")


@dataclass
class Run:
    """One training run's folder, writer, step counters and stop requests (built by `start_run`)."""

    args: object
    script: str
    learner: object
    rb: object  # the replay buffer: the one given to start_run, or the one --resume loaded
    run_dir: str
    writer: object
    global_step: int  # where the run starts: 0, or the step its --resume checkpoint was saved at
    learning_starts: int  # no update before this env step (--learning-starts, or a resumed run's refill of its buffer)
    progress_interval: int  # env steps between progress lines
    stop_signals: list = field(default_factory=list)
    recent_returns: collections.deque = None
    recent_wins: collections.deque = None
    trained: bool = False
    start_time: float = field(default_factory=time.time)
    progress_time: float = field(default_factory=time.time)

    def __post_init__(self):
        self.start_step = self.progress_step = self.last_eval = self.global_step
        self.recent_returns = collections.deque(maxlen=self.args.num_envs)
        self.recent_wins = collections.deque(maxlen=self.args.num_envs)

    @property
    def model_path(self) -> str:
        return f"{self.run_dir}/{self.args.exp_name}.cleanrl_model"

    @property
    def stop_requested(self) -> bool:
        return bool(self.stop_signals)

    def log_episodes(self, global_step: int, returns, lengths, wins=None):
        """The episodes that ended at this step: their team returns, lengths and (SMAC) won battles, each [ended]."""
        if len(returns) == 0:
            return
        self.writer.add_scalar("charts/episodic_return", np.mean(returns), global_step)
        self.writer.add_scalar("charts/episodic_length", np.mean(lengths), global_step)
        self.recent_returns.extend(returns)
        if wins is not None:
            self.writer.add_scalar("charts/win_rate", np.mean(wins), global_step)
            self.recent_wins.extend(wins)

    def progress(self, global_step: int):
        """Every `progress_interval` env steps: the progress line, and charts/SPS."""
        if global_step // self.progress_interval == (global_step - self.args.num_envs) // self.progress_interval:
            return
        now = time.time()
        recent_sps = (global_step - self.progress_step) / (now - self.progress_time)
        recent_return = np.mean(self.recent_returns) if self.recent_returns else None
        win_rate = np.mean(self.recent_wins) if self.recent_wins else None
        print(progress_line(global_step, self.args.total_timesteps, recent_sps, recent_return, not self.trained, win_rate))
        self.writer.add_scalar("charts/SPS", int((global_step - self.start_step) / (now - self.start_time)), global_step)
        self.progress_step, self.progress_time = global_step, now

    def log_losses(self, metrics: dict, global_step: int):
        """A training phase's last losses (hasac_update's tensors) as losses/*; a non-finite one ends the run."""
        for name in ("qf1_values", "qf1_loss", "qf2_loss", "actor_loss", "entropy", "alpha_loss"):
            if metrics[name] is None:  # alpha_loss: None with a fixed temperature
                continue
            value = metrics[name].item()
            if not math.isfinite(value):
                self.writer.close()
                raise SystemExit(
                    f"error: losses/{name} is {value} at global_step={global_step}; "
                    "stopping instead of training on it (try lower learning rates)"
                )
            self.writer.add_scalar(f"losses/{name}", value, global_step)
        self.writer.add_scalar("losses/alpha", metrics["alphas"].mean().item(), global_step)
        for i, alpha in enumerate(metrics["alphas"].tolist()):
            self.writer.add_scalar(f"losses/alpha/agent_{i}", alpha, global_step)

    def end_warm_up(self, global_step: int):
        """Called at each training phase, before its updates; the first call says so, and the time left is from then on
        estimated from training's own speed (the warm-up runs far faster)."""
        if not self.trained:
            print(f"global_step={global_step}, warm-up done: training starts")
            self.trained, self.progress_step, self.progress_time = True, global_step, time.time()  # time left: training's

    def evaluation_due(self, global_step: int) -> bool:
        """True every --eval-interval env steps and at the run's last step (once per step)."""
        interval = self.args.eval_interval
        due = global_step // interval > self.last_eval // interval or global_step >= self.args.total_timesteps
        due = due and global_step != self.last_eval
        if due:
            self.last_eval = global_step
        return due

    def log_evaluation(self, global_step: int, returns, frames: Optional[list] = None, **rates):
        """An evaluation's team returns (and rates such as win_rate=): eval/* scalars, one line, and the video."""
        self.writer.add_scalar("eval/episodic_return", np.mean(returns), global_step)
        line = f"global_step={global_step}, eval/episodic_return={np.mean(returns):.2f}"
        for name, rate in rates.items():
            self.writer.add_scalar(f"eval/{name}", rate, global_step)
            line += f", eval/{name}={rate:.3f}"
        print(line)
        if frames:
            render_video(frames, f"videos/{os.path.basename(self.run_dir)}/step_{global_step}")

    def save(self, global_step: int):
        """With --save-model: the learner, Args, step and random generators, atomically."""
        if self.args.save_model:
            save_checkpoint(self.model_path, self.script, self.args, global_step, self.learner)

    @contextlib.contextmanager
    def graceful_stop(self):
        """Around the training loop: a second Ctrl-C ends it at once, and then, as after any way out of it, neither
        signal cuts the closing saves short. A loop that fails (an env crash) still leaves its logs written."""
        try:
            yield
        except KeyboardInterrupt:
            pass
        except BaseException:
            self.writer.close()  # TensorBoard would otherwise drop what it has not flushed (up to two minutes)
            raise
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def finish(self, global_step: int):
        """Closes the writer, saves the model (and with --save-buffer the buffer), says how to continue, and exits:
        0 for a finished run, 130 / 143 for one stopped by SIGINT / SIGTERM, as a shell reports them (so that a
        sweep tells them apart)."""
        self.writer.close()
        if self.stop_signals:
            print(f"interrupted at global_step={global_step}")
        if self.args.save_model:
            self.save(global_step)
            script = os.path.basename(self.script)
            print(f"model saved; evaluate it with: python {script} --eval-checkpoint {self.model_path}")
            if self.args.save_buffer:
                print(f"writing the replay buffer to {self.run_dir}/replay_buffer.pt")
                save_buffer(self.run_dir, self.rb, global_step)
            more = f" --total-timesteps <more than {global_step}>" if global_step >= self.args.total_timesteps else ""
            print(f"continue it with: python {script} --resume {self.model_path}{more}")
        sys.exit(128 + self.stop_signals[0] if self.stop_signals else 0)


def start_run(args, script: str, learner, rb, device: torch.device) -> Run:
    """Starts the run, or with --resume continues it, after the envs' first reset (which may seed the generators):

    a new run gets a fresh folder runs/{env_id}__{exp_name}__{seed}__{unix_time} (suffixed if it exists); a resumed one
    logs into its checkpoint's folder, with the saved step, learner and random generators, and the replay buffer saved
    at that step if there is one (else a fresh warm-up refills the buffer, acting with the restored policies). Then
    Weights & Biases (--track; a resumed run continues the same wandb run) and the TensorBoard writer (a resumed run's
    curves continue: purge_step drops what a killed run logged after its checkpoint)."""
    # Ctrl-C and SIGTERM (a scheduler's stop), from here on, end the training loop after its current iteration (it
    # checks `stop_requested`), so that the checkpoint holds a whole update; a second Ctrl-C stops at once. A repeated
    # SIGTERM only asks again: a process group's SIGTERM and benchmark/run.py's copy of it are one request.
    stop_signals = []

    def request_stop(signum, frame):
        stop_signals.append(signum)
        if stop_signals.count(signal.SIGINT) > 1:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    global_step, learning_starts = 0, args.learning_starts
    if args.resume:
        run_dir, args.save_model = os.path.dirname(os.path.abspath(args.resume)), True
        with one_line_errors(f"cannot resume from {args.resume!r}: "):
            global_step = resume_training(args.resume, script, learner, args, device)
        saved_rb = load_buffer(run_dir, global_step, device)
        if saved_rb is None:
            learning_starts = global_step + args.learning_starts
            if learning_starts >= args.total_timesteps:
                print(f"warning: without its buffer the run warms up again to step {learning_starts}, so it will not train")
        rb = rb if saved_rb is None else saved_rb
        print(f"resumed at global_step={global_step} in {run_dir}, {'without' if saved_rb is None else 'with'} its buffer")
    else:
        run_dir = "runs/" + make_run_dir(f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}")
    run_name = os.path.basename(run_dir)
    record_code_version(run_dir, global_step)
    if args.track:
        import wandb

        wandb.init(
            project=args.wandb_project_name,
            entity=args.wandb_entity,
            sync_tensorboard=True,
            config=vars(args),
            name=run_name,
            id=run_name,  # with resume="allow", a --resume run (the same run dir) continues the same wandb run
            resume="allow",
            save_code=True,
        )
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(run_dir, purge_step=global_step + 1 if args.resume else None)
    writer.add_text(
        "hyperparameters", "|param|value|\n|-|-|\n%s" % ("\n".join([f"|{key}|{value}|" for key, value in vars(args).items()]))
    )
    progress_interval = getattr(args, "log_interval", max(args.num_envs, min(10_000, args.total_timesteps // 10)))
    return Run(args, script, learner, rb, run_dir, writer, global_step, learning_starts, progress_interval, stop_signals)
