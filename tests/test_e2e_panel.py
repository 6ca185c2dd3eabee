"""The session panel and status item (the JupyterLab 4 / Notebook 7 extension the wheel
ships), end to end in Debian's chromium: run cells, open the panel from the command
palette, see the rows, diff, check out an earlier cell by clicking (and confirming) and
see the value in the next cell; kill the kernel and see the notification and the status
come back to ``Persisted``; a second notebook on the same session says ``Not persisting``
and why. The screenshots the README shows are taken here."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from typing import Any

import pytest

from .e2e_helpers import REPO, artifacts_dir, kill_9, timed_e2e, wait_until  # noqa: F401 - timed_e2e is an autouse fixture
from .e2e_lab import NOTEBOOK, Lab, NotebookUI, write_notebook

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

PANEL = "#persistent-kernel-panel"
STATUS = "#persistent-kernel-status"
ACCEPT = ".jp-Dialog .jp-Dialog-button.jp-mod-accept"


def open_panel(page: Any) -> Any:
    """The command palette, as a user opens it: the panel's command by its label."""
    page.keyboard.press("Control+Shift+C")
    palette = page.locator(".lm-CommandPalette-input")
    palette.fill("persistent session panel")
    page.locator(".lm-CommandPalette-item", has_text="Show the persistent session panel").first.click()
    panel = page.locator(PANEL)
    panel.wait_for(state="visible")
    return panel


def pid_of_kernel(ui: NotebookUI) -> int:
    cell = ui.run_cell("import os; os.getpid()")
    return int(re.search(r"(\d+)\s*$", ui.output(cell)).group(1))


def test_the_panel_in_jupyterlab_lists_diffs_checks_out_and_follows_a_kill(lab: Lab, page: Any) -> None:
    from playwright.sync_api import expect

    art = artifacts_dir()
    page.set_default_timeout(60_000)
    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?reset&token={lab.token}")
    ui = NotebookUI(page)
    try:
        expect(page.locator(".jp-StatusBar-Widget")).to_contain_text("Idle", timeout=120_000)
        page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").click()  # room for the notebook
        ui.run_cell("x = 1")
        ui.run_cell("x = 2; y = 'two'")
        ui.run_cell("x = 3")
        status = page.locator(STATUS)
        expect(status).to_have_text(re.compile(r"^Persisted"))

        panel = open_panel(page)
        for count in (1, 2, 3):
            expect(panel.locator(f'[data-pk-cell="{count}"]')).to_be_visible()
        second = panel.locator('[data-pk-cell="2"]')
        expect(second).to_contain_text("stored x, y")

        # Diff against now: x changed, y added since cell [1].
        panel.locator('[data-pk-cell="1"] [data-pk-action="diff"]').click()
        diff = panel.locator('[data-pk-cell="1"] .pk-diff')
        expect(diff.locator('[data-pk-name="x"]')).to_contain_text("changed")
        expect(diff.locator('[data-pk-name="y"]')).to_contain_text("added")
        page.screenshot(path=art / "panel-jupyterlab.png")

        # Check out [1] by clicking, confirm in JupyterLab's dialog, and look in the next cell.
        panel.locator('[data-pk-cell="1"] [data-pk-action="checkout"]').click()
        page.locator(ACCEPT).click()
        expect(panel.locator('[data-pk-checked-out="1"]')).to_contain_text("[1]")
        expect(panel.locator('[data-pk-checked-out="1"]')).to_contain_text("go forward again")
        check = ui.run_cell("x, 'y' in dir()")
        assert "(1, False)" in ui.output(check), ui.output(check)
        expect(status).to_have_text(re.compile(r"^Persisted"))
        status.screenshot(path=art / "status-jupyterlab.png")

        # kill -9: JupyterLab restarts the kernel; the notification says what came back.
        pid = pid_of_kernel(ui)
        (kernel,) = lab.api("/api/kernels")
        kill_9(pid)
        wait_until(lambda: [p for p in lab.kernel_pids(kernel["id"]) if p != pid], 90, "jupyter_server to restart the kernel")
        ui.dismiss_dialogs()
        toast = page.locator(".Toastify__toast", has_text="Restored session")
        expect(toast).to_be_visible(timeout=60_000)
        page.screenshot(path=art / "panel-restore-notification.png")
        expect(status).to_have_text(re.compile(r"^Persisted"), timeout=60_000)
        after = ui.run_cell("x")
        assert re.search(r"\b1\s*$", ui.output(after)), ui.output(after)
        expect(panel.locator(".pk-restore")).to_contain_text("Restored session")
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=art / "panel-failure.png")
        raise
    if os.environ.get("PK_E2E_UPDATE_DOCS"):
        (REPO / "docs" / "img").mkdir(parents=True, exist_ok=True)
        for name in ("panel-jupyterlab.png", "status-jupyterlab.png", "panel-restore-notification.png"):
            shutil.copyfile(art / name, REPO / "docs" / "img" / name)


