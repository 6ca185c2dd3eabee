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
import os
import re
import shutil
from typing import Any

import pytest

from .e2e_helpers import (  # noqa: F401 - timed_e2e is an autouse fixture
    DISPLAY_NAME,
    KERNEL_NAME,
    REPO,
    SUMMARY,
    artifacts_dir,
    kill_9,
    timed_e2e,
    wait_until,
)
from .e2e_lab import CHECK_CELL, NOTEBOOK, STATE_CELL, Lab, NotebookUI, is_local

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

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
        wait_until(lambda: server.kernel_count() == 1, 120, "Notebook 7 to start the notebook's kernel")
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
