"""citeqa: extractive question answering over policy documents, with verbatim answers and exact citations.

The package maps the repository's layers: `citeqa.indexing` (indexing/: files to an index),
`citeqa.service` (service/: the QA pipeline and its HTTP and CLI front ends) and `citeqa.eval` (eval/:
scoring, calibration, training, benchmarks). The library API is the pipeline:

    from pathlib import Path
    from citeqa import QAPipeline, Settings

    pipeline = QAPipeline(Settings(data_dir=Path("my-data")))
    pipeline.warm_up(require_index=False)
    pipeline.index_folder(Path("my-policies"))
    result = pipeline.ask("How many days of annual leave do new starters get?")
    for answer in result.answers:
        print(answer.text, answer.citation.doc_id, answer.citation.start, answer.citation.end)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from citeqa.indexing.errors import (
        CiteqaError,
        DocumentNotFoundError,
        IndexNotFoundError,
        QuestionError,
        TopKError,
    )
    from citeqa.service.qa.pipeline import QAPipeline
    from citeqa.service.qa.query import Query
    from citeqa.service.qa.types import Answer, AskResult, Passage, SearchResult
    from citeqa.service.settings import Settings

__all__ = [
    "Answer",
    "AskResult",
    "CiteqaError",
    "DocumentNotFoundError",
    "IndexNotFoundError",
    "Passage",
    "QAPipeline",
    "Query",
    "QuestionError",
    "SearchResult",
    "Settings",
    "TopKError",
]

_ERRORS = "citeqa.indexing.errors"  # CiteqaError and the kinds a caller may handle apart
_HOMES = {
    "CiteqaError": _ERRORS,
    "DocumentNotFoundError": _ERRORS,
    "IndexNotFoundError": _ERRORS,
    "QuestionError": _ERRORS,
    "TopKError": _ERRORS,
    "QAPipeline": "citeqa.service.qa.pipeline",
    "Query": "citeqa.service.qa.query",
    "Settings": "citeqa.service.settings",
    "Answer": "citeqa.service.qa.types",
    "AskResult": "citeqa.service.qa.types",
    "Passage": "citeqa.service.qa.types",
    "SearchResult": "citeqa.service.qa.types",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that `import citeqa.service.cli` (and `citeqa --help`) never pays for torch and FAISS.
    if name not in _HOMES:
        raise AttributeError(f"module 'citeqa' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
