"""PyTorch pickles, which run code when unpickled: scanned without running them, refused when
weights_only loading would refuse them, and loaded only with `weights_only=True`.
"""

import pickle
import pickletools
import re
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING  # Python 2 names, as pickle itself maps them
from pathlib import Path

import torch

from workers.pipeline.formats.common import one_line
from workers.pipeline.reporting import JobError, show

MAX_PICKLE_BYTES = 256 * 2**20  # a state_dict's data.pkl holds names and shapes; tensors are stored beside it
PICKLE_GUIDANCE = ("Upload its state_dict (torch.save(model.state_dict(), …)), TorchScript (torch.jit.save) "
                   "or torch.export (.pt2) instead.")

# Modules whose functions do things (run commands, evaluate code, touch files or the network):
# a pickle naming one of them is an attack, not a model.
CODE_MODULES = {"os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "importlib", "runpy",
                "shutil", "socket", "pty", "code", "codeop", "ctypes", "marshal", "pickle", "_pickle", "types",
                "operator", "functools", "webbrowser", "multiprocessing", "asyncio", "io", "tempfile", "pathlib",
                "urllib", "http", "requests", "pip", "setuptools", "distutils", "commands", "platform", "signal"}
HIDDEN_GLOBAL = "a function whose name is built at load time"
LEGACY_PICKLES = 5  # a legacy torch.save file is five pickles in a row (magic, protocol, info, object, keys)


def refuse_unsafe_pickle(path: Path, name: str) -> None:
    """Refuse, without running anything, a pickle that weights_only loading would refuse: say
    whether it is a whole nn.Module or code. Loading stays weights_only either way."""
    found, strings = _pickle_contents(path, name)
    unsafe = sorted(found - _weights_only_globals())
    if not unsafe:
        return
    code = [g for g in unsafe if g.split(".")[0] in CODE_MODULES or g == HIDDEN_GLOBAL]
    if code:
        raise JobError(f"“{show(name)}” contains Python code ({', '.join(code[:3])}) that would run when it is "
                       f"loaded, so it was refused without loading it. {PICKLE_GUIDANCE}")
    if any(g.startswith("torch.nn.") for g in unsafe) or {"_modules", "_parameters"} <= strings:
        raise JobError(f"“{show(name)}” is a whole pickled PyTorch model (torch.nn.Module), which could run code "
                       f"when loaded. {PICKLE_GUIDANCE}")
    raise JobError(f"“{show(name)}” holds Python objects other than tensors ({', '.join(unsafe[:3])}), which "
                   "could run code when loaded, so it was refused without loading it. A checkpoint may hold only "
                   f"tensors and plain values. {PICKLE_GUIDANCE}")


def _pickle_contents(path: Path, name: str) -> tuple[set[str], set[str]]:
    """The globals a pickle (or torch.save zip) imports, and the short strings it holds, by reading
    its opcodes (pickletools); nothing is unpickled."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                info = next(i for i in zf.infolist() if i.filename.split("/", 1)[-1] == "data.pkl")
                if info.file_size > MAX_PICKLE_BYTES:  # the zip reader never returns more than this
                    raise JobError(f"“{show(name)}” has an object table of {info.file_size:,} bytes, "
                                   "far more than any state_dict needs.")
                with zf.open(info) as stream:
                    return _scan_pickles(stream, count=1)
        with open(path, "rb") as stream:
            return _scan_pickles(stream, count=LEGACY_PICKLES)
    except (ValueError, EOFError, zipfile.BadZipFile, StopIteration, OSError) as e:
        raise JobError(f"“{show(name)}” is not a readable PyTorch checkpoint ({one_line(e)}).") from None


def _scan_pickles(stream, count: int) -> tuple[set[str], set[str]]:
    found: set[str] = set()
    strings: set[str] = set()
    for index in range(count):
        try:
            _scan_pickle(stream, found, strings)
        except (ValueError, EOFError):
            if index == 0:
                raise
            break  # a legacy file's raw tensor bytes follow its pickles
    return found, strings


def _scan_pickle(stream, found: set[str], strings: set[str]) -> None:
    """One pickle's globals. STACK_GLOBAL takes its names from the two strings pushed before it,
    possibly through the memo, so strings are followed through PUT/GET."""
    recent: list[str | None] = []  # values of the last pushes, where they were strings
    memo: dict[int, str | None] = {}
    for opcode, arg, _ in pickletools.genops(stream):
        op = opcode.name
        if op in ("GLOBAL", "INST"):
            found.add(_global_name(*arg.split(" ", 1)))
        elif op == "STACK_GLOBAL":
            module, qualname = (recent[-2:] if len(recent) >= 2 else [None, None])
            found.add(_global_name(module, qualname) if module and qualname else HIDDEN_GLOBAL)
        elif isinstance(arg, str) and "UNICODE" in op or op in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
            recent.append(arg)
            if len(arg) < 64:
                strings.add(arg)
            continue
        elif op in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            memo[arg if op != "MEMOIZE" else len(memo)] = recent[-1] if recent else None
            continue
        elif op in ("GET", "BINGET", "LONG_BINGET"):
            recent.append(memo.get(arg))
            continue
        elif op in ("FRAME", "PROTO"):  # push nothing, and may fall between a global's two names
            continue
        recent.append(None)


def _global_name(module: str, qualname: str) -> str:
    """As Python 3 imports it: protocol 2 pickles say __builtin__ for builtins, as unpickling maps."""
    module, qualname = NAME_MAPPING.get((module, qualname), (IMPORT_MAPPING.get(module, module), qualname))
    return f"{module}.{qualname}"


def _weights_only_globals() -> set[str]:
    """What torch.load(weights_only=True) itself allows: tensor rebuilders, OrderedDict, dtypes."""
    from torch import _weights_only_unpickler

    return set(_weights_only_unpickler._get_allowed_globals())


def torch_load(path: Path, name: str) -> object:
    """torch.load with weights_only=True, or a JobError that says why the file cannot be loaded."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refuse_unsafe_pickle(path, name)  # names the code or the nn.Module, where it can tell
        found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))
        reason = found.group(1).strip() if found else one_line(e)
        hint = (" It was probably saved with a pickle_protocol above 2, which safe loading cannot read: "
                "save it again with torch.save's default protocol." if "Unsupported operand" in reason else "")
        raise JobError(f"“{show(name)}” cannot be loaded safely (torch.load with weights_only=True says: "
                       f"{reason}).{hint}") from None
    except Exception as e:  # whatever a damaged file makes torch.load raise
        raise JobError(f"“{show(name)}” is not a PyTorch checkpoint that can be read ({one_line(e)}).") from None
