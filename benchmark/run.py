"""Run a sweep of HASAC training commands: a local pool of workers, or one Slurm job array through submitit.
After CleanRL's cleanrl_utils/benchmark.py; the benchmark/hasac_*.sh scripts pipe their commands into it.

    python benchmark/run.py --env-ids simple_spread_v3 simple_reference_v3 --num-seeds 3 --workers 2 \\
        --command "python hasac_continuous.py --total-timesteps 150000"
    bash benchmark/hasac_mpe.sh   # = printf '%s\\n' "${commands[@]}" | python benchmark/run.py --commands-from - ...
    python benchmark/run.py --commands-from sweep.txt --slurm --slurm-partition gpu --slurm-gpus-per-task 1 \\
        --slurm-time 24:00:00

Every run starts in the repository root (so each script writes runs/ there) with `--save-model` added. One code path:
the job callable `Run` is what the local pool calls and what submitit pickles for Slurm. On Slurm, before a time limit
(and on a preemption that sends submitit's signal) submitit calls `Run.checkpoint`: it stops the run with SIGTERM (the
scripts then save a checkpoint and exit 143) and the array task is requeued with `--resume <that checkpoint>`.
"""

import argparse
import concurrent.futures
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import submitit

ROOT = Path(__file__).resolve().parents[1]
# The signal submitit asks Slurm to send before the time limit (`#SBATCH --signal=USR2@90`) and handles itself. Slurm
# sends it to every process of the job step, the training script too, whose default action for it would be to die:
# each run is started with it ignored, so the run is stopped by `Run.checkpoint`'s SIGTERM, which makes it save.
PREEMPT_SIGNAL = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
SIGTERM_STATUS = 128 + signal.SIGTERM  # the scripts' exit status after saving on SIGTERM (143)
INTERRUPTED_STATUS = 128 + signal.SIGINT  # ... and on Ctrl-C (130)


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one `run.py: error: ...` line (no usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    return at_least(text, 1)


def non_negative_int(text: str) -> int:
    return at_least(text, 0)


def at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r} is below {minimum}")
    return value


