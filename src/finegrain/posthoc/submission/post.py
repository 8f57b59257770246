"""POST the submission file to the organisers' endpoint, with the bearer token going there and nowhere else.

    post_submission("out/submit/submission.csv", "https://example.com/submit", token)   # or SubmissionError

The rules (tests/posthoc/test_submit_post.py checks each against a recording server):
- the endpoint is https, or http to localhost (`config.endpoint_problem`), checked again here;
- no redirect is followed: following one would re-send the token to whatever host the reply names (or turn
  a 301/302/303 POST into a body-less GET that "succeeds"), so a redirect fails, naming where it pointed;
- the reply body is never returned, logged or put into an error (a server may echo the request, token
  included): only the status and the body's size come back, and an error shows the standard phrase for its
  status rather than the server's reason line;
- no URL is shown with its query (it may hold secrets).
"""

from __future__ import annotations

import http
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from finegrain.config import endpoint_problem
from finegrain.posthoc.submission.errors import SubmissionError


class _Bearer(requests.auth.AuthBase):
    """The token as the request's auth: passed explicitly, requests never swaps in ~/.netrc credentials."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def _shown(url: str) -> str:
    """scheme://host[:port]/path: the query may hold secrets, and never the reply or the token."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost error behind a requests failure, e.g. "[Errno 111] Connection refused" or "timed out".

    requests' and urllib3's own messages repeat the URL with its query, so only the socket-level cause is shown.
    """
    seen = {id(exc)}
    while True:
        reason = getattr(exc, "reason", None)  # urllib3's MaxRetryError keeps its cause here
        inner = reason if isinstance(reason, BaseException) else exc.__cause__ or exc.__context__
        if inner is None and exc.args and isinstance(exc.args[0], BaseException):
            inner = exc.args[0]
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def post_submission(path: str | Path, endpoint: str, token: str, timeout: float = 60.0) -> dict:
    """POST the file as multipart/form-data (field `file`) with a bearer token; returns the HTTP status.

    The token goes only into the Authorization header, and only to `endpoint` itself (https, or http to
    localhost; redirects are refused). The reply body is never returned, logged or put into an error: a
    server may echo the request, token included.
    """
    problem = endpoint_problem(endpoint)
    if problem:
        raise SubmissionError(f"submit.endpoint: {problem}")
    path = Path(path)
    data = path.read_bytes()
    shown = _shown(endpoint)
    try:
        reply = requests.post(
            endpoint,
            files={"file": (path.name, data, "text/csv")},
            auth=_Bearer(token),
            timeout=timeout,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        cause = _root_cause(exc)
        detail = type(exc).__name__ if cause is exc else f"{type(exc).__name__}: {cause}"
        raise SubmissionError(f"POST {shown}: {detail.replace(token, '***')}") from None
    with reply:
        if reply.is_redirect:
            target = _shown(urljoin(endpoint, reply.headers["Location"]))
            raise SubmissionError(
                f"POST {shown}: HTTP {reply.status_code} redirect to {target} not followed (the bearer token "
                "goes only to submit.endpoint); set submit.endpoint to the final URL"
            )
        if not 200 <= reply.status_code < 300:
            # The standard phrase for the code, not the server's reason line or body (either may echo the token).
            try:
                phrase = http.HTTPStatus(reply.status_code).phrase
            except ValueError:
                phrase = "(non-standard status)"
            raise SubmissionError(f"POST {shown}: HTTP {reply.status_code} {phrase}")
        return {"endpoint": shown, "status": reply.status_code, "reply_bytes": len(reply.content)}
