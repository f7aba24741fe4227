"""Tests for benchmark/run.py, the sweep runner: the commands it builds, the dry run, the local pool on real tiny training
runs, the Slurm submission through submitit against a fake `sbatch`, and the requeue with --resume (the job callable's
checkpoint(), called directly and through submitit's own signal handler)."""

import importlib.util
import os
import pickle
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT, SUBPROCESS_ENV

RUN_PY = ROOT / "benchmark" / "run.py"
DISCRETE = ROOT / "hasac_discrete.py"
spec = importlib.util.spec_from_file_location("run", RUN_PY)
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)

PY = shlex.quote(sys.executable)
# A matrix-game run that ends in seconds (two evaluations) ...
SHORT = f"{PY} {DISCRETE} --env-id matrix-game --total-timesteps 400 --learning-starts 100 --eval-interval 200"
# ... and one still running when it is stopped: uniform random steps (fast) for 1M steps, no evaluation before the end,
# so its checkpoint can only come from the SIGTERM; progress lines every 10k steps (a few per second)
LONG = f"{PY} {DISCRETE} --env-id matrix-game --total-timesteps 2000000 --learning-starts 1000000 --eval-interval 100000000"


def run_py(*args, cwd, stdin=None, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RUN_PY), *args],
        cwd=cwd,
        input=stdin,
        env=env or SUBPROCESS_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def progress_printed(log: Path):
    """True once the run printed a progress line: its SIGTERM handler is installed by then (a SIGTERM before that, during
    start-up, would kill it without a checkpoint)."""
    return lambda: log.is_file() and "global_step=" in log.read_text()


# ---- commands ----
def test_build_commands_cross_product_seed_major():
    args = SimpleNamespace(commands_from=None, command="python hasac_continuous.py --q-lr 1e-3", env_ids=["A", "B"])
    args.num_seeds, args.start_seed = 2, 3
    assert run.build_commands(args) == [
        "python hasac_continuous.py --q-lr 1e-3 --env-id A --seed 3",
        "python hasac_continuous.py --q-lr 1e-3 --env-id B --seed 3",
        "python hasac_continuous.py --q-lr 1e-3 --env-id A --seed 4",
        "python hasac_continuous.py --q-lr 1e-3 --env-id B --seed 4",
    ]


def test_commands_from_skips_blank_and_comment_lines(tmp_path):
    file = tmp_path / "sweep.txt"
    file.write_text("# a comment\n\n  python a.py --seed 1  \n   # indented comment\npython b.py --x '1 2'\n\n")
    args = SimpleNamespace(commands_from=str(file), command=None, env_ids=None)
    assert run.build_commands(args) == ["python a.py --seed 1", "python b.py --x '1 2'"]


def test_thread_share():
    assert run.thread_share(2, cpus=2) == 1
    assert run.thread_share(3, cpus=16) == 5
    assert run.thread_share(32, cpus=16) == 1
    assert run.thread_share(1) == os.cpu_count()


def test_slurm_minutes():
    assert run.slurm_minutes("90") == 90
    assert run.slurm_minutes("24:00:00") == 24 * 60
    assert run.slurm_minutes("1:30:01") == 91  # seconds round up
    assert run.slurm_minutes("2-00:00:00") == 2 * 24 * 60


def test_with_resume_and_with_save_model():
    command = "python hasac_discrete.py --resume runs/old/a.cleanrl_model --seed 2 --resume=runs/older/a.cleanrl_model"
    assert run.with_resume(command, "runs/new/a.cleanrl_model") == (
        "python hasac_discrete.py --seed 2 --resume runs/new/a.cleanrl_model"
    )
    assert run.with_resume("python a.py --resume_path x", "p") == "python a.py --resume_path x --resume p"
    assert run.with_save_model("python a.py --x 1") == "python a.py --x 1 --save-model"
    assert run.with_save_model("python a.py --save-model --x 1") == "python a.py --save-model --x 1"
    assert run.with_save_model("python a.py --no-save-model") == "python a.py --save-model"
    assert run.with_save_model("python a.py --x 'a b'") == "python a.py --x 'a b' --save-model"


