"""Export of a filtered range of the audit log, verifiable offline.

An export holds, besides the events, everything needed to check them without the
database: the checkpoints that cover them (statement, audit-key signature, RFC 3161 token),
an RFC 9162 inclusion proof of each event in its checkpoint, consistency proofs between
those checkpoints, the audit public keys and our CA certificates. ``sceau audit verify
--export FILE`` reads it as JSON Lines or CSV (one row per record, the same records).

Records (JSON Lines, one object a line; CSV columns of the same names):
  header      format, exported_at, filter, audit_keys {label: SPKI b64}, roots, intermediates
  checkpoint  tree_size, root_hash, head_hash, at, key_label, statement, signature, token (b64)
  consistency from, to, proof [hex]
  event       seq, at, actor, action, details, prev_hash, hash, checkpoint, proof [hex]
"""

from __future__ import annotations

import base64
import bisect
import csv
import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.checkpoints import (
    Failure,
    Trust,
    VerifyReport,
    audit_keys,
    ca_certificates,
    check_checkpoint,
    fingerprint,
    load_tree,
)
from audit.queries import EventFilter, matching
from core import audit
from core.audit import merkle
from core.store.models import AuditCheckpoint, AuditEvent

FORMAT = "sceau-audit-export/1"
# An export's proofs need the Merkle tree of its newest checkpoint in memory (two hashes
# per event of the log); its events are held until their checkpoints are known.
MAX_EVENTS = 100_000
CSV_COLUMNS = [
    "record",
    "seq",
    "at",
    "actor",
    "action",
    "details",
    "prev_hash",
    "hash",
    "checkpoint",
    "proof",
    "data",
]


class ExportTooLarge(Exception):  # noqa: N818 - a refusal the UI words for the auditor
    pass


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _event_record(ev: AuditEvent, checkpoint: int | None, proof: list[bytes]) -> dict[str, Any]:
    return {
        "record": "event",
        "seq": ev.seq,
        "at": ev.at.isoformat(timespec="microseconds"),
        "actor": ev.actor,
        "action": ev.action,
        "details": ev.details,
        "prev_hash": ev.prev_hash,
        "hash": ev.hash,
        "checkpoint": checkpoint,
        "proof": [p.hex() for p in proof],
    }


def _checkpoint_record(cp: AuditCheckpoint) -> dict[str, Any]:
    return {
        "record": "checkpoint",
        "tree_size": cp.tree_size,
        "root_hash": cp.root_hash,
        "head_hash": cp.head_hash,
        "at": cp.at.isoformat(timespec="microseconds"),
        "key_label": cp.key_label,
        "statement": _b64(cp.statement),
        "signature": _b64(cp.signature),
        "timestamp_token": _b64(cp.timestamp_token),
    }


def build_export(
    session: Session, flt: EventFilter, *, now: datetime, max_events: int = MAX_EVENTS
) -> list[dict[str, Any]]:
    """The export's records, in file order. Raises ExportTooLarge past ``max_events``."""
    events: list[AuditEvent] = []
    for ev in matching(session, flt):
        if len(events) == max_events:
            raise ExportTooLarge(f"more than {max_events} events match: narrow the filter")
        events.append(ev)
    checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size)))
    sizes = [cp.tree_size for cp in checkpoints]
    covering: dict[int, int | None] = {}
    for ev in events:
        i = bisect.bisect_left(sizes, ev.seq)  # the first checkpoint with tree_size >= seq
        covering[ev.seq] = sizes[i] if i < len(sizes) else None
    used = sorted({s for s in covering.values() if s is not None})
    tree = load_tree(session, used[-1]) if used else None
    roots, intermediates = ca_certificates(session)
    records: list[dict[str, Any]] = [
        {
            "record": "header",
            "format": FORMAT,
            "exported_at": now.isoformat(timespec="microseconds"),
            "filter": flt.describe(),
            "events": len(events),
            "audit_keys": {k: _b64(v) for k, v in audit_keys(session).items()},
            "roots": [_b64(c) for c in roots],
            "intermediates": [_b64(c) for c in intermediates],
        }
    ]
    by_size = {cp.tree_size: cp for cp in checkpoints}
    for size in used:
        records.append(_checkpoint_record(by_size[size]))
    for old, new in itertools.pairwise(used):
        assert tree is not None
        proof = tree.consistency_proof(old, new)
        records.append(
            {"record": "consistency", "from": old, "to": new, "proof": [p.hex() for p in proof]}
        )
    for ev in events:
        covered = covering[ev.seq]
        proof = tree.inclusion_proof(ev.seq - 1, covered) if tree and covered else []
        records.append(_event_record(ev, covered, proof))
    return records


