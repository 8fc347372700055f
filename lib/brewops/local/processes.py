"""Start, probe and stop the server processes of the local target."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil
import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from brewops.errors import ActionableError
from brewops.local.state import RunProcess, Service

HOST = "127.0.0.1"


class ServiceError(RuntimeError, ActionableError):
    """A server process did not start, or exited."""


class _NotReady(Exception):
    pass


def free_port(host: str = HOST) -> int:
    """A port free now: another process may take it before it is used (see spawn_server)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def spawn(
    command: Sequence[str], log: Path, pass_fds: Sequence[int] = ()
) -> subprocess.Popen[bytes]:
    """Start `command` in a new session (it survives the command that started it, and
    Ctrl-C in the terminal does not reach it), its output written to `log` (replaced)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            pass_fds=tuple(pass_fds),
        )


def spawn_server(
    command: Sequence[str], log: Path, port: int = 0
) -> tuple[subprocess.Popen[bytes], int]:
    """`spawn` a server on a socket bound here, on `port` (0: a free one), that it inherits:
    `command` gets `--port PORT --fd FD` appended. The port is the server's from the moment
    it is chosen; a free port handed over by number could be taken by another process
    before the server binds it. Returns the process and its port."""
    with _listening_socket(port) as listening:
        port = listening.getsockname()[1]
        fd = listening.fileno()
        command = [*command, "--port", str(port), "--fd", str(fd)]
        return spawn(command, log, pass_fds=(fd,)), port


def _listening_socket(port: int) -> socket.socket:
    """A socket listening on HOST:`port`, on a descriptor above 2: on 0, 1 or 2 (closed in
    this process) the server's stdin, stdout or stderr would replace it."""
    listening = socket.create_server((HOST, port))
    if listening.fileno() > 2:
        return listening
    with listening:
        fd = fcntl.fcntl(listening.fileno(), fcntl.F_DUPFD_CLOEXEC, 3)
    return socket.socket(fileno=fd)


def let_go(*started: subprocess.Popen[bytes]) -> None:
    """Let go of servers this process started: they run on after it, recorded in the local
    state, and `stop` ends them by pid and start time (and reaps them here, if this is still
    their parent). Left as they are, their Popen objects would warn when collected that
    their child still runs (a ResourceWarning, which `python -X dev` shows)."""
    for process in started:
        if process.poll() is None:
            process.returncode = 0  # Popen's sign that nothing is left to wait for


def log_tail(log: str | Path, lines: int = 20) -> str:
    try:
        # a server's log is its stdout, written in the locale's encoding
        text = Path(log).read_text(encoding="locale", errors="replace")
        return "\n".join(text.splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def wait_ready(
    name: str,
    process: subprocess.Popen[bytes] | Service,
    ready: Callable[[], bool],
    log: Path,
    timeout: float,
) -> None:
    """Wait until `ready()` holds; fail early if the process (one this process started, or
    a recorded service) exits."""

    def exited() -> str | None:
        if isinstance(process, Service):
            return None if is_running(process) else "exited"
        return None if process.poll() is None else f"exited with code {process.returncode}"

    def check() -> None:
        if (how := exited()) is not None:
            raise ServiceError(f"{name} {how} while starting. {_last_words(log)}")
        if not ready():
            raise _NotReady

    try:
        for attempt in Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_fixed(0.1),
            retry=retry_if_exception_type(_NotReady),
            reraise=True,
        ):
            with attempt:
                check()
    except _NotReady:
        raise ServiceError(
            f"{name} did not answer within {timeout:.0f} s. Last lines of {log}:\n{log_tail(log)}"
        ) from None


# below this, a server that exits without a word most likely could not write its log
LOW_DISK_SPACE = 1 << 20


