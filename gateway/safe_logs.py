"""No raw request head reaches a log line (issue 10, finding 7).

When aiohttp cannot parse a request (bare-LF line endings, a control character in a header, a
bad method ...) it logs ``Error handling request`` with the parser's exception, whose text
quotes the raw bytes of the request head — ``Authorization: Bearer rk_…`` included. The gateway
hands aiohttp its own protocol logger (:data:`SERVER_LOGGER`, via the application's
``handler_args``) with a filter that keeps the event but drops the exception and its arguments:
the line says which address sent an unparseable request and the exception's class and status,
never its text. Ratchet's own code never logs headers or bodies; the captured-log tests
(tests/integration/test_gateway_attacks.py) hold both to that.
"""

from __future__ import annotations

import logging

__all__ = ["SERVER_LOGGER", "HeadRedactingFilter"]


class HeadRedactingFilter(logging.Filter):
    """Rewrites a record that carries an exception to its class and status only."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None and not record.exc_text:
            return True
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        status = getattr(exc, "code", None) or getattr(exc, "status", None)
        record.msg = "unparseable or failed request from %s: %s%s"
        record.args = (str(remote)[:64], type(exc).__name__ if exc else "error",
                       f" ({status})" if isinstance(status, int) else "")
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


#: The logger aiohttp's request handler writes to in the gateway (instead of ``aiohttp.server``).
SERVER_LOGGER = logging.getLogger("gateway.http")
SERVER_LOGGER.addFilter(HeadRedactingFilter())
