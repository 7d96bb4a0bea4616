"""Exceptions raised by aeforge.

Every error a user can cause derives from :class:`AeforgeError`; the CLI prints its message on
one line and exits non-zero. Messages name the offending thing (file and line, layer, field).
"""

from __future__ import annotations


class AeforgeError(Exception):
    """Base class of all user-facing aeforge errors."""


class ConfigError(AeforgeError):
    """A configuration file or value is invalid (unknown key, wrong type, bad value)."""


class DataError(AeforgeError):
    """Input data is missing, malformed or out of range (file and line named)."""


class QuantizationError(AeforgeError):
    """A quantizer or fixed-point type cannot be represented as asked (e.g. non-power-of-two)."""


class ArtifactError(AeforgeError):
    """A run directory or artifact is missing, incomplete or inconsistent."""


class ToolUnavailableError(AeforgeError):
    """An optional tool or dependency needed for this step is not installed."""
