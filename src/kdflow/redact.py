"""Credentials out of anything logged or returned: `scheme://user:password@host` keeps its scheme
and host, secret-looking query parameters keep their names. `install_log_filter()` applies it to
every record the process logs (MLflow's and uvicorn's included), since exception texts carry URIs."""

from __future__ import annotations

import logging
import re

# scheme://[userinfo@]host...: RFC 3986 userinfo is unreserved / %-escapes / sub-delims (!$&'()*+,;=) / ":",
# and passwords in the wild also hold a raw "@" (URL parsers then take the host after the LAST "@"), or a raw
# "/", "?", "#" (the URL no longer parses, and its error message prints it). So the userinfo is taken to run
# from "//" to the last "@" before whitespace: no character a password may hold ends it early. A URL whose
# path or query holds an "@" loses the part before it too (over-redaction, never a leak).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)\S*@")
_QUERY = re.compile(r"(?P<key>[?&;](?:[A-Za-z0-9_\-]*(?:token|password|passwd|secret|key|sig|signature|credential)"
                    r"[A-Za-z0-9_\-]*)=)[^&\s'\"<>]+", re.IGNORECASE)


def redact(text: str) -> str:
    if "@" not in text and "=" not in text:
        return text
    return _QUERY.sub(r"\g<key>***", _USERINFO.sub(r"\g<scheme>***@", text))


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:  # tracebacks carry the URI too
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_filter() -> None:
    """Redact on every handler of the root logger and of the loggers that do not propagate (uvicorn's)."""
    loggers = [logging.getLogger()] + [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
