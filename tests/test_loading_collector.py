"""What a load leaves the cyclic garbage collector (``loading._collection_paused``): no kernel, no store."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from persistent_kernel import loading


@pytest.fixture(autouse=True)
def collector_as_found() -> Iterator[None]:
    was_enabled = gc.isenabled()
    yield
    (gc.enable if was_enabled else gc.disable)()


def test_a_load_hands_what_it_made_to_the_oldest_generation_with_no_young_pass_pending() -> None:
    if gc.get_freeze_count():
        pytest.skip("this interpreter starts with frozen objects (CPython 3.12): the load leaves them be (next test)")
    gc.enable()
    gc.collect()
    with loading._collection_paused():
        assert not gc.isenabled()  # no collection while the value is unpickled
        made = [[i] for i in range(50_000)]
    assert gc.isenabled()
    assert gc.get_count()[0] < 100  # the first allocation does not walk the 50,000 lists
    assert gc.get_freeze_count() == 0
    assert any(obj is made for obj in gc.get_objects(generation=2))


def test_a_cycle_made_during_a_load_is_still_collected() -> None:
    gc.enable()

    class Node:
        pass

    with loading._collection_paused():
        node = Node()
        node.me = node  # type: ignore[attr-defined]
        alive = weakref.ref(node)
    del node
    assert alive() is not None  # a cycle: refcounting alone does not free it
    gc.collect()
    assert alive() is None


def test_objects_the_process_froze_stay_frozen() -> None:
    gc.enable()
    gc.freeze()
    frozen = gc.get_freeze_count()
    try:
        with loading._collection_paused():
            made = [[i] for i in range(1000)]
        assert gc.get_freeze_count() == frozen  # unfreeze would have let them go: not used
        assert gc.isenabled() and made
    finally:
        gc.unfreeze()


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    with loading._collection_paused():
        made = [[i] for i in range(1000)]
    assert not gc.isenabled()
    assert gc.get_count()[0] >= len(made)  # nothing was handed on: the collector's generations are as the process left them
