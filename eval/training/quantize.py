"""`citeqa quantize-reader`: the reader's int8 model for OpenVINO (service/qa/openvino_reader.py).

NNCF's post-training quantization: the inputs of the reader's matrix products (but `FULL_PRECISION`) are
quantized to 8 bits with ranges measured on sample questions, each read with passages of its own document
as the service reads them (its 4 passages sharing the most of the question's words, cut by the service's
chunker), and the weights per output channel; SmoothQuant first moves the activations' outliers into the
weights. By default the samples are the fitting part of the project's own policies (eval/data/policies,
never the seed set or a test part). The result is kept in <reader>/openvino-int8/<hash of the weights>/ with
`quantization.json` saying how it was made; it is git-ignored and made again for new weights (`make install`
makes it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from citeqa.eval.datasets import load_dataset
from citeqa.indexing.errors import CiteqaError
from citeqa.indexing.ingest.chunking import Chunker, ChunkingConfig
from citeqa.indexing.openvino_runtime import MODEL_FILE, derived_folder, keep_model, load_or_convert
from citeqa.indexing.tokenizers import ModelTokenizer
from citeqa.indexing.types import Document
from citeqa.service.qa.batching import Inputs
from citeqa.service.qa.openvino_reader import INT8_DIR, convert_reader
from citeqa.service.settings import Settings

MANIFEST = "quantization.json"
# The feed-forward output products of the first three layers stay in bf16 (or fp32): their inputs, GELU
# outputs with a long tail, lost the most in int8. Chosen on the fitting parts (472 questions of the own fit,
# SQuAD dev calibrate and PolicyQA calibrate parts against fp32): the best span changed for 22 questions
# instead of 38, the best margin moved 0.23 instead of 0.36 on average and no longer upward (+0.01 against
# +0.10), for a forward pass 8% slower (27.9 against 25.7 ms; bf16 39.4). Layer 0's alone: 31 questions,
# 0.30; all six layers': 25, 0.23, 38.7 ms.
FULL_PRECISION = tuple(f"layer.{i}.output.dense/" for i in range(3))
DEFAULT_SAMPLES = Path(__file__).resolve().parents[1] / "data" / "policies" / "questions.jsonl"
_WORD = re.compile(r"\w+")


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if len(w) > 2}


def sample_inputs(spec: str, settings: Settings, limit: int | None = None) -> list[Inputs]:
    """One batch of reader windows per question of the set `spec` (FILE[:PART] with its documents): the
    question with the `settings.top_k` passages of its own document that share the most of its words."""
    dataset = load_dataset(f"{DEFAULT_SAMPLES}:fit" if spec == "default" else spec)
    if not dataset.documents:
        raise CiteqaError(f"{spec}: quantizing needs a question set with its documents (SQuAD or docs/)")
    tokenizer = ModelTokenizer(settings.reader_path)
    chunker = Chunker(
        tokenizer,
        ChunkingConfig(max_tokens=settings.chunk_tokens, overlap_tokens=settings.chunk_overlap_tokens),
    )
    by_id: dict[str, Document] = {d.id: d for d in dataset.documents}
    passages: dict[str, list[str]] = {}
    batches: list[Inputs] = []
    for item in dataset.items[:limit]:
        if item.doc_id not in by_id:
            continue
        if item.doc_id not in passages:
            passages[item.doc_id] = [c.text for c in chunker.chunk(by_id[item.doc_id])]
        asked = _words(item.question)
        ranked = sorted(passages[item.doc_id], key=lambda p: -len(asked & _words(p)))
        windows = tokenizer.windows(
            item.question,
            ranked[: settings.top_k],
            settings.reader_max_length,
            settings.reader_stride,
            settings.reader_pad_to_multiple_of,
        )
        batches.append(windows.inputs)
    if not batches:
        raise CiteqaError(f"{spec}: no question of the set is about one of its documents")
    return batches


def quantize_reader(
    settings: Settings,
    spec: str = "default",
    limit: int | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Write the reader's int8 model (see the module's text) and return its folder; one made from the
    same weights is kept unless `force`."""
    try:
        import nncf
    except ImportError as exc:
        raise CiteqaError("quantizing needs nncf (pip install nncf)") from exc
    model_path = settings.reader_path
    if not (model_path / "model.safetensors").is_file():
        raise CiteqaError(f"no reader model (model.safetensors) at {model_path}")
    folder = derived_folder(model_path, INT8_DIR)
    if (folder / MODEL_FILE).is_file() and not force:
        log(f"{folder}: already quantized from these weights (--force quantizes again)")
        return folder
    # Say so now, not after a minute of quantizing.
    writable = folder.parent if folder.parent.exists() else model_path
    if not (writable.is_dir() and os.access(writable, os.W_OK)):
        raise CiteqaError(f"cannot write the int8 model: {writable} is not a writable folder")
    started = time.perf_counter()
    batches = sample_inputs(spec, settings, limit)
    model = load_or_convert(model_path, lambda: convert_reader(model_path))
    names = {port.get_any_name() for port in model.inputs}
    kept = [
        op.get_friendly_name()
        for op in model.get_ops()
        if op.get_type_name() == "MatMul" and any(part in op.get_friendly_name() for part in FULL_PRECISION)
    ]
    log(f"quantizing {model_path.name} on {len(batches)} questions' windows of {spec}")
    quantized = nncf.quantize(
        model,
        nncf.Dataset(batches, lambda inputs: {k: v for k, v in inputs.items() if k in names}),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(batches),
        ignored_scope=nncf.IgnoredScope(names=kept),
    )
    manifest: dict[str, Any] = {
        "source": model_path.name,
        "samples": spec,
        "questions": len(batches),
        "windows": sum(len(b["input_ids"]) for b in batches),
        "method": "NNCF post-training quantization, transformer preset (SmoothQuant, int8 activations "
        "and per-channel int8 weights), but for the matrix products under full_precision",
        "full_precision": kept,
        "nncf": nncf.__version__,
        "seconds": round(time.perf_counter() - started, 1),
    }
    try:
        if folder.is_dir():  # --force: this folder is made again, not kept as the current one
            shutil.rmtree(folder)
        keep_model(quantized, folder)
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CiteqaError(f"could not write the int8 model to {folder}: {exc.strerror or exc}") from exc
    return folder
