"""A SoftHSM2 token for development and tests, created by ``sceau init``.

SoftHSM2 keeps keys in files under a token directory named by its configuration file,
which the library reads from ``SOFTHSM2_CONF`` when it initialises. Production uses a
real HSM; nothing here is needed to run against one.

Like the key store's, these errors tell the caller what failed, not where: paths, labels
and the tool's own words go to the log (PINs blanked out).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from core.errors import ConfigError, HsmError

log = logging.getLogger("sceau.hsm")

# Where distributions install the module: Debian/Ubuntu (the first is a symlink to the
# multiarch one), Fedora/RHEL, a source build, Homebrew.
SOFTHSM_MODULE_CANDIDATES: tuple[Path, ...] = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib64/pkcs11/libsofthsm2.so"),
    Path("/usr/local/lib/softhsm/libsofthsm2.so"),
    Path("/opt/homebrew/lib/softhsm/libsofthsm2.so"),
)

CONF_NAME = "softhsm2.conf"
TOKEN_LABEL_MAX_BYTES = 32  # PKCS#11 CK_TOKEN_INFO.label is 32 bytes, blank-padded
PIN_MIN_BYTES, PIN_MAX_BYTES = 4, 255  # SoftHSM2's limits
_UTIL = "softhsm2-util"
_INSTALL_HINT = "install SoftHSM2 (Debian/Ubuntu: apt-get install softhsm2)"


def find_softhsm_module() -> Path:
    for candidate in SOFTHSM_MODULE_CANDIDATES:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(p) for p in SOFTHSM_MODULE_CANDIDATES)
    log.error("SoftHSM2 PKCS#11 module not found; looked at %s", tried)
    raise ConfigError(f"SoftHSM2 PKCS#11 module not found: {_INSTALL_HINT}")


def ensure_softhsm_token(home: Path, label: str, user_pin: str, so_pin: str) -> Path:
    """Make sure a token labelled ``label`` exists; return the configuration file to use.

    An existing ``home/softhsm2.conf`` is kept as it is, so a caller can point several
    homes at one shared token directory (one process can only use one, see core.hsm.keystore).
    """
    if len(label.encode()) > TOKEN_LABEL_MAX_BYTES:
        log.error("token label %r is longer than %d bytes", label, TOKEN_LABEL_MAX_BYTES)
        raise ConfigError(f"the token label is longer than {TOKEN_LABEL_MAX_BYTES} bytes")
    for name, pin in (("user PIN", user_pin), ("SO PIN", so_pin)):
        # Outside these bounds softhsm2-util ignores the argument and prompts instead.
        if not PIN_MIN_BYTES <= len(pin.encode()) <= PIN_MAX_BYTES:
            raise ConfigError(f"a SoftHSM2 {name} has {PIN_MIN_BYTES} to {PIN_MAX_BYTES} bytes")
    conf = home / CONF_NAME
    existing = conf.exists()
    tokendir = _tokendir(conf) if existing else (home / "tokens").resolve()
    tokendir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not existing:
        conf.write_text(
            "# Written by sceau init: a development token store, never for production keys.\n"
            f"directories.tokendir = {tokendir}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
        )
    if label not in _token_labels(conf):
        # softhsm2-util reads PINs only from the command line or a terminal, so they are
        # briefly visible in the process list; acceptable for a development token.
        _run_util(
            conf,
            ["--init-token", "--free", "--label", label, "--pin", user_pin, "--so-pin", so_pin],
            redact=(user_pin, so_pin),
        )
    return conf


def _tokendir(conf: Path) -> Path:
    for line in conf.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "directories.tokendir":
            return Path(value.strip())
    log.error("%s: no directories.tokendir setting", conf)
    raise ConfigError(f"{CONF_NAME} has no directories.tokendir setting")


def _token_labels(conf: Path) -> set[str]:
    labels = set()
    for line in _run_util(conf, ["--show-slots"], redact=()).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "Label":
            labels.add(value.strip())  # the tool prints the blank padding too
    return labels


def _run_util(conf: Path, args: list[str], *, redact: tuple[str, ...]) -> str:
    util = shutil.which(_UTIL)
    if util is None:
        raise ConfigError(f"{_UTIL} not found on PATH: {_INSTALL_HINT}")
    result = subprocess.run(
        [util, *args],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        stdin=subprocess.DEVNULL,  # it would prompt for anything it finds missing
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        # The command line holds the PINs, so the message carries only what the tool said.
        said = (result.stderr.strip() or result.stdout.strip() or "no output").replace("\n", " ")
        for secret in redact:
            said = said.replace(secret, "***")
        log.error("%s %s failed (exit %d): %s", _UTIL, args[0], result.returncode, said)
        raise HsmError(f"{_UTIL} {args[0]} failed (exit {result.returncode})")
    return result.stdout
