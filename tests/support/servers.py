"""`sceau serve` as a user starts it: a gunicorn server in its own process group on a free
loopback port, up once /healthz answers 200, stopped with every worker. The live-server
tests and the benchmarks (tests/benchmarks/) run it alike."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.support.clients import LOOPBACK
from tests.support.judges import BIN

HEALTH_TIMEOUT = 60.0


class ServerError(RuntimeError):
    """The server exited or did not answer /healthz in time; the message ends with the
    tail of its log."""


def free_port() -> int:
    # The port may be taken again before the server binds it; the health check then
    # fails with the server's log, which says so.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class SceauServer:
    """``sceau --home HOME serve`` with ``workers`` x ``threads``; output goes to ``log``.
    ``env`` adds to this process's environment. Use it as a context manager (started and
    healthy inside, stopped after) or call start / wait_healthy / stop."""

    home: Path
    log: Path
    workers: int = 1
    threads: int | None = None  # None: sceau serve's default
    port: int = field(default_factory=free_port)
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        argv = [str(BIN / "sceau"), "--home", str(self.home), "serve", "--host", LOOPBACK]
        argv += ["--port", str(self.port), "--workers", str(self.workers)]
        if self.threads is not None:
            argv += ["--threads", str(self.threads)]
        with self.log.open("wb") as out:
            # The child keeps its own descriptor of the log; ours can close.
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopping it reaches the workers
                env={**os.environ, **self.env} if self.env else None,
            )

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise ServerError(f"sceau serve exited before answering:\n{self.log_tail()}")
            conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=2)
            try:
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
            finally:
                conn.close()
            time.sleep(0.2)
        raise ServerError(f"/healthz not 200 within {timeout:.0f} s ({last}):\n{self.log_tail()}")

    @property
    def pgid(self) -> int | None:
        # start_new_session made the server its own group leader: pgid == its pid.
        return self.proc.pid if self.proc is not None else None

    def stop(self) -> None:
        """SIGTERM the group (gunicorn stops its workers gracefully), SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        # Workers outliving their master would keep the CPU busy (a benchmark's baseline).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def cpu_seconds(self) -> dict[int, float]:
        """User + system CPU seconds of each live process of the server's group (Linux /proc)."""
        if self.proc is None:
            return {}
        tick, seconds = os.sysconf("SC_CLK_TCK"), {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):  # exited meanwhile
                raw = stat.read_text()
                # Fields after "(comm)": state ppid pgrp ... utime (14th field) stime (15th).
                rest = raw[raw.rindex(")") + 2 :].split()
                if int(rest[2]) == self.proc.pid:
                    seconds[int(stat.parent.name)] = (int(rest[11]) + int(rest[12])) / tick
        return seconds

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no server log)"

    def __enter__(self) -> SceauServer:
        self.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
