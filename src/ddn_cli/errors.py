"""Typed errors. Library code raises these; only ``ddn_cli.cli`` turns them into
one-line messages and exit codes."""

from __future__ import annotations


class DdnError(Exception):
    """Base error: a one-line ``message`` and an optional ``hint`` telling the fix."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # one line, hint appended
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(DdnError):
    """Bad options or arguments (exit code 2)."""

    exit_code = 2


class UnsupportedImage(DdnError):
    """An input that cannot be decoded or is not an image."""


class ImageTooLarge(UnsupportedImage):
    """An input beyond the decompression-bomb pixel limit."""


class WeightsNotFound(DdnError):
    """A model name or path that resolves to nothing."""

    exit_code = 2


class UnsafeWeights(DdnError):
    """A weight file that would need unpickling or fails validation."""

    exit_code = 2


class ChecksumMismatch(DdnError):
    """A file whose sha256 or size does not match its spec."""


class DeviceError(DdnError):
    """A requested device or precision that is not available."""

    exit_code = 2


class OutputError(DdnError):
    """An output that cannot be written (or would overwrite an input)."""


class OutputExists(OutputError):
    """An output that appeared while the run was going (another process, a user) and that
    the run was not asked to replace."""


class OutputStorageFull(OutputError):
    """An output refused by the storage itself (no space left, over quota, a read-only file
    system): every later output there would fail the same way."""


class RunStopped(DdnError):
    """A run stopped before its end because going on could only fail (``OutputStorageFull``);
    the outputs already written are kept. ``results``: the records of the run so far, where
    the raiser returns records rather than yielding them."""

    def __init__(self, message: str, hint: str | None = None, results: list | None = None) -> None:
        super().__init__(message, hint)
        self.results = results if results is not None else []
