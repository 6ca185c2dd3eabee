"""One notebook, one session, in every frontend: each started the way that frontend starts it.

- jupyter_server (JupyterLab, Notebook 7): ``JPY_SESSION_NAME`` plus the same name
  as ``jupyter_session`` in the connection file it writes; a rename through its
  REST API followed by a restart keeps the session.
- VS Code: no session name in the environment; its start-up execution sets
  ``__vsc_ipynb_file__``. Two notebooks in one folder never share a session.
- nbclient (``jupyter execute``, papermill) started from inside a notebook or a
  terminal that has ``JPY_SESSION_NAME``: a fresh session for the run, never the
  parent's; ``PERSISTENT_KERNEL_NOTEBOOK`` names a notebook on purpose.
- Voila: never restores unless a session is named explicitly.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from persistent_kernel import DISPLAY_NAME, KERNEL_NAME
from persistent_kernel.driver import KernelDriver
from persistent_kernel.identity import (
    FROM_JUPYTER_SERVER,
    FROM_RUN,
    FROM_VSCODE,
    at_start,
    from_first_execution,
    vscode_notebook,
)
from persistent_kernel.session import notebook_session

from .e2e_helpers import free_port, jupyter_env, require_modules, wait_until
from .kernels import kernel_env, kill_and_start, run

pytestmark = [pytest.mark.slow, pytest.mark.sessions]


def vscode_startup(notebook: Path) -> str:
    """What VS Code's Jupyter extension runs in a Python kernel before any cell (its escaping included)."""
    escaped = str(notebook).replace("\\", "\\\\")
    return textwrap.dedent(
        f"""\
        try:
            import os as __VSCODE_os
            __VSCODE_os.chdir("{str(notebook.parent).replace(chr(92), chr(92) * 2)}")
            del __VSCODE_os
        except Exception:
            pass
        __vsc_ipynb_file__ = "{escaped}"
        get_ipython().run_line_magic('config', 'Completer.use_jedi = False')
        try:
            import matplotlib_inline.backend_inline
        except Exception:
            pass
        """
    )


def sessions(home: Path) -> list[str]:
    root = home / "sessions"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


@pytest.fixture
def start(kernel: Callable[..., KernelDriver]) -> Callable[[dict[str, str], Path], KernelDriver]:
    """A kernel with exactly this environment, in this directory (as a frontend would start it)."""
    return lambda env, cwd: kernel(env=env, cwd=cwd)


# -- the rules, without a kernel ------------------------------------------------------------


def test_jupyter_server_name_counts_only_when_the_connection_file_carries_it(tmp_path: Path) -> None:
    own = tmp_path / "kernel-own.json"
    own.write_text(json.dumps({"jupyter_session": "/w/a.ipynb", "key": "k"}))
    inherited = tmp_path / "kernel-child.json"
    inherited.write_text(json.dumps({"key": "k"}))
    env = {"PERSISTENT_KERNEL_HOME": str(tmp_path), "JPY_SESSION_NAME": "/w/a.ipynb"}
    mine = at_start(env, str(own)).session
    assert mine is not None and mine.notebook_path == "/w/a.ipynb" and mine.origin == FROM_JUPYTER_SERVER
    assert at_start(env, str(inherited)).session is None  # a child kernel: wait for its first execution
    assert at_start(env, str(tmp_path / "missing.json")).session is None
    explicit = at_start({**env, "PERSISTENT_KERNEL_SESSION": "mine"}, str(own)).session
    assert explicit is not None and explicit.id == "mine"


def test_voila_never_restores_unless_named(tmp_path: Path) -> None:
    for voila in ({"SERVER_SOFTWARE": "voila/0.5.13"}, {"VOILA_PREHEAT": "True"}, {"VOILA_BASE_URL": "/"}):
        decided = at_start({"PERSISTENT_KERNEL_HOME": str(tmp_path), "JPY_SESSION_NAME": "/w/a.ipynb", **voila}, None)
        assert decided.session is None and "Voila" in (decided.off or "")
    named = at_start({"PERSISTENT_KERNEL_HOME": str(tmp_path), "PERSISTENT_KERNEL_SESSION": "board", "SERVER_SOFTWARE": "voila/0.5"}, None)
    assert named.session is not None and named.off is None


@pytest.mark.parametrize(
    "code, expected",
    [
        (vscode_startup(Path("/home/u/work/a.ipynb")), "/home/u/work/a.ipynb"),
        ('__vsc_ipynb_file__ = "C:\\\\Users\\\\u\\\\a.ipynb"\n', "C:\\Users\\u\\a.ipynb"),
        ("__vsc_ipynb_file__ = '/p/it''s.ipynb'", None),  # not one literal: not VS Code's
        ("__vsc_ipynb_file__ = r'/p/x y.ipynb'  # set by hand", "/p/x y.ipynb"),
        ("x = __vsc_ipynb_file__", None),
        ("if True:\n    __vsc_ipynb_file__ = '/p/a.ipynb'", None),  # indented: not a start-up block
        ("print('__vsc_ipynb_file__ = \"/p/a.ipynb\"')", None),
    ],
)
def test_vscode_notebook_is_read_from_its_startup_block(code: str, expected: str | None) -> None:
    assert vscode_notebook(code) == expected


