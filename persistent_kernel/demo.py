"""``python -m persistent_kernel demo``: a poker table survives kill -9.

Starts a persistent kernel on a throw-away session, deals a hand of poker in
it, kills the kernel process with SIGKILL, starts a new one on the same session
and shows that the table came back: the same deck, the same hands, the same
closure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
import time
from typing import TextIO

from jupyter_client.kernelspec import NoSuchKernel

from . import KERNEL_NAME
from .driver import KernelDriver
from .install import install

CELLS = [
    (
        "A shuffled deck",
        """\
        import random
        deck = [rank + suit for suit in "♠♥♦♣" for rank in "23456789TJQKA"]
        random.shuffle(deck)
        len(deck)""",
    ),
    (
        "Deal two cards to each player",
        """\
        players = ["ada", "bob", "cyd"]
        hands = {p: [deck.pop(), deck.pop()] for p in players}
        pot = {"ada": 10, "bob": 25, "cyd": 25}""",
    ),
    (
        "A closure that shows a hand (it keeps a reference to the table)",
        """\
        def make_show(table):
            def show(player):
                return f"{player:>4}: {' '.join(table[player])}"
            return show
        show = make_show(hands)
        show("ada")""",
    ),
    (
        "The flop",
        """\
        board = [deck.pop() for _ in range(3)]
        board""",
    ),
]

TABLE = 'print("\\n".join(show(p) for p in players)); print("board:", " ".join(board), "| pot:", sum(pot.values()), "| deck left:", len(deck))'
FINGERPRINT = "(deck, hands, board, pot, show.__closure__[0].cell_contents is hands)"


def _print_code(out: TextIO, code: str) -> None:
    out.write(textwrap.indent(textwrap.dedent(code).strip(), "    >>> ", lambda line: True) + "\n")


def _start(env: dict[str, str], out: TextIO) -> KernelDriver:
    try:
        return KernelDriver(env=env, kernel_log=subprocess.DEVNULL).start()
    except NoSuchKernel:
        # Not registered (e.g. run from a source tree): register it for this Python, in a temp prefix.
        prefix = env["PERSISTENT_KERNEL_HOME"] + "/jupyter-prefix"
        install(prefix=prefix)
        env["JUPYTER_PATH"] = os.path.join(prefix, "share", "jupyter")
        out.write(f"  (the {KERNEL_NAME} kernelspec is not installed; using a temporary copy)\n")
        return KernelDriver(env=env, kernel_log=subprocess.DEVNULL).start()


def run_demo(out: TextIO, keep: bool = False) -> int:
    home = tempfile.mkdtemp(prefix="persistent-kernel-demo-")
    env = dict(os.environ, PERSISTENT_KERNEL_HOME=home, PERSISTENT_KERNEL_SESSION="poker-table")
    env.pop("JPY_SESSION_NAME", None)
    say = out.write
    try:
        say(f"1. Starting a '{KERNEL_NAME}' kernel on session 'poker-table' (store under {home})\n")
        driver = _start(env, out)
        say(f"   kernel pid {driver.pid}\n\n2. Playing the table:\n")
        for title, code in CELLS:
            say(f"   # {title}\n")
            _print_code(out, code)
            result = driver.execute(textwrap.dedent(code))
            if result.status != "ok":
                say(f"   the cell failed: {result.ename}: {result.evalue}\n")
                return 1
            if result.result is not None:
                say(f"    {result.result}\n")
        table_before = driver.execute(TABLE).stdout
        before = driver.evaluate(FINGERPRINT)
        say("\n   The table now:\n" + textwrap.indent(table_before, "     "))

        pid = driver.pid
        say(f"\n3. kill -9 {pid}: the kernel process dies at once, as in an OOM kill.\n")
        driver.kill()

        say("\n4. Starting a new kernel on the same session...\n")
        started = time.monotonic()
        driver.start()
        say(f"   new kernel pid {driver.pid}, ready in {time.monotonic() - started:.1f} s\n")
        first = driver.execute(TABLE)
        if first.said:
            say("   It says: " + first.said.strip().replace("\n", "\n   ") + "\n")
        say("\n   The table after the crash:\n" + textwrap.indent(first.stdout, "     "))
        after = driver.evaluate(FINGERPRINT)
        driver.shutdown()
        same = before == after and table_before == first.stdout
        if same:
            say("\n5. Same deck, same hands, same board, and the closure still shows the live table. Nothing was lost.\n")
            return 0
        say("\n5. The restored table differs from the one before the crash.\n")
        return 1
    finally:
        if keep:
            say(f"\n(store kept in {home})\n")
        else:
            shutil.rmtree(home, ignore_errors=True)