def test_find_resume_checkpoint_picks_the_new_matching_run_dir(tmp_path):
    runs = tmp_path / "runs"

    def make(name, checkpoint="hasac_discrete.cleanrl_model"):
        (runs / name).mkdir(parents=True)
        if checkpoint:
            (runs / name / checkpoint).write_bytes(b"x")

    make("matrix-game__hasac_discrete__1__1700000000")  # existed before the launch
    before = run.existing_run_dirs(tmp_path)
    make("matrix-game__hasac_discrete__2__1700000005")  # another seed
    make("matrix-game__other__1__1700000005", "other.cleanrl_model")  # another exp name
    make("simple_spread_v3__hasac_discrete__1__1700000005")  # another env
    make("matrix-game__hasac_discrete__1__1700000005_2")  # this one
    command = "python hasac_discrete.py --env-id matrix-game --seed 1"
    expected = Path("runs/matrix-game__hasac_discrete__1__1700000005_2/hasac_discrete.cleanrl_model")
    assert run.find_resume_checkpoint(tmp_path, before, command) == expected
    assert run.find_resume_checkpoint(tmp_path, before, command + " --exp-name other") == Path(
        "runs/matrix-game__other__1__1700000005/other.cleanrl_model"
    )
    # a command that already resumes stays in its run dir, even one that existed before
    resumed = f"{command} --resume runs/matrix-game__hasac_discrete__1__1700000000/hasac_discrete.cleanrl_model"
    assert run.find_resume_checkpoint(tmp_path, before | {"matrix-game__hasac_discrete__1__1700000005_2"}, resumed) == Path(
        "runs/matrix-game__hasac_discrete__1__1700000000/hasac_discrete.cleanrl_model"
    )
    # no new run dir, or one without a checkpoint yet: nothing to resume from
    assert run.find_resume_checkpoint(tmp_path, run.existing_run_dirs(tmp_path), command) is None
    make("matrix-game__hasac_discrete__3__1700000009", checkpoint=None)
    assert run.find_resume_checkpoint(tmp_path, before, command.replace("--seed 1", "--seed 3")) is None


def test_find_run_dir_prefers_the_one_written_by_the_pid(tmp_path):
    import socket

    runs = tmp_path / "runs"
    for name, pid in (("e__x__1__1700000000", 111), ("e__x__1__1700000000_2", 222)):
        (runs / name).mkdir(parents=True)
        (runs / name / f"events.out.tfevents.1700000000.{socket.gethostname()}.{pid}.0").write_bytes(b"")
    os.utime(runs / "e__x__1__1700000000_2", (1, 1))  # the other one is newer
    assert run.find_run_dir(tmp_path, set(), "python x.py --env-id e --seed 1", pid=222).name == "e__x__1__1700000000_2"
    assert run.find_run_dir(tmp_path, set(), "python x.py --env-id e --seed 1").name == "e__x__1__1700000000"


