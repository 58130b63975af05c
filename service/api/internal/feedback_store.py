"""User feedback on answers, kept in SQLite next to (never inside) the versioned index."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from citeqa.indexing.errors import StoreUnavailableError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    correct INTEGER NOT NULL,
    comment TEXT,
    doc_id TEXT,
    start INTEGER,
    "end" INTEGER
)
"""


@dataclass(frozen=True)
class FeedbackEntry:
    question: str
    answer: str
    correct: bool
    comment: str | None = None
    doc_id: str | None = None
    start: int | None = None
    end: int | None = None


class FeedbackFullError(Exception):
    """The store has reached its size cap."""


class FeedbackStore:
    """One short connection per call, so that any worker thread may use it.

    `max_bytes` caps the database: feedback is unauthenticated, and without a cap 1,500 posts of 30 KB
    stored 46 MB in 17 s."""

    def __init__(self, path: Path, max_bytes: int = 0) -> None:
        self.path = path
        self.max_bytes = max_bytes

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10)
            conn.execute(_SCHEMA)
        except (OSError, sqlite3.DatabaseError) as exc:  # a folder, another kind of file, no permission
            where = f"the feedback store {self.path} (CITEQA_FEEDBACK_DB)"
            raise StoreUnavailableError(f"cannot open {where}: {exc}") from exc
        return conn

    def add(self, entry: FeedbackEntry) -> int:
        with closing(self._connect()) as conn, conn:
            if self.max_bytes:
                pages = conn.execute("PRAGMA page_count").fetchone()[0]
                if pages * conn.execute("PRAGMA page_size").fetchone()[0] >= self.max_bytes:
                    raise FeedbackFullError(f"the feedback store is full ({self.max_bytes:,} bytes)")
            cursor = conn.execute(
                'INSERT INTO feedback (created_at, question, answer, correct, comment, doc_id, start, "end") '
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    datetime.now(UTC).isoformat(timespec="seconds"),
                    entry.question,
                    entry.answer,
                    int(entry.correct),
                    entry.comment,
                    entry.doc_id,
                    entry.start,
                    entry.end,
                ),
            )
            assert cursor.lastrowid is not None
            return int(cursor.lastrowid)

    def rows(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with closing(self._connect()) as conn:
            conn.row_factory = sqlite3.Row
            for row in conn.execute("SELECT * FROM feedback ORDER BY id"):
                yield dict(row)


def eval_item(row: dict[str, Any]) -> dict[str, Any]:
    """A feedback row as an evaluation-set item (the keys of eval/data/seed_qa.jsonl).

    A confirmed answer becomes the expected answer; a confirmed abstention (empty answer) becomes an
    unanswerable item. A rejected answer only says what the answer is not, so it is kept aside under
    `rejected_answers` for a person to complete.
    """
    answer = row["answer"].strip()
    item: dict[str, Any] = {"id": f"feedback-{row['id']:05d}", "question": row["question"]}
    if row["correct"]:
        item["answers"] = [answer] if answer else []
    else:
        item["answers"] = None
        item["rejected_answers"] = [answer] if answer else []
    if row["doc_id"]:
        item["doc_id"] = row["doc_id"]
    item["feedback"] = {
        "correct": bool(row["correct"]),
        "comment": row["comment"],
        "created_at": row["created_at"],
    }
    return item


def export_jsonl(store: FeedbackStore, out: Any, include_rejected: bool = False) -> tuple[int, int]:
    """Write the items; returns (written, rejected answers left out)."""
    count = left_out = 0
    for row in store.rows():
        if not row["correct"] and not include_rejected:
            left_out += 1
            continue
        out.write(json.dumps(eval_item(row), ensure_ascii=False) + "\n")
        count += 1
    return count, left_out
