"""Snapshots: a restore loads the state each cell left behind and replays only what cannot be stored.

Real kernels, SIGKILL, a real LMDB store.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from persistent_kernel.restore import state_as_of

from .kernels import check_store, crash_and_restart, kill_and_start, open_store, run, start_and_restore

pytestmark = [pytest.mark.slow, pytest.mark.fidelity]


def test_aliases_made_across_cells_survive_and_nothing_is_replayed(kernel, pk_home: Path) -> None:
    k = kernel()
    run(k, "a = [1]")
    run(k, "b = a\nc = {'n': 0}")
    run(k, "d = {'x': c}")
    run(k, "a.append(2); c['n'] += 1")
    summary = crash_and_restart(k)
    assert "replayed" not in summary and "loaded 4 variables" in summary
    assert k.evaluate("(b is a, b, d['x'] is c, c)") == "(True, [1, 2], True, {'n': 1})"
    k.shutdown()
    check_store(pk_home)


def test_groups_follow_references_as_they_change(kernel) -> None:
    k = kernel()
    run(k, "a = [1]; b = a")
    run(k, "b = [2]")  # no longer shared
    run(k, "a.append(3)")
    crash_and_restart(k)
    assert k.evaluate("(a, b, a is b)") == "([1, 3], [2], False)"


def test_mutation_through_a_notebook_function(kernel) -> None:
    k = kernel()
    run(k, "rows = []\ndef add(x):\n    rows.append(x)\n    return len(rows)")
    run(k, "add('first')")
    run(k, "add('second')")
    summary = crash_and_restart(k)
    assert k.evaluate("rows") == "['first', 'second']"
    assert k.evaluate("add('third')") == "3"
    assert "replayed" not in summary


def test_global_statement_in_a_function_is_seen(kernel) -> None:
    k = kernel()
    run(k, "total = 0\ndef bump():\n    global total\n    total += 5")
    run(k, "bump(); bump()")
    crash_and_restart(k)
    assert k.evaluate("total") == "10"


def test_numpy_and_pandas_mutated_in_place(kernel) -> None:
    k = kernel()
    run(k, "import numpy as np, pandas as pd\narr = np.arange(6, dtype=float)\ndf = pd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'z']})")
    run(k, "arr[2] = 42.5\narr *= 2")
    run(k, "df.loc[0, 'a'] = 99\ndf['c'] = df['a'] * 2")
    crash_and_restart(k)
    assert k.evaluate("arr.tolist()") == "[0.0, 2.0, 85.0, 6.0, 8.0, 10.0]"
    assert k.evaluate("df.to_dict('list')") == "{'a': [99, 2, 3], 'b': ['x', 'y', 'z'], 'c': [198, 4, 6]}"
    assert k.evaluate("arr.flags.writeable") == "True"


def test_deleted_then_recreated(kernel) -> None:
    k = kernel()
    run(k, "x = 1")
    run(k, "del x")
    run(k, "x = 'again'")
    crash_and_restart(k)
    assert k.evaluate("x") == "'again'"


def test_side_effects_random_values_and_slow_cells_are_not_repeated(kernel, tmp_path: Path) -> None:
    k = kernel()
    run(k, "with open('log.txt', 'a') as f:\n    f.write('one line\\n')")
    run(k, "import os\ntoken = os.urandom(16).hex()")
    run(k, "import time\nwith open('slow-runs.txt', 'a') as f:\n    f.write('ran\\n')\ntime.sleep(2)\nslow = 'done'")
    token = k.evaluate("token")
    summary = crash_and_restart(k)
    assert (tmp_path / "log.txt").read_text() == "one line\n"
    assert (tmp_path / "slow-runs.txt").read_text() == "ran\n"  # the slow cell did not run again
    assert k.evaluate("token") == token and k.evaluate("slow") == "'done'"
    assert "replayed" not in summary


def test_sqlite_connection_is_recomputed_without_repeating_its_uses(kernel, tmp_path: Path) -> None:
    k = kernel()
    run(k, "import sqlite3\nconn = sqlite3.connect('poker.db')")
    run(k, "conn.execute('CREATE TABLE hands (player TEXT, cards TEXT)')")
    run(k, "conn.executemany('INSERT INTO hands VALUES (?, ?)', [('ada', 'A♠ K♠'), ('bob', '7♦ 2♣')])\nconn.commit()")
    summary = crash_and_restart(k)
    assert k.evaluate("conn.execute('SELECT COUNT(*) FROM hands').fetchone()[0]") == "2"
    assert "Recomputed conn by replaying cell [1]." in summary
    assert "failed during replay" not in summary  # CREATE TABLE was not run again


def test_generator_resumes_where_it_was(kernel) -> None:
    k = kernel()
    run(k, "squares = (n * n for n in range(10))")
    run(k, "first = next(squares)")
    run(k, "second = next(squares)")
    summary = crash_and_restart(k)
    assert k.evaluate("(first, second, next(squares))") == "(0, 1, 4)"
    assert "Recomputed squares by replaying cells [1], [2], [3]." in summary


def test_stored_values_win_over_replayed_ones(kernel) -> None:
    k = kernel()
    run(k, "count = 5\nsquares = (n * n for n in range(10))")
    run(k, "count = 6")
    crash_and_restart(k)
    assert k.evaluate("count") == "6"


def test_open_files_come_back_at_their_position_and_mode_and_are_never_truncated(kernel, tmp_path: Path) -> None:
    (tmp_path / "input.txt").write_text("line1\nline2\nline3\n")
    k = kernel()
    run(k, "reader = open('input.txt')\nreader.readline()")
    run(k, "writer = open('output.txt', 'w')\nwriter.write('abc')\nwriter.flush()")
    run(k, "appender = open('log.txt', 'a')\nappender.write('first\\n')\nappender.flush()")
    crash_and_restart(k)
    assert (tmp_path / "output.txt").read_text() == "abc"  # the restore did not truncate it
    assert k.evaluate("(reader.readline(), reader.mode)") == "('line2\\n', 'r')"
    assert k.evaluate("(writer.mode, writer.tell())") == "('w', 3)"
    run(k, "writer.write('d'); writer.close(); appender.write('second\\n'); appender.close()")
    assert (tmp_path / "output.txt").read_text() == "abcd"
    assert (tmp_path / "log.txt").read_text() == "first\nsecond\n"


def test_classes_instances_and_redefinition(kernel) -> None:
    k = kernel()
    run(k, "class Card:\n    def __init__(self, rank):\n        self.rank = rank\n    def show(self):\n        return 'old ' + self.rank")
    run(k, "old = Card('A')\ndeck = {'top': [Card('K'), Card('Q')]}")
    run(k, "class Card:\n    def __init__(self, rank):\n        self.rank = rank\n    def show(self):\n        return 'new ' + self.rank")
    run(k, "new = Card('J')")
    crash_and_restart(k)
    assert k.evaluate("(old.show(), new.show(), deck['top'][0].show())") == "('old A', 'new J', 'old K')"
    assert k.evaluate("(isinstance(new, Card), isinstance(old, Card), isinstance(deck['top'][1], type(old)))") == "(True, False, True)"


def test_closures_lambdas_and_self_references(kernel) -> None:
    k = kernel()
    run(k, "def counter():\n    n = 0\n    def inc():\n        nonlocal n\n        n += 1\n        return n\n    return inc\ntick = counter()\nscale = 3\ntimes = lambda v: v * scale")
    run(k, "tick(); tick()")
    run(k, "loop = [1]; loop.append(loop); me = {}; me['me'] = me")
    run(k, "scale = 10")
    crash_and_restart(k)
    assert k.evaluate("(tick(), times(2))") == "(3, 20)"  # the lambda sees the live global
    assert k.evaluate("(loop[1] is loop, me['me'] is me)") == "(True, True)"


def test_a_variable_whose_class_changed_is_recomputed_or_named(kernel, tmp_path: Path) -> None:
    # An installed library (the user's own modules keep the session's code: tests/test_local_modules.py).
    library = tmp_path / "site-packages"
    library.mkdir()
    (library / "mylib.py").write_text("class _Impl:\n    def __init__(self, v):\n        self.v = v\ndef make(v):\n    return _Impl(v)\nclass Gone:\n    pass\n")
    k = kernel()
    run(k, "import sys; sys.path.insert(0, 'site-packages')\nimport mylib\nthing = mylib.make(3)\nghost = mylib.Gone()\nfine = [1, 2]")
    k.kill()
    # The library changes incompatibly while the kernel is down.
    (library / "mylib.py").write_text("class _Impl2:\n    def __init__(self, v):\n        self.v = v\ndef make(v):\n    return _Impl2(v)\n")
    for cache in library.glob("__pycache__/mylib*"):
        cache.unlink()
    summary = start_and_restore(k)
    assert k.evaluate("(thing.v, type(thing).__name__, fine)") == "(3, '_Impl2', [1, 2])"
    assert "Could not rebuild ghost" in summary
    assert k.evaluate("'ghost' in globals()") == "False"


def test_three_hundred_variables(kernel) -> None:
    k = kernel()
    run(k, "for i in range(300):\n    globals()[f'v{i}'] = [i, str(i)]")
    summary = crash_and_restart(k)
    assert "loaded 301 variables" in summary  # v0..v299 and the loop variable i
    assert k.evaluate("sum(globals()[f'v{i}'][0] for i in range(300))") == str(sum(range(300)))


def test_generator_objects_of_random_and_numpy_continue_exactly(kernel) -> None:
    k = kernel()
    run(k, "import random, copy, numpy as np\nr = random.Random(7); r.random()\ng = np.random.default_rng(5); g.random(3)")
    expected = k.evaluate("(copy.deepcopy(r).random(), copy.deepcopy(g).random())")
    crash_and_restart(k)
    assert k.evaluate("(r.random(), g.random())") == expected


def test_process_state_comes_back(kernel, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    k = kernel()
    run(k, "%cd sub")
    run(k, "import sys, os\nsys.path.append('/opt/pk-test-path')\nos.environ['PK_FLAG'] = 'set by a cell'")
    run(k, "%load_ext autoreload")
    run(k, "%matplotlib inline")
    crash_and_restart(k)
    assert k.evaluate("__import__('os').getcwd()") == repr(str(tmp_path / "sub"))
    assert k.evaluate("'/opt/pk-test-path' in __import__('sys').path") == "True"
    assert k.evaluate("__import__('os').environ['PK_FLAG']") == "'set by a cell'"
    assert k.evaluate("any(e.endswith('autoreload') for e in get_ipython().extension_manager.loaded)") == "True"
    assert "inline" in k.evaluate("__import__('matplotlib').get_backend()")


def test_state_as_of_any_cell(kernel, pk_home: Path) -> None:
    k = kernel()
    run(k, "x = 1")  # seq 1
    run(k, "x = 2; items = [x]")  # seq 2
    run(k, "items.append(3); y = 'y'")  # seq 3
    run(k, "del x")  # seq 4
    k.kill()
    store = open_store(pk_home)
    try:
        assert state_as_of(store, 1) == ({"x": 1}, {})
        assert state_as_of(store, 2) == ({"x": 2, "items": [2]}, {})
        assert state_as_of(store, 3) == ({"x": 2, "items": [2, 3], "y": "y"}, {})
        assert state_as_of(store, 4) == ({"items": [2, 3], "y": "y"}, {})
        assert store.check() == []
    finally:
        store.close()


def test_aliasing_a_big_array_stores_its_bytes_once(kernel, pk_home: Path) -> None:
    k = kernel()
    run(k, "import numpy as np\na = np.zeros(1_000_000)")  # 8 MB
    k.execute("pass")
    k.kill()
    store = open_store(pk_home)
    after_array = store.blob_bytes()
    store.close()
    k.start()
    run(k, "b = a")
    run(k, "a[0] = 42")
    run(k, "a[1] = 43")
    k.kill()
    store = open_store(pk_home)
    try:
        total = store.blob_bytes()
        assert 8_000_000 <= after_array < 8_100_000
        assert total <= 3.1 * 8_000_000  # three distinct versions at most
        assert store.check() == []
    finally:
        store.close()
    k.start()
    assert k.evaluate("(b is a, a[:3].tolist())") == "(True, [42.0, 43.0, 0.0])"


def test_verify_finds_and_stores_what_tracking_cannot_see(kernel) -> None:
    k = kernel()
    run(k, "import threading, time\nshared = {'n': 0}\nhidden = [shared]")
    # A background thread mutates `shared`; no cell reads it afterwards.
    run(k, "def worker(box=shared):\n    time.sleep(0.2)\n    box['n'] = 99\nthreading.Thread(target=worker).start()")
    run(k, "time.sleep(0.5)")
    report = k.execute("%persist verify").stdout
    assert "Changed without a cell touching them (stored when this cell ends): hidden, shared" in report
    assert "Store check: no problems." in report
    crash_and_restart(k)
    assert k.evaluate("(shared, hidden[0] is shared)") == "({'n': 99}, True)"


def test_idle_check_stores_what_a_background_thread_changed(kernel) -> None:
    k = kernel(extra_arguments=["--PersistentKernel.idle_verify_delay=0.5"])
    run(k, "import threading, time\nstate = {'ticks': 0}\ndef worker(box=state):\n    time.sleep(0.1)\n    box['ticks'] = 7")
    run(k, "threading.Thread(target=worker).start()")
    time.sleep(2.0)  # the thread finishes, then the kernel is idle for longer than the delay
    kill_and_start(k)
    assert k.evaluate("state") == "{'ticks': 7}"
    status = k.execute("%persist status").text
    assert re.search(r"Cells journaled: +4", status)  # two cells, one idle check, and this cell


def test_sharing_seen_through_views_bound_methods_iterators_and_wrappers(kernel) -> None:
    k = kernel()
    run(k, "import numpy as np, functools\nbase = np.arange(10.0)\nwindow = base[2:5]")
    run(k, "lst = [1]; add = lst.append; it = iter(lst)")
    run(k, "rows = []\ndef logged(f):\n    @functools.wraps(f)\n    def wrapper(*a):\n        return f(*a)\n    return wrapper\n@logged\ndef put(x):\n    rows.append(x)\nops = {'put': put}")
    run(k, "add(2); ops['put']('via dict'); put('direct')")
    run(k, "%%capture\nlst.append(3)")
    crash_and_restart(k)
    assert k.evaluate("np.shares_memory(base, window)") == "True"
    run(k, "window[0] = -1")
    assert k.evaluate("float(base[2])") == "-1.0"
    assert k.evaluate("(list(lst), add(4) or list(lst), next(it))") == "([1, 2, 3], [1, 2, 3, 4], 1)"
    assert k.evaluate("rows") == "['via dict', 'direct']"


def test_a_rebinding_that_reuses_the_old_objects_address_is_seen(kernel) -> None:
    k = kernel()
    run(k, "x = [1, 2]")
    run(k, "del x\nx = [3, 4]")  # CPython may put the new list where the old one was
    crash_and_restart(k)
    assert k.evaluate("x") == "[3, 4]"
