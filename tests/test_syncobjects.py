"""Synchronization objects come back usable after dumps/loads, wherever they sit and whoever held them.

The corpus: every kind × where it sits in the stored graph × who held it when it was stored.
Nothing here may block: every acquire has a timeout, and "acquirable" is tried from another
thread (an RLock would let its owner re-enter).
"""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import pickle
import queue
import sys
import threading
import types
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import dill
import pytest

from persistent_kernel.serialize import Unserializable, dumps, loads
from persistent_kernel.syncobjects import released_locks


@pytest.fixture
def main_module(monkeypatch):
    module = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", module)
    return module


def roundtrip(values: dict) -> dict:
    s = dumps(values)
    return loads(s.method, s.payload, [bytearray(b) for b in s.buffers])


def in_thread(function, timeout: float = 5):
    """``function()`` in another thread; its result, or an AssertionError if it does not return in time."""
    box: list = []
    thread = threading.Thread(target=lambda: box.append(function()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "blocked: the restored object is not usable"
    return box[0]


def acquirable(lock) -> bool:
    """Another thread can take it within a second (and gives it back)."""

    def take() -> bool:
        if lock.acquire(timeout=1):
            lock.release()
            return True
        return False

    return in_thread(take)


@contextmanager
def held_by_thread(take, give):
    """Another thread runs ``take()`` and holds on until the block ends (the object is stored meanwhile)."""
    started, done = threading.Event(), threading.Event()

    def hold() -> None:
        take()
        started.set()
        done.wait(10)
        give()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        yield
    finally:
        done.set()
        thread.join(5)


class Holder:
    """A library-style object (stored by stdlib pickle) with a sync object as an attribute."""

    def __init__(self, thing) -> None:
        self.thing = thing
        self.label = "holder"


# -- the kinds: (make, hold in this thread, hold in another thread, check the restored one) --


def _lock_check(back) -> None:
    assert acquirable(back)
    assert back.acquire(timeout=1)  # also in this thread
    back.release()


def _sem_check(expected: int):
    def check(back) -> None:
        assert back._value == expected
        assert in_thread(lambda: back.acquire(timeout=1))
        back.release()

    return check


def _event_check(flag: bool):
    def check(back) -> None:
        assert back.is_set() is flag
        assert in_thread(lambda: back.wait(timeout=0.2)) is flag
        back.set()
        assert back.wait(timeout=1)

    return check


def _queue_check(expected: list, kind=queue.Queue, maxsize: int = 0):
    def check(back) -> None:
        assert type(back) is kind and back.maxsize == maxsize
        assert acquirable(back.mutex)
        got = in_thread(lambda: [back.get(timeout=1) for _ in expected])
        assert got == expected
        in_thread(lambda: back.put("more", timeout=1))
        assert back.get(timeout=1) == "more"

    return check


def _condition_check(back) -> None:
    assert acquirable(back)
    assert back._waiters == collections.deque()

    def notify() -> bool:
        with back:
            back.notify_all()
        return True

    assert in_thread(notify)
    with back:
        assert not back.wait(timeout=0.05)  # nobody notifies: times out instead of hanging


def _barrier_check(back) -> None:
    assert back.parties == 2 and back.n_waiting == 0 and not back.broken
    other = threading.Thread(target=lambda: back.wait(timeout=5), daemon=True)
    other.start()
    back.wait(timeout=5)  # both parties arrive: it opens
    other.join(5)


def _simple_queue_check(expected: list):
    def check(back) -> None:
        assert in_thread(lambda: [back.get(timeout=1) for _ in expected]) == expected
        assert back.empty()

    return check


def _set(event):
    event.set()
    return event


def _filled(q, items):
    for item in items:
        q.put(item)
    return q


KINDS = {
    # name: (make, take (None: cannot be held), give, check)
    "Lock": (threading.Lock, lambda o: o.acquire(), lambda o: o.release(), _lock_check),
    "_thread.allocate_lock": (__import__("_thread").allocate_lock, lambda o: o.acquire(), lambda o: o.release(), _lock_check),
    "RLock": (threading.RLock, lambda o: (o.acquire(), o.acquire()), lambda o: (o.release(), o.release()), _lock_check),
    "PyRLock": (threading._PyRLock, lambda o: o.acquire(), lambda o: o.release(), _lock_check),
    "Condition": (threading.Condition, lambda o: o.acquire(), lambda o: o.release(), _condition_check),
    "Condition(Lock)": (lambda: threading.Condition(threading.Lock()), lambda o: o.acquire(), lambda o: o.release(), _condition_check),
    "Semaphore": (lambda: threading.Semaphore(3), lambda o: o.acquire(), lambda o: o.release(), None),
    "BoundedSemaphore": (lambda: threading.BoundedSemaphore(2), lambda o: o.acquire(), lambda o: o.release(), None),
    "Event": (threading.Event, None, None, _event_check(False)),
    "Event set": (lambda: _set(threading.Event()), None, None, _event_check(True)),
    "Barrier": (lambda: threading.Barrier(2), None, None, _barrier_check),
    "Queue": (lambda: _filled(queue.Queue(5), [1, 2]), lambda o: o.mutex.acquire(), lambda o: o.mutex.release(), _queue_check([1, 2], maxsize=5)),
    "LifoQueue": (lambda: _filled(queue.LifoQueue(), [1, 2]), lambda o: o.mutex.acquire(), lambda o: o.mutex.release(), _queue_check([2, 1], queue.LifoQueue)),
    "PriorityQueue": (lambda: _filled(queue.PriorityQueue(), [3, 1, 2]), lambda o: o.mutex.acquire(), lambda o: o.mutex.release(), _queue_check([1, 2, 3], queue.PriorityQueue)),
    "SimpleQueue": (lambda: _filled(queue.SimpleQueue(), ["a", "b"]), None, None, _simple_queue_check(["a", "b"])),
}


def _semaphore_expectation(name: str, holder: str) -> int:
    start = {"Semaphore": 3, "BoundedSemaphore": 2}[name]
    return start - 1 if holder != "nobody" else start  # a semaphore keeps its counter


PLACEMENTS = ["bare", "list", "dict", "attribute", "notebook_instance", "deque"]


def _place(obj, placement: str, main_module):
    if placement == "bare":
        return obj
    if placement == "list":
        return [0, obj, "x"]
    if placement == "dict":
        return {"key": {"inner": obj}}
    if placement == "attribute":
        return Holder(obj)
    if placement == "deque":
        return collections.deque([obj, 1])
    exec("class Worker:\n    def __init__(self, thing):\n        self.thing = thing\n", main_module.__dict__)
    return main_module.Worker(obj)


def _take_out(value, placement: str):
    return {
        "bare": lambda v: v,
        "list": lambda v: v[1],
        "dict": lambda v: v["key"]["inner"],
        "attribute": lambda v: v.thing,
        "notebook_instance": lambda v: v.thing,
        "deque": lambda v: v[0],
    }[placement](value)


CASES = [
    (name, placement, holder)
    for name, (make, take, give, check) in KINDS.items()
    for placement in PLACEMENTS
    for holder in (["nobody", "this thread", "another thread"] if take else ["nobody"])
]


@pytest.mark.parametrize(("name", "placement", "holder"), CASES)
def test_sync_object_comes_back_usable(name: str, placement: str, holder: str, request) -> None:
    make, take, give, check = KINDS[name]
    main_module = request.getfixturevalue("main_module") if placement == "notebook_instance" else None
    obj = make()
    value = _place(obj, placement, main_module)
    if holder == "this thread":
        take(obj)
        try:
            s = dumps({"v": value})
        finally:
            give(obj)
    elif holder == "another thread":
        with held_by_thread(lambda: take(obj), lambda: give(obj)):
            s = dumps({"v": value})
    else:
        s = dumps({"v": value})
    assert s.method == ("dill" if placement == "notebook_instance" else "pickle")
    with released_locks() as released:
        back = _take_out(loads(s.method, s.payload, [bytearray(b) for b in s.buffers])["v"], placement)
    assert type(back) is type(obj) and back is not obj
    if name in ("Lock", "allocate_lock", "RLock", "PyRLock"):
        assert (back in released) is (holder != "nobody"), "a lock held when stored is collected for the restore to name"
    elif holder == "nobody":
        assert released == []
    (check or _sem_check(_semaphore_expectation(name, holder)))(back)


def test_the_corpus_is_what_dill_alone_gets_wrong() -> None:
    """Why: dill on its own restores a held Lock held, an RLock nobody held unusable (owned by thread 0)
    and refuses to load an RLock another thread held."""
    lock = threading.Lock()
    lock.acquire()
    assert dill.loads(dill.dumps(lock)).locked()
    assert not dill.loads(dill.dumps(threading.RLock())).acquire(timeout=0.1)
    rlock = threading.RLock()
    with held_by_thread(rlock.acquire, rlock.release):
        stored = dill.dumps(rlock)
    with pytest.raises(pickle.UnpicklingError, match="Cannot acquire lock"):
        dill.loads(stored)


def test_a_queue_with_a_consumer_waiting_and_a_thread_inside_keeps_its_items() -> None:
    q: queue.Queue = queue.Queue()
    consumer = threading.Thread(target=lambda: q.get(timeout=5), daemon=True)
    consumer.start()
    while not q.not_empty._waiters:
        threading.Event().wait(0.01)
    with held_by_thread(q.mutex.acquire, q.mutex.release):
        q.queue.extend(["kept", "too"])  # as if put() had run: the test holds the mutex in place of a producer
        q.unfinished_tasks += 2
        back = roundtrip({"q": q})["q"]
    q.put("for the consumer")
    consumer.join(5)
    assert not back.not_empty._waiters and back.unfinished_tasks == 2
    assert in_thread(lambda: [back.get(timeout=1), back.get(timeout=1)]) == ["kept", "too"]
    back.task_done()
    back.task_done()
    in_thread(back.join)  # no task left: join returns


def test_a_barrier_with_a_thread_waiting_in_it_comes_back_empty_and_a_broken_one_broken() -> None:
    barrier = threading.Barrier(2)

    def wait() -> None:
        with pytest.raises(threading.BrokenBarrierError):
            barrier.wait(timeout=5)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    while barrier.n_waiting == 0:
        threading.Event().wait(0.01)
    back = roundtrip({"b": barrier})["b"]
    barrier.abort()
    waiter.join(5)
    _barrier_check(back)
    assert roundtrip({"b": barrier})["b"].broken


def test_a_lock_shared_by_a_condition_and_a_variable_stays_one_lock() -> None:
    lock = threading.RLock()
    condition = threading.Condition(lock)
    lock.acquire()
    back = roundtrip({"lock": lock, "condition": condition})
    lock.release()
    assert back["condition"]._lock is back["lock"]
    with back["condition"]:
        assert not in_thread(lambda: back["lock"].acquire(timeout=0.1))  # the condition holds that very lock
    assert acquirable(back["lock"])


def test_subclasses_keep_their_class_attributes_and_cycles() -> None:
    q = _filled(Holderless(3), ["x"])
    q.me = q
    q.note = "mine"
    back = roundtrip({"q": q})["q"]
    assert type(back) is Holderless and back.me is back and back.note == "mine"
    assert back.get(timeout=1) == "x" and back.maxsize == 3


class Holderless(queue.Queue):
    pass


def test_a_semaphore_at_zero_stays_at_zero_and_a_bounded_one_keeps_its_bound() -> None:
    empty = threading.Semaphore(0)
    bounded = threading.BoundedSemaphore(2)
    bounded.acquire()
    back = roundtrip({"empty": empty, "bounded": bounded})
    assert not back["empty"].acquire(timeout=0.05)
    back["bounded"].release()
    with pytest.raises(ValueError):
        back["bounded"].release()  # the bound is kept: 2


def test_library_objects_with_locks_inside(tmp_path: Path) -> None:
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("a.txt", "alpha")
        out.writestr("b.txt", "beta")
    reader = zipfile.ZipFile(archive)
    handler = logging.StreamHandler(io.StringIO())
    with held_by_thread(reader._lock.acquire, reader._lock.release), held_by_thread(handler.lock.acquire, handler.lock.release):
        back = roundtrip({"reader": reader, "handler": handler})
    reader.close()
    assert in_thread(lambda: back["reader"].read("b.txt")) == b"beta"
    in_thread(lambda: back["handler"].handle(logging.makeLogRecord({"msg": "hi"})))
    back["reader"].close()


def test_a_lock_in_a_notebook_class_instance_goes_through_dill_released(main_module) -> None:
    exec(
        "import threading\nclass Account:\n    def __init__(self):\n        self.lock = threading.Lock()\n        self.balance = 5\n"
        "acct = Account()\nacct.lock.acquire()\n",
        main_module.__dict__,
    )
    s = dumps({"acct": main_module.acct, "Account": main_module.Account})
    assert s.method == "dill"
    back = loads(s.method, s.payload, s.buffers, main_module)
    assert isinstance(back["acct"], back["Account"]) and back["acct"].balance == 5
    assert back["acct"].lock.acquire(timeout=1)


def test_threads_are_refused_and_so_is_an_executor_with_threads() -> None:
    with pytest.raises(Unserializable, match="thread"):
        dumps({"t": threading.Thread(target=print)})
    with ThreadPoolExecutor(1) as pool:
        pool.submit(int).result()
        with pytest.raises(Unserializable):
            dumps({"pool": pool})


def test_a_pending_future_is_refused_and_a_done_one_kept() -> None:
    from concurrent.futures import Future

    with pytest.raises(Unserializable, match="not done"):
        dumps({"f": Future()})
    done: Future = Future()
    done.set_result(42)
    back = roundtrip({"f": done})["f"]
    assert back.result(timeout=1) == 42


def test_asyncio_primitives_come_back_released_and_unbound() -> None:
    async def use() -> dict:
        lock, event, semaphore, bounded = asyncio.Lock(), asyncio.Event(), asyncio.Semaphore(2), asyncio.BoundedSemaphore(2)
        condition, q = asyncio.Condition(), asyncio.Queue(4)
        await lock.acquire()
        event.set()
        await semaphore.acquire()
        await bounded.acquire()
        await condition.acquire()
        await q.put("item")
        return {"lock": lock, "event": event, "semaphore": semaphore, "bounded": bounded, "condition": condition, "q": q}

    values = asyncio.run(use())
    back = roundtrip(values)

    async def check() -> None:
        await asyncio.wait_for(back["lock"].acquire(), 1)
        assert back["event"].is_set()
        await asyncio.wait_for(back["semaphore"].acquire(), 1)
        assert back["semaphore"].locked()  # 2 - 1 stored, - 1 now
        back["bounded"].release()
        with pytest.raises(ValueError):
            back["bounded"].release()
        await asyncio.wait_for(back["condition"].acquire(), 1)
        assert await asyncio.wait_for(back["q"].get(), 1) == "item" and back["q"].maxsize == 4
        back["q"].task_done()
        await asyncio.wait_for(back["q"].join(), 1)

    asyncio.run(check())
