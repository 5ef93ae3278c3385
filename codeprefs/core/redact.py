"""Credentials out of everything a build writes or prints.

A repository URL may carry a secret: ``https://user:TOKEN@host/...``, a token given as the user
name (``https://TOKEN@host/...``), or a query parameter (``?access_token=...``). git itself gets
the URL as written; every text the build writes (``run.json``, the dataset card, rejects, cache
records, logs, error messages) goes through :func:`redact_text` or :func:`redact_data` first,
and a repository's public name comes from :func:`public_url`.

Rules: in a URL with a scheme the whole user-info is a secret (a lone user name is often a
token), except for ``ssh`` URLs, whose user name (``git@``) only picks the account and is kept
(their password is not). scp-like addresses (``git@host:org/repo``) cannot hold a password and
are left alone. Query parameters whose name mentions a token, key, secret, password, signature
or auth are secrets too.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
_PARTS = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)$", re.S)
_SECRET_NAME = re.compile(r"token|secret|passw|pwd|key|sig|auth|credential|session", re.I)
_PARAM = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&;#]+)=(?P<value>[^&;#]*)")
_SSH_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git"})


def _split(url: str) -> tuple[str, str | None, str, str] | None:
    """(scheme, user-info or None, host[:port], path?query#fragment), or None if not a URL."""
    match = _PARTS.match(url)
    if match is None:
        return None
    authority = match["authority"]
    userinfo, at, host = authority.rpartition("@")
    return match["scheme"], userinfo if at else None, host, match["rest"]


def _query(rest: str, replace: bool) -> str:
    """``rest`` with each secret query parameter masked (``replace``) or removed."""
    def one(match: re.Match[str]) -> str:
        if not _SECRET_NAME.search(match["name"]):
            return match.group(0)
        return f"{match['sep']}{match['name']}={MASK}" if replace else match["sep"]

    path, question, query = rest.partition("?")
    if not question:
        return rest
    cleaned = _PARAM.sub(one, question + query)
    if not replace:  # drop the empty separators left behind
        cleaned = re.sub(r"[&;]{2,}", "&", cleaned).replace("?&", "?").replace("?;", "?")
        cleaned = re.sub(r"[?&;]+(?=#|$)", "", cleaned)
    return path + cleaned


def redact_url(url: str) -> str:
    """``url`` with its secrets replaced by ``***`` (still recognisable as the same address)."""
    parts = _split(url)
    if parts is None:
        return url
    scheme, userinfo, host, rest = parts
    if userinfo is not None:
        if scheme.lower() in _SSH_SCHEMES:
            user, colon, _ = userinfo.partition(":")
            userinfo = f"{user}:{MASK}" if colon else user
        else:
            userinfo = MASK
        host = f"{userinfo}@{host}"
    return f"{scheme}://{host}{_query(rest, replace=True)}"


def public_url(url: str) -> str:
    """``url`` without its secrets: the user-info (an ssh user name aside) and secret parameters
    removed. The public identity of a repository reached by URL."""
    parts = _split(url)
    if parts is None:
        return url
    scheme, userinfo, host, rest = parts
    if userinfo is not None and scheme.lower() in _SSH_SCHEMES:
        host = f"{userinfo.partition(':')[0]}@{host}"
    return f"{scheme}://{host}{_query(rest, replace=False)}"


def redact_text(text: str) -> str:
    """``text`` (a message, git's error output, a log line) with every URL in it redacted."""
    if "://" not in text:
        return text
    return _URL.sub(lambda match: redact_url(match.group(0)), text)


def redact_data(data: Any) -> Any:
    """A copy of JSON-like ``data`` (dicts, lists, strings) with every string redacted."""
    if isinstance(data, str):
        return redact_text(data)
    if isinstance(data, dict):
        return {key: redact_data(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(value) for value in data]
    return data