def slurm_minutes(text: str) -> int:
    """argparse type: a Slurm time limit as minutes (`90`), HH:MM:SS (`24:00:00`) or D-HH:MM:SS -> whole minutes
    (seconds round up)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{1,2}):(\d{1,2})", text.strip())
    if text.strip().isdigit():
        minutes = int(text)
    elif match:
        days, hours, mins, secs = (int(group or 0) for group in match.groups())
        if mins > 59 or secs > 59:
            raise argparse.ArgumentTypeError(f"{text!r}: minutes and seconds must be below 60")
        minutes = days * 24 * 60 + hours * 60 + mins + (secs > 0)
    else:
        raise argparse.ArgumentTypeError(f"{text!r} is neither minutes (90) nor HH:MM:SS (24:00:00) nor D-HH:MM:SS")
    if minutes < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is under a minute")
    return minutes


def make_parser() -> Parser:
    parser = Parser(
        prog="run.py",
        description=__doc__.split("\n\n")[0],
        epilog="Output: local runs print to this terminal, or with --log-dir each run's stdout and stderr go to "
        "<log-dir>/<index>_<script>_<env-id>_<seed>.log (a line says which). Slurm runs write to submitit's logs in "
        "--slurm-folder (%j_0_log.out / .err, %j the array task's job id). A failed run does not stop the others; the "
        "summary at the end lists the failed commands with their exit status, and run.py then exits 1. Every run gets "
        "--save-model (the scripts then save a checkpoint at each evaluation and on SIGTERM). The commands are split as "
        "a shell would (shlex) and run without shell syntax (no pipes, redirections or VAR=value prefixes).",
    )
    sweep = parser.add_argument_group("the runs")
    what = sweep.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--command",
        help='the training command, e.g. "python hasac_continuous.py --total-timesteps 150000"; '
        "the runs are `{command} --env-id {env} --seed {seed}` for every env id and seed",
    )
    what.add_argument(
        "--commands-from",
        metavar="FILE",
        help="complete commands, one per line (blank lines and # lines "
        "are skipped), instead of --command's cross product; `-` reads standard input",
    )
    sweep.add_argument("--env-ids", nargs="+", metavar="ENV_ID", help="the env ids of --command's runs")
    sweep.add_argument("--num-seeds", type=positive_int, default=3, help="seeds per env id (default: 3)")
    sweep.add_argument("--start-seed", type=int, default=1, help="the first seed (default: 1)")
    sweep.add_argument(
        "--root", type=Path, default=ROOT, help=f"the folder the runs start in (default: the repository root, {ROOT})"
    )
    local = parser.add_argument_group("local runs")
    local.add_argument(
        "--workers",
        type=non_negative_int,
        default=1,
        help="runs at a time on this machine (default: 1); "
        "0 prints the commands (as they would run) and runs or submits nothing. With more than one and "
        "OMP_NUM_THREADS unset, each run gets OMP_NUM_THREADS = max(1, cpu_count // workers). Ignored "
        "with --slurm, except 0",
    )
    local.add_argument("--log-dir", type=Path, help="write each local run's output to a file here instead of the terminal")
    slurm = parser.add_argument_group(
        "Slurm (one job array through submitit; a task is requeued with --resume before its time limit)"
    )
    slurm.add_argument("--slurm", action="store_true", help="submit the runs to Slurm as one job array, print the job ids")
    slurm.add_argument("--slurm-partition", help="the partition (default: the cluster's default)")
    slurm.add_argument(
        "--slurm-gpus-per-task", type=non_negative_int, default=0, help="GPUs per run (default: 0; add --cuda to the commands)"
    )
    slurm.add_argument(
        "--slurm-cpus-per-task",
        type=positive_int,
        default=2,
        help="CPUs per run (default: 2), also the runs' OMP_NUM_THREADS unless it is set when submitting",
    )
    slurm.add_argument(
        "--slurm-time",
        type=slurm_minutes,
        default=24 * 60,
        metavar="TIME",
        help="time limit per run: minutes or HH:MM:SS (default: 24:00:00); a run stopped by it resumes from its checkpoint",
    )
    slurm.add_argument(
        "--slurm-array-parallelism", type=positive_int, help="array tasks running at a time (default: submitit's 256)"
    )
    slurm.add_argument(
        "--slurm-max-timeouts",
        type=non_negative_int,
        default=3,
        help="requeues after a time limit per run (default: 3, submitit's); preemptions do not count",
    )
    slurm.add_argument(
        "--slurm-folder",
        default=None,
        help="submitit's folder for pickles and logs; %%j becomes the job id (default: slurm_logs/%%j under --root)",
    )
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command is not None and not args.env_ids:
        parser.error("--command needs --env-ids")
    if args.commands_from is not None and args.env_ids:
        parser.error("--env-ids goes with --command; --commands-from takes complete commands")
    if not args.root.is_dir():
        parser.error(f"--root {args.root} is not a folder")
    try:
        args.commands = build_commands(args)
    except OSError as error:
        parser.error(f"--commands-from: {error.strerror or error}: {args.commands_from}")
    except ValueError as error:
        parser.error(str(error))
    if not args.commands:
        parser.error("no commands to run")
    return args


def read_commands(lines) -> list:
    """Complete commands, one per line; blank lines and `#` lines are skipped."""
    stripped = (line.strip() for line in lines)
    return [line for line in stripped if line and not line.startswith("#")]


def build_commands(args) -> list:
    """--commands-from's lines, or --command's cross product (seed-major as in CleanRL: every env's first seed first)."""
    if args.commands_from == "-":
        commands = read_commands(sys.stdin)
    elif args.commands_from is not None:
        with open(args.commands_from) as file:
            commands = read_commands(file)
    else:
        seeds = range(args.start_seed, args.start_seed + args.num_seeds)
        commands = [f"{args.command} --env-id {env_id} --seed {seed}" for seed in seeds for env_id in args.env_ids]
    for command in commands:  # unbalanced quotes are a usage error, not a failed run
        try:
            shlex.split(command)
        except ValueError as error:
            raise ValueError(f"{error} in: {command}") from None
    return commands


def thread_share(workers: int, cpus=None) -> int:
    """OpenMP threads per run when `workers` runs share the machine's cores (PyTorch's OpenMP threads slow down by an
    order of magnitude when more of them spin than there are cores)."""
    return max(1, (cpus or os.cpu_count() or 1) // workers)


# ---- command lines ----
def flag_names(flag: str) -> tuple:
    """tyro accepts `--env-id` and `--env_id`."""
    return flag, "--" + flag[2:].replace("-", "_")


def flag_value(tokens: list, flag: str):
    """The value of the last `flag VALUE` / `flag=VALUE` in tokens, or None."""
    names, value = flag_names(flag), None
    for i, token in enumerate(tokens):
        if token in names and i + 1 < len(tokens):
            value = tokens[i + 1]
        elif token.split("=", 1)[0] in names and "=" in token:
            value = token.split("=", 1)[1]
    return value


def without_flag(tokens: list, flag: str, takes_value: bool) -> list:
    names, kept, skip = flag_names(flag), [], False
    for token in tokens:
        if skip:
            skip = False
        elif token in names:
            skip = takes_value
        elif not (takes_value and "=" in token and token.split("=", 1)[0] in names):
            kept.append(token)
    return kept


def with_save_model(command: str) -> str:
    """The command with `--save-model` (appended unless present; a `--no-save-model` is dropped)."""
    tokens = without_flag(shlex.split(command), "--no-save-model", takes_value=False)
    if not any(token in flag_names("--save-model") for token in tokens):
        tokens.append("--save-model")
    return shlex.join(tokens)


def with_resume(command: str, path) -> str:
    """The command with `--resume <path>` (replacing any --resume it had)."""
    return shlex.join([*without_flag(shlex.split(command), "--resume", takes_value=True), "--resume", str(path)])


def run_identity(command: str) -> tuple:
    """(env_id, exp_name, seed) the command's run dir is named after; None where the command leaves it to the script's
    default (exp_name's default is the script's file name without .py)."""
    tokens = shlex.split(command)
    exp_name = flag_value(tokens, "--exp-name")
    if exp_name is None:
        scripts = [token for token in tokens if token.endswith(".py")]
        exp_name = Path(scripts[0]).stem if scripts else None
    return flag_value(tokens, "--env-id"), exp_name, flag_value(tokens, "--seed")


# ---- run dirs and checkpoints ----
def existing_run_dirs(root) -> set:
    runs = Path(root) / "runs"
    return {path.name for path in runs.iterdir() if path.is_dir()} if runs.is_dir() else set()


def run_dir_pattern(env_id, exp_name, seed) -> re.Pattern:
    """`{env_id}__{exp_name}__{seed}__{unix_time}`, optionally `_2`, `_3`, ...; an unknown part matches anything."""
    parts = [re.escape(str(part)) if part is not None else ".+" for part in (env_id, exp_name, seed)]
    return re.compile("__".join(parts) + r"__\d+(_\d+)?")


def find_run_dir(root, before: set, command: str, pid=None):
    """The run dir the command's run created: new since `before`, named after its env id, exp name and seed. Of several
    (equal runs started together), the one whose TensorBoard file carries this host and `pid`, else the newest."""
    pattern = run_dir_pattern(*run_identity(command))
    runs = Path(root) / "runs"
    candidates = [runs / name for name in existing_run_dirs(root) - set(before) if pattern.fullmatch(name)]
    if pid is not None:
        mine = [path for path in candidates if any(path.glob(f"events.out.tfevents.*.{socket.gethostname()}.{pid}.*"))]
        candidates = mine or candidates
    return max(candidates, key=lambda path: path.stat().st_mtime, default=None)


def find_resume_checkpoint(root, before: set, command: str, pid=None):
    """The checkpoint to resume the command's run from, relative to root (`runs/<run dir>/<exp_name>.cleanrl_model`),
    or None. A command that already resumes keeps its run dir (that of its --resume path)."""
    root = Path(root)
    resume = flag_value(shlex.split(command), "--resume")
    if resume is not None:
        run_dir = (root / resume).parent
    else:
        run_dir = find_run_dir(root, before, command, pid)
        if run_dir is None:
            return None
    exp_name = run_identity(command)[1]
    preferred = [run_dir / f"{exp_name}.cleanrl_model"] if exp_name else []
    if resume is not None:
        preferred.insert(0, root / resume)
    found = [path for path in preferred if path.is_file()] or sorted(run_dir.glob("*.cleanrl_model"))
    if not found:
        return None
    path = found[0].resolve()
    return path.relative_to(root.resolve()) if path.is_relative_to(root.resolve()) else path


# ---- the job callable ----
class RunFailed(RuntimeError):
    def __init__(self, command: str, returncode: int):
        super().__init__(f"exit status {returncode}: {command}")
        self.command, self.returncode = command, returncode

    def __reduce__(self):
        return RunFailed, (self.command, self.returncode)


class Run(submitit.helpers.Checkpointable):
    """`Run(root)(command)`: the command (with --save-model) in a subprocess in `root`; returns 0 or raises RunFailed
    with the exit status. Checkpointable: submitit calls `checkpoint(command)` when Slurm signals the job; it stops the
    run with SIGTERM and returns the resubmission with `--resume <its checkpoint>`."""

    stop_timeout_s = 80.0  # SIGTERM -> saved and exited; Slurm kills the job 90 s after submitit's signal
    sigterm_grace_s = 120.0  # on Slurm, how long a run stopped by someone else's SIGTERM waits for submitit's signal
    poll_s = 0.5

    def __init__(self, root=ROOT, log_path=None):
        self.root, self.log_path = Path(root).resolve(), log_path
        self.process, self.before, self.checkpointing, self.asked, self.command = None, set(), False, None, None

    def __getstate__(self):  # the running process stays here: a resubmission pickles only the settings
        return {"root": self.root, "log_path": self.log_path}

    def __setstate__(self, state):
        self.__init__(**state)

    def argv(self, command: str) -> list:
        # exec keeps the pid (find_run_dir's tie-break); the trap leaves submitit's signal to submitit
        return ["bash", "-c", f'trap "" {PREEMPT_SIGNAL}; exec "$@"', "run.py", *shlex.split(command)]

    def __call__(self, command: str) -> int:
        command = self.command = with_save_model(command)
        self.before, self.checkpointing = existing_run_dirs(self.root), False
        log = open(self.log_path, "w") if self.log_path else None
        try:
            self.process = subprocess.Popen(self.argv(command), cwd=self.root, stdout=log, stderr=log and subprocess.STDOUT)
            # poll, not wait(): a wait() would hold Popen's lock while submitit's signal handler runs checkpoint()
            while self.process.poll() is None:
                time.sleep(self.poll_s)
        finally:
            if log:
                log.close()
        returncode = self.process.returncode
        if returncode == SIGTERM_STATUS and not self.checkpointing and os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
            # Slurm's own SIGTERM stopped the run (a preemption; submitit ignores SIGTERM): point this task's pickle at
            # the --resume command, so a requeue by Slurm itself resumes, and give submitit's signal, which requeues
            # through checkpoint(), the time to arrive
            self.save_resubmission(command)
            deadline = time.monotonic() + self.sigterm_grace_s
            while time.monotonic() < deadline and not self.checkpointing:
                time.sleep(self.poll_s)
        if returncode != 0:
            raise RunFailed(command, returncode)
        return 0

    def stop(self):
        """SIGTERM to the running command (it saves a checkpoint and exits 143), then wait for it; SIGKILL if it hangs."""
        deadline = time.monotonic() + self.stop_timeout_s
        while self.ask_to_stop() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.ask_to_stop():
            self.process.kill()

    @property
    def returncode(self):
        """The command's exit status; None before it started or while it runs."""
        return None if self.process is None else self.process.poll()

    def ask_to_stop(self) -> bool:
        """SIGTERM to the running command, once per process, without waiting. -> whether it is still running."""
        process = self.process
        if process is None or process.poll() is not None:
            return False
        if process is not self.asked:
            process.send_signal(signal.SIGTERM)
            self.asked = process
        return True

    def resubmission(self, command: str):
        """The command again, on a fresh callable, with --resume <the stopped run's checkpoint> (none yet: as it was)."""
        command = with_save_model(command)
        pid = self.process.pid if self.process else None
        path = find_resume_checkpoint(self.root, self.before, command, pid) if self.process else None
        resumed = with_resume(command, path) if path is not None else command
        print(f"run.py: resubmitting as: {resumed}", flush=True)
        return submitit.helpers.DelayedSubmission(type(self)(self.root, self.log_path), resumed)

    def checkpoint(self, command: str):
        """Called by submitit when Slurm signals the job: stop the run, return its resubmission with --resume."""
        self.checkpointing = True
        self.stop()
        return self.resubmission(command)

    def save_resubmission(self, command: str):
        """Replace this Slurm task's pickle (what a requeued task runs) with the resubmission, keeping its timeouts."""
        path = submitit.JobEnvironment().paths.submitted_pickle
        current = submitit.helpers.DelayedSubmission.load(path)
        delayed = self.resubmission(command)
        delayed.set_timeout(current._timeout_min, current._timeout_countdown)
        delayed.dump(path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)


# ---- local pool and Slurm ----
def log_name(index: int, command: str) -> str:
    tokens = shlex.split(command)
    script = next((Path(token).stem for token in tokens if token.endswith(".py")), "run")
    env_id, _, seed = run_identity(command)
    parts = [f"{index:03d}", script] + [str(part) for part in (env_id, seed) if part is not None]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts)) + ".log"


