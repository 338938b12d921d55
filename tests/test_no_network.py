"""The product never goes online: answering works with the network gone, and a missing model is a
clear error naming its setting, found without any download attempt.

The slow tests run a fresh Python process (so models really load) with an audit hook that
records and refuses every non-loopback connect, DNS lookup and urllib request, inside a network
namespace without interfaces (`unshare -n`) where that is allowed. Hugging Face's offline
variables are removed from its environment: the product must set them itself. The web chat
(`app.py`) runs the same way, in a namespace with only its loopback up, and answers a question
asked over that loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from app_process import ROOT, SEED_FILE, accepted_answers, copy_writable, seeds_dir
from robust_support import record

_GUARD = r"""
import atexit, json, socket, sys

ATTEMPTS = []
LOOPBACK = {"127.0.0.1", "::1", "localhost"}

def _guard(event, args):
    if event == "socket.connect":
        sock, address = args
        if sock.family != socket.AF_UNIX and str(address[0]) not in LOOPBACK:
            ATTEMPTS.append(f"connect {address}")
            raise ConnectionRefusedError(f"network blocked by the test: {address}")
    elif event == "socket.getaddrinfo":
        if args[0] is not None and str(args[0]) not in LOOPBACK:
            ATTEMPTS.append(f"getaddrinfo {args[0]}")
            raise socket.gaierror(f"DNS blocked by the test: {args[0]}")
    elif event in ("socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"):
        ATTEMPTS.append(f"{event} {args[0]}")
    elif event == "urllib.Request":
        ATTEMPTS.append(f"urllib {args[0]}")

sys.addaudithook(_guard)
atexit.register(lambda: sys.stderr.write("NETWORK ATTEMPTS " + json.dumps(ATTEMPTS) + "\n"))
"""

_ANSWER = _GUARD + r"""
from qa.pipeline import answer
try:
    result = answer("Who interviewed Zelensky?", corpus_dir=sys.argv[1], index_dir=sys.argv[2])
    best = result.text or (result.alternatives[0].text if result.alternatives else "")
    out = {"ok": True, "best": best, "abstained": result.abstained, "hits": [h.passage.document for h in result.hits]}
except Exception as exc:
    out = {"ok": False, "type": type(exc).__name__, "message": str(exc)}
print("RESULT " + json.dumps(out))
"""


def _offline_env(**extra: str) -> dict[str, str]:
    """This environment minus QA_* settings and every Hugging Face/proxy switch, plus `extra`."""
    drop = ("QA_", "HF_", "TRANSFORMERS_", "HUGGINGFACE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and "proxy" not in k.lower()}
    if "HF_HOME" in os.environ:  # keep where the cache is, not whether it may go online
        env["HF_HOME"] = os.environ["HF_HOME"]
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _no_network_prefix() -> list[str]:
    """`unshare -n` when this machine allows it (root in a container usually does), else nothing."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def _loopback_only_prefix() -> list[str]:
    """A network namespace with nothing but its loopback up (a server and its client inside it),
    where this machine allows one (`unshare -n` and `ip`), else nothing."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if not (unshare and ip and _no_network_prefix()):
        return []
    return [unshare, "-n", "sh", "-c", f'{ip} link set lo up && exec "$@"', "loopback-only"]


def _run(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, list[str]]:
    done = subprocess.run([*_no_network_prefix(), sys.executable, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    line = next((ln for ln in done.stderr.splitlines() if ln.startswith("NETWORK ATTEMPTS ")), None)
    assert line is not None, f"the audit hook did not report:\n{done.stderr[-3000:]}"
    return done, json.loads(line.removeprefix("NETWORK ATTEMPTS "))


def _result(done: subprocess.CompletedProcess) -> dict:
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, f"no result:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return json.loads(line.removeprefix("RESULT "))


@pytest.fixture()
def seeds_copy(tmp_path: Path) -> tuple[Path, Path]:
    return copy_writable(seeds_dir(), tmp_path / "seeds"), tmp_path / "index"


@pytest.mark.slow
def test_answer_works_with_the_network_gone(seeds_copy: tuple[Path, Path]) -> None:
    corpus, index_dir = seeds_copy
    done, attempts = _run(["-c", _ANSWER, str(corpus), str(index_dir)], _offline_env())
    result = _result(done)
    record("no-network", case="answer", isolated=bool(_no_network_prefix()), attempts=len(attempts))
    assert attempts == []
    assert result["ok"], result
    assert result["hits"][0] == f"seeds/{SEED_FILE}"
    assert not result["abstained"] and result["best"] in accepted_answers("Who interviewed Zelensky?"), result


@pytest.mark.slow
def test_a_missing_reader_model_is_a_clear_error_without_a_download(seeds_copy: tuple[Path, Path]) -> None:
    corpus, index_dir = seeds_copy
    env = _offline_env(QA_READER_MODEL="some/missing-model")
    done, attempts = _run(["-c", _ANSWER, str(corpus), str(index_dir)], env)
    result = _result(done)
    record("no-network", case="missing model", attempts=len(attempts))
    assert attempts == []
    assert not result["ok"] and result["type"] == "ModelNotAvailableError", result
    assert "'some/missing-model'" in result["message"] and "QA_READER_MODEL" in result["message"]
    assert "never downloads" in result["message"]


_CLI = _GUARD + r"""
from qa.cli import app
app(sys.argv[1:], prog_name="qa")
"""


@pytest.mark.slow
def test_qa_ask_with_a_missing_model_names_the_variable_without_a_traceback(seeds_copy: tuple[Path, Path]) -> None:
    corpus, index_dir = seeds_copy
    env = _offline_env(QA_READER_MODEL="some/missing-model")
    done, attempts = _run(["-c", _CLI, "ask", "Who interviewed Zelensky?", "--corpus-dir", str(corpus),
                           "--index-dir", str(index_dir)], env)
    assert attempts == []
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "QA_READER_MODEL" in done.stderr and "some/missing-model" in done.stderr


def test_resolving_a_missing_model_makes_no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process and fast: sockets that raise on any non-loopback use; resolving must not try."""
    from qa import models

    tried: list[str] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        if self.family != socket.AF_UNIX and str(address[0]) not in ("127.0.0.1", "::1", "localhost"):
            tried.append(str(address))
            raise ConnectionRefusedError("network blocked by the test")
        return real_connect(self, address)

    def create_connection(address: tuple, *args: object, **kwargs: object) -> socket.socket:
        tried.append(str(address))
        raise ConnectionRefusedError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    with pytest.raises(models.ModelNotAvailableError) as info:
        models.resolve_local_model("some/missing-model", "reader model", "QA_READER_MODEL")
    assert tried == []
    assert str(info.value).startswith("reader model 'some/missing-model' is not available on this machine")
    assert "set QA_READER_MODEL to its path, or unset QA_READER_MODEL" in str(info.value)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by qa.models on import


