"""Logs a city operator can use: one JSON object per line (or plain text), with the request
id, route template, store id and invoice id where known, and no secrets.

`BUSANPAY_LOG_FORMAT=json|text` (default json). Every line passes `redact`: API keys and
bearer tokens after `token`/`Bearer`/`Authorization`, refund-claim tokens in `/refund/…`
paths, and the configured secrets themselves are replaced by `[redacted]`. Routes are
logged as templates (`/refund/<token>`), never as the path that was asked for. The app
writes one `request` line per request itself; gunicorn's access log (which prints raw
paths) is reduced to paths-free fields by gunicorn.conf.py.
"""
from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone

REDACTED = "[redacted]"
_PATTERNS = [
    # "Authorization: token abc", "'Authorization': 'Bearer abc'", "authorization=abc"
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?:(?:token|bearer|basic)\s+)?[^\s'\",}]+"),
     r"\1" + REDACTED),
    (re.compile(r"(?i)\b(token|bearer)(\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1\2" + REDACTED),
    (re.compile(r"(/refund/)[A-Za-z0-9_-]{8,}"), r"\1" + REDACTED),
    (re.compile(r"(?i)(api[_-]?key['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"), r"\1" + REDACTED),
]
_CONTEXT_FIELDS = ("request_id", "route", "method", "status", "duration_ms", "store_id",
                   "invoice_id", "client")


class Redactor:
    def __init__(self, secrets: list[str] | None = None):
        # Only values long enough not to match ordinary words.
        self.secrets = sorted({s for s in (secrets or []) if s and len(s) >= 8}, key=len,
                              reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


class ContextFilter(logging.Filter):
    """Adds the current request's id, route template, store and invoice ids to a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        from flask import g, has_request_context, request

        if has_request_context():
            if not hasattr(record, "request_id"):
                record.request_id = getattr(g, "request_id", None)
            rule = request.url_rule
            if not hasattr(record, "route"):
                record.route = rule.rule if rule is not None else None
            args = request.view_args or {}
            if not hasattr(record, "store_id"):
                record.store_id = args.get("store_id") or getattr(g, "store_id", None)
            if not hasattr(record, "invoice_id"):
                record.invoice_id = args.get("invoice_id")
            # The credential this request carries is a secret wherever it shows up.
            credential = request.headers.get("Authorization", "").partition(" ")[2].strip()
            if len(credential) >= 8:
                record.busanpay_credential = credential
        return True


def _scrub_credential(record: logging.LogRecord, text: str) -> str:
    credential = getattr(record, "busanpay_credential", None)
    return text.replace(credential, REDACTED) if credential else text


class JsonFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor):
        super().__init__()
        self.redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        return _scrub_credential(record, self._format(record))

    def _format(self, record: logging.LogRecord) -> str:
        line = {"timestamp": datetime.fromtimestamp(record.created, timezone.utc)
                .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": record.levelname, "logger": record.name,
                "message": self.redact(record.getMessage())}
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = self.redact(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        text = _scrub_credential(record, super().format(record))
        context = " ".join(f"{name}={getattr(record, name)}" for name in _CONTEXT_FIELDS
                           if getattr(record, name, None) is not None)
        return self.redact(f"{text} [{context}]" if context else text)


_HANDLER_NAME = "busanpay"


def configure_logging(fmt: str, secrets: list[str], *, stream=None,
                      level: int = logging.INFO) -> logging.Handler:
    """(Re)install the one Busan Pay handler on the root logger."""
    if fmt not in ("json", "text"):
        raise ValueError(f"BUSANPAY_LOG_FORMAT must be json or text, got {fmt!r}")
    redactor = Redactor(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter(redactor) if fmt == "json" else TextFormatter(redactor))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(min(root.level or level, level) if root.handlers[:-1] else level)
    return handler
