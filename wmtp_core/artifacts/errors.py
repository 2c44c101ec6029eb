"""Errors raised by artifact conversion, building and verification (each names the file and the reason)."""

from __future__ import annotations


class ArtifactError(ValueError):
    """Base class: an artifact or its source is invalid."""


class StateDictMismatch(ArtifactError):
    """Keys or shapes of a checkpoint differ from what the model arguments require."""


class ConfigMismatch(ArtifactError):
    """params.json, meta_adapter.yaml, config.json or metadata disagree."""


class ChecksumMismatch(ArtifactError):
    """A file's size or SHA256 differs from the one recorded in metadata.json."""


class ArtifactExists(ArtifactError):
    """The output directory holds a different artifact and --force was not given."""


class TokenizerMismatch(ArtifactError):
    """Two tokenizers that must be identical are not."""