def test_the_guard_catches_a_download_attempt() -> None:
    """The audit hook above is not vacuous: a plain download attempt is recorded and refused."""
    probe = _GUARD + "import urllib.request\ntry:\n    urllib.request.urlopen('http://example.com/', timeout=5)\n" \
                     "except Exception as exc:\n    print('RESULT ' + json.dumps({'ok': False, 'type': type(exc).__name__}))\n"
    done, attempts = _run(["-c", probe], _offline_env())
    assert attempts and attempts[0] == "urllib http://example.com/", attempts
    assert _result(done) == {"ok": False, "type": "URLError"}


#: Runs inside the namespace: starts the guarded app.py, asks /ask over loopback as a browser
#: would, stops the app with SIGTERM and prints what happened (the app's log included).
_WEB_DRIVER = r"""
import json, signal, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from app_process import free_port
from robust_support import ask_raw

root, corpus, index, guard = sys.argv[2:6]
port = free_port()
app = subprocess.Popen([sys.executable, "-c", guard + "\nimport runpy\nsys.argv = ['app.py'] + sys.argv[1:]\n"
                        "runpy.run_path('app.py', run_name='__main__')", "--port", str(port),
                        "--corpus-dir", corpus, "--index-dir", index],
                       cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
result = {}
try:
    deadline = time.monotonic() + 300  # a hang guard: loading the models and the first index
    while time.monotonic() < deadline and app.poll() is None:
        try:
            result["answer"] = ask_raw(f"http://127.0.0.1:{port}", "Who interviewed Zelensky?", timeout=300)
            break
        except OSError:
            time.sleep(0.5)
finally:
    if app.poll() is None:
        app.send_signal(signal.SIGTERM)
    result["log"] = app.communicate(timeout=300)[0]
    result["status"] = app.returncode
print("RESULT " + json.dumps(result))
"""


@pytest.mark.slow
def test_the_web_chat_answers_with_the_network_gone(seeds_copy: tuple[Path, Path]) -> None:
    """app.py in a network namespace with only loopback (no route out), every non-loopback
    connection refused and recorded besides: the chat starts, answers over loopback, and
    stops with SIGTERM, having tried no connection out."""
    corpus, index_dir = seeds_copy
    prefix = _loopback_only_prefix()
    env = _offline_env(GRADIO_ANALYTICS_ENABLED="False")
    done = subprocess.run([*prefix, sys.executable, "-c", _WEB_DRIVER, str(Path(__file__).parent), str(ROOT),
                           str(corpus), str(index_dir), _GUARD], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=700)
    result = _result(done)
    log = result["log"]
    line = next((ln for ln in log.splitlines() if ln.startswith("NETWORK ATTEMPTS ")), None)
    assert line is not None, f"the audit hook did not report:\n{log[-3000:]}"
    attempts = json.loads(line.removeprefix("NETWORK ATTEMPTS "))
    record("no-network", case="web chat", isolated=bool(prefix), attempts=len(attempts))
    assert attempts == [], attempts
    assert "answer" in result, log[-3000:]
    assert result["answer"]["text"] in accepted_answers("Who interviewed Zelensky?"), result["answer"]
    assert result["answer"]["source"] == f"seeds/{SEED_FILE}"
    assert result["status"] == 0 and "stopped on SIGTERM" in log, log[-3000:]

