"""Exception and warning types shared by the library, so callers can catch our failures precisely."""

from __future__ import annotations

__all__ = [
    "CacheCorruptError",
    "ConfigError",
    "InputDataError",
    "ModelLoadError",
    "MultireconError",
    "MultireconWarning",
    "StaleCacheError",
]


class MultireconError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(MultireconError, ValueError):
    """A parameter or configuration value is wrong; the message names the key and the allowed values."""


class InputDataError(MultireconError):
    """Input data cannot be used as asked (too few images, empty split, missing folder)."""


class StaleCacheError(MultireconError):
    """A cache store was made with settings that differ from the current ones."""


class CacheCorruptError(MultireconError):
    """A cache store is truncated or damaged on disk."""


class ModelLoadError(MultireconError):
    """A checkpoint or model folder is missing, of the wrong kind, or fails its hash."""


class TrainingDivergedError(MultireconError, FloatingPointError):
    """A loss became NaN/Inf during training; the message names the step and the losses."""


class MultireconWarning(UserWarning):
    """Warnings of this library (tests turn them into errors)."""
