"""A throwaway PostgreSQL cluster for one test session.

The cluster listens on a Unix socket only (no TCP), trusts every local connection,
and runs with fsync off: it is fast and disposable, never a model for production.

PostgreSQL refuses to run as root. When the tests run as root (CI, the dev machine),
initdb and pg_ctl run as the system user ``postgres`` through ``runuser -u postgres --``;
Debian's postgresql package creates that user, and it is created here if absent.
Because that user cannot reach root's 0700 pytest temp directories, the cluster lives
in a fresh ``tempfile.mkdtemp(prefix="sceau-pg-")`` (mode 0755, owned by the server's
user), not under the ``base`` given to ``start_cluster``; that also keeps the socket
path short (a Unix socket path has at most 107 bytes). ``stop()`` removes it.

pg_ctl detaches the server into its own session, so a test run that is killed (SIGKILL,
a CI timeout, Ctrl-C during teardown) leaves it running. Each cluster therefore records
the process that started it, and ``start_cluster`` first stops and removes every
``sceau-pg-*`` cluster whose starting process is gone.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "sceau"
RUN_AS = "postgres"  # the system user that runs the server when we are root
_PREFIX = "sceau-pg-"
_OWNER_FILE = "owner"  # "<pid> <start time>" of the process that started the cluster


class PgClusterError(RuntimeError):
    """The throwaway cluster could not be created, started or stopped."""


@dataclass
class PgCluster:
    datadir: Path
    socket_dir: Path
    port: int
    bin_dir: Path = field(repr=False)
    root: Path = field(repr=False)  # everything of the cluster; removed by stop()
    run_as: str | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL for ``dbname`` as the superuser ``sceau``, over the socket."""
        host = quote(str(self.socket_dir), safe="/")
        name = quote(dbname, safe="")
        return f"postgresql+psycopg://{SUPERUSER}@/{name}?host={host}&port={self.port}"

    def create_database(self, dbname: str, *, template: str | None = None) -> str:
        """CREATE DATABASE ``dbname``, a copy of ``template`` when given (which must then
        have no other connection); returns its SQLAlchemy URL."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            conn.execute(statement)
        return self.url(dbname)

    def stop(self) -> None:
        """Stop the server at once (no checkpoint) and remove every file of the cluster."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if (self.datadir / "postmaster.pid").exists():
                _run(
                    [
                        str(self.bin_dir / "pg_ctl"),
                        "-D",
                        str(self.datadir),
                        "-m",
                        "immediate",
                        "-w",
                        "-t",
                        "60",
                        "stop",
                    ],
                    run_as=self.run_as,
                    cwd=self.root,
                    what="pg_ctl stop",
                )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def find_pg_bin() -> Path | None:
    """The directory holding initdb and pg_ctl of the newest installed PostgreSQL, if any."""
    if not PG_ROOT.is_dir():
        return None
    candidates: list[tuple[int, Path]] = []
    for entry in PG_ROOT.iterdir():
        bin_dir = entry / "bin"
        if not re.fullmatch(r"\d+", entry.name):
            continue
        if (bin_dir / "initdb").is_file() and (bin_dir / "pg_ctl").is_file():
            candidates.append((int(entry.name), bin_dir))
    if not candidates:
        return None
    return max(candidates)[1]


def throwaway_cluster(base: Path) -> PgCluster:
    """``start_cluster`` for a test fixture: without PostgreSQL's binaries the test fails
    (run scripts/setup.sh), or is skipped when SCEAU_TEST_SKIP_POSTGRES says so."""
    if find_pg_bin() is None:
        if os.environ.get("SCEAU_TEST_SKIP_POSTGRES"):
            pytest.skip("PostgreSQL binaries absent and SCEAU_TEST_SKIP_POSTGRES set")
        pytest.fail("PostgreSQL binaries not found: run scripts/setup.sh")
    return start_cluster(base)


