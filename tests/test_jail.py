"""The jail itself (workers/jail.py), with hostile steps from tests/jail_steps.py and no Django
worker: each test plants a worker's data folder (a secret key, a SQLite database) beside the
jail's folder, runs a step that attacks it or the host, and asserts that the job ended with a
sentence for the user, that the step got nothing, and that nothing outside its work folder changed."""

import os
import shlex
import socket
import sqlite3
import stat
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import psutil
import pytest

from tests.fakes import FakeReporter
from tests.servers import wait_for
from workers.jail import ROOT, Failed, Jail, Limits, StepCancelled, checked_tree, jail_command, jail_problem, run_jailed
from workers.pipeline.reporting import JobError

pytestmark = pytest.mark.skipif(bool(jail_problem()), reason=f"no jail on this host: {jail_problem()}")
requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="only a root worker's jail has a user of its own")

# Not the workers' 61000: RLIMIT_NPROC counts every process of a user on the host, and other test
# runs on this machine jail as 61000; a user of our own keeps both the limit and the count exact.
UID = 61937
SMALL = Limits(memory_bytes=2**30, cpu_seconds=60, wall_seconds=60, max_processes=64, max_file_bytes=16 * 2**20)
SECRET = "django-insecure-the-workers-own-secret-key"


@dataclass
class Planted:
    """A worker's data folder as the jail must never see it, and what it held when planted."""

    folder: Path
    before: dict

    @property
    def secret(self) -> Path:
        return self.folder / "secret_key"

    @property
    def database(self) -> Path:
        return self.folder / "vintner.sqlite3"

    def untouched(self) -> bool:
        return _listing(self.folder) == self.before


def _listing(folder: Path) -> dict:
    """Every path below `folder` with its kind, mode and content (a link's target): a change is a difference."""
    listing = {}
    for path in [folder, *folder.rglob("*")]:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            content = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            content = path.read_bytes()
        else:
            content = None
        listing[str(path)] = (stat.filemode(info.st_mode), info.st_uid, content)
    return listing


@pytest.fixture
def planted(tmp_path) -> Planted:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "secret_key").write_text(SECRET)
    os.chmod(folder / "secret_key", 0o600)
    with sqlite3.connect(folder / "vintner.sqlite3") as db:
        db.execute("CREATE TABLE auth_user (username TEXT, password TEXT)")
        db.execute("INSERT INTO auth_user VALUES ('alice', 'pbkdf2_sha256$alices-hash')")
    db.close()
    (folder / "media").mkdir()
    (folder / "media" / "weights.bin").write_bytes(b"another team's model")
    return Planted(folder, _listing(folder))


def jailed(step: str, request: dict, folder: Path, *, limits: Limits = SMALL, reads: list[Path] = (),
           reporter=None, grace: float = 15, **checkpoints) -> dict:
    jail = Jail(uid=UID, limits=limits, readable=(ROOT / "tests",), cancel_grace_seconds=grace)
    return run_jailed(f"tests.jail_steps:{step}", request, jail=jail, folder=folder, reads=list(reads),
                      reporter=reporter or FakeReporter(), **checkpoints)


def jail_processes() -> list[int]:
    """Processes of the jail's user still on the host."""
    found = []
    for process in psutil.process_iter(["uids"]):
        uids = process.info["uids"]
        if uids and UID in (uids.real, uids.effective):
            found.append(process.pid)
    return found


def none_left() -> bool:
    try:
        wait_for(lambda: not jail_processes(), timeout=5, what="the jail's processes to be gone")
    except TimeoutError:
        return False
    return True


# --- who it is ---------------------------------------------------------------------------------

