"""What every benchmark script needs: the `main` skeleton (a work directory, SIGTERM,
errors and --keep-home), argument checks, running the `sceau` command, a throwaway home,
the machine's CPU clock and description, nearest-rank percentiles, the alarming lines of a
server log, and the baseline most of them are set against: how fast a key signs through
core.hsm.keystore.KeyStore in one or several processes.

The benchmarks run as modules from the repository root (`.venv/bin/python -m
tests.benchmarks.NAME`): run as files, tsa.py, ocsp.py, crl.py and audit.py would shadow
the packages of the same name. Not a pytest module (its name does not match test_*.py)."""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import platform
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Lock
from pathlib import Path
from typing import Any

from core.hsm.algorithms import SignatureScheme
from core.hsm.keystore import HsmConfig, KeyStore
from tests.support.servers import ServerError

HOST = "127.0.0.1"
SCEAU = Path(sys.executable).parent / "sceau"
# Every request goes to the server a script started, on loopback, and nowhere else. A base
# URL that looks public: with 127.0.0.1 pkilint flags the certificate URLs as internal and
# `sceau init` would write accepted findings, which the benchmarks must not need.
BASE_URL = "http://pki.example.com"
DOCUMENTS_URL = "https://pki.example.com"
# Lines of a server log worth reporting: tracebacks, errors, SQLite lock waits that gave
# up, and gunicorn killing workers.
LOG_ALARMS = re.compile(
    r"Traceback|\bERROR\b|\bCRITICAL\b|database is locked|WORKER TIMEOUT|was sent SIG",
    re.IGNORECASE,
)
# Each worker boots once at start; one more boot means gunicorn replaced a dead worker.
BOOTING = "Booting worker"

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


def init_home(home: Path, *args: str) -> None:
    """`sceau init` of a throwaway home with the public-looking base URL; ``args`` add to it."""
    run_sceau(
        "init", "--home", home, "--base-url", BASE_URL, "--documents-url", DOCUMENTS_URL, *args
    )


def add_client(home: Path, *profiles: str) -> str:
    """`sceau client add bench`: its bearer token (alone on the last line printed)."""
    listed = [arg for profile in profiles for arg in ("--profile", profile)]
    out = run_sceau("--home", home, "client", "add", "bench", *listed)
    return out.strip().splitlines()[-1].strip()


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


@dataclass(frozen=True)
class SigningKey:
    """A key in the token and the scheme the service under test signs with."""

    hsm: HsmConfig
    label: str
    scheme: SignatureScheme


def sign_loop(
    key: SigningKey, seconds: float, start: Barrier | None = None, opening: Lock | None = None
) -> tuple[int, float]:
    """Sign a digest of the scheme's size with ``key`` for ``seconds``, one signature per
    call as the services sign: (count, elapsed)."""
    keys = KeyStore(key.hsm)
    label, scheme = key.label, key.scheme
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
    key: SigningKey, seconds: float, start: Barrier, opening: Lock, results: Queue[SignOutcome]
) -> None:
    try:
        results.put(sign_loop(key, seconds, start, opening))
    except Exception as exc:
        start.abort()  # the others stop waiting for this one
        results.put(f"{type(exc).__name__}: {exc}")


def parallel_sign_rate(key: SigningKey, processes: int, seconds: float) -> float:
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
            args=(key, seconds, start, opening, results),
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


# -- the main skeleton ------------------------------------------------------------------------


def bounded(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    """An argparse type: ``kind`` of the text, between ``low`` and ``high`` inclusive."""

    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


def arguments(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of the script's docstring, with --keep-home."""
    first_paragraph = " ".join((doc or "").split("\n\n")[0].split())
    parser = argparse.ArgumentParser(description=first_paragraph or None)
    parser.add_argument(
        "--keep-home",
        action="store_true",
        help="keep the temporary home(s) and server log(s), and print where",
    )
    return parser


def _terminated(signum: int, _frame: object) -> None:
    # As Ctrl-C does: unwind through the finally blocks that stop the server.
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_main(
    benchmark: Callable[[argparse.Namespace, Path], int], args: argparse.Namespace, name: str
) -> int:
    """Run ``benchmark(args, workdir)`` in a fresh temporary directory: its exit status, 2
    when it could not run (BenchmarkError, a server that would not start), 130 when
    interrupted (Ctrl-C or SIGTERM). The directory goes unless --keep-home."""
    signal.signal(signal.SIGTERM, _terminated)
    workdir = Path(tempfile.mkdtemp(prefix=f"sceau-bench-{name}-"))
    try:
        return benchmark(args, workdir)
    except (BenchmarkError, ServerError) as exc:
        print(f"benchmark error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep_home:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# -- the report -------------------------------------------------------------------------------


def machine_info(*, detailed: bool = False) -> list[str]:
    """The report's first lines: cores, CPU model, Python, platform (``detailed``: also
    os.cpu_count, the Python implementation and the SoftHSM2 version)."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    nproc = f"nproc            {len(os.sched_getaffinity(0))}"
    python = f"python           {platform.python_version()}"
    lines = [
        nproc + (f" (os.cpu_count {os.cpu_count()})" if detailed else ""),
        f"cpu              {model or platform.processor() or 'unknown'}",
        python + (f" ({platform.python_implementation()})" if detailed else ""),
        f"platform         {platform.platform()}",
    ]
    if detailed:
        softhsm = subprocess.run(
            ["softhsm2-util", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        lines.append(f"softhsm2         {softhsm or 'unknown'}")
    return lines


def log_lines(log_path: Path, until: int) -> list[str]:
    """The lines of the first ``until`` bytes of a log (what came before our own SIGTERM,
    after which gunicorn logs its shutdown as a matter of course)."""
    try:
        with log_path.open("rb") as log:
            return log.read(until).decode(errors="replace").splitlines()
    except OSError:
        return []


def alarm_lines(log_path: Path, until: int, workers: int | None = None) -> list[str]:
    """The alarming lines of a server log up to ``until`` bytes and, given how many
    ``workers`` it started with, the boots of workers that replaced dead ones."""
    lines = log_lines(log_path, until)
    alarms = [line for line in lines if LOG_ALARMS.search(line)]
    if workers is None:
        return alarms
    restarts = [line for line in lines if BOOTING in line][workers:]
    return alarms + [f"(worker restart) {line}" for line in restarts]
