"""The accurate reader's base encoder: all-mpnet-base-v2 reassembled from its five part packages
and trusted only when every file matches the upstream SHA-256 pins."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from qa.base_models import (
    MPNET_FILES,
    MPNET_PART_PACKAGES,
    BaseModelError,
    assemble_mpnet,
    mpnet_path,
    part_files,
)

pytestmark = pytest.mark.slow


def copy_parts(tmp_path: Path) -> list[Path]:
    """Copies of the installed zip parts, for tampering with."""
    copies = []
    for part in part_files():
        copy = tmp_path / "parts" / part.name
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(part.read_bytes())
        copies.append(copy)
    return copies


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_installed_parts_make_the_upstream_files_byte_for_byte(tmp_path: Path) -> None:
    parts = part_files()
    assert [p.name for p in parts] == [f"all-mpnet-base-v2.zip.{n:03d}" for n in range(1, 6)]
    assert sum(p.stat().st_size for p in parts) == 404_421_332
    target = tmp_path / "mpnet"
    assemble_mpnet(parts, target)
    assert sorted(p.name for p in target.iterdir()) == sorted(f.name for f in MPNET_FILES)
    assert sha256(target / "model.safetensors") == "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
    config = json.loads((target / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("mpnet", 12, 768)
    assert not list(tmp_path.glob(".assemble-*")), "the joined zip and staging folder are removed"


def test_a_tampered_part_is_refused_and_nothing_is_installed(tmp_path: Path) -> None:
    parts = copy_parts(tmp_path)
    data = bytearray(parts[2].read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of model.safetensors
    parts[2].write_bytes(bytes(data))
    target = tmp_path / "mpnet"
    with pytest.raises(BaseModelError) as error:
        assemble_mpnet(parts, target)
    message = str(error.value)
    assert "all-mpnet-base-v2" in message and "pip install" in message and MPNET_PART_PACKAGES[0] in message
    assert not target.exists()
    assert not list(tmp_path.glob(".assemble-*"))


def test_a_missing_part_is_refused_with_what_to_install(tmp_path: Path) -> None:
    parts = copy_parts(tmp_path)
    with pytest.raises(BaseModelError, match="do not make a valid zip"):
        assemble_mpnet(parts[:4], tmp_path / "mpnet")
    assert not (tmp_path / "mpnet").exists()


def test_a_tampered_cache_is_noticed_and_rebuilt_from_the_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = mpnet_path()
    vocab = folder / "vocab.txt"
    vocab.write_text(vocab.read_text().replace("[UNK]", "[UNX]", 1))
    assert mpnet_path() == folder
    assert sha256(vocab) == next(f.sha256 for f in MPNET_FILES if f.name == "vocab.txt")
