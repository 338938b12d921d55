"""Three short documents with one fact each: the corpus the store and sync tests index."""

from __future__ import annotations

from pathlib import Path

FACTS = {
    "alpha.txt": "The Orinoco lighthouse was built in 1871 by the engineer Mara Velasquez. It stands 42 metres tall.",
    "beta.md": "# Beta\n\nThe city of Quillport exports mostly copper and saffron. Its mayor is Tomasz Brell.",
    "gamma.txt": "Glass frogs have translucent skin. Their hearts are visible from below.",
}


def write_facts(root: Path) -> Path:
    """Write the three documents into a new folder `root`."""
    root.mkdir()
    for name, text in FACTS.items():
        (root / name).write_text(text, encoding="utf-8")
    return root
