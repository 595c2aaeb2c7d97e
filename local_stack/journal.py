"""Durable state for the emulator: what moto acknowledged is on disk before the answer.

moto keeps everything in memory. Here every state-changing request it answers with a 2xx is
written to `<state>/journal/` (one JSON line, fsync'd, its bytes in a content-addressed
blob) before the answer leaves the emulator, under the same lock as the write itself, so the
journal's order is the order moto applied them in:

- S3: each object version created (put, copy, multipart completion: its bytes, content type,
  metadata, version id and time), each delete marker, each version deleted for good, each
  object deleted from an unversioned bucket. Versions keep their ids across restarts.
- SSM: each PutParameter, DeleteParameter(s), LabelParameterVersion, replayed in order (so a
  parameter's history, the model alias's too, comes back with the same version numbers).
- Event deliveries, at least once: a created object that an S3 notification routes to a
  function is owed its event until the function's poller has finished with it
  (`delivered`); each event put on EventBridge (PutEvents) is owed until the function its
  rule routes it to has finished with it (`event_done`), or for 24 hours as EventBridge
  retries. What is owed when the stack stops or dies is queued again at the next start
  (the handlers are idempotent).

At start (`Journal.restore`, into an emulator that is empty) the journal is folded into the
current state, that state is put into moto, and the journal is rewritten as that state alone
(compacted): a deleted version's bytes leave the disk then, so an erasure stays erased.

Restoring a version with its own id needs moto's S3 model classes (`FakeKey`,
`FakeDeleteMarker`, the bucket's key store): S3 has no API that sets a version id, and the
records of this system name versions by id (previous_versions, claims, erasure). That use of
moto's internals is confined to `_put_versions`, moto is pinned (pyproject.toml,
requirements.lock), and tests/unit/test_moto_internals.py fails if the pinned moto changes
the shape it relies on (tests/integration/test_durable.py, if a restore goes wrong).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote

from local_stack.deliveries import Created
from local_stack.durable import write_file
from local_stack.guard import SSM_WRITES

log = logging.getLogger(__name__)

# EventBridge retries delivering an event for up to 24 hours (a target's default
# MaximumEventAgeInSeconds), then drops it: an owed event older than that is not put again,
# so one that no rule routes (and no function settles) does not come back for ever.
EVENT_MAX_AGE_S = 24 * 3600
# Response headers that are an object's metadata, kept with each version
_KEPT = ("content-type", "content-encoding", "content-disposition", "content-language",
         "cache-control", "expires")  # fmt: skip


@dataclass
class Version:
    version_id: str
    modified: str  # ISO 8601
    blob: str | None = None  # None: a delete marker
    metadata: dict[str, str] = field(default_factory=dict)


class Journal:
    """The emulator's write-ahead record; one per state folder."""

    def __init__(self, state_dir: Path):
        self.root = Path(state_dir) / "journal"
        self.blobs = self.root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "journal.jsonl"
        self.lock = threading.RLock()
        self._file = None
        self.quiet = False  # while restoring: what is put back is already recorded

    # --- writing --------------------------------------------------------------------------

    def append(self, *entries: dict) -> None:
        """Entries on disk (fsync'd) when this returns."""
        with self.lock:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
            for entry in entries:
                self._file.write(_line(entry))
            self._file.flush()
            os.fsync(self._file.fileno())

    def store_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.blobs / digest
        if not path.exists():
            write_file(path, data)
        return digest

    def close(self) -> None:
        with self.lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    # --- what the guard hands over --------------------------------------------------------

    def record(
        self, service: str, environ: dict, body: bytes, answer: bytes, headers, read
    ) -> list[Created]:
        """Record an acknowledged write; the object versions it created. `read(bucket, key,
        version)` fetches a version (bytes, response headers) from moto itself, bypassing
        the guard."""
        if self.quiet:
            return []
        target = environ.get("HTTP_X_AMZ_TARGET", "").rsplit(".", 1)[-1]
        if service == "ssm" and target in SSM_WRITES:
            self.append({"op": "ssm", "target": target, "body": body.decode()})
        elif service == "events" and target == "PutEvents":
            self.append(*_put_events(body, answer))
        return self._record_s3(environ, answer, headers, read) if service == "s3" else []

    def _record_s3(self, environ: dict, answer: bytes, headers, read) -> list[Created]:
        method = environ["REQUEST_METHOD"]
        raw = environ.get("REQUEST_URI") or "/"
        path, _, query = raw.partition("?")
        params = parse_qs(query, keep_blank_values=True)
        bucket, _, key = path.lstrip("/").partition("/")
        bucket, key = unquote(bucket), unquote(key)
        answered = {k.lower(): v for k, v in headers}
        now = dt.datetime.now(dt.UTC)
        if method == "POST" and "delete" in params and not key:
            self.append(*_deletions(bucket, answer, now.isoformat()))
            return []
        if not key or set(params) & {"tagging", "acl", "uploads", "partNumber", "retention",
                                     "legal-hold", "restore", "select"}:  # fmt: skip
            return []
        if method == "DELETE":
            if "versionId" in params:
                self.append({"op": "drop", "b": bucket, "k": key, "v": params["versionId"][0]})
            elif answered.get("x-amz-delete-marker") == "true":
                version = answered.get("x-amz-version-id", "null")
                entry = {"op": "marker", "b": bucket, "k": key, "v": version, "t": now.isoformat()}
                self.append(entry)
            else:
                self.append({"op": "remove", "b": bucket, "k": key})
            return []
        if method not in ("PUT", "POST"):
            return []
        # a new version (put, copy, multipart completion)
        version = answered.get("x-amz-version-id", "null")
        data, got = read(bucket, key, version)
        blob = self.store_blob(data)
        self.append({"op": "put", "b": bucket, "k": key, "v": version, "t": now.isoformat(),
                     "blob": blob, "meta": metadata_of(got)})  # fmt: skip
        etag = dict((k.lower(), v) for k, v in got).get("etag", "")
        event = _created_by(method, params, environ)
        return [Created(bucket, key, version, len(data), etag, now, event)]

    def delivered(self, bucket: str, key: str, version: str) -> None:
        """An S3 event's function has finished with it (or it went to the on-failure
        destination): it is not queued again after a restart."""
        self.append({"op": "delivered", "b": bucket, "k": key, "v": version})

    def event_done(self, event_id: str) -> None:
        """An EventBridge event's function has finished with it (or given up on it)."""
        self.append({"op": "event-done", "id": event_id})

    # --- reading back -----------------------------------------------------------------------

    def fold(self) -> Folded:
        """The journal read once: the state it records, and what is still owed."""
        objects: dict[tuple[str, str], list[Version]] = {}
        ssm: list[dict] = []
        created: dict[tuple[str, str, str], None] = {}  # insertion-ordered set
        events: dict[str, dict] = {}  # EventBridge entries by EventId
        if not self.path.is_file():
            return Folded(objects, ssm, [], [])
        with open(self.path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        for number, line in enumerate(lines, 1):
            if not line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:  # a line cut short by the crash: it was never acknowledged
                if number < len(lines) - 1:
                    log.warning("journal line %d is unreadable; skipped", number)
                continue
            op = entry["op"]
            if op == "ssm":
                ssm.append(entry)
                continue
            if op == "event":
                events[entry["id"]] = entry
                continue
            if op == "event-done":
                events.pop(entry["id"], None)
                continue
            where = (entry["b"], entry["k"])
            versions = objects.setdefault(where, [])
            if op in ("put", "marker"):
                if entry["v"] == "null":  # an unversioned bucket keeps one version
                    versions[:] = [v for v in versions if v.version_id != "null"]
                versions.append(Version(entry["v"], entry["t"], entry.get("blob"),
                                        entry.get("meta") or {}))  # fmt: skip
                if op == "put" and entry.get("pending", True):
                    created[(*where, entry["v"])] = None
            elif op == "drop":
                versions[:] = [v for v in versions if v.version_id != entry["v"]]
                created.pop((*where, entry["v"]), None)
            elif op == "remove":
                versions.clear()
            elif op == "delivered":
                created.pop((*where, entry["v"]), None)
            if not versions:
                objects.pop(where, None)
        live = {(b, k, v.version_id) for (b, k), vs in objects.items() for v in vs}
        owed = [c for c in created if c in live]
        oldest = dt.datetime.now(dt.UTC).timestamp() - EVENT_MAX_AGE_S
        kept = [{k: e[k] for k in ("id", "t", "entry")} for e in events.values() if e["t"] > oldest]
        return Folded(objects, ssm, owed, kept)

    def compact(self, state: Folded) -> None:
        """Rewrite the journal as the state and its debts alone; blobs nothing names any
        more go."""
        with self.lock:
            self.close()
            pending = set(state.created)
            entries = list(state.ssm)
            for (bucket, key), versions in state.objects.items():
                for v in versions:
                    entry = {"op": "put" if v.blob else "marker", "b": bucket, "k": key,
                             "v": v.version_id, "t": v.modified}  # fmt: skip
                    if v.blob:
                        entry.update(blob=v.blob, meta=v.metadata)
                        entry["pending"] = (bucket, key, v.version_id) in pending
                    entries.append(entry)
            entries += [{"op": "event", **owed} for owed in state.events]  # id, t, entry
            write_file(self.path, "".join(map(_line, entries)).encode())
            named = {v.blob for vs in state.objects.values() for v in vs if v.blob}
            for blob in self.blobs.iterdir():
                if blob.name not in named:
                    blob.unlink(missing_ok=True)

    def restore(
        self,
        account_id: str,
        put_ssm: Callable[[str, str], None],
        owed: Callable[[str, str], bool],
        create_buckets: Callable[[set[str]], None],
    ) -> Folded:
        """Put the journal's state into an empty moto (`create_buckets(names)` makes those
        that do not exist yet), compact the journal; the state, with the creations whose
        events are owed (`owed(bucket, key)`: an S3 notification routes it to a function)
        and the EventBridge events owed."""
        state = self.fold()
        create_buckets({bucket for bucket, _ in state.objects})
        state.created = [c for c in state.created if owed(c[0], c[1])]
        self.quiet = True
        try:
            for entry in state.ssm:
                put_ssm(entry["target"], entry["body"])
            _put_versions(account_id, state.objects, self.blobs)
        finally:
            self.quiet = False
        self.compact(state)
        return state


@dataclass
class Folded:
    """The journal's state: object versions by (bucket, key), SSM requests in order, and
    its debts: creations whose S3 events are owed (bucket, key, version), EventBridge
    events owed ({"id": EventId, "t": its time, epoch seconds, "entry": the PutEvents
    entry})."""

    objects: dict[tuple[str, str], list[Version]]
    ssm: list[dict]
    created: list[tuple[str, str, str]]
    events: list[dict]


def _put_events(body: bytes, answer: bytes) -> list[dict]:
    """Journal entries for the events a PutEvents request put on a bus (not the failed),
    each with its time (the entry's own, else now)."""
    entries = json.loads(body or b"{}").get("Entries") or []
    answered = json.loads(answer or b"{}").get("Entries") or []
    now = dt.datetime.now(dt.UTC).timestamp()
    return [
        {
            "op": "event",
            "id": result["EventId"],
            "t": _epoch(entry.get("Time"), now),
            "entry": entry,
        }  # fmt: skip
        for entry, result in zip(entries, answered, strict=False)
        if result.get("EventId")
    ]


def _epoch(value, default: float) -> float:
    """A PutEvents entry's Time (epoch seconds on the wire; ISO 8601 accepted) in seconds."""
    if isinstance(value, int | float):
        return float(value)
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def _created_by(method: str, params: dict, environ: dict) -> str:
    """The S3 event name of an object creation."""
    if method == "POST":
        return "ObjectCreated:" + ("CompleteMultipartUpload" if "uploadId" in params else "Post")
    return "ObjectCreated:" + ("Copy" if environ.get("HTTP_X_AMZ_COPY_SOURCE") else "Put")


def _deletions(bucket: str, answer: bytes | str, now: str) -> list[dict]:
    """Journal entries for a DeleteObjects answer's <Deleted> elements."""
    root = ET.fromstring(answer)
    entries = []
    for deleted in root.iter():
        if not deleted.tag.endswith("Deleted"):
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in deleted}
        key = fields.get("Key", "")
        if fields.get("DeleteMarker") == "true" and fields.get("DeleteMarkerVersionId"):
            if fields.get("VersionId"):  # deleting a marker by its id
                entries.append({"op": "drop", "b": bucket, "k": key, "v": fields["VersionId"]})
            else:
                version = fields["DeleteMarkerVersionId"]
                entries.append({"op": "marker", "b": bucket, "k": key, "v": version, "t": now})
        elif fields.get("VersionId"):
            entries.append({"op": "drop", "b": bucket, "k": key, "v": fields["VersionId"]})
        else:
            entries.append({"op": "remove", "b": bucket, "k": key})
    return entries


