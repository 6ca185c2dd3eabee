"""JupyterLab and Notebook 7 served for the end-to-end tests, and the chromium page that drives them.

``lab`` and ``notebook7`` start a real ``jupyter lab`` / ``jupyter notebook`` on a temp root,
offline (no news, no update check, read-only extension manager, the announcements plugin
disabled); ``shared_lab`` is one whose kernels all name one session. ``page`` is Debian's
chromium through playwright (never a downloaded browser) on whichever of them the test asked
for. The fixtures are registered in conftest.py. PK_CHROMIUM names another chromium binary.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from .e2e_helpers import (
    DISPLAY_NAME,
    KERNEL_NAME,
    copy_artifact,
    free_port,
    jupyter_env,
    kill_all_with_arg,
    pids_with_arg,
    require,
    require_modules,
    wait_until,
)

CHROMIUM = os.environ.get("PK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOTEBOOK = "poker.ipynb"
STATE_CELL = (
    "deck = list(range(52)); hands = {'ada': deck[:2]}; show = lambda who: hands[who]"
)
CHECK_CELL = "show('ada'), len(deck)"
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
NOTICE = ".jp-OutputArea-output .persistent-kernel-notice"


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    runtime_dir: Path
    log: Path
    env: dict[str, str]

    def api(self, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def kernel_count(self) -> int | None:
        """How many kernels the server runs; None when it answered with a server error (jupyter_server
        can fail a listing while a kernel is being started; the log keeps the traceback)."""
        try:
            return len(self.api("/api/kernels"))
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                raise
            print(f"GET /api/kernels answered {exc.code}; asking again (see the server log)")
            return None

    def kernel_pids(self, kernel_id: str) -> list[int]:
        """The live kernel process(es) jupyter_server started for ``kernel_id``."""
        return pids_with_arg(str(self.runtime_dir / f"kernel-{kernel_id}.json"))


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return (
        parts.scheme not in ("http", "https", "ws", "wss")
        or parts.hostname == "127.0.0.1"
    )


def write_notebook(path: Path, kernel_name: str = KERNEL_NAME, display_name: str = DISPLAY_NAME) -> None:
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "first",
                "metadata": {},
                "outputs": [],
                "source": [],
            }
        ],
        "metadata": {
            "kernelspec": {
                "display_name": display_name,
                "language": "python",
                "name": kernel_name,
            },
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook, indent=1))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from serve(tmp_path, "lab")


@pytest.fixture
def notebook7(tmp_path: Path) -> Iterator[Lab]:
    yield from serve(tmp_path, "notebook")


def serve(tmp_path: Path, app: str, **extra_env: str) -> Iterator[Lab]:
    """``jupyter lab`` or ``jupyter notebook`` (Notebook 7) on a temp root, offline."""
    require_modules("jupyterlab", "jupyter_server", "playwright", *(["notebook"] if app == "notebook" else []))
    require(Path(CHROMIUM).exists(), f"chromium ({CHROMIUM})")
    env = jupyter_env(tmp_path, **extra_env)
    root = tmp_path / "notebooks"
    root.mkdir()
    write_notebook(root / NOTEBOOK)
    # The frontend's "get notified about official Jupyter news?" plugin, off.
    labconfig = Path(env["JUPYTER_CONFIG_DIR"]) / "labconfig"
    labconfig.mkdir()
    (labconfig / "page_config.json").write_text(
        json.dumps(
            {
                "disabledExtensions": {
                    "@jupyterlab/apputils-extension:announcements": True
                }
            }
        )
    )
    port, token = free_port(), secrets.token_hex(16)
    command = [
        sys.executable,
        "-m",
        "jupyter",
        app,
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        # No search for language servers (it runs npm, which writes logs to $HOME).
        "--LanguageServerManager.autodetect=False",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = tmp_path / "jupyterlab-server.log"
    runtime_dir = Path(env["JUPYTER_RUNTIME_DIR"])
    with open(log, "wb") as out:
        server = subprocess.Popen(
            command,
            env=env,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        instance = Lab(f"http://127.0.0.1:{port}", token, root, runtime_dir, log, env)

        def ready() -> bool:
            if server.poll() is not None:
                raise RuntimeError(
                    f"jupyter {app} exited ({server.returncode}):\n{log.read_text()}"
                )
            try:
                return "started" in instance.api("/api/status")
            except OSError:
                return False

        wait_until(ready, 120, f"jupyter {app} to answer /api/status", interval=0.5)
        yield instance
    finally:
        # SIGTERM: the server shuts its kernels down; then whatever is left, by force.
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(10)
        kill_all_with_arg(str(runtime_dir))
        # One log per test (its tmp directory's name): a later test's server must not write over
        # the log of one that failed.
        copy_artifact(log, f"{tmp_path.name}-jupyter{app}-server.log")


@pytest.fixture
def page(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A chromium page for the test's server (``lab`` or ``notebook7``, whichever it asked for)."""
    from playwright.sync_api import sync_playwright

    lab = request.getfixturevalue(next((name for name in ("notebook7", "shared_lab") if name in request.fixturenames), "lab"))

    profile = tmp_path / "chromium-profile"
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(profile),
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 800},
                device_scale_factor=2,  # sharp screenshots for the README
                env=lab.env,  # HOME and XDG dirs in the test's temp dir
            )
            try:
                yield context.pages[0] if context.pages else context.new_page()
            finally:
                context.close()
    finally:
        kill_all_with_arg(str(profile))


