"""The time a token states, and whether it may be trusted.

ETSI EN 319 421 V1.3.1 TIS-7.7.1-05/-07 and TIS-7.7.2-06: the TSU clock is synchronised
with UTC within the declared accuracy, and when it is detected out of it no token is
issued. A :class:`TimeSource` answers both questions in one reading, so that the time a
token carries is the time whose quality was checked.

``KernelClock`` (the default, ``[tsa] clock_check = "kernel"``) reads the Linux kernel's
NTP state with ``ntp_adjtime`` (modes 0: read only, no privilege needed), which chrony,
ntpd or systemd-timesyncd keep up to date:

* ``STA_UNSYNC`` in ``status``, or the call answering ``TIME_ERROR``: the time daemon has
  not (or no longer) disciplined the clock;
* ``maxerror`` (microseconds): the kernel's upper bound of the clock's error, which grows by
  the frequency tolerance (500 ppm) each second the daemon does not refresh it;
* ``TIME_OOP``: a leap second is being inserted (TIS-7.7.2-07): a second without a
  single name in UTC, so no token is issued during it.

``UncheckedClock`` (``clock_check = "off"``) trusts the system clock blindly; it exists for
development machines and CI, whose clock is often not NTP-disciplined, and makes the service
log a warning at start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from dataclasses import dataclass
from typing import Protocol

from core.errors import ConfigError

CLOCK_CHECKS = ("kernel", "off")

# <sys/timex.h>: status bits and return states of adjtimex/ntp_adjtime.
STA_UNSYNC = 0x0040
STA_NANO = 0x2000
TIME_OOP = 3
TIME_ERROR = 5


@dataclass(frozen=True)
class ClockReading:
    """One reading: the time, and what the time source says of its quality."""

    unix_micros: int  # microseconds since 1970-01-01T00:00:00Z (POSIX time, UTC)
    # None when the clock may be used; else why not (told to the client in statusString).
    untrusted: str | None = None
    max_error_micros: int | None = None  # the source's bound, when it has one


class TimeSource(Protocol):
    def read(self, accuracy_micros: int) -> ClockReading:
        """The time now, marked untrusted when the clock is not known to be within
        ``accuracy_micros`` of UTC."""
        ...


class UncheckedClock:
    """The system clock, trusted without looking (``clock_check = "off"``)."""

    def read(self, accuracy_micros: int) -> ClockReading:
        return ClockReading(time.time_ns() // 1000)


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    """glibc ``struct timex`` (<bits/timex.h>), 208 bytes on LP64 Linux."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    )


class KernelClock:
    """The kernel's NTP discipline state, read at every request (about 2 microseconds)."""

    def __init__(self) -> None:
        path = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(path, use_errno=True)
            self._ntp_adjtime = libc.ntp_adjtime
        except (OSError, AttributeError, TypeError) as exc:
            raise ConfigError(
                '[tsa] clock_check = "kernel" needs Linux ntp_adjtime in the C library'
                f" ({exc}); use another time source"
            ) from exc
        self._ntp_adjtime.argtypes = (ctypes.POINTER(_Timex),)
        self._ntp_adjtime.restype = ctypes.c_int

    def read(self, accuracy_micros: int) -> ClockReading:
        tx = _Timex()  # modes = 0: read only
        state = self._ntp_adjtime(ctypes.byref(tx))
        # The time comes from the same call as the status: the time checked is the time told.
        fraction = tx.time.tv_usec // 1000 if tx.status & STA_NANO else tx.time.tv_usec
        now = tx.time.tv_sec * 1_000_000 + fraction
        if state < 0:
            return ClockReading(now, f"ntp_adjtime failed (errno {ctypes.get_errno()})")
        if state == TIME_ERROR or tx.status & STA_UNSYNC:
            return ClockReading(now, "the TSU clock is not synchronised with UTC", tx.maxerror)
        if tx.maxerror > accuracy_micros:
            return ClockReading(
                now,
                f"the TSU clock error bound ({tx.maxerror} us) exceeds the stated accuracy",
                tx.maxerror,
            )
        if state == TIME_OOP:
            return ClockReading(now, "a leap second is in progress", tx.maxerror)
        return ClockReading(now, None, tx.maxerror)


def time_source(name: str) -> TimeSource:
    if name == "kernel":
        return KernelClock()
    if name == "off":
        return UncheckedClock()
    raise ConfigError(f"[tsa] clock_check must be one of {', '.join(CLOCK_CHECKS)}, not {name!r}")


def kernel_clock_synchronised(accuracy_micros: int = 1_000_000) -> bool:
    """True when the kernel says its clock is within ``accuracy_micros`` of UTC now
    (``sceau init`` asks, to choose the clock check a new home starts with)."""
    try:
        return KernelClock().read(accuracy_micros).untrusted is None
    except ConfigError:
        return False
