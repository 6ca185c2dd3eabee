"""The address proofs (``addresses``): a set's table digest and an object array's item
addresses move whenever what they hold does, over generated sets and mutations; no kernel."""

from __future__ import annotations

import random

import numpy as np
import pytest

from persistent_kernel import addresses

pytestmark = pytest.mark.skipif(not addresses.available(), reason="set tables are not readable on this interpreter")


def _item(rng: random.Random):
    return rng.choice([lambda: rng.randrange(-5, 10**6), lambda: f"s{rng.randrange(10**6)}", lambda: (rng.randrange(9), "t"), lambda: rng.random(), lambda: rng.choice([True, False, None, 0.0, -0.0, 1, 1.0])])()


def _mutation(rng: random.Random, value: set) -> str:
    items = list(value)
    others = {_item(rng) for _ in range(rng.randrange(1, 50))}
    choice = rng.choice(["add", "add-existing", "discard", "remove", "pop", "update", "|=", "-=", "&=", "^=", "clear", "discard-and-add-back", "same-value-other-type"])
    if choice == "add":
        value.add(_item(rng))
    elif choice == "add-existing" and items:
        value.add(rng.choice(items))
    elif choice == "discard":
        value.discard(rng.choice(items) if items else 0)
    elif choice == "remove" and items:
        value.remove(rng.choice(items))
    elif choice == "pop" and items:
        value.pop()
    elif choice == "update":
        value.update(others)
    elif choice == "|=":
        value |= others
    elif choice == "-=":
        value -= set(rng.sample(items, min(len(items), 20))) | others
    elif choice == "&=":
        value &= set(rng.sample(items, len(items) * 9 // 10)) | others
    elif choice == "^=":
        value ^= set(rng.sample(items, min(len(items), 20))) | others
    elif choice == "clear" and rng.random() < 0.2:
        value.clear()
    elif choice == "discard-and-add-back" and items:
        item = rng.choice(items)
        value.discard(item)
        value.add(item)
    elif choice == "same-value-other-type":
        old = rng.choice([x for x in items if type(x) in (bool, int, float)] or [0])
        value.discard(old)
        value.add({bool: int, int: float, float: complex}[type(old)](old))  # equal, and hashed alike
    return choice


def _exact(value: set) -> list[str]:
    return sorted(f"{type(x).__name__}:{x!r}" for x in value)


@pytest.mark.parametrize("seed", range(12))
def test_a_set_table_digest_moves_whenever_the_set_holds_other_objects(seed: int, monkeypatch) -> None:
    monkeypatch.setattr(addresses, "_alone", lambda: True)  # threads other tests left behind never touch these sets
    rng = random.Random(seed)
    value = {_item(rng) for _ in range(rng.choice([5, 500, 20_000]))}
    held = list(value)  # the caller's snapshot: held, so no address is reused
    state, identities = addresses.set_state(value), sorted(map(id, value))
    for step in range(60):
        change = _mutation(rng, value)
        now = addresses.set_state(value)
        if sorted(map(id, value)) != identities:
            assert now != state, f"step {step}: {change} was not seen"
        assert addresses.set_state(value) == now  # reading it changes nothing
        held = list(value)
        state, identities = now, sorted(map(id, held))
    assert _exact(value) == _exact(set(held))


def test_only_exact_sets_have_a_readable_table() -> None:
    class Tagged(set):
        """A subclass: its layout may differ, so it is never read."""

    assert addresses.set_state(Tagged({1})) is None
    assert addresses.set_state(frozenset({1})) is None
    assert addresses.set_state([1]) is None


@pytest.mark.parametrize("order", ["C", "F"])
def test_an_object_array_lists_its_items_addresses_in_memory_order(order: str) -> None:
    array = np.empty((40, 7), dtype=object, order=order)
    flat = array.ravel(order="K")
    for index in range(flat.size):
        flat[index] = f"item {index}"
    seen = addresses.array_addresses(array)
    assert seen is not None and seen.tolist() == [id(item) for item in array.ravel(order=order).tolist()]
    array[3, 4] = "changed"
    assert seen.tolist() == [id(item) for item in array.ravel(order=order).tolist()]  # a view: it follows the array
    assert addresses.array_addresses(array[::2]) is None  # not one block of memory
    assert addresses.array_addresses(np.empty(0, dtype=object)).size == 0


def test_sets_are_proven_without_importing_numpy() -> None:
    """numpy is the user's to import (its settings and random state become part of the session
    once it is): a kernel without it proves sets by their table and compares items one by one."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from persistent_kernel import addresses, chunked\n"
        "assert addresses.available()\n"
        "s = {f'x{i}' for i in range(50000)}\n"
        "first = chunked.chunks_of(s).chunks\n"
        "assert chunked.chunks_of(s).chunks == first\n"
        "s.add('new')\n"
        "assert chunked.chunks_of(s).chunks != first\n"
        "assert 'numpy' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("seed", range(6))
def test_same_objects_is_identity_never_equality(seed: int) -> None:
    """Equal objects that are not the same ones (1, True, 1.0; two equal strings; -0.0 and 0.0)
    are different; the same ones at the same places are the same; a window past the end is not."""
    rng = random.Random(seed)
    snapshot = [_item(rng) for _ in range(rng.randrange(1, 3000))]
    at = rng.randrange(50)
    items = [_item(rng) for _ in range(at)] + list(snapshot) + [_item(rng) for _ in range(rng.randrange(50))]
    assert addresses.same_objects(items, at, snapshot)
    assert not addresses.same_objects(items, at + 1, snapshot) or all(x is y for x, y in zip(items[at + 1 :], snapshot))
    index = rng.randrange(len(snapshot))
    old = snapshot[index]
    equal = {bool: int, int: float, float: complex, str: lambda s: "".join(list(s)) if s else "".join(["", ""]), tuple: lambda t: tuple(list(t)), type(None): lambda n: n}[type(old)](old)
    items[at + index] = equal
    if equal is not old:
        assert equal == old and not addresses.same_objects(items, at, snapshot)
    assert not addresses.same_objects(items[: at + len(snapshot) - 1], at, snapshot)  # past the end
    assert addresses.same_objects(items, len(items), [])


def test_a_set_is_not_read_in_place_while_a_thread_of_the_notebook_runs() -> None:
    """Hashing a table lets other threads run; one of the notebook's could grow the set and free
    the table being read. While such a thread lives, the digest is not taken (the items are
    listed instead, and the chunks still follow every change)."""
    import threading

    from persistent_kernel import chunked

    ids = {f"id{i}" for i in range(40_000)}
    alone = addresses._alone()  # False when an earlier test left a thread running
    assert (addresses.set_state(ids) is not None) == alone
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        assert addresses.set_state(ids) is None
        first = chunked.chunks_of(ids).chunks
        ids.add("new")
        assert chunked.chunks_of(ids).chunks != first
    finally:
        stop.set()
        worker.join()
    assert (addresses.set_state(ids) is not None) == alone


def test_the_kernels_own_threads_do_not_count(monkeypatch) -> None:
    """Threads whose code is the kernel's (by target, by class, a Timer by its function) leave the
    digest on; one more thread of the notebook's turns it off."""
    import threading

    stop = threading.Event()

    def kernel_loop() -> None:
        stop.wait()

    def notebook_loop() -> None:
        stop.wait()

    class KernelThread(threading.Thread):
        def run(self) -> None:
            stop.wait()

    kernel_loop.__module__ = "ipykernel.iostream"
    KernelThread.__module__ = "persistent_kernel.writer"
    timer = threading.Timer(60, kernel_loop)
    threads = [threading.Thread(target=kernel_loop, daemon=True), KernelThread(daemon=True), timer]
    for thread in threads:
        thread.start()
    try:
        me = threading.current_thread()
        monkeypatch.setattr(threading, "enumerate", lambda: [me, *threads])  # what other tests left running aside
        assert addresses._alone()
        threads.append(threading.Thread(target=notebook_loop, daemon=True))
        threads[-1].start()
        assert not addresses._alone()
    finally:
        stop.set()
        timer.cancel()
        for thread in threads:
            thread.join()
