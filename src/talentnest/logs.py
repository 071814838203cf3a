"""Log lines: one per event, text or JSON, always with the node ID and term, never a secret."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterable

from talentnest.store import iso_from_epoch

# Tokens and password hashes have recognisable shapes; anything shaped like them is masked even
# if some code path were to log one by mistake.
_SECRET_SHAPES = re.compile(
    r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"  # a JWT
    r"|\$argon2(?:id|i|d)\$[^\s\"']+"  # an argon2 hash
)


class NodeContext:
    """What every line says about the node: its ID and current term (updated as they change).

    ``node_id``, once set, wins; until then ``id_of()`` is asked (None while the node does not
    know its own address yet), so that lines logged while the node joins already name it.
    """

    def __init__(self) -> None:
        self.node_id: int | None = None
        self.id_of: Callable[[], int | None] = lambda: None
        self.term_of: Callable[[], int] = lambda: 0


def _secret_pattern(secret: str) -> re.Pattern[str]:
    """The secret as a whole word where it starts or ends with a word character: a secret such
    as "short" must not turn the word "shorter" into "[redacted]er" (and so hide the warning that
    says the secret is too short)."""
    before = r"(?<!\w)" if re.match(r"\w", secret[0]) else ""
    after = r"(?!\w)" if re.match(r"\w", secret[-1]) else ""
    return re.compile(before + re.escape(secret) + after)


class _Redactor(logging.Filter):
    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self._secrets = [_secret_pattern(s) for s in secrets if s and len(s) >= 4]

    def redact(self, text: str) -> str:
        text = _SECRET_SHAPES.sub("[redacted]", text)
        for secret in self._secrets:
            text = secret.sub("[redacted]", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = self.redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class _Formatter(logging.Formatter):
    def __init__(self, context: NodeContext, fmt: str):
        super().__init__()
        self._context = context
        self._json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        node = self._context.node_id
        try:
            if node is None:
                node = self._context.id_of()
            term = self._context.term_of()
        except Exception:  # the log line must never fail because the cluster is mid-change
            term = 0
        message = record.getMessage()
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        if self._json:
            return json.dumps(
                {
                    "ts": iso_from_epoch(record.created),
                    "level": record.levelname.lower(),
                    "node_id": node,
                    "term": term,
                    "logger": record.name,
                    "msg": message,
                },
                ensure_ascii=False,
            )
        node_text = "-" if node is None else node
        return f"{iso_from_epoch(record.created)} {record.levelname:<7} node={node_text} term={term} {message}"


def configure(*, fmt: str, level: str, context: NodeContext, secrets: Iterable[str] = (), stream=None) -> None:
    """Send every log record (ours, uvicorn's) through one handler with this format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(context, fmt))
    handler.addFilter(_Redactor(secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
