"""Logging for every entry point (CLI, web chat, evaluation, training), configured in one place.

Our own loggers (`qa.*`) follow `QA_LOG_LEVEL`; third-party ones (bm25s, httpx, transformers)
stay at WARNING unless the level asked for is DEBUG. A filter on the handler enforces this,
because some libraries set their own loggers to DEBUG, which the root level alone cannot stop.
"""

from __future__ import annotations

import logging

OWN_LOGGERS = ("qa", "__main__")
PLAIN_FORMAT = "%(levelname)s %(name)s: %(message)s"
TIMED_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse_level(name: str) -> int:
    """The numeric level for a name such as "info", or a ValueError naming QA_LOG_LEVEL."""
    level = logging.getLevelName(str(name).strip().upper())
    if not isinstance(level, int):
        raise ValueError(f"QA_LOG_LEVEL={name!r} is not a log level: use DEBUG, INFO, WARNING or ERROR")
    return level


class ThirdPartyFilter(logging.Filter):
    """Pass our records at `level`, other libraries' at WARNING or above (all of them at DEBUG)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level
        self.third_party_level = level if level <= logging.DEBUG else max(level, logging.WARNING)

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name.split(".", 1)[0] in OWN_LOGGERS
        return record.levelno >= (self.level if own else self.third_party_level)


def configure_logging(level: str = "INFO", timestamps: bool = False) -> None:
    """Send log records to stderr, one line each, filtered as described above; idempotent."""
    numeric = parse_level(level)
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "qa_handler", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.qa_handler = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(TIMED_FORMAT if timestamps else PLAIN_FORMAT))
    handler.addFilter(ThirdPartyFilter(numeric))
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.getLogger("qa").setLevel(numeric)