def test_first_execution_decides_for_a_kernel_that_knew_nothing(tmp_path: Path) -> None:
    env = {"PERSISTENT_KERNEL_HOME": str(tmp_path)}
    vs = from_first_execution(vscode_startup(tmp_path / "a.ipynb"), True, env, cwd="/elsewhere")
    assert vs.notebook_path == str(tmp_path / "a.ipynb") and vs.origin == FROM_VSCODE
    assert vs.id == notebook_session(tmp_path / "a.ipynb")[0]  # the same session JupyterLab gives that file
    headless = from_first_execution("x = 1", False, env, cwd=str(tmp_path))
    assert headless.source == "run" and headless.id.startswith("run-") and headless.origin == FROM_RUN
    console = from_first_execution("x = 1", True, env, cwd=str(tmp_path))
    assert console.source == "cwd" and console.name == str(tmp_path)
    # JPY_SESSION_NAME the connection file did not confirm (a jupyter_client before 8.3 wrote it):
    # a frontend that can answer input() is the notebook's; a headless child is not.
    inherited = {**env, "JPY_SESSION_NAME": "/w/parent.ipynb"}
    assert from_first_execution("x = 1", True, inherited, cwd="/w").notebook_path == "/w/parent.ipynb"
    assert from_first_execution("x = 1", False, inherited, cwd="/w").source == "run"


# -- real kernels, started as each frontend starts them --------------------------------------


def test_jupyter_server_kernel_is_its_notebook_and_says_so(start: Callable[[dict[str, str], Path], KernelDriver], tmp_path: Path) -> None:
    home, notebook = tmp_path / "pk", tmp_path / "work" / "analysis.ipynb"
    notebook.parent.mkdir()
    # The driver passes env to jupyter_client, which writes JPY_SESSION_NAME into the
    # connection file as jupyter_session: what jupyter_server does for a notebook.
    k = start(kernel_env(home, JPY_SESSION_NAME=str(notebook)), notebook.parent)
    run(k, "rows = [1, 2, 3]")
    kill_and_start(k)
    first = k.execute("sum(rows)")
    assert first.result == "6" and "Restored session 'analysis.ipynb'" in first.notice
    status = k.execute("%persist status").text
    assert f"Identified by:   {FROM_JUPYTER_SERVER}" in status and str(notebook) in status


def test_restore_summary_is_a_notice_not_an_error(start: Callable[[dict[str, str], Path], KernelDriver], tmp_path: Path) -> None:
    k = start(kernel_env(tmp_path / "pk", PERSISTENT_KERNEL_SESSION="notice"), tmp_path)
    run(k, "a = 1")
    run(k, "import math\nb = math.sqrt(16)")
    kill_and_start(k)
    first = k.execute("a + b")
    assert first.result == "5.0"
    assert first.stderr == ""  # not on stderr: JupyterLab draws stderr as an error
    assert first.notice.startswith("Restored session 'notice': loaded 2 variables") and "\n" not in first.notice
    assert 'class="persistent-kernel-notice"' in first.notice_html and "Restored session 'notice'" in first.notice_html
    assert first.displays == []  # the cell's own displays stay the cell's
    assert k.execute("a").notice == ""  # once


