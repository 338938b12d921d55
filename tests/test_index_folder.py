"""An index answers from the folder it was built from, wherever it is asked (issue 39).

Each case runs on FAISS and on Milvus Lite, chosen as a user chooses (QA_VECTOR_STORE and
QA_MILVUS_URI), from a project folder that also holds a `seeds/` folder with the seed article:
the default folder that used to replace the user's documents. Real files, the real embedder and
readers, `answer()` and `build_index()` as a user calls them, and `qa` in a subprocess.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_process import SEED_FILE, accepted_answers, cli_command, cli_env, copy_writable, seeds_dir
from test_robust_documents import build_hostile_corpus

from qa import answer, build_index
from qa.config import Settings
from qa.pipeline import Engine

pytestmark = pytest.mark.slow  # the embedder and the readers

BAKERY = "When does the bakery open?"
PAGE = ("<html><head><title>Opening hours</title></head><body><h1>Hours</h1>"
        "<p>The bakery opens at seven.</p></body></html>")
NOTES = "Shopping list: flour, butter and yeast. Call the plumber about the kitchen tap on Tuesday."
BRIDGE = "The Ozymandrel bridge is 417 metres long and crosses the river Tessaline."
MUSEUM = "The Pellworth museum closes at five on weekdays."
USERS_DOCUMENTS = ["docs/notes.txt", "docs/page.html"]


@pytest.fixture(params=["faiss", "milvus"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The vector store under test, set as a user sets it; Milvus Lite in the test's own file."""
    for name in ("QA_CORPUS_DIR", "QA_INDEX_DIR", "QA_UPLOAD_DIR", "QA_MILVUS_URI", "QA_MILVUS_COLLECTION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QA_VECTOR_STORE", request.param)
    if request.param == "milvus":
        monkeypatch.setenv("QA_MILVUS_URI", request.getfixturevalue("milvus_uri"))
    yield request.param


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory: seeds/ (the seed article) beside the user's docs/ (a page, notes)."""
    root = tmp_path / "project"
    copy_writable(seeds_dir(), root / "seeds")
    (root / "docs").mkdir()
    (root / "docs" / "page.html").write_text(PAGE, encoding="utf-8")
    (root / "docs" / "notes.txt").write_text(NOTES, encoding="utf-8")
    monkeypatch.chdir(root)
    return root


def indexed_documents(index: Path) -> list[str]:
    """The documents the index holds as saved, read as another process would."""
    from qa.milvus_store import MilvusStore
    from qa.vector_store import resolve_store

    settings = resolve_store(Settings.load(index_dir=str(index)))
    if settings.vector_store == "milvus":
        return sorted(MilvusStore.saved(settings)[1])
    return sorted(json.loads((index / "manifest.json").read_text(encoding="utf-8"))["documents"])


def status_line(index: Path) -> str:
    from qa.index_status import read_status

    status = read_status(Settings.load(index_dir=str(index)))
    assert status is not None, f"no index in {index}"
    return status.line()


def forget_folder(index: Path) -> None:
    """Make the index one from before indexes recorded their folder: the same files, no record."""
    for name in ("manifest.json", "store.json"):
        path = index / name
        if path.exists():
            saved = json.loads(path.read_text(encoding="utf-8"))
            assert saved.pop("corpus_dir", None), f"{path} recorded no folder"
            path.write_text(json.dumps(saved), encoding="utf-8")


def qa_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("qa")]


def new_process() -> None:
    """What a later `python` run sees: no engine of this one, so the next call opens and syncs the
    index afresh (the models stay loaded, as they would be cached on disk)."""
    from qa.pipeline import get_engine

    get_engine.cache_clear()


def let_go_of_milvus() -> None:
    """Milvus Lite serves one process at a time: close ours before a `qa` subprocess opens it."""
    from qa.milvus_store import release

    release()


# ----------------------------------------------------------------------------- the recorded folder


