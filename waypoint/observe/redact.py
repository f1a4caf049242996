"""Secrets out of free text before it leaves the process (log lines, exception messages and
stack traces on spans, captured content).

An exception's message is written by whoever raised it: a driver that puts the connection
URL in its error, an HTTP client that echoes a header. So everything that writes such text
out passes it through `redact`, which replaces what looks like a secret by "[redacted]":
API keys and tokens by their shape (`sk-…`, GitHub, Slack, AWS, Google, JWTs, bearer
headers, private keys), the password of a URL's user info, and the value of
`password=…`-style pairs.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"

SECRET_VALUE = re.compile(
    r"(?:\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}|\bgh[pousr]_[A-Za-z0-9]{20,}"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}|\bAKIA[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_-]{35}"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"
    r"|\b[Bb]earer\s+[A-Za-z0-9._~+/=-]{8,})")
# scheme://user:password@host — the password goes, the user and host stay (they help).
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s/@]+(@)")
# password=..., api_key: ..., "token": "..." — the value goes.
_SECRET_PAIR = re.compile(
    r"""(?ix)(\b(?:password|passwd|pwd|secret|client[_-]?secret|api[_-]?key|access[_-]?key
    |secret[_-]?key|private[_-]?key|token|access[_-]?token|refresh[_-]?token|auth)
    ["']?\s*[=:]\s*["']?)(?!\[redacted\])([^\s"'&,;)}\]]+)""")


def redact(text: str) -> str:
    """`text` with anything that looks like a secret replaced by "[redacted]"."""
    if not text:
        return text
    text = SECRET_VALUE.sub(REDACTED, text)
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}\2", text)
    return _SECRET_PAIR.sub(rf"\1{REDACTED}", text)
