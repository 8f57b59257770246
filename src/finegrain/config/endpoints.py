"""Where a bearer token may be sent: the check behind `submit.endpoint` (and the submit step's own URL)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def endpoint_problem(url: str) -> str:
    """Why a bearer token must not go to `url` ("" when it may): https, or plain http to loopback only."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        return f"endpoint {url!r} is not a valid URL ({exc})"
    if parts.scheme not in ("https", "http"):
        scheme = parts.scheme or "(none)"
        return f"endpoint scheme {scheme!r} is not allowed: use https:// (http:// only to localhost)"
    if not host:
        return f"endpoint {url!r} has no host"
    if parts.username is not None or parts.password is not None:
        # The URL is logged (MLflow params, step summary); credentials go in the token only.
        return "endpoint must not carry user:password@; the token comes from submit.token_env"
    if parts.scheme == "http":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            return (
                f"endpoint {url!r} is plain http to another machine: the bearer token would cross the "
                "network unencrypted; use https:// (http:// is allowed only to localhost/127.0.0.1/::1)"
            )
    return ""
