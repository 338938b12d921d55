"""Offline extractive question answering over your own documents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["answer", "read", "build_index", "Answer", "Turn", "Settings"]

if TYPE_CHECKING:  # pragma: no cover
    from qa.config import Settings
    from qa.pipeline import answer, build_index, read
    from qa.types import Answer, Turn

_LAZY = {
    "answer": "qa.pipeline",
    "read": "qa.pipeline",
    "build_index": "qa.pipeline",
    "Answer": "qa.types",
    "Turn": "qa.types",
    "Settings": "qa.config",
}


def __getattr__(name: str) -> Any:
    """Import heavy modules (torch, faiss) only when first used, to keep `import qa` instant."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qa' has no attribute {name!r}")
