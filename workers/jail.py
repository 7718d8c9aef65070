"""The jail: runs one pipeline step in a fresh child process that sees only what it is given.

One verb, `run_jailed`. The worker is the trusted courier: it names the folders the step may read
(bound read-only), gives it a work folder (its only writable place besides a private /tmp), sends
the request on the child's stdin, relays the child's reports (JSON lines on fd 3, each one checked)
to the job, and after the child has exited hands back its result. Publishing the work folder's
files is the caller's, through `checked_tree`.

The child (`workers.pipeline.jailed`) runs under bubblewrap: new mount, PID, network, IPC and UTS
namespaces; read-only system, Python and pipeline code; no `/dev` beyond the basics (and the
NVIDIA device nodes on GPU hosts); an environment with no secret; an unprivileged user (a worker
running as root starts the jail as root only to set it up, then `setpriv` drops to JAIL_UID with
no capabilities and no_new_privs); and resource limits (memory, CPU time, file size, processes).
`docs/architecture.md` has the threat model.
"""

import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from workers.pipeline.reporting import MEMORY_SIGNS, Cancelled, JobError, Reporter

ROOT = Path(__file__).resolve().parents[1]  # the project: its workers/ is the jail's only code
MAX_MESSAGE_BYTES = 64 * 2**20  # a result with a model's graph can be a few MB
LOG_LEVELS = ("debug", "info", "warning", "error")
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "mime.types",
             "ssl/openssl.cnf")  # what libraries look up; no host config, no host accounts
GPU_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")


@dataclass(frozen=True)
class Limits:
    """What one jailed step may use. 0 means no limit of that kind."""

    memory_bytes: int = 0  # private writable memory per process (RLIMIT_DATA)
    cpu_seconds: int = 0  # CPU time per process (RLIMIT_CPU)
    wall_seconds: float = 0  # the parent stops the step after this long
    max_processes: int = 0  # processes and threads of the jail's user (RLIMIT_NPROC)
    max_file_bytes: int = 0  # largest file it may write (RLIMIT_FSIZE)


@dataclass(frozen=True)
class Jail:
    """How this worker jails: `mode` "bwrap" (bubblewrap) or "off" (an admin's documented opt-out:
    a child process with a clean environment, nothing more)."""

    mode: str = "bwrap"
    uid: int = 61000  # the unprivileged user a root worker's jails run as
    limits: Limits = field(default_factory=Limits)
    readable: tuple[Path, ...] = ()  # read-only for every step too: e.g. pretrained weights
    environment: tuple[tuple[str, str], ...] = ()  # set for every step: e.g. where those weights are
    cancel_grace_seconds: float = 15  # a cancelled step that has not stopped by then is killed


class Failed(JobError):
    """The step failed; `detail` is what the child said about it (a traceback)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class StepCancelled(Cancelled):
    """The step stopped on a cancel; `result` is what it kept, if anything (a training's best epoch)."""

    def __init__(self, result: dict | None = None) -> None:
        super().__init__()
        self.result = result


@cache
def jail_problem() -> str:
    """Why bubblewrap cannot jail on this host, or "" when it can (tried once per process)."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    root = os.geteuid() == 0
    if root and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    command = [*_namespaces(root), *_system_binds(), "true"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, env={})
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bubblewrap did not start: {error}"
    if done.returncode != 0:
        return f"bubblewrap cannot make namespaces here: {done.stderr.strip()[:300]}"
    return ""


def run_jailed(step: str, request: dict, *, jail: Jail, folder: Path, reads: list[Path], reporter: Reporter,
               on_checkpoint=None, on_checkpoint_file=None, writes: list[Path] = ()) -> dict:
    """Run `step` (a name in workers.pipeline.steps.STEPS) on `request` in a jail. `folder` is the
    attempt's own: the child writes in `folder/work` and keeps /tmp in `folder/tmp`. `reads` are
    the only other paths it sees, read-only; `writes` (folders the worker made for this job alone,
    such as the image-cache entry it builds) it sees read-write. A step that resumes says where it got to through
    `on_checkpoint(state)` (JSON), or hands over files through `on_checkpoint_file(path, state)`
    (a copy the child cannot change); without them it may not. The step's result, or its error."""
    if jail.mode == "bwrap" and jail_problem():
        raise JobError(f"This worker cannot run jobs in a jail ({jail_problem()}), and jobs never run unjailed "
                       "unless an administrator sets VINTNER_JAIL=off. Ask your administrator.")
    work, tmp = folder / "work", folder / "tmp"
    own_user = os.geteuid() == 0 and jail.mode == "bwrap"
    for path in (work, tmp):
        path.mkdir(parents=True, exist_ok=True)
        if own_user:
            os.chown(path, jail.uid, jail.uid)
    if own_user:
        _readable_by_others(reads)
    if jail.mode != "bwrap":
        reporter.log("This worker runs jobs without a jail (VINTNER_JAIL=off): the job's code can reach "
                     "everything the worker can.", level="warning")
    command = jail_command(jail, work=work, tmp=tmp, reads=[*reads, *jail.readable], writes=list(writes))
    read_end, write_end = os.pipe()
    log_path = folder / "child.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=log, stderr=log, cwd=work,
            env={**_child_env(write_end), **dict(jail.environment)}, pass_fds=(write_end,),
            preexec_fn=_child_limits(jail), start_new_session=True,
        )
    os.close(write_end)
    relay = _Relay(os.fdopen(read_end, "rb"), reporter, work, folder / "checkpoints", on_checkpoint, on_checkpoint_file)
    relay.start()
    try:
        process.stdin.write(json.dumps({"step": step, "request": request}).encode() + b"\n")
        process.stdin.flush()
        stopped = _watch(process, relay, reporter, jail)
    except BaseException:
        _kill(process)
        raise
    finally:
        _kill(process)
        relay.join(timeout=10)  # an unjailed child's stray process could keep the pipe open
    return _outcome(process.returncode, relay, stopped, jail.limits, _tail(log_path))


