"""Hostile pipeline steps for tests/test_jail.py, run inside the jail as "tests.jail_steps:<name>".

Each is what a model's code could do once it runs: read the worker's files and secrets, write
outside its work folder, reach the network, exhaust the host, lie to the worker. Each returns what
it managed, so that a test can assert it managed nothing. Stdlib only (the jail's Python sees the
project's workers/ and this folder, and no Django), and every loop is bounded, so that a jail that
failed to hold would fail the test rather than the machine.
"""

import os
import socket
import sqlite3
import time
from pathlib import Path

from workers.pipeline.reporting import Cancelled


def hello(request: dict, span) -> dict:
    return {"uid": os.getuid(), "cwd": os.getcwd(), "said": request.get("say")}


def read_files(request: dict, span) -> dict:
    """Whatever of the named files it can read, as text, and the tables of any database among them."""
    read, tables = {}, {}
    for path in request["paths"]:
        try:
            read[path] = Path(path).read_bytes().decode("utf-8", "replace")
        except OSError:
            pass
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                tables[path] = [row[0] for row in db.execute("SELECT name FROM sqlite_master")]
        except sqlite3.Error:
            pass
    return {"read": read, "tables": tables}


def environment(request: dict, span) -> dict:
    """Its own environment, and every environment in its /proc that holds one of the needles."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            text = (entry / "environ").read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        found += [f"{entry.name}: {needle}" for needle in request["needles"] if needle in text]
    return {"environ": dict(os.environ), "found": found}


def write_files(request: dict, span) -> dict:
    """Tries to create or overwrite each path, and to make a folder beside it."""
    written = []
    for path in request["paths"]:
        try:
            with open(path, "wb") as file:
                file.write(b"written from the jail")
            written.append(path)
        except OSError:
            pass
        try:
            os.mkdir(f"{path}.d")
            written.append(f"{path}.d")
        except OSError:
            pass
    return {"written": written}


def chmod_and_write(request: dict, span) -> dict:
    """Tries to make a read-only input writable, then to change, remove or add files in it."""
    folder, done = Path(request["folder"]), []
    attempts = {
        "chmod": lambda: os.chmod(folder / "model.bin", 0o666),
        "overwrite": lambda: (folder / "model.bin").write_bytes(b"changed"),
        "append": lambda: open(folder / "model.bin", "ab").write(b"more"),
        "unlink": lambda: (folder / "model.bin").unlink(),
        "rename": lambda: (folder / "model.bin").rename(folder / "renamed.bin"),
        "create": lambda: (folder / "new.bin").write_bytes(b"new"),
        "truncate": lambda: os.truncate(folder / "model.bin", 0),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
            done.append(name)
        except OSError:
            pass
    return {"done": done}


def connect(request: dict, span) -> dict:
    """TCP connections to each [host, port]; the ones that were accepted."""
    reached = []
    for host, port in request["addresses"]:
        try:
            with socket.create_connection((host, port), timeout=2):
                reached.append(f"{host}:{port}")
        except OSError:
            pass
    return {"reached": reached}


def resolve_and_reach(request: dict, span) -> dict:
    """Names it can resolve, and the outside addresses it can send to (TCP and UDP)."""
    resolved, reached = [], []
    for name in ("example.com", "pypi.org", "localhost"):
        try:
            resolved.append(f"{name}: {socket.getaddrinfo(name, 443)[0][4][0]}")
        except OSError:
            pass
    for host in ("1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"):
        try:
            with socket.create_connection((host, 53), timeout=2):
                reached.append(f"tcp {host}")
        except OSError:
            pass
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                udp.sendto(b"\0" * 12, (host, 53))
                reached.append(f"udp {host}")
        except OSError:
            pass
    interfaces = [name for _, name in socket.if_nameindex()]
    return {"resolved": resolved, "reached": reached, "interfaces": interfaces}


def abstract_socket(request: dict, span) -> dict:
    """A connection to a Unix socket in the abstract namespace (not a file: only the network namespace fences it)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect("\0" + request["name"])
            return {"reached": True}
    except OSError as error:
        return {"reached": False, "error": str(error)}


def _tasks() -> int:
    """Processes and threads of this step's user in its PID namespace: what RLIMIT_NPROC counts
    (bubblewrap's own process there is root's)."""
    count, me = 0, os.getuid()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == me:
                    count += len(os.listdir(entry / "task"))
            except OSError:
                pass
    return count