def metadata_of(headers) -> dict[str, str]:
    """The metadata to keep from a GetObject answer's headers."""
    return {
        k.lower(): v
        for k, v in headers
        if k.lower() in _KEPT or k.lower().startswith("x-amz-meta-")
    }


def _put_versions(account_id: str, objects: dict, blobs: Path) -> None:
    """Each key's versions, in order, with their own ids (moto's S3 model: see the module's
    docstring for why)."""
    from moto.s3.models import FakeDeleteMarker, FakeKey, s3_backends

    backend = s3_backends[account_id]["aws"]
    for (bucket_name, key_name), versions in objects.items():
        bucket = backend.get_bucket(bucket_name)
        stored: list = []
        previous = None
        for v in versions:
            when = dt.datetime.fromisoformat(v.modified).replace(tzinfo=None)
            if v.blob is None:
                if previous is None:  # a marker over nothing (its object deleted for good)
                    previous = FakeKey(
                        key_name, b"", account_id, backend.region_name, bucket_name=bucket_name
                    )
                marker = FakeDeleteMarker(previous)
                marker._version_id = v.version_id
                marker.last_modified = when
                stored.append(marker)
                continue
            key = FakeKey(
                name=key_name,
                value=(blobs / v.blob).read_bytes(),
                account_id=account_id,
                region_name=backend.region_name,
                bucket_name=bucket_name,
                is_versioned=bucket.is_versioned,
                version_id=v.version_id,
            )
            key.set_metadata({_header_case(k): val for k, val in v.metadata.items()})
            key.last_modified = when
            stored.append(key)
            previous = key
        bucket.keys.setlist(key_name, stored)


def _header_case(name: str) -> str:
    return name if name.startswith("x-amz-meta-") else "-".join(p.title() for p in name.split("-"))


def _line(entry: dict) -> str:
    return json.dumps(entry, separators=(",", ":")) + "\n"