def _readable_by_others(paths: list[Path]) -> None:
    """The jail's user reads its inputs as "others": the folders above them are made anew inside
    the jail, and what Vintner publishes is 0644/0755 (checked_tree), but a staged path's own mode
    may be narrower (a private temporary folder)."""
    for path in paths:
        mode = os.stat(path).st_mode
        wanted = mode | stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
        if wanted != mode:
            os.chmod(path, stat.S_IMODE(wanted))


def jail_command(jail: Jail, *, work: Path, tmp: Path, reads: list[Path], writes: list[Path] = ()) -> list[str]:
    """The child's command line: bubblewrap's namespaces and mounts, then the entry point."""
    # The interpreter's folder as the jail binds it (resolved: a venv reached through a symlinked
    # path is bound at its real place), its own name kept so that the venv's pyvenv.cfg still applies.
    executable = Path(sys.executable)
    python = [str(executable.parent.resolve() / executable.name), "-m", "workers.pipeline.jailed"]
    if jail.mode != "bwrap":
        return python
    root = os.geteuid() == 0
    # /tmp first: a folder below it (a test's data folder) is then bound on top of the private one
    binds = [*_system_binds(), "--bind", str(tmp), "/tmp", *_tree_binds(_python_trees(), "--ro-bind")]
    # Semaphores and DataLoader batches live in /dev/shm: writable by the job, and no bigger than
    # its memory limit (tmpfs pages are memory that RLIMIT_DATA does not count).
    binds += [*(["--size", str(jail.limits.memory_bytes)] if jail.limits.memory_bytes else []),
              "--perms", "1777", "--tmpfs", "/dev/shm"]
    binds += _tree_binds([ROOT / "workers", *[Path(p) for p in reads if Path(p).exists()]], "--ro-bind")
    binds += _tree_binds([work, *writes], "--bind")
    binds += [arg for name in GPU_DEVICES + _gpu_numbers() for arg in ("--dev-bind-try", f"/dev/{name}", f"/dev/{name}")]
    if _gpu_numbers():
        binds += ["--ro-bind-try", "/sys", "/sys"]  # the CUDA driver reads the devices' PCI facts
    binds += ["--ro-bind", str(_accounts(tmp.parent, jail.uid if root else os.getuid())), "/etc/passwd"]
    binds += ["--chdir", str(work)]
    drop = []
    if root:  # set up as root, run as nobody in particular: no capabilities, no way back
        drop = ["setpriv", f"--reuid={jail.uid}", f"--regid={jail.uid}", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--no-new-privs", "--"]
    return [*_namespaces(root), *binds, *drop, *python]


def _accounts(folder: Path, uid: int) -> Path:
    """An /etc/passwd of the jail's user alone: libraries that ask who they run as get an answer,
    and the host's accounts stay out of sight."""
    path = folder / "passwd"
    path.write_text(f"root:x:0:0::/:/usr/sbin/nologin\njob:x:{uid}:{uid}::/tmp:/usr/sbin/nologin\n")
    return path


def _namespaces(root: bool) -> list[str]:
    command = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
               "--die-with-parent", "--new-session", "--hostname", "jail"]
    if root:  # no user namespace: the uid below is real, so its process limit holds
        return command + ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return command + ["--unshare-user"]