def _last_words(log: Path) -> str:
    """The end of a server's log; for an empty one on a nearly full disk, that the disk is
    full: the server died writing its first line there, and says so nowhere."""
    tail = log_tail(log)
    if tail.strip():
        return f"Last lines of {log}:\n{tail}"
    try:
        free = shutil.disk_usage(log.parent).free
    except OSError:  # not known: the empty log is all there is to say
        free = LOW_DISK_SPACE
    if free >= LOW_DISK_SPACE:
        return f"Its log {log} is empty."
    return (
        f"Its log {log} is empty, and its disk has {free // 1024} kB free: it could not write "
        "there. Free some space, or set BREWOPS_BUILD_DIR to a folder with room, and run it again."
    )


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether an HTTP GET of `url` answers with success (2xx)."""
    try:
        return requests.get(url, timeout=timeout).ok
    except requests.RequestException:
        return False


def service(process: subprocess.Popen[bytes], port: int, url: str, log: Path) -> Service:
    started = psutil.Process(process.pid).create_time()
    return Service(
        pid=process.pid,
        port=port,
        url=url,
        log=str(log),
        create_time=started,
        since_boot=started - psutil.boot_time(),
    )


def this_run() -> RunProcess:
    """This process, as the `brewops run` that stops the local target when done."""
    started = psutil.Process().create_time()
    return RunProcess(os.getpid(), started, started - psutil.boot_time())


def _started_as_recorded(process: psutil.Process, service: Service | RunProcess) -> bool:
    """Whether `process` is the one `service` records, not a later one given its pid.

    A step of the wall clock (NTP, a clock set by hand, a VM restored) moves the start
    time psutil gives on Linux, the machine's boot time (moved by the step) plus the time
    since boot, which stays. Where psutil keeps the start time as it was, the boot time
    moves instead: either comparison holding is the same process."""
    started = process.create_time()
    if abs(started - service.create_time) <= 1.0:
        return True
    return (
        service.since_boot is not None
        and abs(started - psutil.boot_time() - service.since_boot) <= 1.0
    )


def _process(service: Service | RunProcess) -> psutil.Process | None:
    """The running process of `service`, or None if it has exited (or its pid now
    belongs to another process)."""
    try:
        process = psutil.Process(service.pid)
        if not _started_as_recorded(process, service):
            return None
    except psutil.NoSuchProcess:
        return None
    return None if _exited(process) else process


def is_running(service: Service | RunProcess) -> bool:
    return _process(service) is not None


def _exited(process: psutil.Process) -> bool:
    """Gone, or a zombie: exited, waiting for its parent to collect the status (a parent
    that may be init, once the command that started it has exited)."""
    try:
        if process.status() != psutil.STATUS_ZOMBIE:
            return False
        with contextlib.suppress(psutil.Error, ChildProcessError):
            process.wait(timeout=0)  # reaps it when it is our own child
        return True
    except psutil.NoSuchProcess:
        return True


def _wait_exited(members: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` seconds; returns the processes still running."""
    deadline = time.monotonic() + timeout
    running = list(members)
    while running and time.monotonic() < deadline:
        running = [p for p in running if not _exited(p)]
        if running:
            time.sleep(0.05)
    return running


# SIGKILL ends a process at once, unless it is stuck in the kernel (a hung disk): waiting
# `timeout` again for one would double the wait for nothing
KILLED_WAIT = 1.0


def stop(*services: Service, timeout: float = 10.0) -> None:
    """SIGTERM each service's process group, then SIGKILL what is left after `timeout`
    and wait up to KILLED_WAIT for it to go."""
    members: list[psutil.Process] = []
    for service in services:
        process = _process(service)
        if process is None:
            continue
        members.append(process)
        with contextlib.suppress(psutil.Error):
            members += process.children(recursive=True)
        with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
            if os.getpgid(service.pid) == service.pid:  # the session leader spawn() made
                os.killpg(service.pid, signal.SIGTERM)
                os.killpg(service.pid, signal.SIGCONT)  # a stopped process acts on it now
            else:
                process.terminate()
                process.resume()
    survivors = _wait_exited(members, timeout)
    for survivor in survivors:
        with contextlib.suppress(psutil.NoSuchProcess):
            survivor.kill()
    _wait_exited(survivors, min(timeout, KILLED_WAIT))