def fork_bomb(request: dict, span) -> dict:
    """Every process forks until it is refused, and keeps trying. Bounded at `cap` tasks, so that
    a limit that failed shows up as a count over the limit, not as a dead machine."""
    cap, refused = request["cap"], ""
    while _tasks() < cap:
        try:
            pid = os.fork()
        except OSError as error:
            refused = str(error)
            break
        if pid == 0:  # the child: fork as long as it can, forever
            while True:
                if _tasks() < cap:
                    try:
                        os.fork()
                    except OSError:
                        pass
                time.sleep(0.01)
    time.sleep(1)  # the children fill whatever room is left
    return {"refused": refused, "tasks": _tasks()}


def allocate(request: dict, span) -> dict:
    size = request["gigabytes"] * 2**30
    if request["how"] == "numpy":
        import numpy

        block = numpy.ones(size, dtype=numpy.uint8)
    else:
        block = bytearray(size)
    return {"allocated": len(block)}


def busy(request: dict, span) -> dict:
    started = time.monotonic()
    while time.monotonic() - started < request.get("seconds", 120):
        pass
    return {"finished": True}


def sleepy(request: dict, span) -> dict:
    """Sleeps, deaf to a cancel."""
    started = time.monotonic()
    while time.monotonic() - started < request.get("seconds", 120):
        time.sleep(0.1)
    return {"finished": True}


def heeds_cancel(request: dict, span) -> dict:
    """Stops at a cancel, keeping what it made (as a training keeps its best epoch)."""
    started = time.monotonic()
    while time.monotonic() - started < 60:
        if span.reporter.cancelled():
            stop = Cancelled()
            stop.kept = {"best_epoch": 2}
            raise stop
        time.sleep(0.05)
    return {"finished": True}


def big_file(request: dict, span) -> dict:
    chunk, written = b"\0" * 2**20, 0
    with open("big.bin", "wb") as file:
        while written < request["bytes"]:
            written += file.write(chunk)
    return {"written": written}


def link_out(request: dict, span) -> dict:
    """An output folder that holds a link to the worker's secret beside an ordinary file."""
    out = Path("out")
    out.mkdir()
    (out / "model.bin").write_bytes(b"weights")
    os.symlink(request["target"], out / request.get("name", "secret"))
    return {"primary": "model.bin"}


def forge(request: dict, span) -> dict:
    """Writes a raw line of its own making to the worker's message pipe, then waits to be stopped."""
    os.write(int(os.environ["VINTNER_MESSAGE_FD"]), request["line"].encode())
    time.sleep(30)
    return {"finished": True}


def checkpoint_through_link(request: dict, span) -> dict:
    """Hands over a checkpoint by a path whose folder (or the file itself) is a link to the host."""
    os.symlink(request["target"], request["link"])
    span.reporter.checkpoint_file(request["path"], {"epoch": 1})
    time.sleep(30)
    return {"finished": True}


def identity(request: dict, span) -> dict:
    """Who the step runs as: its ids, capabilities and no_new_privs, from /proc/self/status."""
    wanted = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")
    status = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in wanted:
            status[name] = value.split()
    return status


def checkpoint_plain(request: dict, span) -> dict:
    Path("epochs").mkdir()
    Path("epochs/epoch-1.pth").write_bytes(b"epoch one")
    span.reporter.checkpoint_file("epochs/epoch-1.pth", {"epoch": 1})
    return {"handed": "epochs/epoch-1.pth"}


def daemon(request: dict, span) -> dict:
    """Leaves a process behind that detaches and keeps writing in the work folder, then returns."""
    if os.fork() == 0:
        os.setsid()
        os.closerange(0, 256)  # not even the message pipe: nothing ties it to the step
        for count in range(600_000):
            Path("counter").write_text(str(count))
            time.sleep(0.0005)
        os._exit(0)
    time.sleep(0.2)
    return {"left": "a daemon"}


def _square(number: int) -> int:
    return number * number


def forked_pool(request: dict, span) -> dict:
    """What a DataLoader does: fork worker processes while the jail's cancel listener reads its pipe."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(2) as pool:
        return {"squares": pool.map(_square, range(8))}


def hub(request: dict, span) -> dict:
    """Where torch looks for pretrained weights inside the jail, and what it finds there."""
    import torch

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return {"folder": str(folder), "files": sorted(path.name for path in folder.glob("*.pth"))}
