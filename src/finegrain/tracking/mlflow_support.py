"""What the MLflow client needs from us: values it accepts, errors worth retrying, short HTTP timeouts.

Kept apart from `finegrain.tracking` so the Tracker reads as run lifecycle + buffering only.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

MAX_PARAM_VAL_LENGTH = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH (3.x)
MAX_TAG_VAL_LENGTH = 8000
MAX_KEY_LENGTH = 250
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")
# MLflow's own HTTP retries default to 7 with exponential backoff (~4 min per call); ours are short and the
# Tracker's circuit breaker takes over, so one dead server never stalls an epoch for minutes.
API_TIMEOUT_S = 10
ARTIFACT_TIMEOUT_S = 600  # a proxied upload is answered only once the server has stored the whole file
_we_set: set[str] = set()  # the MLFLOW_HTTP_* variables currently set by us rather than by the user
# Errors that retrying cannot fix: drop the call (after a warning) instead of buffering it forever.
_PERMANENT_CODES = {
    "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST",
    "PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_STATE", "NOT_IMPLEMENTED",
}  # fmt: skip


def clean_key(name: object) -> str:
    # MLflow rejects a whole batch over one bad key; keep what it accepts (\w is Unicode: Korean is fine).
    return _BAD_KEY_CHARS.sub("_", str(name))[:MAX_KEY_LENGTH]


def is_permanent(exc: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code in _PERMANENT_CODES
    return isinstance(exc, (FileNotFoundError, IsADirectoryError, ValueError, TypeError))


def is_timeout(exc: BaseException) -> bool:
    """Whether the call failed because the server did not answer in time (anywhere in the exception chain).

    MLflow wraps the requests/urllib3 error in an MlflowException; the socket's TimeoutError is underneath.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def http_settings(timeout_s: int | None = None) -> Iterator[None]:
    """MLflow reads these per request; scope them to our calls and leave a user's explicit setting alone.

    timeout_s: per request, default API_TIMEOUT_S (read at call time).
    """
    timeout_s = API_TIMEOUT_S if timeout_s is None else timeout_s
    wanted = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s)}
    saved = {k: os.environ.get(k) for k in wanted}
    mine = [k for k in wanted if saved[k] is None or k in _we_set]
    for k in mine:
        os.environ[k] = wanted[k]
        _we_set.add(k)
    try:
        yield
    finally:
        for k in mine:
            if saved[k] is None:
                os.environ.pop(k, None)
                _we_set.discard(k)
            else:
                os.environ[k] = saved[k]