@requires_root
def test_it_runs_a_root_workers_step_as_its_own_user_with_no_capabilities(tmp_path):
    status = jailed("identity", {}, tmp_path / "jail")
    assert status["Uid"] == [str(UID)] * 4 and status["Gid"] == [str(UID)] * 4 and status["Groups"] == []
    assert {int(status[name][0], 16) for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == {0}
    assert status["NoNewPrivs"] == ["1"]


@pytest.fixture
def attempt(tmp_path, monkeypatch) -> Path:
    """A root worker's attempt folder under its data folder, with a staged input; os.geteuid() is 0
    for the test, so that jail_command builds what a root worker runs, whoever runs the tests."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    folder = tmp_path / "data" / "scratch" / "job-7" / "attempt-1"
    for path in (folder / "jail" / "work", folder / "jail" / "tmp", folder / "inputs" / "model"):
        path.mkdir(parents=True)
    return folder


def root_command(attempt: Path) -> list[str]:
    return jail_command(Jail(uid=UID), work=attempt / "jail" / "work", tmp=attempt / "jail" / "tmp",
                        reads=[attempt / "inputs" / "model"])


def test_it_drops_a_root_workers_jail_to_its_user_with_no_privileges_and_no_network(attempt):
    command = root_command(attempt)
    setpriv = command.index("setpriv")
    assert command[0] == "bwrap" and {"--unshare-net", "--unshare-pid", "--die-with-parent"} <= set(command[:setpriv])
    assert {f"--reuid={UID}", f"--regid={UID}", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all",
            "--clear-groups"} <= set(command[setpriv:command.index("--", setpriv)])
    assert command[-2:] == ["-m", "workers.pipeline.jailed"]  # setpriv runs the step's Python, nothing else


def test_it_binds_nothing_of_the_data_folder_but_the_attempts_own(attempt):
    command = root_command(attempt)
    data = attempt.parents[2]
    sources = [command[i + 1] for i, arg in enumerate(command)
               if arg in ("--bind", "--ro-bind", "--dev-bind", "--bind-try", "--ro-bind-try", "--dev-bind-try")]
    # not the data folder, its media/, database or secret key: only what this attempt was given
    under_data = sorted(source for source in sources if Path(source).is_relative_to(data))
    given = sorted(str(attempt / name) for name in ("jail/passwd", "jail/tmp", "jail/work", "inputs/model"))
    assert under_data == given, shlex.join(command)
    writable = [command[i + 1] for i, arg in enumerate(command) if arg == "--bind"]
    assert sorted(writable) == [str(attempt / "jail" / "tmp"), str(attempt / "jail" / "work")]


def test_a_cache_entry_it_builds_is_the_only_other_folder_it_can_write(attempt):
    cache = attempt.parents[2] / "cache" / "images"
    (cache / "dataset-3-256px-ab").mkdir(parents=True)
    (cache / "dataset-9-256px-cd").mkdir()  # another team's images
    command = jail_command(Jail(uid=UID), work=attempt / "jail" / "work", tmp=attempt / "jail" / "tmp",
                           reads=[attempt / "inputs" / "model"], writes=[cache / "dataset-3-256px-ab"])
    writable = [command[i + 1] for i, arg in enumerate(command) if arg == "--bind"]
    assert sorted(writable) == sorted([str(attempt / "jail" / "tmp"), str(attempt / "jail" / "work"),
                                       str(cache / "dataset-3-256px-ab")])
    sources = [command[i + 1] for i, arg in enumerate(command) if arg in ("--bind", "--ro-bind")]
    assert not any(Path(source) in (cache, cache / "dataset-9-256px-cd") for source in sources)


# --- what it can read --------------------------------------------------------------------------

def test_it_reads_nothing_of_the_data_folder_or_the_project_beyond_its_code(planted, tmp_path):
    paths = [planted.secret, planted.database, planted.folder / "media" / "weights.bin",
             ROOT / "webapp" / "settings.py", ROOT / "pyproject.toml", Path("/etc/shadow"), Path("/root/.bash_history")]
    result = jailed("read_files", {"paths": [str(path) for path in paths]}, tmp_path / "jail")
    assert result == {"read": {}, "tables": {}}
    assert planted.untouched()


def test_it_gives_the_step_none_of_the_workers_environment(planted, tmp_path, monkeypatch):
    secrets = {"SECRET_KEY": SECRET, "DATABASE_URL": "postgres://vintner:db-password@db/vintner",
               "REDIS_URL": "redis://:redis-password@redis:6379/0", "S3_SECRET_KEY": "s3-secret"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    result = jailed("environment", {"needles": list(secrets.values())}, tmp_path / "jail")
    assert not set(secrets) & set(result["environ"])
    assert not any(value in str(result["environ"]) for value in secrets.values())
    assert result["found"] == []  # nor in any other process's environment it can see
    assert planted.untouched()


# --- what it can write -------------------------------------------------------------------------

def test_it_writes_nowhere_outside_its_work_folder_and_private_tmp(planted, tmp_path):
    name = f"vintner-jail-test-{uuid.uuid4().hex}"
    new = [planted.folder / "planted", planted.folder / "media" / name, ROOT / name, ROOT / "workers" / f"{name}.py",
           ROOT / "tests" / f"{name}.py", Path("/") / name, Path("/etc") / name, Path("/usr") / name,
           Path("/dev/shm") / name]
    existing = [planted.secret, planted.database, planted.folder / "media" / "weights.bin"]
    host_tmp = Path("/tmp") / name
    result = jailed("write_files", {"paths": [str(path) for path in [*new, *existing, host_tmp]]}, tmp_path / "jail")
    # /tmp in the jail is the attempt's own folder, and /dev/shm a memory of its own, not the host's
    shm = Path("/dev/shm") / name
    assert result["written"] == [str(shm), f"{shm}.d", str(host_tmp), f"{host_tmp}.d"]
    assert (tmp_path / "jail" / "tmp" / name).read_bytes() == b"written from the jail"
    made = [path for base in [*new, host_tmp] for path in (base, Path(f"{base}.d")) if path.exists()]
    for path in made:  # a failing run leaves no litter in the project
        path.rmdir() if path.is_dir() else path.unlink()
    assert made == []
    assert planted.untouched()


def test_it_keeps_a_read_only_input_unchanged(planted, tmp_path):
    inputs = tmp_path / "inputs" / "model"
    inputs.mkdir(parents=True)
    (inputs / "model.bin").write_bytes(b"the uploaded weights")
    before = _listing(inputs)
    result = jailed("chmod_and_write", {"folder": str(inputs)}, tmp_path / "jail", reads=[inputs])
    assert result["done"] == []
    assert _listing(inputs) == before
    assert planted.untouched()


# --- what it can reach ---------------------------------------------------------------------------

def test_it_reaches_no_server_of_the_host(planted, tmp_path):
    server = socket.create_server(("", 0))  # every address of the host
    server.setblocking(False)
    port = server.getsockname()[1]
    hosts = {address.address for addresses in psutil.net_if_addrs().values() for address in addresses
             if address.family == socket.AF_INET}
    with server:
        result = jailed("connect", {"addresses": [[host, port] for host in sorted(hosts | {"127.0.0.1"})]},
                        tmp_path / "jail")
        with pytest.raises(BlockingIOError):
            server.accept()  # no connection came in
    assert result["reached"] == []
    assert planted.untouched()


def test_it_resolves_no_name_and_reaches_no_outside_address(planted, tmp_path):
    result = jailed("resolve_and_reach", {}, tmp_path / "jail")
    assert result["resolved"] == [] and result["reached"] == []
    assert result["interfaces"] == ["lo"]  # a network namespace of its own
    assert planted.untouched()


def test_it_reaches_no_abstract_unix_socket_of_the_host(planted, tmp_path):
    name = f"vintner-jail-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("\0" + name)
        server.listen()
        server.setblocking(False)
        result = jailed("abstract_socket", {"name": name}, tmp_path / "jail")
        with pytest.raises(BlockingIOError):
            server.accept()
    assert result["reached"] is False


# --- how much it can use -------------------------------------------------------------------------

@requires_root
def test_it_holds_a_fork_bomb_to_the_process_limit_and_leaves_no_process(planted, tmp_path):
    started = time.monotonic()
    result = jailed("fork_bomb", {"cap": 300}, tmp_path / "jail", limits=replace(SMALL, max_processes=64))
    assert time.monotonic() - started < 30
    assert "Resource temporarily unavailable" in result["refused"]
    assert result["tasks"] <= 64
    assert none_left()
    assert planted.untouched()


@requires_root
def test_it_leaves_no_process_behind_a_step_that_returned(tmp_path):
    assert jailed("daemon", {}, tmp_path / "jail") == {"left": "a daemon"}
    counter = tmp_path / "jail" / "work" / "counter"
    seen = counter.read_text()
    time.sleep(0.5)
    assert counter.read_text() == seen  # it wrote nothing after the step's end
    assert none_left()


@requires_root
def test_it_runs_the_next_step_after_a_fork_bomb(tmp_path):
    job = tmp_path / "job-1"
    jailed("fork_bomb", {"cap": 300}, job / "attempt-1", limits=replace(SMALL, max_processes=64))
    result = jailed("hello", {"say": "still here"}, job / "attempt-2", limits=replace(SMALL, max_processes=64))
    assert result == {"uid": UID, "cwd": str(job / "attempt-2" / "work"), "said": "still here"}


@pytest.mark.parametrize("how", ["bytearray", "numpy"])
def test_it_stops_a_step_that_allocates_100_gb_at_the_memory_limit(how, planted, tmp_path):
    with pytest.raises(Failed, match=r"The job used more than 1 GB of memory \(the limit for one job"):
        jailed("allocate", {"gigabytes": 100, "how": how}, tmp_path / "jail", limits=replace(SMALL, memory_bytes=2**30))
    assert planted.untouched()


def test_it_stops_a_busy_loop_at_the_cpu_time_limit(tmp_path):
    started = time.monotonic()
    with pytest.raises(Failed, match="more than 2 s of CPU time"):
        jailed("busy", {"seconds": 60}, tmp_path / "jail", limits=replace(SMALL, cpu_seconds=2, wall_seconds=0))
    assert time.monotonic() - started < 20


def test_it_stops_a_sleeping_step_at_the_time_limit(tmp_path):
    started = time.monotonic()
    with pytest.raises(Failed, match="ran past its time limit of 3 s"):
        jailed("sleepy", {"seconds": 60}, tmp_path / "jail", limits=replace(SMALL, cpu_seconds=0, wall_seconds=3))
    assert time.monotonic() - started < 10


def test_it_stops_a_file_larger_than_the_file_limit(tmp_path):
    with pytest.raises(Failed, match=r"wrote a file larger than 1 MB \(the limit for one file\)"):
        jailed("big_file", {"bytes": 8 * 2**20}, tmp_path / "jail", limits=replace(SMALL, max_file_bytes=2**20))
    assert (tmp_path / "jail" / "work" / "big.bin").stat().st_size <= 2**20


# --- what it can publish and say -----------------------------------------------------------------

@pytest.mark.parametrize("target", ["secret_key", "."])
def test_it_publishes_no_output_that_links_to_the_host(target, planted, tmp_path):
    jailed("link_out", {"target": str(planted.folder / target), "name": "a-link"}, tmp_path / "jail")
    out = tmp_path / "jail" / "work" / "out"
    with pytest.raises(JobError, match="which is not a plain file"):
        checked_tree(out)
    assert (out / "a-link").is_symlink()  # left as it was: nothing followed it
    assert not [path for path in out.rglob("*") if path.is_file() and not path.is_symlink()
                and SECRET.encode() in path.read_bytes()]
    assert planted.untouched()  # the secret's mode and owner too


@pytest.mark.parametrize("line", [
    '{"kind": "checkpoint", "state": {"key": "datasets/1/x"}}\n',
    "not json at all\n",
    '{"kind": "shell", "command": "cat /etc/shadow"}\n',
    '{"kind": "metric", "name": "loss", "value": NaN}\n',
    '{"kind": "result", "result": {"artifact": 1}}\n{"kind": "log", "message": "after the end"}\n',
])
def test_it_stops_a_step_that_sends_a_message_it_may_not(line, tmp_path):
    started = time.monotonic()
    with pytest.raises(Failed, match="sent the worker a message it may not send"):
        jailed("forge", {"line": line}, tmp_path / "jail")
    assert time.monotonic() - started < 10  # stopped, not waited for (the step sleeps 30 s)


@pytest.mark.parametrize("link, path", [("evil", "evil/secret_key"), ("evil", "evil")],
                         ids=["folder-link", "file-link"])
def test_it_takes_no_checkpoint_file_through_a_link(link, path, planted, tmp_path):
    target = planted.folder if path != link else planted.secret
    kept = []
    with pytest.raises(Failed, match="sent the worker a message it may not send"):
        jailed("checkpoint_through_link", {"target": str(target), "link": link, "path": path}, tmp_path / "jail",
               on_checkpoint_file=lambda copy, state: kept.append(copy))
    assert kept == []
    assert not [p for p in (tmp_path / "jail").rglob("*") if p.is_file() and not p.is_symlink()
                and SECRET.encode() in p.read_bytes()]
    assert planted.untouched()  # not copied, and not unlinked either


def test_it_takes_a_checkpoint_file_that_is_a_plain_file_of_the_work_folder(tmp_path):
    # the same message as above without the link: those are refused for the link alone
    kept = []
    result = jailed("checkpoint_plain", {}, tmp_path / "jail", on_checkpoint_file=lambda copy, state: kept.append(
        (copy.read_bytes(), state, copy.is_relative_to(tmp_path / "jail" / "work"))))
    assert result == {"handed": "epochs/epoch-1.pth"}
    assert kept == [(b"epoch one", {"epoch": 1}, False)]  # a copy the step cannot reach
    assert not (tmp_path / "jail" / "work" / "epochs" / "epoch-1.pth").exists()


# --- cancelling ----------------------------------------------------------------------------------

@requires_root
def test_it_kills_a_step_that_ignores_a_cancel_after_the_grace(tmp_path):
    started = time.monotonic()
    with pytest.raises(StepCancelled):
        jailed("sleepy", {"seconds": 60}, tmp_path / "jail", reporter=FakeReporter(cancel_after=0), grace=1)
    assert time.monotonic() - started < 6
    assert none_left()


def test_it_ends_a_step_that_heeds_a_cancel_with_what_it_kept(tmp_path):
    started = time.monotonic()
    with pytest.raises(StepCancelled) as cancelled:
        jailed("heeds_cancel", {}, tmp_path / "jail", reporter=FakeReporter(cancel_after=0), grace=30)
    assert time.monotonic() - started < 5  # well before the grace: it stopped itself
    assert cancelled.value.result == {"best_epoch": 2}


def test_it_lets_a_step_fork_worker_processes(tmp_path):
    """A forked child closes sys.stdin first thing; it once waited there forever for the lock the
    jail's cancel listener held, and every training with loader processes hung."""
    result = jailed("forked_pool", {}, tmp_path / "job", limits=replace(SMALL, wall_seconds=30))
    assert result == {"squares": [n * n for n in range(8)]}


def test_it_shows_the_workers_pretrained_weights_read_only_where_torch_looks(tmp_path):
    home = tmp_path / "torch-home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    (home / "hub" / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"weights an administrator put here")
    jail = Jail(uid=UID, limits=SMALL, readable=(ROOT / "tests", home / "hub" / "checkpoints"),
                environment=(("TORCH_HOME", str(home)),))
    result = run_jailed("tests.jail_steps:hub", {}, jail=jail, folder=tmp_path / "job", reads=[], reporter=FakeReporter())
    assert result == {"folder": str(home / "hub" / "checkpoints"), "files": ["resnet18-f37072fd.pth"]}
