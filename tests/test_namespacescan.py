"""The incremental identity scan (``namespacescan``) gives exactly what the full scan
(``tracking.user_names``) gives, and the same (written, deleted), over generated sequences of
every kind of change to a namespace and to IPython's hidden names; no kernel."""

from __future__ import annotations

import random
import threading

import pytest

from persistent_kernel import namespacescan
from persistent_kernel.tracking import rebound, user_names

pytestmark = pytest.mark.skipif(not namespacescan.available(), reason="dict tables are not readable on this interpreter")


@pytest.fixture
def no_other_threads(monkeypatch):
    """Threads earlier tests left behind never touch these dicts: read the tables regardless."""
    monkeypatch.setattr(namespacescan, "_safe_to_read", lambda: True)

_NAMES = [f"v{i}" for i in range(60)] + ["x", "df", "_private", "_", "_i", "_ii", "_i3", "_7", "In", "Out", "exit", "__doc__"]


def _value(rng: random.Random):
    return rng.choice([lambda: rng.randrange(-5, 300), lambda: [rng.random()], lambda: f"s{rng.randrange(10**6)}", lambda: object(), lambda: None])()


def _change(rng: random.Random, ns: dict, hidden: dict, step: int) -> str:
    names = [k for k in ns if isinstance(k, str)]
    choice = rng.choice(
        ["bind", "bind", "rebind-same", "rebind", "delete", "delete-and-back", "pop", "popitem", "popitem-and-new", "update-many",
         "clear-some", "history", "hide", "unhide", "hide-same-object", "non-str-key", "drop-non-str-key", "setdefault", "nothing"]
    )
    if choice == "bind":
        ns[rng.choice(_NAMES)] = _value(rng)
    elif choice == "rebind-same" and names:
        name = rng.choice(names)
        ns[name] = ns[name]
    elif choice == "rebind" and names:
        ns[rng.choice(names)] = _value(rng)
    elif choice == "delete" and names:
        del ns[rng.choice(names)]
    elif choice == "delete-and-back" and names:
        name = rng.choice(names)
        value = ns.pop(name)
        ns[name] = value if rng.random() < 0.5 else _value(rng)
    elif choice == "pop" and names:
        ns.pop(rng.choice(names))
    elif choice == "popitem" and ns:
        ns.popitem()
    elif choice == "popitem-and-new" and ns:
        ns.popitem()
        ns[f"new{step}"] = _value(rng)
    elif choice == "update-many":
        ns.update({f"bulk{step}_{i}": i for i in range(rng.randrange(1, 400))})  # resizes
    elif choice == "clear-some":
        for name in rng.sample(names, min(len(names), rng.randrange(0, 200))):
            del ns[name]
    elif choice == "history":  # what IPython does with every cell
        for name, value in ((f"_i{step}", f"cell {step}"), ("_i", f"cell {step}"), ("_ii", "older"), ("_iii", "oldest")):
            ns[name] = value
            hidden[name] = value
    elif choice == "hide" and names:
        name = rng.choice(names)
        hidden[name] = ns[name]  # push(interactive=False): the same object in both
    elif choice == "unhide" and hidden:
        hidden.pop(rng.choice(list(hidden)))
    elif choice == "hide-same-object" and names:
        name = rng.choice(names)
        value = ns[name]
        hidden[name] = value
        ns[name] = value  # the namespace's slot does not change
    elif choice == "non-str-key":
        ns[step] = "a key that is not a str"
    elif choice == "drop-non-str-key":
        for key in [k for k in ns if not isinstance(k, str)]:
            del ns[key]
    elif choice == "setdefault":
        ns.setdefault(rng.choice(_NAMES), _value(rng))
    return choice


@pytest.mark.parametrize("seed", range(40))
def test_the_incremental_scan_is_the_full_scan_over_generated_changes(seed: int, no_other_threads) -> None:
    rng = random.Random(seed)
    ns: dict = {name: _value(rng) for name in rng.sample(_NAMES, 30)}
    ns.update({f"_i{i}": f"cell {i}" for i in range(rng.randrange(0, 300))})
    hidden: dict = {"In": [], "Out": {}, "exit": object(), "v1": ns.get("v1")}
    scanner = namespacescan.NamespaceScan()
    previous = scanner.scan(ns, hidden)
    assert previous == user_names(ns, hidden)
    done = []
    for step in range(120):
        for _ in range(rng.randrange(0, 4)):
            done.append(_change(rng, ns, hidden, step))
        scan = scanner.scan(ns, hidden)
        assert scan == user_names(ns, hidden), (seed, step, done[-4:])
        assert scanner.rebound(previous, scan) == rebound(previous, scan), (seed, step, done[-4:])
        previous = scan


