"""User-facing errors: one line, naming the field or file and what to do."""


class SenetError(Exception):
    """An error the CLI prints as one line (no traceback)."""


class TrainingFailed(SenetError):
    """Training stopped for a reason worth recording (e.g. non-finite loss)."""
