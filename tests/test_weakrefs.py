"""Weak references come back pointing at the objects stored with them (issue #13, class 5)."""

from __future__ import annotations

import gc
import sys
import weakref

import pytest

from persistent_kernel.serialize import dumps, loads
from persistent_kernel.tracking import reachable_ids


class Node:
    def __init__(self, v: int) -> None:
        self.v = v

    def get(self) -> int:
        return self.v


def _weak_makers() -> dict[str, tuple]:
    """kind -> (make from nodes, check on (restored weak, restored nodes))."""
    return {
        "ref": (lambda ns: weakref.ref(ns[0]), lambda w, ns: w() is ns[0]),
        "ref_callback": (lambda ns: weakref.ref(ns[0], print), lambda w, ns: w() is ns[0] and w.__callback__ is print),
        "weakmethod": (lambda ns: weakref.WeakMethod(ns[1].get), lambda w, ns: w().__self__ is ns[1] and w()() == 1),
        "value_dict": (lambda ns: weakref.WeakValueDictionary(enumerate(ns)), lambda w, ns: all(w[i] is n for i, n in enumerate(ns)) and len(w) == len(ns)),
        "key_dict": (lambda ns: weakref.WeakKeyDictionary({n: n.v for n in ns}), lambda w, ns: all(w[n] == n.v for n in ns) and len(w) == len(ns)),
        "weakset": (lambda ns: weakref.WeakSet(ns), lambda w, ns: all(n in w for n in ns) and len(w) == len(ns)),
        "finalize": (lambda ns: weakref.finalize(ns[2], print, "gone"), lambda w, ns: w.alive and w.peek()[0] is ns[2]),
        "proxy": (lambda ns: weakref.proxy(ns[1]), lambda w, ns: w.v == 1 and (ns[1].__setattr__("v", 7) or w.v == 7)),
    }


MAKERS = _weak_makers()


@pytest.mark.parametrize("arrangement", ["together", "nested", "weak_first"])
@pytest.mark.parametrize("kind", list(MAKERS))
def test_a_weak_reference_comes_back_pointing_at_the_stored_objects(kind: str, arrangement: str) -> None:
    make, check = MAKERS[kind]
    nodes = [Node(i) for i in range(3)]
    weak = make(nodes)
    namespace = {"nodes": nodes, "weak": weak}
    # the sharing walk groups the weak reference with what it points at
    assert reachable_ids(weak, namespace) & reachable_ids(nodes, namespace)
    values = {
        "together": {"nodes": nodes, "weak": weak},
        "nested": {"holder": {"w": [weak]}, "nodes": nodes},
        "weak_first": {"a_weak": weak, "z_nodes": nodes},
    }[arrangement]
    stored = dumps(values)
    back = loads(stored.method, stored.payload, stored.buffers)
    restored_weak = back.get("weak", back.get("a_weak")) or back.get("holder", {}).get("w", [None])[0]
    restored_nodes = back.get("nodes", back.get("z_nodes"))
    assert check(restored_weak, restored_nodes)


@pytest.mark.parametrize("kind", ["ref", "weakmethod", "proxy", "finalize"])
def test_a_dead_reference_comes_back_dead(kind: str) -> None:
    make, _ = MAKERS[kind]
    nodes = [Node(i) for i in range(3)]
    weak = make(nodes)
    nodes.clear()
    gc.collect()
    stored = dumps({"weak": weak})
    back = loads(stored.method, stored.payload, stored.buffers)["weak"]
    if kind == "proxy":
        with pytest.raises(ReferenceError):
            back.v  # noqa: B018 - touching a dead proxy raises
    elif kind == "finalize":
        assert not back.alive
    else:
        assert back() is None


def test_an_entry_goes_when_its_object_goes_after_a_restore() -> None:
    nodes = [Node(i) for i in range(3)]
    values = {"nodes": nodes, "wvd": weakref.WeakValueDictionary(enumerate(nodes)), "ws": weakref.WeakSet(nodes)}
    stored = dumps(values)
    back = loads(stored.method, stored.payload, stored.buffers)
    del back["nodes"][1]
    gc.collect()
    assert sorted(back["wvd"].keys()) == [0, 2] and len(back["ws"]) == 2


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="a proxy's referent is read from CPython's struct")
def test_a_proxy_to_a_notebook_function_and_to_a_class_instance() -> None:
    from persistent_kernel.weakrefs import proxy_referent

    def function() -> int:
        return 3

    assert proxy_referent(weakref.proxy(function)) is function
    node = Node(5)
    proxy = weakref.proxy(node)
    assert proxy_referent(proxy) is node
    del node
    gc.collect()
    assert proxy_referent(proxy) is None