# ---- the command line ----
def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path):
    result = run_py(
        "--env-ids",
        "A",
        "B",
        "--num-seeds",
        "2",
        "--start-seed",
        "5",
        "--command",
        "python x.py --k 1",
        "--workers",
        "0",
        "--root",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"python x.py --k 1 --env-id {env} --seed {seed} --save-model" for seed in (5, 6) for env in ("A", "B")
    ]
    # --commands-from - (standard input), and --slurm with --workers 0 submits nothing (no sbatch, no folder)
    result = run_py(
        "--commands-from",
        "-",
        "--workers",
        "0",
        "--slurm",
        "--root",
        str(tmp_path),
        cwd=tmp_path,
        stdin="# sweep\npython a.py --seed 1\n\npython b.py --save-model\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["python a.py --seed 1 --save-model", "python b.py --save-model"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, text",
    [
        (["--command", "python x.py"], "--command needs --env-ids"),
        (["--commands-from", "-", "--env-ids", "A"], "--env-ids goes with --command"),
        (["--command", "x", "--commands-from", "f"], "not allowed with argument"),
        ([], "one of the arguments --command --commands-from is required"),
        (["--commands-from", "missing.txt"], "No such file or directory: missing.txt"),
        (["--commands-from", "-"], "no commands to run"),
        (["--env-ids", "A", "--command", "python 'x"], "No closing quotation"),
        (["--env-ids", "A", "--command", "x", "--workers", "-1"], "argument --workers: '-1' is below 0"),
        (["--env-ids", "A", "--command", "x", "--num-seeds", "two"], "argument --num-seeds: 'two' is not an integer"),
        (["--env-ids", "A", "--command", "x", "--slurm-time", "1:99:00"], "minutes and seconds must be below 60"),
        (["--env-ids", "A", "--command", "x", "--slurm-time", "soon"], "neither minutes"),
        (["--env-ids", "A", "--command", "x", "--root", "nowhere"], "--root nowhere is not a folder"),
    ],
)
def test_bad_input_is_one_error_line(tmp_path, args, text):
    result = run_py(*args, cwd=tmp_path, stdin="")
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("run.py: error: "), result.stderr
    assert text in result.stderr, result.stderr


