"""The gunicorn worker of every Sceau service: gunicorn's threaded worker with two
changes.

1. A request gunicorn cannot parse (a broken request line or header, an invalid chunked
   body, headers too large) is answered with an RFC 9457 problem document like every other
   error of our JSON APIs, instead of gunicorn's HTML page. gunicorn renders those answers
   in ``gunicorn.util.write_error`` and offers no hook for it; the worker replaces that one
   function in its own process, after the fork. The status and reason stay gunicorn's
   (400, 414, 431, 501...); its message is left out, since it quotes the input back.
2. A new connection gets a thread only once its whole header block has arrived. gunicorn
   hands a connection to a thread as soon as it is readable, and the thread then blocks
   until the headers are complete: a few clients that send half a header and stall (a
   "slowloris") hold every thread, and /healthz goes unanswered. Here the bytes of an
   incomplete header are read without blocking into a buffer kept with the connection,
   which goes back to gunicorn's poller until more arrive (no thread waits), for at most
   ``HEADER_SECONDS``; the complete block is handed to gunicorn's parser as if just read.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import _DEFER, ThreadWorker

HEADER_SECONDS = 10.0  # from the first byte: a client slower than that is dropped
MAX_HEAD = 64 * 1024  # past this, gunicorn's own limits answer (431, 414)
_END_OF_HEAD = (b"\r\n\r\n", b"\n\n")

_TYPES = {400: "malformed", 403: "forbidden", 414: "too-large", 431: "too-large"}


def write_problem(sock: socket.socket, status_int: int, reason: str, _mesg: str) -> None:
    kind = _TYPES.get(status_int, "malformed" if status_int < 500 else "internal")
    body = json.dumps(
        {
            "type": f"urn:sceau:problem:{kind}",
            "title": reason,
            "status": status_int,
            "detail": f"{reason}: the HTTP request could not be read"
            if status_int < 500
            else "the server failed to answer; quote the time to the operator",
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


class ProblemThreadWorker(ThreadWorker):  # type: ignore[misc]
    def init_process(self) -> Any:
        util.write_error = write_problem
        return super().init_process()

    def handle(self, conn: Any) -> Any:
        """Runs in a pool thread; returns without blocking while the header is partial."""
        head: bytearray | None = getattr(conn, "sceau_head", None)
        if not conn.initialized:
            if head is None:
                head = conn.sceau_head = bytearray()
                conn.sceau_deadline = time.monotonic() + HEADER_SECONDS
            complete = _gather(conn.sock, head)
            if complete is None or time.monotonic() > conn.sceau_deadline:
                return False  # closed by the client, or too slow: gunicorn closes it
            if not complete:
                conn.data_ready = False
                return _DEFER  # back to the poller until more bytes arrive
            conn.init()  # gunicorn's parser, which reads what we read first
            conn.parser.unreader.unread(bytes(head))
            conn.sceau_head = None
        return super().handle(conn)


def _gather(sock: socket.socket, head: bytearray) -> bool | None:
    """Read what has arrived without blocking (draining the socket, so the poller does not
    wake again for the same bytes). True once the header block is complete (or too large
    to wait for), False if not yet, None when the client closed the connection."""
    while True:
        try:
            chunk = sock.recv(MAX_HEAD, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            return None
        if not chunk:
            return None if not head else True  # let gunicorn's parser say what is wrong
        head += chunk
        if len(head) >= MAX_HEAD:
            return True
    return any(end in head for end in _END_OF_HEAD)
