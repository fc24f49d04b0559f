"""Structured logs (structlog): one JSON object per line on stderr, or readable lines for a person.

Both structlog loggers and the standard library's `logging` (every existing module, uvicorn, SQLAlchemy,
Strawberry) end in one handler whose `ProcessorFormatter` renders them alike, each line carrying the request's
id (bound by the HTTP middleware) and, while a trace is recorded, its trace and span ids.
"""

import logging
import sys
from enum import StrEnum
from typing import TextIO

import structlog
from opentelemetry import trace
from structlog.types import EventDict, Processor, WrappedLogger


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


def _trace_ids(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """The current span's ids, so a log line leads to its trace (nothing is added while tracing is off)."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


def _drop_color_message(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """uvicorn passes its message again, with terminal colours, as an `extra` field."""
    event.pop("color_message", None)
    return event


SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _trace_ids,
]


def configure_logging(
    *, level: str | int = "INFO", log_format: LogFormat | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log line to `stream` (stderr) as JSON, or for a person when `log_format` is console or, left
    unset, when the stream is a terminal. Replaces a handler an earlier call installed; returns the new one."""
    stream = stream or sys.stderr
    if log_format is None:
        log_format = LogFormat.CONSOLE if stream.isatty() else LogFormat.JSON
    renderer: list[Processor] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if log_format is LogFormat.JSON
        else [structlog.dev.ConsoleRenderer()]
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # Lines from `logging`: their `extra={...}` fields become keys of the event like structlog's.
        foreign_pre_chain=[*SHARED, structlog.stdlib.ExtraAdder(), _drop_color_message],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for earlier in [h for h in root.handlers if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)]:
        root.removeHandler(earlier)
    root.addHandler(handler)
    root.setLevel(level)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return handler
