"""``%persist`` as a user types it, on real kernels: history, checkout, diff, exclude, off/on, status."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .kernels import check_store, crash_and_restart, run, start_and_restore, store_path

pytestmark = [pytest.mark.slow, pytest.mark.fidelity]


def test_history_lists_cells_with_what_each_changed(kernel) -> None:
    k = kernel()
    run(k, "a = [1, 2]; n = 1")
    run(k, "g = (i for i in a)")
    run(k, "del n")
    shown = k.execute("%persist history 3")
    assert shown.status == "ok"
    text = shown.text
    assert "Last 3 of 4 journaled executions" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith("[")}
    assert set(rows) == {"[2]", "[3]", "[4]"}
    assert re.search(r"\[2\] .* ok +g +g +g = \(i for i in a\)", rows["[2]"])  # changed g; recompute g
    assert "-n" in rows["[3]"]  # deleted
    assert "running" in rows["[4]"] and "%persist history 3" in rows["[4]"]  # this cell
    assert shown.html and "<table" in shown.html[0] and "g = (i for i in a)" in shown.html[0]
    assert "Last 1 of" not in k.execute("%persist history").text  # default: up to 20


def test_checkout_goes_back_and_forward_and_survives_a_crash(kernel, pk_home: Path) -> None:
    k = kernel()
    run(k, "import numpy as np\nrows = [1]; alias = rows; arr = np.arange(5.0); n = 1")  # [1]
    run(k, "rows.append(2); arr *= 2; n = 2; later = 'x'")  # [2]
    run(k, "del alias; n = 3")  # [3]

    back = k.execute("%persist checkout 1")
    assert back.status == "ok" and "Checked out the namespace as it was after cell [1]" in back.stdout
    assert "removed" in back.stdout and "Outputs on screen are unchanged" in back.stdout
    assert k.evaluate("(rows, alias is rows, arr.tolist(), n, 'later' in globals())") == "([1], True, [0.0, 1.0, 2.0, 3.0, 4.0], 1, False)"

    diff = k.execute("%persist diff 1 3").text
    assert re.search(r"n +changed +1 +3", diff) and re.search(r"later +added", diff) and re.search(r"alias +removed", diff)

    # The checkout is journaled: a crash now restores the checked-out state, and going forward still works.
    summary = crash_and_restart(k)
    assert "Restored session" in summary
    assert k.evaluate("(rows, alias is rows, n, 'later' in globals())") == "([1], True, 1, False)"
    forward = k.execute("%persist checkout 2")
    assert forward.status == "ok", forward.stdout
    assert k.evaluate("(rows, alias is rows, arr.tolist(), n, later)") == "([1, 2], True, [0.0, 2.0, 4.0, 6.0, 8.0], 2, 'x')"
    # A cell run after a checkout builds on the checked-out state.
    run(k, "rows.append(99)")
    crash_and_restart(k)
    assert k.evaluate("(rows, alias is rows, n)") == "([1, 2, 99], True, 2)"
    k.shutdown()
    check_store(pk_home)


def test_checkout_replays_only_unstorable_values_without_double_mutation(kernel) -> None:
    k = kernel()
    run(k, "data = [1, 2]")  # [1]
    run(k, "data.append(3); it = (x for x in data); first = next(it)")  # [2]: a generator cannot be stored
    run(k, "data.append(4); next(it)")  # [3]
    out = k.execute("%persist checkout 2").stdout
    assert "Recomputed it by replaying [2]" in out
    # The replay of [2] appended to data again; the stored value of data as of [2] wins.
    assert k.evaluate("(data, first, next(it))") == "([1, 2, 3], 1, 2)"


def test_checkout_of_a_missing_or_unfinished_cell_says_why_and_changes_nothing(kernel) -> None:
    k = kernel()
    run(k, "x = 1")
    assert "there is no cell [42]" in k.execute("%persist checkout 42").stdout
    assert "expected N" in k.execute("%persist checkout").stdout
    assert "expected N" in k.execute("%persist checkout two").stdout
    assert "invalid choice" in k.execute("%persist rewind").stdout
    assert k.evaluate("x") == "1"


def test_checkout_of_a_value_only_a_never_replayed_cell_made_says_so(kernel) -> None:
    # The generator was made by a cell the user interrupted: never replayed, so a checkout
    # to before its later change cannot rebuild it, and says why instead of failing.
    import time

    k = kernel()
    k.kc.execute("import time\nnumbers = (n for n in range(1000))\ntime.sleep(30)")  # [1], interrupted
    time.sleep(0.5)
    k.km.interrupt_kernel()
    assert k.kc.get_shell_msg(timeout=10)["content"]["ename"] == "KeyboardInterrupt"
    run(k, "x = 1")  # [2]
    run(k, "first = next(numbers)")  # [3]: the generator changed after [2]
    back = k.execute("%persist checkout 2")
    assert back.status == "ok", back.text
    assert "Not restored, so not in the namespace: numbers (" in back.stdout
    assert "replaying its cells did not rebuild it" in back.stdout
    assert k.evaluate("x") == "1"
    assert k.evaluate("'numbers' in dir()") == "False"


def test_exclude_keeps_a_value_out_of_the_store_and_says_what_came_back(kernel, pk_home: Path, tmp_path: Path) -> None:
    k = kernel()
    run(k, "token = 'hunter2'")  # [1]
    excluded = k.execute("%persist exclude token 'scratch_*'").stdout  # [2]
    assert "Excluded from persistence: token, scratch_*" in excluded and "stay in the history" in excluded
    # Computed, as a secret read from a file or the environment would be: the code holds no value.
    run(k, "token = 'sk-live-' + str(1200 + 34); scratch_a = list(range(3))")  # [3]: quick: recomputed
    run(k, "import time\ntime.sleep(2.5)\nscratch_slow = 'made slowly'")  # [4]: too slow to recompute
    status = k.execute("%persist status").text
    assert re.search(r"token +str .*excluded", status) and "Excluded:" in status
    k.kill()
    store_dir = store_path(pk_home)
    stored = b"".join(p.read_bytes() for p in store_dir.rglob("*") if p.is_file() and p.name != "kernel.lock")
    assert b"sk-live-1234" not in stored  # the value after the exclusion never reached the disk
    summary = start_and_restore(k)
    assert "Excluded from persistence (%persist exclude): recomputed by replay: scratch_a, token;" in summary
    assert "scratch_slow (not restored: its cells took 2.5 s to run)" in summary
    assert k.evaluate("(token, scratch_a, 'scratch_slow' in globals())") == "('sk-live-1234', [0, 1, 2], False)"
    # include stores it again from the next cell on
    assert "Stored again from now on: token" in k.execute("%persist include token").stdout
    run(k, "token = 'kept'")
    crash_and_restart(k)
    assert k.evaluate("token") == "'kept'"


def test_exclude_from_configuration(kernel) -> None:
    k = kernel(extra_arguments=["--PersistentKernel.exclude=*_secret"])
    run(k, "db_secret = 'pw'; other = 1")
    assert "Excluded from persistence: *_secret (matching now: db_secret)." in k.execute("%persist exclude").stdout
    out = k.execute("%persist include db_secret").stdout
    assert "Still excluded: db_secret, by the pattern(s) *_secret (from configuration" in out


def test_off_pauses_and_on_stores_what_happened_meanwhile(kernel) -> None:
    k = kernel()
    run(k, "x = 1")  # [1]
    assert "paused" in k.execute("%persist off").stdout  # [2]
    run(k, "x = 2; y = 'while paused'")  # [3]: not journaled
    assert "PAUSED" in k.execute("%persist status").text
    summary = crash_and_restart(k)
    assert "Persistence was paused (%persist off) after cell [2]" in summary
    assert k.evaluate("(x, 'y' in globals())") == "(1, False)"

    assert "paused" in k.execute("%persist off").stdout
    run(k, "x = 3; y = 'kept after on'")
    assert "on again" in k.execute("%persist on").stdout
    crash_and_restart(k)
    assert k.evaluate("(x, y)") == "(3, 'kept after on')"
    assert "already on" in k.execute("%persist on").stdout


def test_status_shows_variables_and_how_each_comes_back(kernel) -> None:
    k = kernel()
    run(k, "import sqlite3\nimport numpy as np\nbig = np.zeros(1000)\nconn = sqlite3.connect(':memory:')")
    shown = k.execute("%persist status")
    text = shown.text
    assert re.search(r"big +ndarray +\d+\.\d KB +stored", text)
    assert re.search(r"conn +Connection +- +recompute", text)
    assert re.search(r"np +module +- +import numpy", text)
    assert shown.html and "<table" in "".join(shown.html) and "Variables (4)" in "".join(shown.html)


def test_help_explains_every_subcommand(kernel) -> None:
    k = kernel()
    page = "".join(k.execute("%persist?").pages)
    for command in ("status", "history", "checkout", "diff", "forget", "exclude", "include", "off", "on", "verify"):
        assert f"%persist {command}" in page


def test_a_long_restore_reports_progress_in_the_log_and_the_summary(kernel, tmp_path: Path) -> None:
    log = tmp_path / "kernel.log"
    with log.open("w") as sink:
        k = kernel("slow", kernel_log=sink)
        run(k, "import time\ntime.sleep(2.5)\nslow = (i for i in range(3))")  # a generator: replayed
        summary = crash_and_restart(k)
        k.shutdown()
    assert re.search(r"in \d+\.\d s \(.*replaying \d+\.\d s\)", summary), summary
    assert "restoring the session: replaying" in log.read_text()


# -- regressions found by review: checkout and exclusion edge cases ---------------------------


def test_a_change_after_a_checkout_in_the_same_cell_is_stored(kernel) -> None:
    k = kernel()
    run(k, "a = [1]")
    run(k, "a.append(2)")
    run(k, "%persist checkout 1\na.append(99)")
    crash_and_restart(k)
    assert k.evaluate("a") == "[1, 99]"


def test_checkout_keeps_only_what_is_provably_unchanged(kernel) -> None:
    k = kernel()
    run(k, "a = [1]; n = 1")
    run(k, "n = 2")
    # Rebound and changed in place in the checkout's own cell, before the checkout: both go back.
    run(k, "n = 5; eval('a.append(2)')\n%persist checkout 1")
    assert k.evaluate("(a, n)") == "([1], 1)"
    crash_and_restart(k)
    assert k.evaluate("(a, n)") == "([1], 1)"
    run(k, "%persist off")
    assert "run %persist on first" in k.execute("%persist checkout 1").stdout


def test_checkout_rebuilds_with_every_cell_and_survives_a_crash(kernel) -> None:
    k = kernel()
    run(k, "l = [1]")  # [1]
    run(k, "l.append(2)")  # [2]
    run(k, "l.append(i for i in range(3))")  # [3]: now unstorable
    run(k, "l = 'other'")  # [4]
    run(k, "%persist checkout 3")
    assert k.evaluate("(l[:2], len(l))") == "([1, 2], 3)"
    crash_and_restart(k)
    assert k.evaluate("(l[:2], len(l))") == "([1, 2], 3)"  # [2]'s append is replayed too


def test_checkout_replay_neither_deletes_nor_replaces_kept_values(kernel) -> None:
    k = kernel()
    run(k, "import sqlite3\ncon = sqlite3.connect(':memory:'); y = [1]; g = (i for i in range(3)); del y")  # [1]
    run(k, "con.execute('create table t (v)'); con.execute('insert into t values (42)'); y = [2]")  # [2]
    run(k, "g = None")  # [3]
    out = k.execute("%persist checkout 2").stdout
    assert "Recomputed g by replaying [1]" in out
    assert k.evaluate("(y, con.execute('select v from t').fetchall(), next(g))") == "([2], [(42,)], 0)"


def test_a_generator_over_a_stored_list_sees_it_once(kernel) -> None:
    k = kernel()
    run(k, "data = [1, 2, 3]")
    run(k, "g = (x for x in data)")
    run(k, "first = next(g); data.append(4)")
    crash_and_restart(k)
    assert k.evaluate("(list(g), data)") == "([2, 3, 4], [1, 2, 3, 4])"


def test_excluding_a_name_takes_the_names_sharing_its_objects_with_it(kernel, session_env) -> None:
    k = kernel()
    run(k, "cfg = {'k': [1, 2]}\nitems = cfg['k']")
    run(k, "%persist exclude items")
    run(k, "cfg['k'].append(30 + 3)")
    summary = crash_and_restart(k)
    assert "recomputed by replay: cfg, items" in summary
    assert k.evaluate("(items, items is cfg['k'])") == "([1, 2, 33], True)"


def test_an_excluded_name_built_from_a_slow_excluded_name_is_left_out_too(kernel) -> None:
    k = kernel()
    run(k, "%persist exclude token header")
    run(k, "import time\ntime.sleep(2.2)\ntoken = 'T' * 3")
    run(k, "header = {'auth': token}")
    summary = crash_and_restart(k)
    assert "header (not restored" in summary and "token (not restored" in summary
    assert "failed during replay" not in summary


def test_a_pruned_value_is_removed_by_a_checkout_not_left_at_a_later_value(kernel) -> None:
    k = kernel(extra_arguments=["--PersistentKernel.history_budget=0"])
    run(k, "import numpy as np\nbig = np.full(3_000_000, 1.0); small = 1")
    run(k, "big = np.full(3_000_000, 2.0); small = 2")
    k.execute("%persist status")  # lets the background write land and the budget prune
    out = k.execute("%persist checkout 1").stdout
    assert "Not restored, so not in the namespace: big (its version from cell 1 was pruned" in out
    assert k.evaluate("('big' in globals(), small)") == "(False, 1)"


def test_an_interrupted_checkout_leaves_the_namespace_as_it_was(kernel) -> None:
    import threading

    k = kernel()
    run(k, "import time\ntime.sleep(3)\ng = (i for i in range(3)); w = 1")  # [1]: replayed by the checkout
    run(k, "g = None; w = 2")  # [2]
    timer = threading.Timer(1.0, k.km.interrupt_kernel)
    timer.start()
    interrupted = k.execute("%persist checkout 1")
    timer.join()
    assert interrupted.ename == "KeyboardInterrupt"
    assert k.evaluate("(g, w)") == "(None, 2)"
    crash_and_restart(k)
    assert k.evaluate("(g, w)") == "(None, 2)"
