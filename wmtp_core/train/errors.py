"""Errors of run setup shared by the trainer's modules (light: the run-directory lock imports it)."""


class RunSetupError(RuntimeError):
    """The run cannot start as asked (existing checkpoints without --resume, a changed config, a locked run dir)."""