def test_a_second_notebook_on_the_same_session_says_it_is_not_persisting(shared_lab: Lab, page: Any) -> None:
    from playwright.sync_api import expect

    art = artifacts_dir()
    write_notebook(shared_lab.root / "second.ipynb")
    page.set_default_timeout(60_000)
    page.goto(f"{shared_lab.url}/lab/tree/{NOTEBOOK}?reset&token={shared_lab.token}")
    ui = NotebookUI(page)
    try:
        expect(page.locator(".jp-StatusBar-Widget")).to_contain_text("Idle", timeout=120_000)
        ui.run_cell("a = 1")
        expect(page.locator(STATUS)).to_have_text(re.compile(r"^Persisted"))
        # The second notebook, in the same JupyterLab: its kernel finds the session held.
        page.goto(f"{shared_lab.url}/lab/tree/second.ipynb?token={shared_lab.token}")
        wait_until(lambda: shared_lab.kernel_count() == 2, 120, "the second notebook's kernel")
        ui = NotebookUI(page)
        ui.run_cell("b = 2")
        status = page.locator(STATUS)
        expect(status).to_have_text(re.compile(r"^Not persisting: this session is open in kernel process \d+"))
        status.click()  # the reason, one click away
        expect(page.locator(PANEL).locator(".pk-reason")).to_contain_text("open in kernel process")
        status.screenshot(path=art / "status-not-persisting.png")
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=art / "panel-second-failure.png")
        raise
    if os.environ.get("PK_E2E_UPDATE_DOCS"):
        shutil.copyfile(art / "status-not-persisting.png", REPO / "docs" / "img" / "status-not-persisting.png")


def test_the_panel_in_notebook7_lists_and_checks_out(notebook7: Lab, page: Any) -> None:
    from playwright.sync_api import expect

    art = artifacts_dir()
    page.set_default_timeout(60_000)
    page.goto(f"{notebook7.url}/notebooks/{NOTEBOOK}?token={notebook7.token}")
    ui = NotebookUI(page)
    try:
        wait_until(lambda: notebook7.kernel_count() == 1, 120, "Notebook 7 to start the notebook's kernel")
        ui.run_cell("n = 'first'")
        ui.run_cell("n = 'second'")
        status = page.locator(STATUS)
        expect(status).to_have_text(re.compile(r"^Persisted"))
        panel = open_panel(page)
        expect(panel.locator('[data-pk-cell="2"]')).to_be_visible()
        panel.locator('[data-pk-cell="1"] [data-pk-action="checkout"]').click()
        page.locator(ACCEPT).click()
        expect(panel.locator('[data-pk-checked-out="1"]')).to_be_visible()
        check = ui.run_cell("n")
        assert "'first'" in ui.output(check), ui.output(check)
        page.screenshot(path=art / "panel-notebook7.png")
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=art / "panel-notebook7-failure.png")
        raise


def test_nothing_is_shown_on_a_stock_kernel(lab: Lab, page: Any) -> None:
    """A notebook on the stock python3 kernel: no status item, no comm opened; the panel says why it is empty."""
    from playwright.sync_api import expect

    write_notebook(lab.root / "stock.ipynb", kernel_name="python3", display_name="Python 3 (ipykernel)")
    page.set_default_timeout(60_000)
    page.goto(f"{lab.url}/lab/tree/stock.ipynb?reset&token={lab.token}")
    ui = NotebookUI(page)
    expect(page.locator(".jp-StatusBar-Widget")).to_contain_text("Idle", timeout=120_000)
    ui.run_cell("s = 1")
    expect(page.locator(STATUS)).to_be_hidden()
    panel = open_panel(page)
    expect(panel).to_contain_text("does not run a persistent kernel")
    assert "No such comm target" not in lab.log.read_text()  # the extension never asked a stock kernel