def test_vscode_notebooks_in_one_folder_never_share_a_session(start: Callable[[dict[str, str], Path], KernelDriver], tmp_path: Path) -> None:
    home, folder = tmp_path / "pk", tmp_path / "project"
    folder.mkdir()
    a, b = folder / "a.ipynb", folder / "b.ipynb"
    env = kernel_env(home)  # VS Code sets no session name; its kernels start in the notebook's folder
    ka = start(env, folder)
    ka.kc.kernel_info(reply=True, timeout=30)  # what a frontend sends before it names nothing
    ka.kc.complete("impor", 5, reply=True, timeout=30)
    assert sessions(home) == []  # nothing of any session touched before the first execution
    assert run(ka, vscode_startup(a), store_history=False).notice == ""  # a new session: nothing to restore
    run(ka, "x = 'from a'")
    kill_and_start(ka)
    assert sessions(home) == [notebook_session(a)[0]]
    run(ka, vscode_startup(a), store_history=False)
    first = ka.execute("x")
    assert first.result == "'from a'" and "Restored session 'a.ipynb'" in first.notice
    assert f"Identified by:   {FROM_VSCODE}" in ka.execute("%persist status").text

    kb = start(env, folder)
    run(kb, vscode_startup(b), store_history=False)
    assert kb.execute("'x' in dir()").result == "False"
    assert sorted(sessions(home)) == sorted([notebook_session(a)[0], notebook_session(b)[0]])
    listed = subprocess.run([sys.executable, "-m", "persistent_kernel", "sessions"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "IDENTIFIED BY" in listed.stdout, listed.stderr
    assert [line for line in listed.stdout.splitlines() if str(a) in line and "VS Code" in line], listed.stdout
    shown = subprocess.run([sys.executable, "-m", "persistent_kernel", "show", notebook_session(b)[0]], env=env, capture_output=True, text=True, timeout=60)
    assert "Identified by:" in shown.stdout and FROM_VSCODE in shown.stdout, shown.stdout


def test_vscode_restore_comes_before_the_first_execution_runs(start: Callable[[dict[str, str], Path], KernelDriver], tmp_path: Path) -> None:
    """The first execution is run on the restored namespace (it may use it), and is journaled after it."""
    home, nb = tmp_path / "pk", tmp_path / "n.ipynb"
    k = start(kernel_env(home), tmp_path)
    run(k, vscode_startup(nb) + "counter = globals().get('counter', 0) + 1\n", store_history=False)
    kill_and_start(k)
    again = run(k, vscode_startup(nb) + "counter = globals().get('counter', 0) + 1\n", store_history=False)
    assert again.notice == ""  # VS Code shows nothing of its own executions: the notice waits for a cell
    assert k.evaluate("counter") == "2"
    assert "Restored session 'n.ipynb'" in k.execute("counter").notice


def test_nbclient_child_of_a_notebook_kernel_gets_a_fresh_session(start: Callable[[dict[str, str], Path], KernelDriver], tmp_path: Path) -> None:
    home, notebook = tmp_path / "pk", tmp_path / "parent.ipynb"
    parent = start(kernel_env(home, JPY_SESSION_NAME=str(notebook)), tmp_path)
    run(parent, "x = 'parent'")
    # papermill and `jupyter execute` run notebooks through nbclient, which starts the
    # kernel with jupyter_client without an env: the child inherits JPY_SESSION_NAME.
    child = run(
        parent,
        f"""
        import nbformat
        from nbclient import NotebookClient
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in ("print('x' in dir())", "y = 2", "%persist status")])
        nb.metadata.kernelspec = {{"name": "{KERNEL_NAME}", "display_name": "{DISPLAY_NAME}", "language": "python"}}
        NotebookClient(nb, kernel_name="{KERNEL_NAME}", timeout=120).execute()
        print(nb.cells[0].outputs[0].text.strip())
        print(nb.cells[2].outputs[0].data["text/plain"])
        """,
        timeout=180,
    ).stdout
    assert child.splitlines()[0] == "False", child
    assert f"Identified by:   {FROM_RUN}" in child and "Persistence:     on" in child, child
    assert [s for s in sessions(home) if s.startswith("run-")], sessions(home)
    # The parent's session is the parent's alone: still on, and it restores.
    assert "Persistence:     on" in parent.execute("%persist status").text
    kill_and_start(parent)
    assert parent.execute("x").result == "'parent'" and parent.execute("'y' in dir()").result == "False"


def test_jupyter_execute_in_a_notebook_terminal_and_a_named_notebook(start: Callable[[dict[str, str], Path], KernelDriver], tmp_path: Path) -> None:
    """`jupyter execute` (nbclient's command) where JPY_SESSION_NAME is set: a run of its own;
    with PERSISTENT_KERNEL_NOTEBOOK the run belongs to that notebook, and JupyterLab's kernel on it restores it."""
    home, other, target = tmp_path / "pk", tmp_path / "open-in-lab.ipynb", tmp_path / "pipeline.ipynb"
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("result = 6 * 7")])
    nb.metadata.kernelspec = {"name": KERNEL_NAME, "display_name": DISPLAY_NAME, "language": "python"}
    nbformat.write(nb, target)
    jupyter = [sys.executable, "-m", "jupyter", "execute", "--kernel_name", KERNEL_NAME, str(target)]
    done = subprocess.run(jupyter, env=kernel_env(home, JPY_SESSION_NAME=str(other)), cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert notebook_session(other)[0] not in sessions(home) and any(s.startswith("run-") for s in sessions(home))

    done = subprocess.run(jupyter, env=kernel_env(home, PERSISTENT_KERNEL_NOTEBOOK=target.name), cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    lab = start(kernel_env(home, JPY_SESSION_NAME=str(target)), tmp_path)
    first = lab.execute("result")
    assert first.result == "42" and "Restored session 'pipeline.ipynb'" in first.notice


def test_voila_dashboard_does_not_restore(start: Callable[[dict[str, str], Path], KernelDriver], tmp_path: Path) -> None:
    home = tmp_path / "pk"
    # What Voila's handler puts in the kernel's environment (voila/handler.py), over the server's own.
    voila = {"SERVER_SOFTWARE": "voila/0.5.13", "VOILA_PREHEAT": "False", "VOILA_BASE_URL": "/", "JPY_SESSION_NAME": str(tmp_path / "dash.ipynb")}
    k = start(kernel_env(home, **voila), tmp_path)
    run(k, "visitor = 'first'")
    assert "Voila dashboard" in k.execute("%persist status").text
    kill_and_start(k)
    first = k.execute("'visitor' in dir()")
    assert first.result == "False" and first.notice == "" and first.stderr == ""
    assert sessions(home) == []
    named = start(kernel_env(home, PERSISTENT_KERNEL_SESSION="board", **voila), tmp_path)
    run(named, "visitor = 'kept'")
    kill_and_start(named)
    assert named.execute("visitor").result == "'kept'"


# -- jupyter_server's REST API: a rename, then a restart ------------------------------------


class Server:
    def __init__(self, url: str, token: str, runtime_dir: Path) -> None:
        self.url, self.token, self.runtime_dir = url, token, runtime_dir

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method, headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read()
        return json.loads(text) if text else None

    def client(self, kernel_id: str) -> KernelDriver:
        return KernelDriver().connect_to(str(self.runtime_dir / f"kernel-{kernel_id}.json"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, Path, Path]]:
    require_modules("jupyter_server")
    env = jupyter_env(tmp_path)
    root = tmp_path / "notebooks"
    root.mkdir()
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    instance = Server(f"http://127.0.0.1:{port}", token, Path(env["JUPYTER_RUNTIME_DIR"]))

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter server exited:\n{log.read_text()}")
        try:
            return "started" in instance.api("GET", "/api/status")
        except OSError:
            return False

    try:
        wait_until(ready, 120, "jupyter server to answer", interval=0.5)
        yield instance, root, Path(env["PERSISTENT_KERNEL_HOME"])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def new_session(server: Server, path: str) -> dict[str, Any]:
    # What JupyterLab and Notebook 7 send when a notebook is opened.
    return server.api("POST", "/api/sessions", {"path": path, "name": path, "type": "notebook", "kernel": {"name": KERNEL_NAME}})


def test_renamed_notebook_keeps_its_session_through_restarts(server: tuple[Server, Path, Path]) -> None:
    srv, root, home = server
    for name in ("a.ipynb", "b.ipynb", "c.ipynb"):
        (root / name).write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    opened = new_session(srv, "a.ipynb")
    kernel_id = opened["kernel"]["id"]
    k = srv.client(kernel_id)
    try:
        run(k, "x = 'kept'")
        assert "Identified by:   jupyter_server" in k.execute("%persist status").text
        # JupyterLab's Rename: the file, then the session (jupyter_server updates the kernel's
        # JPY_SESSION_NAME for its next start); then Restart Kernel.
        srv.api("PATCH", "/api/contents/a.ipynb", {"path": "renamed.ipynb"})
        srv.api("PATCH", f"/api/sessions/{opened['id']}", {"path": "renamed.ipynb", "name": "renamed.ipynb"})
        srv.api("POST", f"/api/kernels/{kernel_id}/restart")
        k.connect_to(str(srv.runtime_dir / f"kernel-{kernel_id}.json"))
        first = k.execute("x")
        assert first.result == "'kept'", (first, sessions(home))
        assert "Restored session 'renamed.ipynb'" in first.notice and "was renamed" in first.notice
        assert str(root / "renamed.ipynb") in k.execute("%persist status").text
        # Renamed back: the session follows again.
        srv.api("PATCH", "/api/contents/renamed.ipynb", {"path": "a.ipynb"})
        srv.api("PATCH", f"/api/sessions/{opened['id']}", {"path": "a.ipynb", "name": "a.ipynb"})
        srv.api("POST", f"/api/kernels/{kernel_id}/restart")
        k.connect_to(str(srv.runtime_dir / f"kernel-{kernel_id}.json"))
        assert k.execute("x").result == "'kept'"
        assert sessions(home) == [notebook_session(root / "a.ipynb")[0]]
    finally:
        k.disconnect()
    srv.api("DELETE", f"/api/sessions/{opened['id']}")
    # Another notebook opened meanwhile has its own session; reopening a.ipynb finds x.
    for path, expression, expected in (("b.ipynb", "'x' in dir()", "False"), ("a.ipynb", "x", "'kept'")):
        client = srv.client(new_session(srv, path)["kernel"]["id"])
        try:
            assert client.execute(expression).result == expected, path
        finally:
            client.disconnect()
