"""Dense retrieval over the compressed index re-ranks its shortlist with exact inner products."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from citeqa.indexing.embedding import resolve_dtype


@pytest.mark.integration
def test_ivf_pipeline_scores_are_exact_and_match_flat_ranking(make_pipeline: Any) -> None:
    ivf = make_pipeline(index_type="ivf_sq8")
    flat = make_pipeline(index_type="flat")
    assert ivf.index.snapshot.manifest.index_type == "ivf_sq8"
    question = "How many pilot demonstration cities may be listed?"
    vector = ivf.embedder.embed_query(question)
    ivf_hits = ivf.retriever.dense(ivf.index, vector, 5, None)
    flat_hits = flat.retriever.dense(flat.index, vector, 5, None)
    embeddings = np.asarray(ivf.index.snapshot.embeddings)
    for row, score in ivf_hits:
        assert score == pytest.approx(float(embeddings[row] @ vector), abs=1e-5)
    assert [row for row, _ in ivf_hits] == [row for row, _ in flat_hits]
    result = ivf.ask("Which city was the first made in China 2025 pilot demonstration city?")
    assert not result.no_answer and result.answers[0].text == "Ningbo"


def test_dtype_resolution() -> None:
    assert resolve_dtype("cuda", "auto") == "float16"
    assert resolve_dtype("cpu", "auto") in {"bfloat16", "float32"}
    assert resolve_dtype("cpu", "float32") == "float32"
