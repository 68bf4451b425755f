"""One run at a time per workdir: a lock file that names its owner.

`held(workdir)` creates `<workdir>/run.lock` with `O_CREAT | O_EXCL` (atomic on local and NFSv3+
filesystems: of two runs starting together exactly one creates it) and writes its owner as JSON:
pid, host, start time, command line. A second run meets the file and stops with one line naming
that owner (`WorkdirLockedError`). A lock whose owner is gone (its pid is not alive on this
host: a run killed with SIGKILL or by the OOM killer leaves its lock behind) is replaced after
one info line. A lock of another host cannot be checked and is never replaced: the message says
to delete it when that run is gone. The lock is removed when the `with` block ends, also on
errors and interrupts. Only process 0 of a multi-host run locks (the caller passes `enabled`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shlex
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

from seqdis_jax.errors import WorkdirLockedError

LOCK_FILE = "run.lock"
_UNREADABLE_GRACE_S = 2.0  # a lock being written by its creator is briefly empty

_held: dict[str, tuple[str, int]] = {}  # lock path -> (our id, nesting depth) in this process


def _proc_start(pid: int) -> str | None:
    """The start time of `pid` in clock ticks since boot (Linux), which tells a reused pid
    from the process that wrote a lock; None where /proc is not there."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after "(command name)", which may hold spaces
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie has ended
    except (OSError, IndexError):
        return True


def _command() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("experiments", "main.py")):
        argv = ["python", "-m", "experiments.main", *argv[1:]]
    return shlex.join(argv)


def _owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": _command(), "pid_start": _proc_start(os.getpid()),
            "id": uuid.uuid4().hex}


def describe(owner: dict[str, Any]) -> str:
    return (f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}, started "
            f"{owner.get('started', '?')}: {owner.get('command', '?')}")


def _read(path: str) -> dict[str, Any] | None:
    """The lock's owner; None when the file is gone; {} when it is not (yet) valid JSON."""
    deadline = time.monotonic() + _UNREADABLE_GRACE_S
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                owner = json.load(f)
            return owner if isinstance(owner, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                return {}
            time.sleep(0.1)


def _stale_reason(owner: dict[str, Any], path: str) -> str | None:
    """Why the lock of `owner` is stale, or None while its run may be alive."""
    if not owner:
        age = time.time() - os.path.getmtime(path)
        return f"unreadable, {age:.0f}s old" if age > _UNREADABLE_GRACE_S else None
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return None  # another machine's process cannot be checked from here
    pid = owner["pid"]
    if not _alive(pid):
        return f"pid {pid} is not running"
    start = owner.get("pid_start")
    if start is not None and _proc_start(pid) not in (None, start):
        return f"pid {pid} now belongs to another process"
    return None


def acquire(workdir: str) -> str:
    """Locks `workdir` for this process (re-entrant); returns the lock's path. Raises
    WorkdirLockedError when another live run holds it."""
    path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
    if path in _held:
        lock_id, depth = _held[path]
        _held[path] = (lock_id, depth + 1)
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    owner = _owner()
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            other = _read(path)
            if other is None:  # released in between
                continue
            reason = _stale_reason(other, path)
            if reason is None:
                raise WorkdirLockedError(
                    f"{os.path.dirname(path)} is in use by another run ({describe(other)}); "
                    f"wait for it to end or stop it, or use another --workdir (if no run uses "
                    f"it, delete {path}).") from None
            print(f"Replacing the stale lock {path} ({reason}; it was {describe(other)}).",
                  file=sys.stderr, flush=True)
            # Removed only if it is still the stale one (another starting run may have
            # replaced it already).
            if _read(path) == other:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(owner, f)
            f.write("\n")
        _held[path] = (owner["id"], 1)
        return path
    raise WorkdirLockedError(f"{path} keeps being taken by other runs starting on "
                             f"{os.path.dirname(path)}; start one run per workdir.")


def release(path: str) -> None:
    """Drops one hold on `path`; removes the file when the last ends (only if still ours)."""
    if path not in _held:
        return
    lock_id, depth = _held[path]
    if depth > 1:
        _held[path] = (lock_id, depth - 1)
        return
    del _held[path]
    owner = _read(path)
    if owner and owner.get("id") == lock_id:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def held(workdir: str, enabled: bool = True) -> Iterator[str | None]:
    """`with held(workdir):` the workdir is locked for this run; `enabled=False` (processes
    other than 0 of a multi-host run) does nothing."""
    if not enabled:
        yield None
        return
    path = acquire(workdir)
    try:
        yield path
    finally:
        release(path)
