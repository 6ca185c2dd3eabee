"""Odd objects and odd timing never cost the kernel, and never cost more than the odd object."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .kernels import crash_and_restart, run, start_and_restore

pytestmark = [pytest.mark.slow, pytest.mark.robustness]


def test_unencodable_values_never_stop_a_reply(kernel) -> None:
    k = kernel()
    run(k, "z = 1")
    failed = k.execute("raise ValueError('\\udcff')")  # a lone surrogate in the error text
    assert failed.status == "error" and failed.ename == "ValueError"
    run(k, "import sys, pathlib\nsys.path.append(pathlib.Path('/tmp/pk-path-object'))")
    run(k, "w = 2")
    crash_and_restart(k)
    assert k.evaluate("(z, w, '/tmp/pk-path-object' in sys.path)") == "(1, 2, True)"


def test_an_object_that_breaks_inspection_costs_only_itself(kernel) -> None:
    k = kernel()
    run(k, "x = 1")
    run(k, "class Flaky:\n    n = 0\n    @property\n    def __class__(self):\n        Flaky.n += 1\n        if Flaky.n < 50:\n            raise RuntimeError('not ready')\n        return Flaky\nw = Flaky(); v = 10")
    run(k, "x = 2")
    crash_and_restart(k)
    assert k.evaluate("(x, v, 'w' in globals())") == "(2, 10, True)"


def test_a_replayed_cell_does_not_overwrite_a_later_import(kernel) -> None:
    k = kernel()
    run(k, "j = 1\ngen = (n for n in range(3))")
    run(k, "import json as j")
    crash_and_restart(k)
    assert k.evaluate("j.__name__") == "'json'"


def test_modules_on_the_users_sys_path_come_back(kernel, tmp_path: Path) -> None:
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "pk_user_mod.py").write_text("VALUE = 42\nclass P:\n    v = 1\n")
    k = kernel()
    run(k, f"import sys\nsys.path.insert(0, {str(tmp_path / 'mods')!r})")
    run(k, "%cd /")
    run(k, "import pk_user_mod\np = pk_user_mod.P()")
    summary = crash_and_restart(k)
    assert k.evaluate("(pk_user_mod.VALUE, type(p).__name__)") == "(42, 'P')"
    assert "Could not rebuild" not in summary


def test_the_idle_check_waits_for_a_cell_that_awaits(kernel) -> None:
    k = kernel(extra_arguments=["--PersistentKernel.idle_verify_delay=0.2"])
    run(k, "import asyncio, sqlite3")
    run(k, "a = 1\nconn = sqlite3.connect(':memory:')\nawait asyncio.sleep(1.5)")
    summary = crash_and_restart(k)
    assert "Recomputed conn by replaying cell [2]." in summary
    assert k.evaluate("a") == "1"


def test_forget_stops_persisting_until_the_next_kernel(kernel) -> None:
    k = kernel()
    run(k, "x = 41; z = 5")
    assert "This kernel no longer persists" in k.execute("%persist forget").stdout
    run(k, "y = x + 1")
    assert "OFF" in k.execute("%persist status").text
    crash_and_restart(k)
    assert k.evaluate("[n for n in ('x', 'y', 'z') if n in globals()]") == "[]"
    run(k, "fresh = 1")
    crash_and_restart(k)
    assert k.evaluate("fresh") == "1"  # the new kernel persists again


def test_a_load_that_kills_the_restore_is_retried_once_then_rebuilt_by_replay(kernel, tmp_path: Path) -> None:
    (tmp_path / "bomb.py").write_text(
        "import os, signal\n"
        "class Bomb:\n"
        "    def __init__(self):\n        self.armed = True\n"
        "    def __setstate__(self, state):\n"
        "        if os.path.exists(os.path.join(os.path.dirname(__file__), 'trap')):\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        "        self.__dict__.update(state)\n"
    )
    k = kernel()
    run(k, "import sys\nsys.path.insert(0, '.')\nimport bomb\nb = bomb.Bomb()\nsafe = 'kept'")
    k.kill()
    (tmp_path / "trap").write_text("")  # from now on, loading `b` kills the process
    for _ in range(2):
        with pytest.raises(RuntimeError):
            k.start()  # once may be an impatient kill; twice is the load's doing
        k.kill()
    summary = start_and_restore(k)
    assert k.evaluate("(safe, b.armed)") == "('kept', True)"
    assert "Recomputed b by replaying cell [1]." in summary


def test_interrupting_a_slow_checkpoint_keeps_the_kernel_answering(kernel) -> None:
    k = kernel()
    run(k, "import time\nclass Slow:\n    def __reduce__(self):\n        time.sleep(3)\n        return (Slow, ())")
    k.kc.execute("s = Slow(); x = 2")
    time.sleep(1.0)
    k.km.interrupt_kernel()  # lands while the checkpoint serializes `s`
    reply = k.kc.get_shell_msg(timeout=20)["content"]
    assert reply["status"] in ("ok", "error")
    assert k.evaluate("x") == "2"


def test_a_replayed_cell_draws_the_same_random_numbers(kernel) -> None:
    k = kernel()
    run(k, "import random\nrandom.seed(1)")
    run(k, "deck = list(range(52))\nrandom.shuffle(deck)\ndealer = (card for card in deck)")
    expected = k.evaluate("deck[:5]")
    crash_and_restart(k)
    assert k.evaluate("deck[:5]") == expected
    assert k.evaluate("[next(dealer) for _ in range(5)]") == expected


def test_stored_values_win_over_a_replay_even_when_rebound_to_an_equal_value(kernel) -> None:
    k = kernel()
    run(k, "x = 0\nitems = [x]")
    run(k, "items = [x]\ngen = (i for i in range(3))")
    run(k, "x = 5")
    crash_and_restart(k)
    assert k.evaluate("(x, items)") == "(5, [0])"


def test_a_rebuild_that_needs_an_interrupted_cell_says_so(kernel) -> None:
    k = kernel()
    run(k, "import time\nnumbers = (n for n in range(1000))")
    k.kc.execute("for n in numbers:\n    time.sleep(0.01)")
    time.sleep(0.5)
    k.km.interrupt_kernel()
    assert k.kc.get_shell_msg(timeout=10)["content"]["ename"] == "KeyboardInterrupt"
    summary = crash_and_restart(k)
    assert "May differ from before the crash: numbers (cell [2] is never replayed)" in summary


def test_a_replay_never_truncates_or_recreates_a_file(kernel, tmp_path: Path) -> None:
    k = kernel()
    run(k, "f = open('kept.txt', 'w')\nf.write('A\\n')\nf.flush()\npending = (x for x in [f])")
    run(k, "with open('kept.txt', 'a') as extra:\n    extra.write('B\\n')")
    run(k, "g = open('gone.txt', 'w')\ng.write('x')\ng.flush()")
    run(k, "import os\nos.remove('gone.txt')")
    summary = crash_and_restart(k)
    assert (tmp_path / "kept.txt").read_text() == "A\nB\n"
    assert not (tmp_path / "gone.txt").exists()
    assert "Could not rebuild" in summary and "g (" in summary


def test_a_notebook_enum_is_never_stored_in_a_form_that_does_not_load(kernel) -> None:
    k = kernel()
    run(k, "from enum import Enum\nclass Color(Enum):\n    RED = 1\n    BLUE = 2\nfavourite = {Color.RED: 'roses'}")
    summary = crash_and_restart(k)
    assert k.evaluate("favourite[Color.RED]") == "'roses'"
    assert "Could not rebuild" not in summary


def test_a_generator_over_a_stored_list_does_not_redraw_the_list(kernel) -> None:
    k = kernel()
    run(k, "import os\ndata = [os.urandom(8).hex()]")
    run(k, "walker = (x for x in data)")
    before = k.evaluate("data")
    summary = crash_and_restart(k)
    assert k.evaluate("data") == before
    assert k.evaluate("next(walker)") == before[1:-1]
    assert "Recomputed walker by replaying cell [2]." in summary


def test_names_a_replay_makes_that_the_session_never_had_are_removed(kernel) -> None:
    k = kernel()
    run(k, "zero = 0")
    failed = k.execute("gen = (i for i in range(3))\nx = 1 / zero\ny = 5")
    assert failed.ename == "ZeroDivisionError"
    run(k, "zero = 1")
    crash_and_restart(k)
    assert k.evaluate("('x' in globals(), 'y' in globals(), list(gen))") == "(False, False, [0, 1, 2])"


def test_a_name_too_long_to_store_costs_only_itself(kernel) -> None:
    k = kernel()
    first = k.execute("globals()['v' * 600] = 2\nb = 1")
    assert first.status == "ok" and "longer than 400 bytes" in first.stderr
    run(k, "c = 2")
    run(k, "d = 3")
    crash_and_restart(k)
    assert k.evaluate("(b, c, d)") == "(1, 2, 3)"


def test_a_replay_does_not_mutate_stored_objects(kernel) -> None:
    k = kernel()
    run(k, "a = [1, 2]")
    run(k, "a.append(3)\ng = (x for x in a)")
    run(k, "a.append(4)")
    run(k, "import itertools\nc = itertools.count()\nn = 0")
    run(k, "h = (i for i in range(5))\nn += next(c)")
    run(k, "n += next(c)")
    crash_and_restart(k)
    assert k.evaluate("(a, n, next(c))") == "([1, 2, 3, 4], 1, 2)"


def test_modules_imported_in_a_replay_keep_the_real_open(kernel, tmp_path: Path) -> None:
    k = kernel()
    run(k, "g = (i for i in range(3))\nimport tarfile")
    crash_and_restart(k)
    run(k, "with tarfile.open('made-after-restore.tar', 'w') as t:\n    pass")
    assert (tmp_path / "made-after-restore.tar").exists()


def test_a_replay_cannot_move_or_delete_files(kernel, tmp_path: Path) -> None:
    (tmp_path / "draft.txt").write_text("v1")
    k = kernel()
    run(k, "import os\ngen = (i for i in range(3))\nos.replace('draft.txt', 'final.txt')")
    (tmp_path / "draft.txt").write_text("v2, written after that cell")
    summary = crash_and_restart(k)
    assert (tmp_path / "draft.txt").read_text() == "v2, written after that cell"
    assert (tmp_path / "final.txt").read_text() == "v1"
    assert "failed during replay" in summary and "does not change files" in summary


def test_checkpoints_do_not_run_user_setstate(kernel) -> None:
    k = kernel()
    run(k, "registry = []\nclass Item:\n    def __init__(self, v):\n        self.v = v\n    def __setstate__(self, state):\n        registry.append('loaded')\n        self.__dict__.update(state)")
    run(k, "it = Item(1)")
    run(k, "it.v = 2")
    run(k, "it.v = 3")
    assert k.evaluate("registry") == "[]"


@pytest.mark.parametrize("raised", ["SystemExit(3)", "KeyboardInterrupt()"])
def test_a_value_whose_load_raises_systemexit_costs_only_itself(kernel, tmp_path: Path, raised: str) -> None:
    """Unpickling runs code: a load raising SystemExit or KeyboardInterrupt (neither an Exception)
    must cost that value, not end the kernel at every start."""
    (tmp_path / "bye.py").write_text(
        "class Bye:\n"
        "    def __init__(self):\n        self.armed = False\n"
        "    def __setstate__(self, state):\n"
        "        import os\n"
        "        if os.path.exists(os.path.join(os.path.dirname(__file__), 'trap')):\n"
        f"            raise {raised}\n"
        "        self.__dict__.update(state)\n"
    )
    k = kernel()
    run(k, "import sys\nsys.path.insert(0, '.')\nimport bye\nfarewell = bye.Bye()\nkept = [1, 2]")
    k.kill()
    (tmp_path / "trap").write_text("")
    summary = start_and_restore(k)
    assert "Restored session" in summary and "could not be fully restored" not in summary, summary
    assert k.evaluate("kept") == "[1, 2]"
    # The value is rebuilt by replay where that works; its load is named either way.
    assert "farewell" in summary, summary


def test_bookkeeping_that_raises_never_replaces_the_reply(kernel) -> None:
    """Reading the random state or the process context around a cell fails: the reply still comes."""
    k = kernel()
    run(k, "x = 1")
    broken = k.execute(
        "get_ipython().kernel.random_states.changed_state = lambda: 1 / 0\n"
        "get_ipython().kernel.process_context.changed = lambda: {}['missing']\n"
        "y = 2",
        timeout=30,
    )
    assert broken.status == "ok"
    assert "Persistence failed reading the random generators' state (ZeroDivisionError" in broken.said, broken.said
    assert "Persistence failed reading the process context" in broken.said, broken.said
    again = run(k, "z = 3")
    assert "Persistence failed" not in again.said  # told once
    summary = crash_and_restart(k)
    assert k.evaluate("(x, y, z)") == "(1, 2, 3)", summary


def test_a_sys_path_entry_that_cannot_be_read_costs_only_the_context(kernel) -> None:
    k = kernel()
    odd = k.execute(
        "import sys\nclass Odd:\n    def __str__(self):\n        raise RuntimeError('no str')\nsys.path.append(Odd())\nkept = 'yes'",
        timeout=30,
    )
    assert odd.status == "ok" and "Persistence failed reading the process context" in odd.said, odd.said
    run(k, "sys.path.pop()")
    crash_and_restart(k)
    assert k.evaluate("kept") == "'yes'"


def test_an_interrupt_before_the_cell_begins_aborts_it_and_the_kernel_answers(kernel) -> None:
    """SIGINT landing in the journal's write-ahead (before the cell's code runs): a reply, not a hang."""
    import time

    k = kernel()
    run(
        k,
        "import time\n"
        "_journal = get_ipython().kernel.journal\n"
        "_begin = _journal.begin\n"
        "def _slow_begin(*args, **kwargs):\n"
        "    time.sleep(3)\n"
        "    return _begin(*args, **kwargs)\n"
        "_journal.begin = _slow_begin\n"
        "ran = False",
    )
    msg_id = k.kc.execute("ran = True")
    time.sleep(1.0)  # inside the slow write-ahead
    k.km.interrupt_kernel()
    while True:
        reply = k.kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    assert reply["content"]["status"] in ("aborted", "error"), reply["content"]
    assert k.evaluate("ran") == "False"  # it did not run
    run(k, "_journal.begin = _begin\nafter = 1")
    crash_and_restart(k)
    assert k.evaluate("after") == "1"


def test_a_replay_leaves_the_history_database_and_the_streams_as_they_were(kernel) -> None:
    k = kernel()
    run(k, "g = (i for i in range(3))  # replay-marker\nfrom IPython.display import display\ndisplay('shown')\nprint('printed')")
    crash_and_restart(k)  # g cannot be stored: its cell is replayed
    assert k.evaluate("next(g)") == "0"
    # Not written again: it is in the database from when it ran (IPython's history of the killed kernel).
    written = (
        "(lambda h: (h.writeout_cache(), h.db.execute('SELECT count(*) FROM history WHERE session = ? AND source LIKE ?', "
        "(h.session_number, '%replay-marker%')).fetchone()[0])[1])(get_ipython().history_manager)"
    )
    assert k.evaluate(written) == "0"
    assert "replay-marker" in k.evaluate("In[1]")  # the input history is the session's all the same
    assert k.evaluate("'flush' in vars(__import__('sys').stdout)") == "False"  # unmuted: the stream's own flush again
    said = run(k, "print('after'); import sys; sys.stdout.flush()")
    assert said.stdout == "after\n"
