"""Configuration precedence, as the README promises it: a flag wins over its QA_* variable, and
the variable over the default, for the library's Settings.load and for the `qa` command."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from app_process import cli_command, cli_env
from small_corpus import write_facts

from qa.config import Settings


@pytest.mark.parametrize(("field", "variable", "default", "from_env", "raw", "flag"), [
    ("top_k", "QA_TOP_K", 5, 7, "7", 3),
    ("threshold", "QA_THRESHOLD", -1.0, 0.35, "0.35", 0.6),
    ("reader", "QA_READER", "accurate", "fast", "fast", "accurate"),
    ("index_dir", "QA_INDEX_DIR", "index", "/srv/qa/index", "/srv/qa/index", "elsewhere"),
])
def test_flag_over_variable_over_default(monkeypatch: pytest.MonkeyPatch, field: str, variable: str, default,
                                         from_env, raw: str, flag) -> None:
    monkeypatch.delenv(variable, raising=False)
    assert getattr(Settings.load(), field) == default
    assert getattr(Settings.load(**{field: None}), field) == default  # an unset flag is no override
    monkeypatch.setenv(variable, raw)
    assert getattr(Settings.load(), field) == from_env
    assert getattr(Settings.load(**{field: None}), field) == from_env
    assert getattr(Settings.load(**{field: flag}), field) == flag
    monkeypatch.setenv(variable, "")  # an empty variable is unset
    assert getattr(Settings.load(), field) == default


def _qa_index(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(cli_command("index", *args), cwd=cwd, env=cli_env(env),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _indexed(index_dir: Path) -> list[str]:
    return sorted(json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))["documents"])


@pytest.mark.slow
def test_the_qa_command_takes_the_flag_over_the_variable_over_the_default(tmp_path: Path) -> None:
    """`qa index` run in a folder of its own. With QA_INDEX_DIR set and no QA_CORPUS_DIR, it
    indexes the default ./seeds into the variable's folder; with both variables set and the
    corpus argument and --index-dir given, the flags' folders, leaving the variables' alone."""
    write_facts(tmp_path / "seeds")
    for name in ("env_docs", "flag_docs"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.txt").write_text(f"The {name} folder holds this one note.", encoding="utf-8")

    _qa_index(tmp_path, env={"QA_INDEX_DIR": "env_index"})
    assert _indexed(tmp_path / "env_index") == ["seeds/alpha.txt", "seeds/beta.md", "seeds/gamma.txt"]
    assert not (tmp_path / "index").exists()  # the default index folder, overridden by the variable
    _qa_index(tmp_path, "flag_docs", "--index-dir", "flag_index",
              env={"QA_CORPUS_DIR": "env_docs", "QA_INDEX_DIR": "env_index"})
    assert _indexed(tmp_path / "flag_index") == ["flag_docs/flag_docs.txt"]
    assert _indexed(tmp_path / "env_index") == ["seeds/alpha.txt", "seeds/beta.md", "seeds/gamma.txt"]