def _system_binds() -> list[str]:
    binds = ["--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64"):
        path = Path("/") / name
        if path.is_symlink():  # merged /usr
            binds += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            binds += ["--ro-bind", str(path), str(path)]
    for name in ETC_FILES:
        binds += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return binds


def _tree_binds(paths: list[Path], how: str) -> list[str]:
    """Bind each path at its own name; the folders above it are made traversable (0755) in the
    jail, since they may not be for the jail's user on the host (/root)."""
    binds, made = [], {Path("/tmp")}
    for path in paths:
        path = Path(path).resolve()
        for parent in reversed(path.parents):
            if parent != Path("/") and parent not in made and not str(parent).startswith("/usr"):
                binds += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        binds += [how, str(path), str(path)]
        made.add(path)
    return binds


def _python_trees() -> list[Path]:
    """The interpreter's installation and the virtualenv, outside /usr."""
    trees = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), Path(sys.executable).resolve().parent.parent}
    return sorted(tree for tree in trees if not str(tree).startswith("/usr"))


def _gpu_numbers() -> tuple[str, ...]:
    return tuple(sorted(p.name for p in Path("/dev").glob("nvidia[0-9]*")))


def _child_env(message_fd: int) -> dict[str, str]:
    """Nothing of the worker's environment but what the libraries need: no secret, no credentials."""
    env = {
        "VINTNER_MESSAGE_FD": str(message_fd),  # where the child writes its reports
        "VINTNER_JOB_PROCESS": "1",  # it is a job's own process: no process of its own for loading code
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "USER": "job",
        "LOGNAME": "job",
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        # Hugging Face libraries: never reach the hub, never report usage (the jail has no network anyway)
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    }
    for name in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                 "NVIDIA_VISIBLE_DEVICES", "MALLOC_ARENA_MAX"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def _child_limits(jail: Jail):
    """Runs in the child before exec: the limits, which the jail inherits. The process count is per
    user, so it is set only where the jail has a user of its own (a root worker's JAIL_UID)."""
    limits = jail.limits
    own_user = jail.mode == "bwrap" and os.geteuid() == 0

    def setup() -> None:
        for kind, value, slack in ((resource.RLIMIT_DATA, limits.memory_bytes, 0),
                                   (resource.RLIMIT_CPU, limits.cpu_seconds, 5),
                                   (resource.RLIMIT_NPROC, limits.max_processes if own_user else 0, 0),
                                   (resource.RLIMIT_FSIZE, limits.max_file_bytes, 0)):
            if value:  # soft then hard: CPU gets SIGXCPU first, then SIGKILL 5 s later
                resource.setrlimit(kind, (value, value + slack))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash's core would hold the job's data
    return setup


class _WorkerFault(Exception):
    """A checkpoint the child handed over that the worker could not keep."""