def test_the_issue_calls_answer_from_the_folder_the_index_was_built_from(project: Path, store: str,
                                                                        tmp_path: Path) -> None:
    report = build_index("docs", "myidx", progress=False)
    assert sorted(report.added) == USERS_DOCUMENTS and report.folder == str(project / "docs")

    result = answer(BAKERY, index_dir="myidx")  # from the project folder, whose seeds/ is not the index's
    assert (result.text, result.source) == ("seven", "docs/page.html")
    assert indexed_documents(project / "myidx") == USERS_DOCUMENTS

    let_go_of_milvus()
    empty = tmp_path / "empty"
    empty.mkdir()
    index = str(project / "myidx")
    done = subprocess.run(cli_command("ask", BAKERY, "--index-dir", index), cwd=empty, env=cli_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[0] == "seven" and "docs/page.html" in done.stdout
    done = subprocess.run(cli_command("index", "--status", "--index-dir", index), cwd=empty, env=cli_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"{index}: 2 documents, 2 passages from {project / 'docs'} · embedder "
                                  "sentence-transformers/all-MiniLM-L6-v2 · "), done.stdout
    assert ("FAISS flat index in" if store == "faiss" else "Milvus Lite") in done.stdout
    assert done.stdout.rstrip().endswith("· reader accurate (screened by fast)")
    assert sorted(p.name for p in empty.iterdir()) == []  # nothing was built where it was asked from
    assert indexed_documents(project / "myidx") == USERS_DOCUMENTS

    # It keeps in step with that folder: a document added there is answered from the next time.
    let_go_of_milvus()
    (project / "docs" / "museum.txt").write_text(MUSEUM, encoding="utf-8")
    done = subprocess.run(cli_command("ask", "When does the Pellworth museum close?", "--index-dir", index), cwd=empty,
                          env=cli_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "five" in done.stdout.splitlines()[0] and "docs/museum.txt" in done.stdout, done.stdout
    assert indexed_documents(project / "myidx") == ["docs/museum.txt", *USERS_DOCUMENTS]


def test_a_new_index_follows_seeds_by_default_and_keeps_to_it_from_anywhere(
    project: Path, store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = answer("Who interviewed Zelensky?", index_dir="idx")
    assert result.text in accepted_answers("Who interviewed Zelensky?") and result.source == f"seeds/{SEED_FILE}"
    assert status_line(project / "idx").startswith(f"1 document, 4 passages from {project / 'seeds'} · ")

    elsewhere = tmp_path / "elsewhere"  # another working directory with a seeds/ of its own
    (elsewhere / "seeds").mkdir(parents=True)
    (elsewhere / "seeds" / "page.html").write_text(PAGE, encoding="utf-8")
    monkeypatch.chdir(elsewhere)
    new_process()
    result = answer("Who interviewed Zelensky?", index_dir=project / "idx")
    assert result.text in accepted_answers("Who interviewed Zelensky?")
    assert indexed_documents(project / "idx") == [f"seeds/{SEED_FILE}"]


# ----------------------------------------------------------------------------- another folder


def test_an_explicit_other_folder_becomes_the_index_folder_and_the_uploads_stay(
    project: Path, store: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from qa import web
    from qa.web import escape

    build_index("docs", "myidx", progress=False)
    settings = Settings.load(index_dir="myidx")  # as `qa serve --index-dir myidx` gets it
    backend = web.Backend(settings, Engine(settings))
    backend.start_indexing()
    try:
        backend.wait_ready(900)
        bridge = tmp_path / "bridge.txt"
        bridge.write_text(BRIDGE, encoding="utf-8")
        assert web.add_uploads(backend, [str(bridge)]) == ["Added bridge.txt: you can ask about it now."]
        assert (project / "docs" / "uploads" / "bridge.txt").read_text(encoding="utf-8") == BRIDGE
        assert indexed_documents(project / "myidx") == [*USERS_DOCUMENTS, "docs/uploads/bridge.txt"]
        # The chat's status bar says what `qa index --status` says.
        line = status_line(project / "myidx")
        assert line.startswith(f"3 documents (1 uploaded), 3 passages from {project / 'docs'} · ")
        assert backend.status() == f"**Ready.** Searching {escape(line)}."
    finally:
        assert backend.stop()

    (project / "museum").mkdir()
    (project / "museum" / "hours.txt").write_text(MUSEUM, encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        result = answer("When does the Pellworth museum close?", index_dir="myidx", corpus_dir="museum")
    assert result.text in ("five", "at five", "five on weekdays", "at five on weekdays")
    assert result.source == "museum/hours.txt"
    [warning] = qa_warnings(caplog)
    assert warning.startswith("3 documents left ") and warning.endswith(
        f", which follows {project / 'museum'} now instead of {project / 'docs'}: they are not in that folder "
        "(docs/notes.txt, docs/page.html, docs/uploads/bridge.txt)"), warning
    assert indexed_documents(project / "myidx") == ["museum/hours.txt", "museum/uploads/bridge.txt"]
    assert (project / "docs" / "uploads" / "bridge.txt").exists()  # copied, not moved

    # From now on the index follows museum/, wherever it is asked from; the upload is still in it.
    new_process()
    result = answer("How long is the Ozymandrel bridge?", index_dir="myidx")
    assert (result.text, result.source) == ("417 metres", "museum/uploads/bridge.txt")
    assert answer(BAKERY, index_dir="myidx").source != "docs/page.html"
    assert status_line(project / "myidx").startswith(f"2 documents (1 uploaded), 2 passages from {project / 'museum'}")


# ----------------------------------------------------------------------------- the folder is gone


def _move_away(project: Path, how: str) -> None:
    docs = project / "docs"
    if how == "moved":  # a moved project
        docs.rename(project / "docs-moved")
    elif how == "emptied":  # a disk not mounted leaves its mount point empty
        shutil.move(str(docs), str(project / "docs-moved"))
        docs.mkdir()
    else:  # something else took its place
        shutil.move(str(docs), str(project / "docs-moved"))
        docs.write_text("not a folder")


@pytest.mark.parametrize(("how", "problem"), [("moved", "does not exist"),
                                              ("emptied", "holds no documents now (a disk not mounted?)"),
                                              ("a file", "is not a folder")])
def test_a_missing_folder_leaves_the_index_as_it_is_with_one_warning(
    project: Path, store: str, how: str, problem: str, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qa.uploads import UploadError

    build_index("docs", "myidx", progress=False)
    _move_away(project, how)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        result = answer(BAKERY, index_dir="myidx")
    assert (result.text, result.source) == ("seven", "docs/page.html")
    [warning] = qa_warnings(caplog)
    assert warning.startswith(f"the documents folder {project / 'docs'} {problem}: answering from "), warning
    assert warning.endswith(" as it is (2 documents, 2 passages)"), warning
    assert indexed_documents(project / "myidx") == USERS_DOCUMENTS

    from qa.startup import check_corpus_folder

    elsewhere = project.parent / "elsewhere"  # no seeds/ there either: `qa serve --index-dir` starts all the same
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    check_corpus_folder(Settings.load(index_dir=str(project / "myidx")))
    monkeypatch.chdir(project)
    engine = Engine(Settings.load(index_dir="myidx"))  # the chat's uploads wait for the folder
    with pytest.raises(UploadError, match=f"the documents folder {project / 'docs'} "):
        engine.upload_folder()
    assert not (project / "docs" / "uploads").exists()
    if how != "emptied":
        assert f"from {project / 'docs'} ({problem}: answering from the index as it is)" in status_line(
            project / "myidx")


def test_a_moved_project_follows_its_folder_where_it_lies_beside_the_index(
    project: Path, store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    build_index("docs", "myidx", progress=False)
    monkeypatch.chdir(tmp_path)
    moved = tmp_path / "moved"
    project.rename(moved)  # the index folder and its documents folder, together
    (moved / "docs" / "museum.txt").write_text(MUSEUM, encoding="utf-8")
    new_process()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        result = answer("When does the Pellworth museum close?", index_dir=moved / "myidx")
    assert "five" in result.text and result.source == "docs/museum.txt"
    assert qa_warnings(caplog) == [f"the documents folder {project / 'docs'} is gone; the index in {moved / 'myidx'} "
                                   f"follows {moved / 'docs'}, which lies where it did beside the index (a moved project)"]
    assert status_line(moved / "myidx").startswith(f"3 documents, 3 passages from {moved / 'docs'} · ")


def test_a_missing_folder_given_explicitly_is_still_an_error(project: Path, store: str) -> None:
    """A typo is not the index's own folder going missing: it stays a clear error (FAISS; a
    shared Milvus with no folder here serves its collection, as app servers do)."""
    from qa.indexing import EmptyCorpusError

    build_index("docs", "myidx", progress=False)
    if store == "milvus":
        assert answer(BAKERY, index_dir="myidx", corpus_dir="dcos").text == "seven"
        assert indexed_documents(project / "myidx") == USERS_DOCUMENTS
        return
    with pytest.raises(EmptyCorpusError, match=f"the corpus folder {project / 'dcos'} does not exist"):
        answer(BAKERY, index_dir="myidx", corpus_dir="dcos")
    assert indexed_documents(project / "myidx") == USERS_DOCUMENTS


# ----------------------------------------------------------------------------- indexes from before


def test_an_old_index_of_seeds_assumes_seeds_once_and_records_it(
    project: Path, store: str, caplog: pytest.LogCaptureFixture
) -> None:
    build_index("seeds", "idx", progress=False)
    forget_folder(project / "idx")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        result = answer("Who interviewed Zelensky?", index_dir="idx")
        new_process()  # the next run finds the folder recorded: nothing assumed again
        answer("Which channel does Stuart Ramsay work for?", index_dir="idx")
    assert result.text in accepted_answers("Who interviewed Zelensky?")
    said = [r.getMessage() for r in caplog.records if "assuming" in r.getMessage()]
    assert said == [f"the index in {project / 'idx'} records no documents folder (it was built before indexes recorded theirs): "
                    f"assuming {project / 'seeds'}, which it holds documents of"]
    assert qa_warnings(caplog) == []
    assert status_line(project / "idx").startswith(f"1 document, 4 passages from {project / 'seeds'} · ")


def test_an_old_index_of_another_folder_is_kept_as_it_is_not_replaced_by_seeds(
    project: Path, store: str, caplog: pytest.LogCaptureFixture
) -> None:
    build_index("docs", "myidx", progress=False)
    forget_folder(project / "myidx")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        result = answer(BAKERY, index_dir="myidx")
    assert (result.text, result.source) == ("seven", "docs/page.html")
    [warning] = qa_warnings(caplog)
    assert warning.startswith(f"the index in {project / 'myidx'} records no documents folder (it was built "
                              f"before indexes recorded theirs) and holds none of {project / 'seeds'}; "), warning
    assert indexed_documents(project / "myidx") == USERS_DOCUMENTS
    # Naming its folder once makes it follow that folder again.
    build_index("docs", "myidx", progress=False)
    assert status_line(project / "myidx").startswith(f"2 documents, 2 passages from {project / 'docs'} · ")


# ----------------------------------------------------------------------------- hostile documents


def test_a_hostile_folder_beside_the_seed_article_answers_the_bakery_question(project: Path, store: str) -> None:
    """The maintainers' bad-input check: odd files (binary, encrypted, FIFO, link loops, broken
    links...) in the user's folder, the seed article beside it, and only an index folder given."""
    hostile = project / "hostile"
    build_hostile_corpus(hostile / "odd", big=False)
    (hostile / "page.html").write_text(PAGE, encoding="utf-8")
    (hostile / "notes.txt").write_text(NOTES, encoding="utf-8")
    report = build_index("hostile", "idx", progress=False)
    assert {"hostile/page.html", "hostile/notes.txt"} <= set(report.added) and report.skipped
    result = answer(BAKERY, index_dir="idx")
    assert (result.text, result.source) == ("seven", "hostile/page.html")
    assert "hostile/odd/bad/pipe.txt" in dict(report.skipped)  # a FIFO: reading it would block forever
    documents = indexed_documents(project / "idx")
    assert documents == sorted(report.added) and "hostile/odd/good/lighthouse.txt" in documents  # nothing of seeds/
