"""JupyterLab end to end: a notebook on Python 3 (persistent), its kernel killed with
SIGKILL, JupyterLab's automatic restart, and the state back on the page.

The kernel's pid is read from a cell (``os.getpid()``) and checked against the
process jupyter_server started with that kernel's connection file (the kernel id
from /api/kernels). After the SIGKILL, the restart is a new process for the same
kernel id, "restarting kernel" in the server's log, and JupyterLab's "appears to
have died" dialog (dismissed). JupyterLab 4.6 shows the kernel as "Unknown" after
an automatic restart (the stock ipykernel too) until a cell runs, so the first cell
is typed without waiting for "Idle"; it must be back to "Idle" after that cell.

A real ``jupyter lab`` (no network: no news, no update check, read-only extension
manager, the announcements plugin disabled) is driven by Debian's chromium through
playwright — never a downloaded browser. Screenshots go to $PK_E2E_ARTIFACTS
(default ``.e2e-artifacts/``); with PK_E2E_UPDATE_DOCS=1 the two shown in the README
are also copied to docs/img/. PK_CHROMIUM names another chromium binary.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from .e2e_helpers import (  # noqa: F401 - timed_e2e is an autouse fixture
    DISPLAY_NAME,
    KERNEL_NAME,
    REPO,
    SUMMARY,
    artifacts_dir,
    copy_artifact,
    free_port,
    jupyter_env,
    kill_9,
    kill_all_with_arg,
    pids_with_arg,
    require,
    require_modules,
    timed_e2e,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

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

    def kernel_pids(self, kernel_id: str) -> list[int]:
        """The live kernel process(es) jupyter_server started for ``kernel_id``."""
        return pids_with_arg(str(self.runtime_dir / f"kernel-{kernel_id}.json"))


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return (
        parts.scheme not in ("http", "https", "ws", "wss")
        or parts.hostname == "127.0.0.1"
    )


def write_notebook(path: Path) -> None:
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
                "display_name": DISPLAY_NAME,
                "language": "python",
                "name": KERNEL_NAME,
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


def serve(tmp_path: Path, app: str) -> Iterator[Lab]:
    """``jupyter lab`` or ``jupyter notebook`` (Notebook 7) on a temp root, offline."""
    require_modules("jupyterlab", "jupyter_server", "playwright", *(["notebook"] if app == "notebook" else []))
    require(Path(CHROMIUM).exists(), f"chromium ({CHROMIUM})")
    env = jupyter_env(tmp_path)
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
        copy_artifact(log, f"jupyter{app}-server.log")


@pytest.fixture
def page(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A chromium page for the test's server (``lab`` or ``notebook7``, whichever it asked for)."""
    from playwright.sync_api import sync_playwright

    lab = request.getfixturevalue("notebook7" if "notebook7" in request.fixturenames else "lab")

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


def test_kill_9_in_jupyterlab_restores_the_notebook(lab: Lab, page: Any) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    art = artifacts_dir()
    for stale in art.glob("jupyterlab-*.png"):
        stale.unlink()
    external: list[str] = []
    for event in ("request", "websocket"):
        page.on(event, lambda r: None if is_local(r.url) else external.append(r.url))
    page.set_default_timeout(60_000)
    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?reset&token={lab.token}")
    ui = NotebookUI(page)
    try:
        expect(page.locator(".jp-StatusBar-Widget")).to_contain_text(
            f"{DISPLAY_NAME} | Idle", timeout=120_000
        )
        # More room for the notebook: collapse the file browser.
        page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").click()

        first = ui.run_cell(STATE_CELL)
        assert "Error" not in ui.output(first)
        pid_cell = ui.run_cell("import os; os.getpid()")
        pid = int(re.search(r"(\d+)\s*$", ui.output(pid_cell)).group(1))

        # The pid the page shows is the process jupyter_server started for this notebook's kernel.
        (kernel,) = lab.api("/api/kernels")
        assert kernel["name"] == KERNEL_NAME
        assert lab.kernel_pids(kernel["id"]) == [pid]
        (session,) = lab.api("/api/sessions")
        assert session["path"] == NOTEBOOK and session["kernel"]["id"] == kernel["id"]

        kill_9(pid)

        # jupyter_server's restarter starts a new process for the same kernel id (and
        # the same notebook session); JupyterLab 4.6 says "The kernel for poker.ipynb
        # appears to have died. It will restart automatically." in a dialog.
        new_pids = wait_until(
            lambda: [p for p in lab.kernel_pids(kernel["id"]) if p != pid],
            90,
            "jupyter_server to restart the kernel",
        )
        assert re.search(r"restarting kernel", lab.log.read_text()), lab.log.read_text()
        died = page.locator(".jp-Dialog", has_text="appears to have died")
        with contextlib.suppress(PlaywrightTimeout):
            died.wait_for(state="visible", timeout=15_000)
            page.screenshot(path=art / "jupyterlab-kernel-died.png")
        ui.dismiss_dialogs()

        check = ui.run_cell(CHECK_CELL)
        out, err = ui.output(check), ui.stderr(check)
        assert "([0, 1], 52)" in out, out
        # The summary is information, drawn as HTML above the result, never a red stderr box.
        notice = ui.notice(check)
        summary = SUMMARY.search(notice)
        assert summary, f"no restore notice on the page; output: {out!r}"
        assert summary.group(1) == NOTEBOOK and int(summary.group(2)) >= 3, notice
        assert "Restored session" not in err, err
        # The execution count continues where the killed kernel left off.
        assert check.locator(".jp-InputPrompt").inner_text().strip() == "[3]:"
        assert lab.kernel_pids(kernel["id"]) == new_pids
        expect(page.locator(".jp-StatusBar-Widget")).to_contain_text(
            f"{DISPLAY_NAME} | Idle"
        )
        ui.screenshot(art / "jupyterlab-restore.png", ui.panel, check)

        history = ui.run_cell("%persist history")
        text = ui.output(history)
        assert "deck = list(range(52))" in text and CHECK_CELL in text, text
        history.scroll_into_view_if_needed()
        ui.screenshot(art / "jupyterlab-history.png", history, history)
        assert not external, f"the page contacted other hosts: {external}"
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=art / "jupyterlab-failure.png")
        raise

    if os.environ.get("PK_E2E_UPDATE_DOCS"):
        (REPO / "docs" / "img").mkdir(parents=True, exist_ok=True)
        for name in ("jupyterlab-restore.png", "jupyterlab-history.png"):
            shutil.copyfile(art / name, REPO / "docs" / "img" / name)