def test_slurm_without_a_cluster_is_one_error_line(tmp_path):
    env = {**SUBPROCESS_ENV, "PATH": os.path.dirname(sys.executable)}  # no srun / sbatch
    result = run_py("--env-ids", "A", "--command", "python x.py", "--slurm", "--root", str(tmp_path), cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith("run.py: error: Slurm submission failed") and "srun" in result.stderr


@pytest.mark.parametrize("name", ["mpe", "mamujoco", "smac", "vmas", "matrix_game", "football", "dexhands"])
def test_benchmark_script_dry_run(tmp_path, name):
    """DRY_RUN=1 goes through run.py --workers 0: the script's commands, each once with --save-model; nothing runs."""
    env = {**SUBPROCESS_ENV, "DRY_RUN": "1", "SEEDS": "1", "PYTHON": sys.executable, "RUNNER_ARGS": "--slurm"}
    result = subprocess.run(
        ["bash", str(ROOT / "benchmark" / f"hasac_{name}.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(re.fullmatch(r"python hasac_\w+\.py --.* --save-model( .*)?", line) for line in lines), lines
    assert all(shlex.split(line).count("--save-model") == 1 for line in lines)
    assert not (ROOT / "slurm_logs").exists()


QUICK_PIECES = {"matrix": 36, "mpe": 6, "mamujoco": 3, "smax": 2, "vmas": 4}  # runs per piece of benchmark/quick.sh


@pytest.mark.parametrize("piece", list(QUICK_PIECES))
def test_quick_sh_dry_run_prints_each_pieces_commands(piece):
    """benchmark/quick.sh's pieces stand alone: DRY_RUN=1 prints their commands through run.py, and plots nothing."""
    env = {**SUBPROCESS_ENV, "DRY_RUN": "1", "PIECES": piece, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(ROOT / "benchmark" / "quick.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == QUICK_PIECES[piece] and all(line.endswith("--save-model") for line in lines), lines
    if piece == "mpe":  # 3 seeds x 150k, continuous and discrete
        assert sorted(re.search(r"hasac_(\w+)\.py .*--seed (\d)", line).groups() for line in lines) == [
            (script, seed) for script in ("continuous", "discrete") for seed in "123"
        ]
        assert all("--total-timesteps 150000" in line for line in lines)


def test_quick_sh_unknown_piece_is_one_line():
    env = {**SUBPROCESS_ENV, "DRY_RUN": "1", "PIECES": "mpe atari", "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(ROOT / "benchmark" / "quick.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "error: unknown piece 'atari'; choose from: matrix mpe mamujoco smax vmas\n"


# ---- the local pool ----
def test_local_pool_runs_in_parallel_and_reports_failures(tmp_path):
    """Two real runs and one with a bad flag, two at a time: both runs finish in the --root's runs/ with a checkpoint
    (--save-model added), the failure is in the summary with its exit status and makes run.py exit 1. A fourth command
    prints the OMP_NUM_THREADS it got: the machine's share for 2 workers, since none was set."""
    bad = f"{PY} {DISCRETE} --env-id matrix-game --no-such-flag"
    omp = f"{PY} -c \"import os; print('threads:', os.environ['OMP_NUM_THREADS'])\""
    commands = [f"{SHORT} --seed 1", bad, f"{SHORT} --seed 2", omp]
    env = {key: value for key, value in SUBPROCESS_ENV.items() if key != "OMP_NUM_THREADS"}
    logs = tmp_path / "logs"
    result = run_py(
        "--commands-from",
        "-",
        "--workers",
        "2",
        "--root",
        str(tmp_path),
        "--log-dir",
        str(logs),
        cwd=tmp_path,
        stdin="\n".join(commands),
        env=env,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "run.py: 3 of 4 runs finished" in out and "run.py: 1 failed:" in out
    assert f"  exit status 2: {bad} --save-model" in out.splitlines()
    for seed in (1, 2):
        (run_dir,) = (tmp_path / "runs").glob(f"matrix-game__hasac_discrete__{seed}__*")
        assert (run_dir / "hasac_discrete.cleanrl_model").is_file()
    assert len(list((tmp_path / "runs").iterdir())) == 2
    share = run.thread_share(2)
    assert f"run.py: 2 workers on {os.cpu_count()} CPUs: OMP_NUM_THREADS={share}" in out
    log_files = sorted(path.name for path in logs.iterdir())
    assert log_files == [
        "001_hasac_discrete_matrix-game_1.log",
        "002_hasac_discrete_matrix-game.log",
        "003_hasac_discrete_matrix-game_2.log",
        "004_run.log",
    ]
    assert f"(log: {logs / '001_hasac_discrete_matrix-game_1.log'})" in out
    assert "eval/episodic_return" in (logs / log_files[0]).read_text()
    assert "no-such-flag" in (logs / log_files[1]).read_text()
    assert (logs / "004_run.log").read_text() == f"threads: {share}\n"


# ---- Slurm, with a fake sbatch ----
@pytest.fixture
def fake_slurm(tmp_path):
    """`sbatch` (records its arguments and the submission file, answers with job 1234), `srun` (there, so submitit sees a
    cluster) and `scontrol` (records its arguments) on PATH; returns (env, sbatch record, scontrol record)."""
    bin_dir, sbatch_record, scontrol_record = tmp_path / "bin", tmp_path / "sbatch.txt", tmp_path / "scontrol.txt"
    bin_dir.mkdir()
    scripts = {
        "sbatch": f'{{ echo "ARGS: $*"; cat "$1"; }} >> {sbatch_record}\necho "Submitted batch job 1234"',
        "srun": "exit 1",
        "scontrol": f'echo "$*" >> {scontrol_record}',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**SUBPROCESS_ENV, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return env, sbatch_record, scontrol_record


def load_submitted(tmp_path, job_id):
    with open(tmp_path / "slurm_logs" / job_id / f"{job_id}_submitted.pkl", "rb") as file:
        return pickle.load(file)  # submitit's DelayedSubmission (cloudpickle; run.py's classes pickled by value)


def test_slurm_submits_one_job_array(tmp_path, fake_slurm):
    env, sbatch_record, _ = fake_slurm
    result = run_py(
        "--env-ids",
        "A",
        "B",
        "--num-seeds",
        "2",
        "--command",
        "python x.py",
        "--slurm",
        "--root",
        str(tmp_path),
        "--workers",
        "3",
        "--slurm-partition",
        "gpu",
        "--slurm-gpus-per-task",
        "1",
        "--slurm-cpus-per-task",
        "4",
        "--slurm-time",
        "2:30:00",
        "--slurm-array-parallelism",
        "3",
        "--slurm-max-timeouts",
        "5",
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    commands = [f"python x.py --env-id {env} --seed {seed}" for seed in (1, 2) for env in ("A", "B")]
    assert f"run.py: submitted job 1234 (4 runs), logs in {tmp_path / 'slurm_logs' / '%j'}" in result.stdout
    for index, command in enumerate(commands):
        assert f"  1234_{index}  {command}" in result.stdout.splitlines()
    record = sbatch_record.read_text()
    assert record.count("ARGS: ") == 1  # one sbatch call: the whole sweep is one array
    flags = dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", record, re.M))
    assert flags["array"] == "0-3%3" and flags["partition"] == "gpu" and flags["gpus-per-task"] == "1"
    assert flags["cpus-per-task"] == "4" and flags["time"] == "150" and flags["signal"] == "USR2@90"
    assert "export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}" in record
    assert "-m submitit.core._submit" in record
    for index, command in enumerate(commands):
        delayed = load_submitted(tmp_path, f"1234_{index}")
        assert type(delayed.function).__name__ == "Run" and delayed.args == (command,) and delayed.kwargs == {}
        assert delayed.function.root == tmp_path.resolve()
        assert hasattr(delayed.function, "checkpoint") and delayed._timeout_countdown == 5
    assert not (tmp_path / "runs").exists()  # nothing ran here


def test_slurm_defaults_omit_gpus_and_partition(tmp_path, fake_slurm):
    env, sbatch_record, _ = fake_slurm
    result = run_py(
        "--env-ids", "A", "B", "--command", "python x.py", "--slurm", "--root", str(tmp_path), cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    flags = dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", sbatch_record.read_text(), re.M))
    assert flags["array"] == "0-5%6" and flags["cpus-per-task"] == "2" and flags["time"] == "1440"
    assert "partition" not in flags and not any("gpu" in flag for flag in flags)


def start_pool_of_long_runs(tmp_path, n_runs: int) -> tuple:
    """run.py --workers 2 on `n_runs` long runs, in a session of its own (a group signal reaches it and its runs, not
    pytest); returns once two runs printed progress (their handlers are installed). -> (the process, the log dir)."""
    logs, commands_file = tmp_path / "logs", tmp_path / "commands.txt"
    commands_file.write_text("\n".join(f"{LONG} --seed {seed}" for seed in range(1, n_runs + 1)))
    flags = f"--commands-from {commands_file} --workers 2 --root {tmp_path} --log-dir {logs}".split()
    process = subprocess.Popen(
        [sys.executable, str(RUN_PY), *flags],
        cwd=tmp_path,
        env={**SUBPROCESS_ENV, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    wait_for(lambda: logs.is_dir() and len([p for p in logs.iterdir() if progress_printed(p)()]) == 2, what="2 runs")
    return process, logs


def output_after(process, send_signals) -> str:
    """run.py's output once it has exited after `send_signals()` (killed if it has not within 120 s)."""
    try:
        send_signals()
        return process.communicate(timeout=120)[0]
    finally:
        process.kill()


def assert_runs_saved_and_stopped(tmp_path, logs):
    run_dirs = sorted((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 2, run_dirs  # the queued third run never started
    for run_dir in run_dirs:
        assert (run_dir / "hasac_discrete.cleanrl_model").is_file()
    for log in logs.iterdir():
        assert "interrupted at global_step=" in log.read_text()


def test_sigterm_to_run_py_alone_stops_its_runs_with_their_checkpoints(tmp_path):
    """A SIGTERM sent to run.py only (not to its process group, as Ctrl-C is) reaches the running runs: each saves
    its checkpoint and exits 143, the queued third run never starts, and run.py says so and exits 143 too."""
    process, logs = start_pool_of_long_runs(tmp_path, 3)
    output = output_after(process, lambda: process.send_signal(signal.SIGTERM))
    assert process.returncode == 143, output
    assert "run.py: terminated: 2 runs stopped with their checkpoints" in output and "[3/3]" not in output, output
    assert "Traceback" not in output, output
    assert_runs_saved_and_stopped(tmp_path, logs)


def test_sigterm_right_after_ctrl_c_is_the_same_stop(tmp_path):
    """Ctrl-C (SIGINT to the whole process group) and at once a SIGTERM to run.py: the first signal decides, the
    runs save and exit 130, and run.py exits 130 without a traceback (a second exception in its Ctrl-C path before)."""
    process, logs = start_pool_of_long_runs(tmp_path, 3)
    output = output_after(process, lambda: (os.killpg(process.pid, signal.SIGINT), process.send_signal(signal.SIGTERM)))
    assert process.returncode == 130, output
    assert "run.py: interrupted" in output and "Traceback" not in output, output
    assert_runs_saved_and_stopped(tmp_path, logs)


# ---- requeue with --resume ----
def test_checkpoint_stops_the_run_and_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """The job callable on a real run: checkpoint() stops it with SIGTERM (exit 143, after saving) and returns the
    resubmission of the same command with --resume <its run dir>/<exp_name>.cleanrl_model, on a fresh callable."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    (tmp_path / "runs" / "matrix-game__hasac_discrete__7__1700000000").mkdir(parents=True)  # an older run: not this one
    log = tmp_path / "run.log"
    job = run.Run(tmp_path, log_path=log)
    command = f"{LONG} --seed 7"
    outcome = {}

    def call():
        try:
            job(command)
        except run.RunFailed as error:
            outcome["error"] = error

    thread = threading.Thread(target=call)
    thread.start()
    try:
        wait_for(progress_printed(log), what="the run's first progress line")
        delayed = job.checkpoint(command)
    finally:
        job.stop()
        thread.join(timeout=60)
    assert job.process.returncode == run.SIGTERM_STATUS == 143
    assert outcome["error"].returncode == 143  # __call__ reports the stopped run
    assert "interrupted at global_step=" in log.read_text()
    tokens = shlex.split(delayed.args[0])
    assert tokens[:-2] == shlex.split(command) + ["--save-model"] and tokens[-2] == "--resume"
    checkpoint = Path(tokens[-1])
    assert re.fullmatch(r"runs/matrix-game__hasac_discrete__7__\d+(_\d+)?/hasac_discrete\.cleanrl_model", str(checkpoint))
    assert checkpoint.parent.name != "matrix-game__hasac_discrete__7__1700000000"
    assert (tmp_path / checkpoint).is_file()
    assert isinstance(delayed.function, run.Run) and delayed.function is not job and delayed.function.process is None
    # checkpointing the resubmitted command again keeps --resume at that run dir, replaced not repeated
    again = run.Run(tmp_path).checkpoint(delayed.args[0])
    assert shlex.split(again.args[0]).count("--resume") == 1


def test_checkpoint_before_the_run_started_resubmits_the_command(tmp_path):
    delayed = run.Run(tmp_path).checkpoint("python x.py --env-id e --seed 1")
    assert delayed.args == ("python x.py --env-id e --seed 1 --save-model",)


def start_array_task(tmp_path, env, log):
    """submitit's own job runner for one array task (what the sbatch file runs), in its own process group (a Slurm
    job step), its output in `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-u", "-m", "submitit.core._submit", str(tmp_path / "slurm_logs" / "%j")],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_slurm_signal_requeues_the_task_with_resume(tmp_path, fake_slurm):
    """The whole Slurm path without Slurm: run.py submits, then submitit's own job runner (`python -m
    submitit.core._submit`, what the sbatch file runs) starts array task 1 with Slurm's environment variables. Slurm's
    USR2 before the time limit goes to every process of the task (here its process group): the training run ignores
    it, submitit's handler calls checkpoint() (SIGTERM: the run saves), asks `scontrol requeue 1234_1` and rewrites the
    task's pickle with the --resume command."""
    env, _, scontrol_record = fake_slurm
    commands = f"{LONG} --seed 1\n{LONG} --seed 2\n"
    result = run_py("--commands-from", "-", "--slurm", "--root", str(tmp_path), cwd=tmp_path, env=env, stdin=commands)
    assert result.returncode == 0, result.stdout + result.stderr
    task_env = {**env, "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "1236", "SLURM_ARRAY_JOB_ID": "1234"}
    task_env.update(SLURM_ARRAY_TASK_ID="1", SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NTASKS="1")
    task_env["PYTHONUNBUFFERED"] = "1"
    log = tmp_path / "task.log"
    task = start_array_task(tmp_path, task_env, log)
    try:
        wait_for(progress_printed(log), what="the task's first progress line")
        os.killpg(task.pid, signal.SIGUSR2)
        task.wait(timeout=120)
    finally:
        if task.poll() is None:
            os.killpg(task.pid, signal.SIGKILL)
    text = log.read_text()
    assert "interrupted at global_step=" in text, text  # the run got SIGTERM and saved (not killed by USR2)
    assert scontrol_record.read_text().split() == ["requeue", "1234_1"], text
    delayed = load_submitted(tmp_path, "1234_1")
    tokens = shlex.split(delayed.args[0])
    assert tokens[:-2] == shlex.split(f"{LONG} --seed 2 --save-model") and tokens[-2] == "--resume"
    assert re.fullmatch(r"runs/matrix-game__hasac_discrete__2__\d+(_\d+)?/hasac_discrete\.cleanrl_model", tokens[-1])
    assert (tmp_path / tokens[-1]).is_file()
    assert delayed._timeout_countdown == 3  # a preemption, not a time-out: no requeue used up
    assert load_submitted(tmp_path, "1234_0").args == (f"{LONG} --seed 1",)  # the other task untouched


def test_slurm_sigterm_points_the_task_at_resume(tmp_path, fake_slurm):
    """A preemption where Slurm sends SIGTERM to every process and requeues the task itself (no submitit signal): the
    run saves and exits 143, submitit ignores the SIGTERM, and the task's pickle (what the requeued task runs) becomes
    the --resume command before Slurm's SIGKILL."""
    env, _, scontrol_record = fake_slurm
    result = run_py(
        "--env-ids",
        "matrix-game",
        "--command",
        LONG.replace(" --env-id matrix-game", ""),
        "--num-seeds",
        "2",
        "--slurm",
        "--root",
        str(tmp_path),
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    task_env = {**env, "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "1235", "SLURM_ARRAY_JOB_ID": "1234"}
    task_env.update(SLURM_ARRAY_TASK_ID="0", SLURM_PROCID="0", PYTHONUNBUFFERED="1")
    log = tmp_path / "task.log"
    task = start_array_task(tmp_path, task_env, log)
    try:
        wait_for(progress_printed(log), what="the task's first progress line")
        os.killpg(task.pid, signal.SIGTERM)
        wait_for(lambda: "--resume" in load_submitted(tmp_path, "1234_0").args[0], what="the --resume pickle")
        assert task.poll() is None  # still waiting for submitit's signal when Slurm's SIGKILL comes
    finally:
        os.killpg(task.pid, signal.SIGKILL)
        task.wait(timeout=60)
    assert "interrupted at global_step=" in log.read_text()
    tokens = shlex.split(load_submitted(tmp_path, "1234_0").args[0])
    assert tokens[-2] == "--resume" and (tmp_path / tokens[-1]).is_file()
    assert re.fullmatch(r"runs/matrix-game__hasac_discrete__1__\d+(_\d+)?/hasac_discrete\.cleanrl_model", tokens[-1])
    assert not scontrol_record.exists()  # Slurm requeues, not submitit