def start_cluster(base: Path) -> PgCluster:
    """Create and start a throwaway cluster; the caller must call ``stop()``.

    ``base`` is not used: the cluster lives in a fresh directory of the system temp dir
    (see the module docstring). The parameter stays so that callers can hand over a
    pytest temp dir should that ever become possible.
    """
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise PgClusterError(
            f"PostgreSQL server binaries not found (no {PG_ROOT}/<version>/bin/initdb); "
            "run scripts/setup.sh, or apt-get install postgresql"
        )

    run_as = _server_user() if os.geteuid() == 0 else None
    _reap_orphans(bin_dir, run_as)
    root = Path(tempfile.mkdtemp(prefix=_PREFIX))
    (root / _OWNER_FILE).write_text(_process_id(os.getpid()) or "", encoding="ascii")
    root.chmod(0o755)  # the server's user must traverse it to reach data/ and socket/
    datadir = root / "data"
    socket_dir = root / "socket"
    socket_dir.mkdir(mode=0o755)
    if run_as is not None:
        pw = pwd.getpwnam(run_as)
        for path in (root, socket_dir):
            os.chown(path, pw.pw_uid, pw.pw_gid)

    cluster = PgCluster(
        datadir=datadir,
        socket_dir=socket_dir,
        port=_free_port(),
        bin_dir=bin_dir,
        root=root,
        run_as=run_as,
    )
    try:
        _initdb(cluster)
        _run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(datadir),
                "-l",
                str(cluster.log_file),
                "-w",
                "-t",
                "60",
                "start",
            ],
            run_as=run_as,
            cwd=root,
            what="pg_ctl start",
            log_file=cluster.log_file,
        )
    except BaseException:
        with contextlib.suppress(PgClusterError):
            cluster.stop()
        raise
    return cluster


def _initdb(cluster: PgCluster) -> None:
    _run(
        [
            str(cluster.bin_dir / "initdb"),
            "-D",
            str(cluster.datadir),
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "--no-sync",
            "-E",
            "UTF8",
            # The C locale exists everywhere; a LANG naming an ungenerated locale
            # would otherwise make initdb fail.
            "--no-locale",
        ],
        run_as=cluster.run_as,
        cwd=cluster.root,
        what="initdb",
    )
    # PostgreSQL 15's initdb has no -c; the settings go into postgresql.conf
    # (the last occurrence of a setting wins).
    settings = {
        "listen_addresses": "''",
        "unix_socket_directories": _conf_string(str(cluster.socket_dir)),
        "port": str(cluster.port),
        "fsync": "off",
        "full_page_writes": "off",
        "synchronous_commit": "off",
    }
    with (cluster.datadir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n# sceau test cluster\n")
        for name, value in settings.items():
            conf.write(f"{name} = {value}\n")


def _conf_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _server_user() -> str:
    """The system user ``postgres``, created when absent (we are root here)."""
    try:
        pwd.getpwnam(RUN_AS)
    except KeyError:
        _run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--home-dir",
                "/nonexistent",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                RUN_AS,
            ],
            run_as=None,
            cwd=Path("/"),
            what=f"useradd {RUN_AS}",
        )
    if shutil.which("runuser") is None:
        raise PgClusterError(
            "runuser not found (package util-linux); needed to run PostgreSQL as root"
        )
    return RUN_AS


def _process_id(pid: int) -> str | None:
    """ "<pid> <start time>": names a process unambiguously even if its pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # Field 22 is the start time; the command name (field 2) may hold spaces and ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return f"{pid} {fields[19]}"


def _reap_orphans(bin_dir: Path, run_as: str | None) -> None:
    """Stop and remove the clusters of test runs that died without ``stop()``."""
    for root in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        try:
            owner = (root / _OWNER_FILE).read_text(encoding="ascii").strip()
            if run_as is None and root.stat().st_uid != os.geteuid():
                continue  # another user's cluster: not ours to stop
        except OSError:
            continue  # being created right now, or not a cluster of ours
        pid = owner.split()[0] if owner else ""
        if pid.isdigit() and _process_id(int(pid)) == owner:
            continue  # its test run is alive
        orphan = PgCluster(
            datadir=root / "data",
            socket_dir=root / "socket",
            port=0,
            bin_dir=bin_dir,
            root=root,
            run_as=run_as,
        )
        with contextlib.suppress(PgClusterError):
            orphan.stop()


def _free_port() -> int:
    # The server listens on no TCP port; the number only names its socket file.
    # Taking a free TCP port still avoids surprises should TCP ever be enabled.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(
    argv: list[str],
    *,
    run_as: str | None,
    cwd: Path,
    what: str,
    log_file: Path | None = None,
) -> None:
    if run_as is not None:
        argv = ["runuser", "-u", run_as, "--", *argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    result = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip()
        if log_file is not None and log_file.exists():
            lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
            detail += "\n--- server log (tail) ---\n" + "\n".join(lines[-30:])
        raise PgClusterError(f"{what} failed with exit code {result.returncode}:\n{detail}")
