"""The one error every part of the submission raises (the CLI maps it to a one-line message)."""


class SubmissionError(ValueError):
    """The submission (or its inputs) is wrong; the message says which check failed and how."""
