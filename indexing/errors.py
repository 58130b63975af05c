"""Errors that users can act on; every front end turns them into one clear message."""


class CiteqaError(Exception):
    """An error caused by input or state the user controls (never a bug)."""


class IndexNotFoundError(CiteqaError):
    pass


class IndexMismatchError(CiteqaError):
    pass


class CorruptIndexError(CiteqaError):
    pass


class StoreUnavailableError(CiteqaError):
    """The shared store (Postgres) cannot be reached or cannot be used."""


class EmptyCorpusError(CiteqaError):
    pass


class DocumentLoadError(CiteqaError):
    pass


class DocumentNotFoundError(CiteqaError):
    pass


class QuestionError(CiteqaError):
    """The question itself is unusable (empty, too long)."""


class TopKError(QuestionError):
    """top_k outside the configured range."""


class PostgresServerError(CiteqaError):
    """The local PostgreSQL server (`citeqa postgres`) cannot be started or stopped."""


class DatasetError(CiteqaError):
    """The evaluation file is missing or malformed."""