def menu(page: Any, top: str, item: str) -> None:
    """Open a menu of the menu bar and click one of its items (its exact label)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
    page.locator(".lm-Menu .lm-Menu-itemLabel").get_by_text(item, exact=True).click()


def test_rename_then_restart_in_jupyterlab_keeps_the_session(lab: Lab, page: Any) -> None:
    """File > Rename Notebook…, then Kernel > Restart Kernel…: the variables follow the notebook."""
    from playwright.sync_api import expect

    page.set_default_timeout(60_000)
    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?reset&token={lab.token}")
    ui = NotebookUI(page)
    try:
        expect(page.locator(".jp-StatusBar-Widget")).to_contain_text(f"{DISPLAY_NAME} | Idle", timeout=120_000)
        ui.run_cell("kept = {'deck': list(range(5))}")
        (kernel,) = lab.api("/api/kernels")
        (before,) = lab.kernel_pids(kernel["id"])

        menu(page, "File", "Rename Notebook…")
        dialog = page.locator(".jp-Dialog")
        dialog.locator("input").fill("renamed.ipynb")
        dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
        wait_until(lambda: lab.api("/api/sessions")[0]["path"] == "renamed.ipynb", 30, "the session to follow the rename")

        menu(page, "Kernel", "Restart Kernel…")
        ui.dismiss_dialogs()  # "Restart Kernel?" - Restart
        wait_until(lambda: [p for p in lab.kernel_pids(kernel["id"]) if p != before], 60, "the kernel to restart")
        check = ui.run_cell("kept['deck'][-1]")
        assert re.search(r"\b4\s*$", ui.output(check)), ui.output(check)
        notice = ui.notice(check)
        assert "Restored session 'renamed.ipynb'" in notice and "renamed" in notice, notice
        assert (lab.root / "renamed.ipynb").exists() and not (lab.root / NOTEBOOK).exists()
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=artifacts_dir() / "jupyterlab-rename-failure.png")
        raise


def test_kill_9_in_notebook7_restores_the_notebook(notebook7: Lab, page: Any) -> None:
    """Notebook 7 (``jupyter notebook``): the kernel chosen in the notebook, a kill, the notice, the state."""
    from playwright.sync_api import expect

    server = notebook7
    art = artifacts_dir()
    page.set_default_timeout(60_000)
    page.goto(f"{server.url}/notebooks/{NOTEBOOK}?token={server.token}")
    ui = NotebookUI(page)
    try:
        expect(page.get_by_text(DISPLAY_NAME).first).to_be_visible(timeout=120_000)
        wait_until(lambda: len(server.api("/api/kernels")) == 1, 120, "Notebook 7 to start the notebook's kernel")
        (kernel,) = server.api("/api/kernels")
        assert kernel["name"] == KERNEL_NAME
        ui.run_cell(STATE_CELL)
        pid_cell = ui.run_cell("import os; os.getpid()")
        pid = int(re.search(r"(\d+)\s*$", ui.output(pid_cell)).group(1))
        assert server.kernel_pids(kernel["id"]) == [pid]

        kill_9(pid)
        wait_until(lambda: [p for p in server.kernel_pids(kernel["id"]) if p != pid], 90, "jupyter_server to restart the kernel")
        ui.dismiss_dialogs()

        check = ui.run_cell(CHECK_CELL)
        assert "([0, 1], 52)" in ui.output(check), ui.output(check)
        summary = SUMMARY.search(ui.notice(check))
        assert summary and summary.group(1) == NOTEBOOK, ui.output(check)
        assert "Restored session" not in ui.stderr(check)
        ui.screenshot(art / "notebook7-restore.png", ui.panel.locator(".jp-Cell").first, check)
        if os.environ.get("PK_E2E_UPDATE_DOCS"):
            shutil.copyfile(art / "notebook7-restore.png", REPO / "docs" / "img" / "notebook7-restore.png")
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=art / "notebook7-failure.png")
        raise
