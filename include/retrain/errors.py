"""Errors a user can act on. Each carries one line that names the file, month, column or key."""

from __future__ import annotations


class RetrainError(Exception):
    """Base for every error the CLI reports as one line instead of a traceback."""


class ConfigError(RetrainError):
    """The TOML config or a per-run override is wrong; the message names the key."""


class DataError(RetrainError):
    """A snapshot fails validation; the message names the file or month and the column."""


class ChangedError(DataError):
    """A snapshot changed between the step that validated it and a later step that reads it."""


class NotReadyError(DataError):
    """A month's data has not landed (yet): the message names every missing partition or marker."""


class StorageError(RetrainError):
    """The store is unreachable or refused a request after retries."""


class NotFoundError(StorageError):
    """The object does not exist."""


class IntegrityError(RetrainError):
    """An artifact does not match the checksum recorded in its metadata."""


class RegistryError(RetrainError):
    """The registry is inconsistent or an operator request cannot be honoured."""