class _Relay(threading.Thread):
    """Reads the child's messages, checks each, applies reports to the job as they come, keeps the end."""

    KINDS = ("log", "progress", "stage", "metric", "checkpoint", "checkpoint_file", "result", "error", "cancelled")

    def __init__(self, stream, reporter: Reporter, work: Path, keep: Path, on_checkpoint, on_checkpoint_file) -> None:
        super().__init__(daemon=True, name="jail-relay")
        self.stream, self.reporter, self.work, self.keep = stream, reporter, work, keep
        self.on_checkpoint, self.on_checkpoint_file = on_checkpoint, on_checkpoint_file
        self.end: dict | None = None  # the result, error or cancelled message
        self.violation = ""  # what the child sent that it may not
        self.fault = ""  # what went wrong on the worker's side while keeping a checkpoint

    def run(self) -> None:
        with self.stream:
            while True:
                line = self.stream.readline(MAX_MESSAGE_BYTES + 1)
                if not line:
                    return
                try:
                    if len(line) > MAX_MESSAGE_BYTES:
                        raise ValueError(f"a message over {MAX_MESSAGE_BYTES // 2**20} MB")
                    self._apply(json.loads(line))
                except _WorkerFault as fault:  # the worker's own trouble (storage), not the child's
                    self.fault = self.fault or str(fault.__cause__)[:500]
                    return
                except Exception as error:  # noqa: BLE001 - whatever the child sent, the job learns it was refused
                    self.violation = self.violation or f"{type(error).__name__}: {error}"[:500]
                    return  # the caller kills the child: it said something it may not

    def _apply(self, message: dict) -> None:
        kind = message.get("kind") if isinstance(message, dict) else None
        if kind not in self.KINDS:
            raise ValueError(f"unknown message kind {str(kind)[:50]!r}")
        if self.end is not None:
            raise ValueError("a message after the step's end")
        if kind == "log":
            level = message.get("level", "info")
            self.reporter.log(_text(message, "message", 100_000), level=level if level in LOG_LEVELS else "info")
        elif kind == "progress":
            self.reporter.progress(_number(message, "fraction"))
        elif kind == "stage":
            self.reporter.stage(_text(message, "name", 100))
        elif kind == "metric":
            step = message.get("step")
            if step is not None and (type(step) is not int or abs(step) > 2**53):
                raise ValueError("a metric's step must be a whole number")
            self.reporter.metric(_text(message, "name", 100), _number(message, "value"), step=step,
                                 summary=message.get("summary") is True)
        elif kind == "checkpoint":
            if self.on_checkpoint is None:
                raise ValueError("this step keeps no checkpoint")
            state = _object(message, "state")
            try:
                self.on_checkpoint(state)
            except Exception as error:
                raise _WorkerFault() from error
        elif kind == "checkpoint_file":
            if self.on_checkpoint_file is None:
                raise ValueError("this step keeps no checkpoint files")
            state, copy = _object(message, "state"), self._copy_out(_text(message, "path", 1000))
            try:
                self.on_checkpoint_file(copy, state)
            except Exception as error:
                raise _WorkerFault() from error
        else:
            self.end = message

    def _copy_out(self, relative: str) -> Path:
        """Move a file the child wrote in its work folder to a private copy (never through a link)."""
        self.keep.mkdir(exist_ok=True)
        target = self.keep / Path(relative).name
        with inside(self.work, relative) as (folder, name):
            with os.fdopen(_open_regular(name, folder), "rb") as source, open(target, "wb") as copy:
                shutil.copyfileobj(source, copy, 2**20)
            os.unlink(name, dir_fd=folder)
        return target


@contextmanager
def inside(root: Path, relative: str):
    """(folder fd, name) of a path below `root`, reached without following any link on the way:
    the child that wrote the folder could have made any component a symlink to the worker's files."""
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or any(part in ("..", ".") for part in parts):
        raise ValueError(f"{relative!r} is not a path inside the work folder")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        yield fd, parts[-1]
    finally:
        os.close(fd)


def _open_regular(name: str, folder: int) -> int:
    file = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    if not stat.S_ISREG(os.fstat(file).st_mode):
        os.close(file)
        raise ValueError(f"{name!r} is not a regular file")
    return file


def checked_tree(folder: Path, *, max_bytes: int | None = None) -> dict[str, int]:
    """Make a folder the jailed step wrote fit to publish: only regular files and folders (a link
    could point at the worker's own files), owned by the worker, plain modes. Its files' sizes by
    relative path."""
    total, files = 0, {}
    root = os.geteuid() == 0
    if folder.is_symlink() or not folder.is_dir():
        raise JobError("The job's output folder is missing.")
    for path in [folder, *sorted(folder.rglob("*"))]:
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode):
            mode = 0o755
        elif stat.S_ISREG(info.st_mode):
            mode, total = 0o644, total + info.st_size
            files[path.relative_to(folder).as_posix()] = info.st_size
        else:
            raise JobError(f"The job's output holds “{path.relative_to(folder)}”, which is not a plain file "
                           "(a link or device), so nothing was published.")
        if root:
            os.chown(path, 0, 0, follow_symlinks=False)
        os.chmod(path, mode, follow_symlinks=False)
        if max_bytes is not None and total > max_bytes:
            raise JobError(f"The job's output is larger than {_size(max_bytes)}, the space left, "
                           "so nothing was published.")
    return files


def _text(message: dict, key: str, limit: int) -> str:
    value = message.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be text")
    return value[:limit]


