"""Child processes of the world: start, wait until ready with a deadline, always stop.

Every process is started in a session of its own (so its whole tree can be signalled at once)
and carries an environment tag ``OWL_WORLD_TAG=<uuid>``. Programs that detach their children
(kwokctl starts the control plane with ``setsid``) pass the environment on, so stopping a
process also finds and ends descendants that left its process group. The same mechanism, one
level up, lets the pytest plugin prove that a run leaves nothing behind (``RUN_VAR``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

TAG_VAR = "OWL_WORLD_TAG"
# Set by the pytest plugin (and by `python -m tests.world.<launcher>`) for a whole run.
RUN_VAR = "OWL_WORLD_RUN"
LOOPBACK = "127.0.0.1"


class StartupError(RuntimeError):
    """A process could not be started or did not become ready; the message says why."""


class PortInUse(StartupError):
    """The requested loopback port is already taken."""


# -- ports -------------------------------------------------------------------------------------


def free_port(host: str = LOOPBACK) -> int:
    """A port the kernel considers free right now (bind to 0, read it back, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def ensure_port_free(port: int, what: str, host: str = LOOPBACK) -> None:
    if not port_is_free(port, host):
        raise PortInUse(f"{what}: port {port} on {host} is already in use")


# -- /proc -------------------------------------------------------------------------------------


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return {}
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return shlex.join(part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0"))


def _pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def tagged(var: str, value: str) -> list[int]:
    """Live processes (not this one) whose environment has ``var=value``."""
    me = os.getpid()
    return [pid for pid in _pids() if pid != me and alive(pid) and _environ(pid).get(var) == value]


def descendants(root: int) -> list[int]:
    """Live processes whose parent chain leads to ``root`` (not including it)."""
    parents: dict[int, int] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat is not None and stat[0] != "Z":
            parents[pid] = stat[1]
    found = []
    for pid in parents:
        cur, seen = parents.get(pid), 0
        while cur and seen < 64:
            if cur == root:
                found.append(pid)
                break
            cur, seen = parents.get(cur), seen + 1
    return found


def terminate_pids(pids: Sequence[int], timeout: float = 5.0) -> list[int]:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; returns the pids that needed SIGKILL."""
    pids = [pid for pid in pids if alive(pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    killed = [pid for pid in pids if alive(pid)]
    for pid in killed:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(alive(pid) for pid in killed):
        time.sleep(0.05)
    return killed


def kill_tagged(var: str, value: str, timeout: float = 5.0) -> list[int]:
    """End every process carrying ``var=value``; returns the pids found."""
    pids = tagged(var, value)
    terminate_pids(pids, timeout)
    return pids


# -- processes ---------------------------------------------------------------------------------

_live: set[Process] = set()
_live_lock = threading.Lock()


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


class Process:
    """One child process: its own session, a log file, a readiness deadline, a sure stop.

    ``ready`` is called repeatedly until it returns True (exceptions count as "not yet").
    If the process exits first, or the deadline passes, it is stopped and ``StartupError``
    is raised with the command and the last lines of its log.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready: Callable[[], bool] | None = None,
        ready_timeout: float = 60.0,
        ready_what: str = "ready",
        stop_timeout: float = 10.0,
        user: int | None = None,
    ) -> None:
        self.name = name
        # Run as this uid (and the same gid, no supplementary groups), as a pod's runAsUser.
        self.user = user
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.cwd = cwd
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.ready_what = ready_what
        self.stop_timeout = stop_timeout
        self.tag = uuid.uuid4().hex
        self.env = {**os.environ, **(env or {}), TAG_VAR: self.tag}
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def command(self) -> str:
        return shlex.join(self.argv)

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)

    def start(self) -> Process:
        if self.running():
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n$ {self.command()}\n".encode())
            log.flush()
            try:
                self.popen = subprocess.Popen(
                    self.argv,
                    cwd=self.cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **(
                        {"user": self.user, "group": self.user, "extra_groups": []}
                        if self.user is not None
                        else {}
                    ),
                )
            except OSError as exc:
                raise StartupError(f"{self.name}: cannot run {self.argv[0]}: {exc}") from None
        with _live_lock:
            _live.add(self)
        if self.ready is not None:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()
                raise
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        assert self.popen is not None and self.ready is not None
        timeout = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        error: BaseException | None = None
        delay = 0.05
        while True:
            code = self.popen.poll()
            if code is not None:
                raise StartupError(
                    f"{self.name} exited with code {code} before it was {self.ready_what}\n"
                    f"  command: {self.command()}\n  log: {self.log_path}\n"
                    f"  last lines:\n{_indent(self.log_tail())}"
                )
            try:
                if self.ready():
                    return
                error = None
            except Exception as exc:
                error = exc
            if time.monotonic() >= deadline:
                seen = f" (last check: {type(error).__name__}: {error})" if error else ""
                raise StartupError(
                    f"{self.name} was not {self.ready_what} within {timeout:g}s{seen}\n"
                    f"  command: {self.command()}\n  log: {self.log_path}\n"
                    f"  last lines:\n{_indent(self.log_tail())}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def stop(self) -> None:
        """Stop the process group, then anything else carrying this process's tag."""
        popen = self.popen
        if popen is not None and popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(10)
        if popen is not None:
            # The leader is gone; members of its group or escaped descendants may not be.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)
            kill_tagged(TAG_VAR, self.tag, timeout=self.stop_timeout)
        with _live_lock:
            _live.discard(self)

    def __enter__(self) -> Process:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


@atexit.register
def _stop_all() -> None:  # last resort: an interpreter exiting never leaves children behind
    with _live_lock:
        live = list(_live)
    for proc in live:
        with contextlib.suppress(Exception):
            proc.stop()


# -- running a launcher by hand ----------------------------------------------------------------


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class Launcher(Protocol):
    def start(self) -> object: ...

    def stop(self) -> None: ...


def serve_until_interrupted(factory: Callable[[], Launcher], describe: Callable[[Any], str]) -> int:
    """Start a part of the world, print how to reach it, wait for Ctrl-C (or SIGTERM), stop.

    Used by ``python -m tests.world.<launcher>``; the stop runs whatever happens.
    """
    os.environ.setdefault(RUN_VAR, uuid.uuid4().hex)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    launcher: Launcher | None = None
    try:
        started = time.monotonic()
        launcher = factory()
        launcher.start()
        print(describe(launcher), flush=True)
        print(
            f"(ready in {time.monotonic() - started:.1f}s; Ctrl-C stops and cleans up)", flush=True
        )
        while True:
            signal.pause()
    except KeyboardInterrupt:
        print("\nstopping ...", file=sys.stderr, flush=True)
        return 0
    except RuntimeError as exc:  # WorldError, StartupError: the message says it all
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        try:
            if launcher is not None:
                launcher.stop()
        finally:
            signal.signal(signal.SIGTERM, previous)