class NotebookUI:
    """The open notebook, as a user works it: click a cell, type, Shift+Enter."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.panel = page.locator(".jp-NotebookPanel")

    def dismiss_dialogs(self) -> list[str]:
        texts = []
        dialogs = self.page.locator(".jp-Dialog")
        while dialogs.count():
            texts.append(dialogs.first.inner_text())
            dialogs.first.locator(".jp-Dialog-button.jp-mod-accept").click()
            self.page.wait_for_timeout(200)
        return texts

    def run_cell(self, code: str, timeout: float = 120) -> Any:
        """Type ``code`` into the last (empty) cell and run it; returns the cell once it has run."""
        self.dismiss_dialogs()
        cells = self.panel.locator(".jp-Notebook .jp-Cell")
        # A locator is a query, not an element: pin the index, since running the
        # last cell appends a new one.
        cell = cells.nth(cells.count() - 1)
        editor = cell.locator(".cm-content")
        editor.click()
        self.page.keyboard.type(code)
        try:
            wait_until(
                lambda: editor.inner_text() == code, 10, "the editor to show the code"
            )
        except TimeoutError:
            pytest.fail(
                f"the editor holds {editor.inner_text()!r} after typing {code!r}"
            )
        self.page.keyboard.press("Shift+Enter")
        prompt = cell.locator(".jp-InputPrompt")
        wait_until(
            lambda: re.fullmatch(r"\[\d+\]:", prompt.inner_text().strip()),
            timeout,
            f"cell {code!r} to finish (prompt {prompt.inner_text().strip()!r})",
        )
        return cell

    @staticmethod
    def output(cell: Any) -> str:
        return cell.locator(".jp-OutputArea").inner_text()

    @staticmethod
    def notice(cell: Any) -> str:
        """The restore notice's text, rendered from its HTML ('' when there is none)."""
        found = cell.locator(NOTICE)
        return found.first.inner_text() if found.count() else ""

    @staticmethod
    def stderr(cell: Any) -> str:
        return "\n".join(cell.locator(STDERR).all_inner_texts())

    def screenshot(self, path: Path, top: Any, bottom: Any) -> None:
        """The notebook's width, from ``top``'s upper edge to ``bottom``'s lower edge."""
        panel, upper, lower = (x.bounding_box() for x in (self.panel, top, bottom))
        y = max(upper["y"] - 6, panel["y"])
        height = min(lower["y"] + lower["height"] + 2, panel["y"] + panel["height"]) - y
        clip = {"x": panel["x"], "y": y, "width": panel["width"], "height": height}
        self.page.screenshot(path=path, clip=clip)


@pytest.fixture
def shared_lab(tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab whose kernels all name one session (as PERSISTENT_KERNEL_SESSION says)."""
    yield from serve(tmp_path, "lab", PERSISTENT_KERNEL_SESSION="shared")