def _number(message: dict, key: str) -> float:
    value = message.get(key)
    if type(value) not in (int, float) or value != value or abs(value) == float("inf"):
        raise ValueError(f"{key} must be a finite number")
    return float(value)


def _object(message: dict, key: str) -> dict:
    value = message.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be an object")
    return value


def _watch(process: subprocess.Popen, relay: _Relay, reporter: Reporter, jail: Jail) -> str:
    """Wait for the child; pass a cancel on, and stop it on a protocol violation, when a cancel is
    not heeded, or at the time limit. Says why it stopped the child ("" when it ended by itself)."""
    started, cancelled_at = time.monotonic(), None
    wall_seconds, grace = jail.limits.wall_seconds, jail.cancel_grace_seconds
    while process.poll() is None:
        time.sleep(0.1)
        now = time.monotonic()
        if relay.violation:
            return "violation"
        if relay.fault:
            return "fault"
        if cancelled_at is None and reporter.cancelled():
            cancelled_at = now
            try:
                process.stdin.write(b"cancel\n")
                process.stdin.flush()
            except OSError:
                pass
        if cancelled_at is not None and now - cancelled_at > grace:
            return "cancel"
        if wall_seconds and now - started > wall_seconds:
            return "time"
    return ""


def _kill(process: subprocess.Popen) -> None:
    """The whole jail goes: bubblewrap leads its session, and its PID namespace ends with it (an
    unjailed child's session is killed whole, whatever it left running)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
    if process.stdin:
        try:
            process.stdin.close()
        except OSError:
            pass


def _outcome(code: int, relay: _Relay, stopped: str, limits: Limits, log: str) -> dict:
    end = relay.end or {}
    if relay.violation:  # read to the end only after the child was stopped, too
        raise Failed("The job's process sent the worker a message it may not send, so it was stopped.",
                     relay.violation)
    if relay.fault:
        raise Failed("The worker could not keep the job's checkpoint, so the job was stopped.", relay.fault)
    if stopped == "cancel":
        raise StepCancelled()
    if stopped == "time":
        raise Failed(f"The job ran past its time limit of {_duration(limits.wall_seconds)} and was stopped.")
    if end.get("kind") == "result":
        return _object(end, "result")
    if end.get("kind") == "cancelled":
        kept = end.get("result")
        raise StepCancelled(kept if isinstance(kept, dict) else None)
    said = end.get("message") if isinstance(end.get("message"), str) else ""
    detail = end.get("detail") if isinstance(end.get("detail"), str) else ""
    if end.get("error") == "job":
        raise Failed(said, detail)
    signum = _signal_of(code)
    memory = end.get("error") == "memory" or any(sign in said + log[-4000:] for sign in MEMORY_SIGNS)
    if memory and limits.memory_bytes:
        raise Failed(f"The job used more than {_size(limits.memory_bytes)} of memory (the limit for one job "
                     "on this worker) and was stopped.", detail or log)
    if memory:
        raise Failed("The job ran out of memory.", detail or log)
    if signum == signal.SIGXCPU:
        raise Failed(f"The job used more than {_duration(limits.cpu_seconds)} of CPU time (the limit for one job) "
                     "and was stopped.", log)
    if (signum == signal.SIGXFSZ or end.get("error") == "file_size") and limits.max_file_bytes:
        raise Failed(f"The job wrote a file larger than {_size(limits.max_file_bytes)} (the limit for one file) "
                     "and was stopped.", detail or log)
    if end.get("error") in ("unexpected", "file_size"):
        raise Failed(f"The job stopped on an unexpected error: {said}", detail)
    last = next((line for line in reversed(log.splitlines()) if line.strip()), "")
    raise Failed(f"The job's process ended without a result ({_how(code)})."
                 + (f" Its last words: {last[:300]}" if last else ""), log)


def _signal_of(code: int) -> int | None:
    """bubblewrap reports a child killed by a signal as 128 + the signal; Popen a direct one as -signal."""
    if code < 0:
        return -code
    return code - 128 if code > 128 else None


def _how(code: int) -> str:
    number = _signal_of(code)
    if number is None:
        return f"exit status {code}"
    try:
        return f"signal {signal.Signals(number).name}"
    except ValueError:
        return f"signal {number}"


def _size(size: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g} hours" if seconds >= 3600 else f"{seconds:g} s"


def _tail(path: Path, size: int = 8000) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - size))
        return f.read().decode("utf-8", "replace")