class Stopping(Exception):
    """run.py got SIGINT or SIGTERM; raised once, for the first of them."""


def stop_all(started: list, futures: dict):
    """SIGTERM to every running run at once, and again to any that starts meanwhile, until none runs: they save side by
    side under one deadline (Run.stop_timeout_s), after which any still running is killed."""
    deadline = time.monotonic() + Run.stop_timeout_s
    while True:
        running = [job for job in list(started) if job.ask_to_stop()]
        if not running and all(future.done() for future in futures):
            return
        if time.monotonic() > deadline:
            for job in running:
                job.process.kill()
        time.sleep(0.1)


def run_local(commands: list, workers: int, root, log_dir=None) -> int:
    """The runs, `workers` at a time, each through the same `Run` callable Slurm gets. A ThreadPoolExecutor rather than
    submitit's LocalExecutor, which starts every job at once (no limit to N), or its DebugExecutor, which runs them one
    by one in this process: each thread only waits on its run's subprocess. Prints a summary; 1 if any run failed.
    A SIGTERM to run.py is passed on to the running runs (each saves its checkpoint and exits 143; one that also got it
    from its process group takes the copy as the same request), no more start, and run.py exits 143."""
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
    started, futures, failed = [], {}, []  # every Run begun, to pass a SIGTERM on to; future -> command

    def launch(index: int, command: str):
        # a stop reached run.py (its handler runs in the main thread, maybe later) or the runs (Ctrl-C): start no more
        if received or any(job.returncode in (INTERRUPTED_STATUS, SIGTERM_STATUS) for job in list(started)):
            return 0
        log_path = Path(log_dir) / log_name(index, command) if log_dir is not None else None
        print(
            f"[{index}/{len(commands)}] {with_save_model(command)}" + (f"  (log: {log_path})" if log_path else ""), flush=True
        )
        started.append(Run(root, log_path))
        return started[-1](command)

    def on_signal(signum, frame):
        if not received:  # the first signal decides; a later one (a group's SIGTERM after Ctrl-C, say) is the same stop
            received.append(signum)
            raise Stopping

    received, previous, status = [], {}, None
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                previous[s] = signal.signal(s, on_signal)
            for index, command in enumerate(commands, 1):
                futures[pool.submit(launch, index, command)] = command
            pending = set(futures)
            while pending:  # with a timeout: a signal that another thread took is handled here within 0.2 s
                done, pending = concurrent.futures.wait(pending, 0.2, concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    if future.exception() is not None and not isinstance(future.exception(), RunFailed):
                        failed.append((f"{type(future.exception()).__name__}: {future.exception()}", futures[future]))
        except Stopping:
            pool.shutdown(wait=False, cancel_futures=True)  # start no more
            if received[0] == signal.SIGINT:  # Ctrl-C reached the runs too (one process group): they save and exit 130
                pool.shutdown(wait=True)
                print("run.py: interrupted", flush=True)
                return 130
            stop_all(started, futures)  # a SIGTERM to run.py may have reached no run
            status = SIGTERM_STATUS
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    # every run's own exit status (those stopped by the SIGTERM exited 143)
    failed += [(job.returncode, job.command) for job in started if job.returncode not in (0, status)]
    if status == SIGTERM_STATUS:
        stopped = sum(job.returncode == SIGTERM_STATUS for job in started)
        print(f"run.py: terminated: {stopped} runs stopped with their checkpoints (continue each with --resume)", flush=True)
    else:
        print(f"run.py: {len(commands) - len(failed)} of {len(commands)} runs finished", flush=True)
    if failed:
        print(f"run.py: {len(failed)} failed:", flush=True)
        for returncode, command in failed:
            print(f"  exit status {returncode}: {command}", flush=True)
    return status or (1 if failed else 0)


def submit_slurm(commands: list, args) -> list:
    """The runs as one Slurm job array (one task per command; submitit submits a single command as a plain job)."""
    folder = args.slurm_folder if args.slurm_folder is not None else str(Path(args.root) / "slurm_logs" / "%j")
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=args.slurm_max_timeouts)
    parameters = dict(name="hasac", timeout_min=args.slurm_time, cpus_per_task=args.slurm_cpus_per_task)
    parameters["slurm_setup"] = [f"export OMP_NUM_THREADS=${{OMP_NUM_THREADS:-{args.slurm_cpus_per_task}}}"]
    if args.slurm_partition:
        parameters["slurm_partition"] = args.slurm_partition
    if args.slurm_gpus_per_task:
        parameters["slurm_gpus_per_task"] = args.slurm_gpus_per_task
    if args.slurm_array_parallelism:
        parameters["slurm_array_parallelism"] = args.slurm_array_parallelism
    executor.update_parameters(**parameters)
    jobs = executor.map_array(Run(args.root), commands)
    print(f"run.py: submitted job {jobs[0].job_id.split('_')[0]} ({len(jobs)} runs), logs in {executor.folder}", flush=True)
    for job, command in zip(jobs, commands):
        print(f"  {job.job_id}  {command}", flush=True)
    return jobs


def main(argv=None) -> int:
    args = parse_args(argv)
    args.root = args.root.resolve()
    for name in ("log_dir", "slurm_folder"):  # paths given relative to where run.py was started
        if getattr(args, name) is not None:
            setattr(args, name, str(Path(getattr(args, name)).expanduser().absolute()))
    os.chdir(args.root)  # as the runs do: each script writes runs/ here
    if args.workers == 0:
        print("\n".join(with_save_model(command) for command in args.commands), flush=True)
        return 0
    if args.slurm:
        try:
            submit_slurm(args.commands, args)
        except Exception as error:  # no srun/sbatch, a rejected submission: one line
            message = " ".join(str(error).split())
            print(f"run.py: error: Slurm submission failed: {type(error).__name__}: {message}", file=sys.stderr)
            return 1
        return 0
    if args.workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(thread_share(args.workers))
        print(f"run.py: {args.workers} workers on {os.cpu_count()} CPUs: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    return run_local(args.commands, args.workers, args.root, args.log_dir)


if __name__ == "__main__":
    sys.exit(main())
