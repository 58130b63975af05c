"""Evaluation sets: the project's JSON-lines question set and SQuAD v1.1/v2.0 files."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from indexing.chunking import sentence_spans
from indexing.errors import CiteqaError
from indexing.types import Document

DatasetFormat = Literal["jsonl", "squad"]
# The seed question set: the CI gate scores it, so no threshold or setting may be chosen on it.
SEED_SET = Path(__file__).resolve().parent / "data" / "seed_qa.jsonl"


class DatasetError(CiteqaError):
    """The evaluation file is missing or malformed."""


@dataclass(frozen=True)
class EvalItem:
    """One question with its gold answers; `answers == ()` marks an unanswerable question."""

    id: str
    question: str
    answers: tuple[str, ...]
    doc_id: str
    evidence: str | None = None

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass
class EvalSet:
    """Questions, and for self-contained formats (SQuAD) the documents they are asked over."""

    name: str
    items: list[EvalItem]
    documents: list[Document] | None = None
    version: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def limited(self, limit: int | None) -> EvalSet:
        """The first `limit` questions; the corpus stays whole (questions search all of it)."""
        if limit is None or limit >= len(self.items):
            return self
        return EvalSet(self.name, self.items[:limit], self.documents, self.version, dict(self.meta))


def _require(record: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in record:
        raise DatasetError(f"{where}: missing key {key!r}")
    value = record[key]
    if not isinstance(value, kind):
        raise DatasetError(f"{where}: {key!r} must be a {kind.__name__}")
    return value


def load_jsonl(path: Path) -> EvalSet:
    """{"id", "question", "answers": [...], "doc_id", "evidence"?} one object a line."""
    if not path.is_file():
        raise DatasetError(f"evaluation set {path} does not exist")
    items: list[EvalItem] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{where}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise DatasetError(f"{where}: expected a JSON object")
            item_id = str(_require(record, "id", str, where))
            answers = _require(record, "answers", list, where)
            if not all(isinstance(a, str) and a for a in answers):
                raise DatasetError(f"{where}: 'answers' must hold non-empty strings")
            evidence = record.get("evidence")
            if evidence is not None and not isinstance(evidence, str):
                raise DatasetError(f"{where}: 'evidence' must be a string")
            if item_id in seen:
                raise DatasetError(f"{where}: duplicate id {item_id!r}")
            seen.add(item_id)
            items.append(
                EvalItem(
                    id=item_id,
                    question=_require(record, "question", str, where),
                    answers=tuple(answers),
                    doc_id=_require(record, "doc_id", str, where),
                    evidence=evidence or None,
                )
            )
    if not items:
        raise DatasetError(f"evaluation set {path} holds no questions")
    return EvalSet(name=path.name, items=items)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError(f"evaluation set {path} does not exist")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                return json.load(handle)
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read SQuAD JSON ({type(exc).__name__}: {exc})") from exc


def answer_sentence(context: str, start: int, text: str) -> str:
    """The context sentence(s) around a gold answer, or the answer itself if it is not where it says."""
    end = start + len(text)
    if context[start:end] != text:
        return text
    covering = [s for s in sentence_spans(context) if s[0] < end and s[1] > start]
    if not covering:
        return text
    lo, hi = covering[0][0], max(covering[-1][1], end)
    return context[min(lo, start) : hi]


# Held-out discipline: every SQuAD-format file is split by article (a policy, a Wikipedia page), never by
# question, so that what is checked on shares no document with what was trained or fitted on.
POLICYQA_PARTS = ("train", "train", "calibrate", "test")
SQUAD_DEV_PARTS = ("calibrate", "test")


def split_articles(titles: Sequence[str], parts: Sequence[str]) -> dict[str, str]:
    """Each article title's part: titles sorted, then dealt out in turn (`parts[i % len(parts)]`)."""
    return {title: parts[i % len(parts)] for i, title in enumerate(sorted(set(titles)))}


def squad_articles(path: Path, parts: Sequence[str] | None = None, part: str | None = None) -> list[Any]:
    """The raw articles of a SQuAD-format file, optionally only those of one `part` of the split."""
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError(f"{path}: not SQuAD format (expected an object with a 'data' list)")
    articles = data["data"]
    if part is None:
        return list(articles)
    if parts is None or part not in parts:
        raise DatasetError(f"unknown part {part!r} (parts: {', '.join(sorted(set(parts or ())))})")
    split = split_articles([str(a.get("title", "")) for a in articles], parts)
    return [a for a in articles if split[str(a.get("title", ""))] == part]


def _safe_title(title: str) -> str:
    return "_".join(title.replace("/", "_").split()) or "untitled"


def load_squad(path: Path) -> EvalSet:
    """SQuAD v1.1 or v2.0 JSON (optionally gzipped): one document per paragraph, id "<title>/<n>"."""
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError(f"{path}: not SQuAD format (expected an object with a 'data' list)")
    documents: list[Document] = []
    items: list[EvalItem] = []
    used_titles: dict[str, int] = {}
    seen_ids: set[str] = set()
    for article_number, article in enumerate(data["data"]):
        where = f"{path}: article {article_number}"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DatasetError(f"{where}: expected an object with a 'paragraphs' list")
        raw_title = str(article.get("title") or f"article-{article_number}")
        title = _safe_title(raw_title)
        # Titles repeat across SQuAD files merged into one: keep document ids unique.
        repeat = used_titles.get(title, 0)
        used_titles[title] = repeat + 1
        if repeat:
            title = f"{title}~{repeat + 1}"
        for number, paragraph in enumerate(article["paragraphs"]):
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            if not isinstance(context, str) or not context.strip():
                raise DatasetError(f"{where}, paragraph {number}: missing 'context'")
            doc_id = f"{title}/{number}"
            documents.append(
                Document(
                    id=doc_id,
                    text=context,
                    title=raw_title.replace("_", " "),
                    content_hash=hashlib.sha256(context.encode("utf-8")).hexdigest(),
                )
            )
            for qa in paragraph.get("qas", []):
                qid = str(qa.get("id", f"{doc_id}#{len(items)}"))
                if qid in seen_ids:
                    qid = f"{qid}~{len(items)}"
                seen_ids.add(qid)
                question = qa.get("question")
                if not isinstance(question, str):
                    raise DatasetError(f"{where}, question {qid}: missing 'question'")
                gold = [] if qa.get("is_impossible") else qa.get("answers", [])
                # SQuAD lists the same answer once per annotator: keep each text once, in order.
                texts = list(dict.fromkeys(a["text"] for a in gold if a.get("text")))
                evidence = None
                if gold:
                    first = gold[0]
                    evidence = answer_sentence(context, int(first.get("answer_start", -1)), first["text"])
                items.append(
                    EvalItem(
                        id=qid, question=question, answers=tuple(texts), doc_id=doc_id, evidence=evidence
                    )
                )
    if not items:
        raise DatasetError(f"{path}: holds no questions")
    return EvalSet(name=path.name, items=items, documents=documents, version=str(data.get("version", "")))


def load_dataset(path: Path, fmt: DatasetFormat | None = None) -> EvalSet:
    """Pick the loader by `fmt`, or by the file name when it is not given."""
    if fmt is None:
        fmt = "jsonl" if path.name.endswith(".jsonl") else "squad"
    if fmt == "jsonl":
        return load_jsonl(path)
    return load_squad(path)
