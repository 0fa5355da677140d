"""What every benchmark script needs: running the `sceau` command, a free port, the
machine's CPU clock, nearest-rank percentiles, and the baseline most of them are set
against: how fast a key signs through core.hsm.keystore.KeyStore in one or several processes.

Not a pytest module (its name does not match test_*.py)."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import queue
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Lock
from pathlib import Path

from core.hsm.algorithms import SignatureScheme
from core.hsm.keystore import HsmConfig, KeyStore

HOST = "127.0.0.1"
SCEAU = Path(sys.executable).parent / "sceau"

SignOutcome = tuple[int, float] | str  # (signatures, seconds) or why the child failed


class BenchmarkError(Exception):
    """The benchmark could not run (setup, server start, a wrong answer); not a measured
    failure."""


def run_sceau(*args: str | Path) -> str:
    done = subprocess.run(
        [str(SCEAU), *(str(a) for a in args)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchmarkError(
            f"sceau {' '.join(str(a) for a in args)} exited {done.returncode}:\n"
            f"{done.stdout}{done.stderr}"
        )
    return done.stdout


def free_port() -> int:
    # The port may be taken again before the server binds it; the health check then
    # fails with the server's log, which says so.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def machine_busy_seconds() -> float:
    """User, nice and system CPU seconds of all CPUs since boot (Linux /proc/stat).
    Interrupt time is left out: it is mostly our own loopback traffic, charged to no one."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return sum(int(v) for v in fields[1:4]) / os.sysconf("SC_CLK_TCK")
    return float("nan")


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest rank: the value below which ``fraction`` of the (sorted) samples fall."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def sign_loop(
    hsm: HsmConfig,
    label: str,
    scheme: SignatureScheme,
    seconds: float,
    start: Barrier | None = None,
    opening: Lock | None = None,
) -> tuple[int, float]:
    """Sign a digest of the scheme's size with key ``label`` for ``seconds``, one
    signature per call as the services sign: (count, elapsed)."""
    keys = KeyStore(hsm)
    digest = os.urandom(scheme.hash.digest_size)
    try:
        # Loading the module, logging in and finding the key happen here, untimed, one
        # process at a time: SoftHSM2 2.6 rewrites token.object at login, and a process
        # initialising at that moment may read it half-written and not see the token at
        # all (NoSuchToken, CKR_GENERAL_ERROR; SoftHSMv2 issue #757).
        with opening if opening is not None else contextlib.nullcontext():
            keys.sign_digest(label, digest, scheme)
        if start is not None:
            start.wait(timeout=60)
        count, began = 0, time.perf_counter()
        end = began + seconds
        while time.perf_counter() < end:
            keys.sign_digest(label, digest, scheme)
            count += 1
        return count, time.perf_counter() - began
    finally:
        keys.close()


def _sign_child(
    hsm: HsmConfig,
    label: str,
    scheme: SignatureScheme,
    seconds: float,
    start: Barrier,
    opening: Lock,
    results: Queue[SignOutcome],
) -> None:
    try:
        results.put(sign_loop(hsm, label, scheme, seconds, start, opening))
    except Exception as exc:
        start.abort()  # the others stop waiting for this one
        results.put(f"{type(exc).__name__}: {exc}")


def parallel_sign_rate(
    hsm: HsmConfig, label: str, scheme: SignatureScheme, processes: int, seconds: float
) -> float:
    """Signatures per second of ``processes`` processes signing at once, each with its own
    KeyStore and PKCS#11 session, as each gunicorn worker has."""
    # spawn, not fork: each child loads SoftHSM2 afresh, as a gunicorn worker does (the
    # master never loads it).
    ctx = multiprocessing.get_context("spawn")
    start, opening = ctx.Barrier(processes), ctx.Lock()
    results: Queue[SignOutcome] = ctx.Queue()
    children = [
        ctx.Process(
            target=_sign_child,
            args=(hsm, label, scheme, seconds, start, opening, results),
            daemon=True,
        )
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    outcomes: list[SignOutcome] = []
    deadline = time.monotonic() + seconds + 120
    try:
        while len(outcomes) < processes:
            try:
                outcomes.append(results.get(timeout=1))
            except queue.Empty:
                # A child killed outright (a crash in the PKCS#11 library) reports nothing.
                crashed = [c.exitcode for c in children if c.exitcode not in (None, 0)]
                if crashed or time.monotonic() > deadline:
                    raise BenchmarkError(
                        f"HSM signing children: exit codes {crashed}, {len(outcomes)} answers"
                    ) from None
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    errors = [o for o in outcomes if isinstance(o, str)]
    if errors:
        # The child that failed first says why; the others only saw the barrier break.
        errors.sort(key=lambda e: e.startswith("BrokenBarrierError"))
        raise BenchmarkError(f"HSM signing in {processes} processes failed: {errors[0]}")
    # Every child signed over nearly the same window (the barrier): rates add up.
    return sum(
        count / elapsed for count, elapsed in (o for o in outcomes if not isinstance(o, str))
    )
