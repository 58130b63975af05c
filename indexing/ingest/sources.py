"""Where the indexed documents come from.

The corpus folder (seeds/ by default) is the user's and citeqa never writes to it. Documents uploaded or
deleted through the service are recorded in the data directory instead: uploads as files under
`uploads/`, deletions of corpus documents as ids in `deleted.json`. Re-indexing the folder applies both,
so an upload survives `citeqa index` and a deleted document stays out (`citeqa index --restore-deleted`
brings such documents back).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from citeqa.indexing.durable import write_atomically
from citeqa.indexing.errors import CiteqaError
from citeqa.indexing.ingest.loaders import LoadedCorpus, load_corpus

UPLOADS = "uploads"
DELETED = "deleted.json"
CORPUS_RECORD = "corpus.json"  # the folder the last build indexed
UPLOAD_NAMES = "upload-names.json"  # the file names uploads were sent under, by id


class DocumentSources:
    def __init__(self, corpus_dir: Path, data_dir: Path) -> None:
        self.corpus_dir = corpus_dir
        self.uploads_dir = data_dir / UPLOADS
        self.deleted_file = data_dir / DELETED
        self.corpus_record = data_dir / CORPUS_RECORD
        self.upload_names_file = data_dir / UPLOAD_NAMES

    def load(
        self, store_deleted: set[str] | frozenset[str] = frozenset(), restore: Collection[str] = ()
    ) -> LoadedCorpus:
        """The corpus folder's documents less the deleted ones, with uploads added or replacing.

        `store_deleted` are the deletions the store recorded (Store.deleted_ids), made through any
        replica: uploads of those ids kept here are stale copies, removed rather than re-added.
        `restore`: folder documents deleted through the service that come back (no longer deleted)."""
        for doc_id in store_deleted:
            if _is_plain_name(doc_id):
                self.upload_path(doc_id).unlink(missing_ok=True)
        for doc_id in restore:
            self._set_deleted(doc_id, False)
        corpus = load_corpus(self.corpus_dir) if self.corpus_dir.is_dir() else LoadedCorpus([], [])
        deleted = (self.deleted() | set(store_deleted)) - set(restore)
        documents = {d.id: d for d in corpus.documents if d.id not in deleted}
        problems = list(corpus.problems)
        if self.uploads_dir.is_dir():
            uploads = load_corpus(self.uploads_dir)
            documents.update({d.id: d for d in uploads.documents})
            problems.extend(uploads.problems)
        return LoadedCorpus(sorted(documents.values(), key=lambda d: d.id), problems)

    def withheld(self, store_deleted: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Documents of the corpus folder that builds leave out: deleted through the service."""
        return sorted(d for d in self.deleted() | set(store_deleted) if self.in_folder(d))

    def shadowed(self) -> list[str]:
        """Documents of the corpus folder that an upload through the service replaces (same name)."""
        if not self.uploads_dir.is_dir():
            return []
        return sorted(p.name for p in self.uploads_dir.iterdir() if p.is_file() and self.in_folder(p.name))

    def in_folder(self, doc_id: str) -> bool:
        """Whether `doc_id` is a file of the corpus folder."""
        path = self.corpus_dir / doc_id
        return ".." not in Path(doc_id).parts and not Path(doc_id).is_absolute() and path.is_file()

    def recorded_corpus(self) -> Path | None:
        """The corpus folder the index was last built from (None: not recorded)."""
        try:
            return Path(json.loads(self.corpus_record.read_text(encoding="utf-8"))["folder"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def record_corpus(self) -> None:
        if self.recorded_corpus() != self.corpus_dir.resolve():
            folder = {"folder": str(self.corpus_dir.resolve())}
            write_atomically(self.corpus_record, json.dumps(folder).encode("utf-8"))

    def upload_path(self, doc_id: str) -> Path:
        """The file an upload is kept in; ids are plain file names, never paths."""
        if not doc_id or "/" in doc_id or "\\" in doc_id or doc_id.startswith("."):
            raise CiteqaError(f"invalid document id {doc_id!r}")
        return self.uploads_dir / doc_id

    def upload_names(self) -> dict[str, str]:
        """The file names uploads were sent under, by id (uploads/ holds documents only)."""
        try:
            names = json.loads(self.upload_names_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return names if isinstance(names, dict) else {}

    def remember_upload_name(self, doc_id: str, original: str) -> None:
        names = self.upload_names()
        if names.get(doc_id) != original:
            names[doc_id] = original
            write_atomically(self.upload_names_file, json.dumps(names, ensure_ascii=False).encode("utf-8"))

    def deleted(self) -> set[str]:
        if not self.deleted_file.is_file():
            return set()
        try:
            return set(json.loads(self.deleted_file.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise CiteqaError(f"{self.deleted_file} is damaged; fix or remove it") from exc

    def save_upload(self, doc_id: str, data: bytes) -> bytes | None:
        """Keep the upload; returns the bytes it replaced, so a failed update can be undone."""
        path = self.upload_path(doc_id)
        previous = path.read_bytes() if path.is_file() else None
        write_atomically(path, data)
        self._set_deleted(doc_id, False)
        return previous

    def restore_upload(self, doc_id: str, previous: bytes | None) -> None:
        path = self.upload_path(doc_id)
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            write_atomically(path, previous)

    def forget(self, doc_id: str) -> None:
        """Record a deletion: drop the upload and keep a corpus document out of later builds."""
        if _is_plain_name(doc_id):
            self.upload_path(doc_id).unlink(missing_ok=True)
        if self.in_folder(doc_id):
            self._set_deleted(doc_id, True)

    def mark_deleted(self, doc_id: str) -> None:
        self._set_deleted(doc_id, True)

    def _set_deleted(self, doc_id: str, deleted: bool) -> None:
        current = self.deleted()
        updated = current | {doc_id} if deleted else current - {doc_id}
        if updated != current:
            write_atomically(self.deleted_file, json.dumps(sorted(updated), indent=1).encode("utf-8"))


def _is_plain_name(doc_id: str) -> bool:
    return bool(doc_id) and "/" not in doc_id and "\\" not in doc_id and not doc_id.startswith(".")
