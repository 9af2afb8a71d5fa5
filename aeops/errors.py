"""Typed errors. Each carries a short ``reason`` slug (dead-letter reasons, metric names) and an exit code.

Commands print ``str(error)`` as their one line on stderr and exit with ``exit_code``:
2 for usage and configuration mistakes, 1 for failures at run time.
"""


class AeopsError(Exception):
    """Base of every error aeops raises on purpose."""

    exit_code = 1
    reason = "error"

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class UsageError(AeopsError):
    """A bad flag, a missing file named on the command line, a bad config value."""

    exit_code = 2
    reason = "usage"


class ConfigError(UsageError):
    reason = "config"


class DecodeError(AeopsError):
    """Image bytes that cannot become an RGB array; ``reason`` says why."""

    reason = "decode"


class EmptyImageError(DecodeError):
    reason = "empty"


class UnknownFormatError(DecodeError):
    reason = "unknown_format"


class TruncatedImageError(DecodeError):
    reason = "truncated"


class ImageTooLargeError(DecodeError):
    """More pixels than the configured limit: rejected from the header, before any pixel is decoded."""

    reason = "too_many_pixels"


class CorruptImageError(DecodeError):
    reason = "corrupt"


class RecordError(AeopsError):
    """A record that is not a ``tf.train.Example`` or lacks a required feature."""

    reason = "bad_record"
