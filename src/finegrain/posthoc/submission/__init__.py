"""Write, validate and (optionally) POST a competition submission.

    df = build_submission(probs, classes, image_ids, columns, column_to_class, test_ids, aliases, "split")
    write_submission(df, "out/submit/submission.csv")
    checks = validate_submission("out/submit/submission.csv", ["ID", *columns], test_ids)   # or SubmissionError
    post_submission("out/submit/submission.csv", endpoint, token)                          # optional

`frame` builds and writes the frame (and says how alias columns get their mass), `validate` checks the
written file, `post` sends it; this package is their public face.
"""

from finegrain.posthoc.submission.errors import SubmissionError
from finegrain.posthoc.submission.frame import (
    FLOAT_FORMAT,
    build_submission,
    column_sources,
    probs_to_columns,
    write_submission,
)
from finegrain.posthoc.submission.post import post_submission
from finegrain.posthoc.submission.validate import ROW_SUM_TOLERANCE, check_json, validate_submission

__all__ = [
    "FLOAT_FORMAT",
    "ROW_SUM_TOLERANCE",
    "SubmissionError",
    "build_submission",
    "check_json",
    "column_sources",
    "post_submission",
    "probs_to_columns",
    "validate_submission",
    "write_submission",
]
