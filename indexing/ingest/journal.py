"""Uploads and deletes as recoverable operations: an intent journal in the data directory.

An upload touches two places, the kept file under uploads/ (and deleted.json) and the index; a delete
the same two in the other order. A crash between them used to leave a document half in: a file the
service said was 404 came back at the next `citeqa index`. Now each operation first writes its intent
(and a copy of the upload file it may replace) and fsyncs it; once both places agree it removes the
journal. Whoever opens the data directory next (the service starting, `citeqa index`, the next update)
finishes the operation if the index already shows it, and undoes it otherwise, so after any crash a
document is either fully in or fully out.

An exclusive lock on the journal folder is held for the whole operation: recovery waits for a live
operation (another process) and only ever sees the journal of a dead one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from citeqa.indexing.durable import fsync_dir, write_atomically
from citeqa.indexing.ingest.loaders import content_hash
from citeqa.indexing.ingest.sources import DocumentSources

JOURNAL_DIR = "journal"
INTENT_FILE = "intent.json"
PREVIOUS_FILE = "previous-upload"
LOCK_FILE = ".lock"

# Given a document id, the content hash the live index holds for it (None: not in the index).
IndexedHash = Callable[[str], str | None]


class UpdateJournal:
    def __init__(self, data_dir: Path, sources: DocumentSources) -> None:
        self.folder = data_dir / JOURNAL_DIR
        self.sources = sources

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / LOCK_FILE).open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def upload(self, doc_id: str, data: bytes, indexed_hash: IndexedHash) -> Iterator[None]:
        """Around indexing an upload: the file is kept on entry; the journal is cleared on success."""
        with self._locked():
            self._recover(indexed_hash)
            path = self.sources.upload_path(doc_id)
            previous = path.read_bytes() if path.is_file() else None
            self._begin(
                {
                    "op": "upload",
                    "doc_id": doc_id,
                    "hash": content_hash(data),
                    "previous_upload": previous is not None,
                    "was_deleted": doc_id in self.sources.deleted(),
                },
                previous,
            )
            self.sources.save_upload(doc_id, data)
            try:
                yield
            except BaseException:
                self._recover(indexed_hash)  # the index did not take it: undo the file
                raise
            self._end()

    @contextlib.contextmanager
    def delete(self, doc_id: str, indexed_hash: IndexedHash) -> Iterator[None]:
        """Around removing a document from the index; its upload and deletion record follow on success."""
        with self._locked():
            self._recover(indexed_hash)
            self._begin({"op": "delete", "doc_id": doc_id}, None)
            try:
                yield
            except BaseException:
                self._end()  # nothing was changed outside the index, which stayed as it was
                raise
            self.sources.forget(doc_id)
            self._end()

    def recover(self, indexed_hash: IndexedHash) -> str | None:
        """Finish or undo an operation a crash interrupted; says what was done (None: nothing to do)."""
        with self._locked():
            return self._recover(indexed_hash)

    # --- internals -----------------------------------------------------------------------
    def _begin(self, intent: dict[str, Any], previous: bytes | None) -> None:
        if previous is not None:
            write_atomically(self.folder / PREVIOUS_FILE, previous)
        write_atomically(self.folder / INTENT_FILE, json.dumps(intent).encode("utf-8"))

    def _end(self) -> None:
        (self.folder / INTENT_FILE).unlink(missing_ok=True)
        (self.folder / PREVIOUS_FILE).unlink(missing_ok=True)
        fsync_dir(self.folder)

    def _recover(self, indexed_hash: IndexedHash) -> str | None:
        intent_path = self.folder / INTENT_FILE
        if not intent_path.is_file():
            return None
        try:
            intent = json.loads(intent_path.read_text(encoding="utf-8"))
            op, doc_id = intent["op"], intent["doc_id"]
        except (ValueError, KeyError, TypeError):
            # Torn while being written: the operation had not started changing anything.
            self._end()
            return "discarded a torn update journal"
        in_index = indexed_hash(doc_id)
        if op == "upload":
            if in_index == intent["hash"]:
                outcome = f"completed the interrupted upload of {doc_id}"
            else:
                self._undo_upload(doc_id, intent)
                outcome = f"undid the interrupted upload of {doc_id}"
        elif in_index is None:
            self.sources.forget(doc_id)
            outcome = f"completed the interrupted delete of {doc_id}"
        else:
            outcome = f"undid the interrupted delete of {doc_id}"
        self._end()
        return outcome

    def _undo_upload(self, doc_id: str, intent: dict[str, Any]) -> None:
        previous_file = self.folder / PREVIOUS_FILE
        previous = previous_file.read_bytes() if intent.get("previous_upload") else None
        self.sources.restore_upload(doc_id, previous)
        if intent.get("was_deleted"):
            self.sources.mark_deleted(doc_id)
