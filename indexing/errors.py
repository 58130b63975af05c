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
