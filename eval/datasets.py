"""Evaluation sets: the project's JSON-lines question set and SQuAD v1.1/v2.0 files."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from citeqa.indexing.errors import DatasetError
from citeqa.indexing.ingest.chunking import sentence_spans
from citeqa.indexing.types import Document

DatasetFormat = Literal["jsonl", "squad"]
# The seed question set: the CI gate scores it, so no threshold or setting may be chosen on it.
SEED_SET = Path(__file__).resolve().parent / "data" / "seed_qa.jsonl"
# A JSON-lines set whose folder holds this folder of documents is asked over those documents.
JSONL_CORPUS = "docs"


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


def load_jsonl(path: Path, part: str | None = None) -> EvalSet:
    """{"id", "question", "answers": [...], "doc_id", "evidence"?, "split"?} one object a line.

    `part` keeps the questions whose "split" is `part` (a set split by document, e.g. "fit" and "test")."""
    _require_file(path)
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
                raise DatasetError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
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
            if part is not None and record.get("split") != part:
                continue
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
        where = f' in part {part!r} (the records\' "split")' if part is not None else ""
        raise DatasetError(f"evaluation set {path} holds no questions{where}")
    name = path.name if part is None else f"{path.name}:{part}"
    documents = None
    corpus = path.parent / JSONL_CORPUS
    if corpus.is_dir():
        # A question set with its own documents beside it (eval/data/policies) is scored over them, indexed
        # away from the user's index, as a SQuAD file is; without one it is asked of the configured index.
        from citeqa.indexing.ingest.loaders import load_corpus

        documents = load_corpus(corpus).documents
    meta = {"corpus": str(corpus)} if documents is not None else {}
    return EvalSet(name=name, items=items, documents=documents, meta=meta)


def _require_file(path: Path) -> None:
    if path.is_dir():
        raise DatasetError(f"evaluation set {path} is a folder; give the question file (JSON lines or SQuAD)")
    if not path.is_file():
        raise DatasetError(f"evaluation set {path} does not exist")


def _read_json(path: Path) -> Any:
    _require_file(path)
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
    articles = list(data["data"])
    return [articles[i] for i in articles_in_part(articles, parts, part)]


def articles_in_part(articles: Sequence[Any], parts: Sequence[str] | None, part: str | None) -> list[int]:
    """Positions of the articles in `part` (all of them when `part` is None)."""
    if part is None:
        return list(range(len(articles)))
    if parts is None or part not in parts:
        raise DatasetError(f"unknown part {part!r} (parts: {', '.join(sorted(set(parts or ())))})")
    titles = [str(a.get("title", "")) if isinstance(a, dict) else "" for a in articles]
    split = split_articles(titles, parts)
    return [i for i, title in enumerate(titles) if split[title] == part]


def _safe_title(title: str) -> str:
    return "_".join(title.replace("/", "_").split()) or "untitled"


SquadUnit = Literal["paragraph", "article"]


def load_squad(
    path: Path, unit: SquadUnit = "paragraph", parts: Sequence[str] | None = None, part: str | None = None
) -> EvalSet:
    """SQuAD v1.1 or v2.0 JSON (optionally gzipped): every article is in the corpus, and the questions are
    those of every article, or of one `part` of the article split.

    `unit="paragraph"`: one document per paragraph, id "<title>/<n>" (the open-corpus setting).
    `unit="article"`: one document per article (a whole privacy policy), its paragraphs joined by a
    blank line, id "<title>": questions asked about one document, as a user asks about one policy.
    """
    documents: list[Document] = []
    items: list[EvalItem] = []
    used_titles: dict[str, int] = {}
    seen_ids: set[str] = set()
    articles = squad_articles(path)
    asked = set(articles_in_part(articles, parts, part))
    for article_number, article in enumerate(articles):
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
        article_text = ""
        for number, paragraph in enumerate(article["paragraphs"]):
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            if not isinstance(context, str) or not context.strip():
                raise DatasetError(f"{where}, paragraph {number}: missing 'context'")
            if unit == "paragraph":
                doc_id = f"{title}/{number}"
                documents.append(_document(doc_id, context, raw_title))
            else:
                doc_id = title
                article_text += ("\n\n" if article_text else "") + context
            for qa in paragraph.get("qas", []) if article_number in asked else []:
                items.append(_squad_item(qa, doc_id, context, items, seen_ids, where))
        if unit == "article" and article_text:
            documents.append(_document(title, article_text, raw_title))
    if not items:
        raise DatasetError(f"{path}: holds no questions")
    name = path.name if part is None else f"{path.name}:{part}"
    return EvalSet(name=name, items=items, documents=documents, meta={"unit": unit})


def _document(doc_id: str, text: str, title: str) -> Document:
    return Document(
        id=doc_id,
        text=text,
        title=title.replace("_", " "),
        content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


def _squad_item(
    qa: dict[str, Any],
    doc_id: str,
    context: str,
    items: list[EvalItem],
    seen_ids: set[str],
    where: str,
) -> EvalItem:
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
    return EvalItem(id=qid, question=question, answers=tuple(texts), doc_id=doc_id, evidence=evidence)


# The article splits of the files this project tunes on, by file name: `FILE:part` picks one part.
KNOWN_PARTS = {"policyqa": POLICYQA_PARTS, "squad": SQUAD_DEV_PARTS}


def parse_spec(spec: str) -> tuple[Path, str | None]:
    """ "FILE" or "FILE:part" (a part of the file's article split, e.g. `policyqa/dev.json.gz:test`)."""
    path, _, part = spec.rpartition(":") if ":" in Path(spec).name else (spec, "", "")
    return Path(path), part or None


def parts_for(path: Path) -> tuple[str, ...]:
    for key, parts in KNOWN_PARTS.items():
        if key in str(path).lower():
            return parts
    return SQUAD_DEV_PARTS


def load_dataset(
    spec: Path | str, fmt: DatasetFormat | None = None, unit: SquadUnit = "paragraph"
) -> EvalSet:
    """Pick the loader by `fmt`, or by the file name when it is not given; `FILE:part` for a part."""
    path, part = parse_spec(str(spec))
    if fmt is None:
        fmt = "jsonl" if path.name.endswith(".jsonl") else "squad"
    if fmt == "jsonl":
        return load_jsonl(path, part)
    return load_squad(path, unit, parts_for(path) if part else None, part)