def to_jsonl(records: list[dict[str, Any]]) -> Iterator[str]:
    for r in records:
        yield json.dumps(r, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"


def to_csv(records: list[dict[str, Any]]) -> str:
    """One row per record: events in their columns, other records as JSON in ``data``."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS)
    writer.writeheader()
    for r in records:
        if r["record"] == "event":
            row = dict(r)
            row["details"] = json.dumps(r["details"], sort_keys=True, ensure_ascii=False)
            row["proof"] = " ".join(r["proof"])
            row["checkpoint"] = "" if r["checkpoint"] is None else r["checkpoint"]
            writer.writerow(row)
        else:
            data = {k: v for k, v in r.items() if k != "record"}
            writer.writerow({"record": r["record"], "data": json.dumps(data, sort_keys=True)})
    return out.getvalue()


# --- offline verification ----------------------------------------------------------------


class ExportUnreadable(Exception):  # noqa: N818 - a verdict on the file
    pass


def read_export(text: str) -> list[dict[str, Any]]:
    """Records from a JSON Lines or CSV export."""
    try:
        if text.startswith("{"):
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        records = []
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("record") == "event":
                records.append(
                    {
                        "record": "event",
                        "seq": int(row["seq"]),
                        "at": row["at"],
                        "actor": row["actor"],
                        "action": row["action"],
                        "details": json.loads(row["details"]),
                        "prev_hash": row["prev_hash"],
                        "hash": row["hash"],
                        "checkpoint": int(row["checkpoint"]) if row["checkpoint"] else None,
                        "proof": row["proof"].split() if row["proof"] else [],
                    }
                )
            else:
                records.append({"record": row.get("record"), **json.loads(row["data"] or "{}")})
        return records
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportUnreadable(f"not a Sceau audit export ({exc})") from None


@dataclass
class ExportReport(VerifyReport):
    roots: list[str] = field(default_factory=list)  # SHA-256 fingerprints of trusted roots


def verify_export(text: str) -> ExportReport:
    """Check an export without the database: each event's hash from its content, its
    inclusion in a checkpoint, each checkpoint's signature and timestamp, and the
    consistency of the checkpoints with one another. Stops at the first failure."""
    report = ExportReport()
    try:
        records = read_export(text)
        if not records or records[0].get("record") != "header":
            raise ExportUnreadable("the first record is not the export header")
        header = records[0]
        if header.get("format") != FORMAT:
            raise ExportUnreadable(f"unknown export format {header.get('format')!r}")
        trust = Trust(
            {k: base64.b64decode(v) for k, v in header["audit_keys"].items()},
            [base64.b64decode(c) for c in header["roots"]],
            [base64.b64decode(c) for c in header["intermediates"]],
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExportUnreadable(f"unreadable export header ({exc})") from None
    report.keys = {k: fingerprint(v) for k, v in trust.audit_keys.items()}
    report.roots = [fingerprint(r) for r in trust.roots]
    roots: dict[int, bytes] = {}
    try:
        for r in records[1:]:
            kind = r.get("record")
            if kind == "checkpoint":
                size = int(r["tree_size"])
                # The checkpoint as its row held it when exported (never stored again).
                exported = AuditCheckpoint(
                    tree_size=size,
                    root_hash=r["root_hash"],
                    head_hash=r["head_hash"],
                    at=datetime.fromisoformat(r["at"]),
                    key_label=r["key_label"],
                    statement=base64.b64decode(r["statement"]),
                    signature=base64.b64decode(r["signature"]),
                    timestamp_token=base64.b64decode(r["timestamp_token"]),
                )
                reason = check_checkpoint(exported, trust)
                if reason is not None:
                    report.failure = Failure("checkpoint", size, reason)
                    return report
                roots[size] = bytes.fromhex(r["root_hash"])
                report.checkpoints += 1
            elif kind == "consistency":
                old, new = int(r["from"]), int(r["to"])
                proof = [bytes.fromhex(p) for p in r["proof"]]
                if (
                    old not in roots
                    or new not in roots
                    or not merkle.verify_consistency(old, new, roots[old], roots[new], proof)
                ):
                    report.failure = Failure(
                        "checkpoint", new, f"not consistent with checkpoint {old}"
                    )
                    return report
            elif kind == "event":
                failure = _check_event(r, roots)
                if failure is not None:
                    report.failure = failure
                    return report
                report.events += 1
                if r["checkpoint"] is None:
                    report.uncovered += 1
            else:
                raise ExportUnreadable(f"unknown record {kind!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportUnreadable(f"malformed record ({exc})") from None
    if report.events != header.get("events"):
        report.failure = Failure(
            "event", report.events + 1, f"the header announces {header.get('events')} events"
        )
    return report


def _check_event(r: dict[str, Any], roots: dict[int, bytes]) -> Failure | None:
    seq = int(r["seq"])
    at = datetime.fromisoformat(r["at"])
    digest = audit.chain_hash(r["prev_hash"], seq, at, r["actor"], r["action"], r["details"])
    if digest != r["hash"]:
        return Failure("event", seq, "content does not match its hash")
    size = r["checkpoint"]
    if size is None:
        return None  # newer than every checkpoint: counted as uncovered
    if int(size) not in roots:
        return Failure("event", seq, f"its checkpoint {size} is not in the export")
    try:
        root = merkle.root_from_inclusion(
            merkle.leaf_hash(bytes.fromhex(digest)),
            seq - 1,
            int(size),
            [bytes.fromhex(p) for p in r["proof"]],
        )
    except ValueError as exc:
        return Failure("event", seq, f"inclusion proof: {exc}")
    if root != roots[int(size)]:
        return Failure("event", seq, f"not included in checkpoint {size}")
    return None