def test_a_scan_handed_out_is_never_changed_afterwards(no_other_threads) -> None:
    ns = {"a": 1, "b": [2]}
    scanner = namespacescan.NamespaceScan()
    first = scanner.scan(ns, {})
    kept = dict(first)
    ns["a"] = 5
    del ns["b"]
    second = scanner.scan(ns, {})
    assert first == kept and second == {"a": id(5)}


def test_rebound_against_an_older_scan_compares_the_scans(no_other_threads) -> None:
    """The checkpointer's last committed scan may be older than the scanner's last (a cell whose commit failed)."""
    ns = {"a": 1, "b": 2}
    scanner = namespacescan.NamespaceScan()
    oldest = scanner.scan(ns, {})
    ns["a"] = 10
    scanner.scan(ns, {})
    ns["b"] = 20
    newest = scanner.scan(ns, {})
    assert scanner.rebound(oldest, newest) == ({"a", "b"}, set())


def test_a_namespace_with_a_key_that_is_not_a_str_gets_the_full_scan(no_other_threads) -> None:
    ns: dict = {"a": 1, 5: "five"}
    scanner = namespacescan.NamespaceScan()
    assert scanner.scan(ns, {}) == {"a": id(1)}
    ns["b"] = 2
    assert scanner.scan(ns, {}) == user_names(ns, {})
    del ns[5]
    ns["c"] = 3
    assert scanner.scan(ns, {}) == user_names(ns, {})


def test_a_thread_changing_the_namespace_meanwhile_is_caught_up_with() -> None:
    """Another thread binding and deleting names (resizing the dict) while scans run: the tables
    are not read meanwhile (a resize would free the one being copied), no scan fails, and once
    the thread stops the scan is exact."""
    ns: dict = {f"v{i}": i for i in range(200)}
    scanner = namespacescan.NamespaceScan()
    stop = threading.Event()

    def churn() -> None:
        step = 0
        while not stop.is_set():
            step += 1
            ns[f"t{step % 500}"] = object()
            ns.pop(f"t{(step * 7) % 500}", None)

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        assert namespacescan._read(ns) is None
        for _ in range(3000):
            scanner.scan(ns, {})
    finally:
        stop.set()
        thread.join()
    assert scanner.scan(ns, {}) == user_names(ns, {})


def test_where_tables_cannot_be_read_every_scan_is_the_full_one(monkeypatch) -> None:
    monkeypatch.setattr(namespacescan, "_available", False)
    ns = {"a": 1}
    scanner = namespacescan.NamespaceScan()
    first = scanner.scan(ns, {})
    ns["b"] = 2
    second = scanner.scan(ns, {})
    assert second == user_names(ns, {}) and scanner.rebound(first, second) == ({"b"}, set())


def test_a_stable_namespace_is_not_read_whole_again(monkeypatch, no_other_threads) -> None:
    """The point of it: cells that bind a name or two, and IPython's history, cost a few slots each."""
    ns: dict = {f"v{i}": [i] for i in range(100)}
    hidden: dict = {}
    scanner = namespacescan.NamespaceScan()
    whole = []
    read_whole = scanner._read_whole
    monkeypatch.setattr(scanner, "_read_whole", lambda *args: whole.append(1) or read_whole(*args))
    for cell in range(1, 400):
        ns[f"_i{cell}"] = hidden[f"_i{cell}"] = ns["_i"] = hidden["_i"] = f"cell {cell}"
        ns[f"v{cell % 100}"] = [cell]
        previous = scanner._handed
        scan = scanner.scan(ns, hidden)
        if previous is not None:
            assert scanner.rebound(previous, scan) == ({f"v{cell % 100}"}, set())
    assert scan == user_names(ns, hidden)
    assert len(whole) <= 12  # the first read, then about one per doubling of the two tables
