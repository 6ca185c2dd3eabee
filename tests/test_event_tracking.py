"""What an event read and what set it off, without a kernel (#7)."""

from __future__ import annotations

import sys
import threading
import types
from typing import Any

import pytest

from persistent_kernel.events import _MONITOR, NotebookCodeRecorder, describe_comm_message
from persistent_kernel.tracking import ReadTracker


def notebook(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, "<cell>", "exec"), namespace)  # noqa: S102 - a notebook's cell, in a test
    return namespace


HAS_MONITORING = hasattr(sys, "monitoring")
needs_monitoring = pytest.mark.skipif(not HAS_MONITORING, reason="sys.monitoring is Python 3.12+")
# Both ways of being told what ran: sys.monitoring where the interpreter has it, the trace function everywhere.
MECHANISMS = [pytest.param(True, id="monitoring", marks=needs_monitoring), pytest.param(False, id="trace")]


@pytest.mark.parametrize("monitoring", MECHANISMS)
def test_the_recorder_sees_notebook_code_a_library_calls_and_nothing_else(monitoring: bool) -> None:
    ns = notebook(
        """
tuned = []
limits = {'max': 10}
unrelated = [1]
def clamp(v):
    return min(v, limits['max'])
def on_change(change):
    tuned.append(clamp(change['new']))
"""
    )
    library = types.SimpleNamespace(callbacks=[ns["on_change"]])

    def fire(value: int) -> None:  # a widget library's notifier: not notebook code
        for callback in library.callbacks:
            callback({"new": value})

    for value in (42, 7):  # the second time, library code already told once is silent (monitoring)
        with NotebookCodeRecorder(ns, monitoring=monitoring) as recorder:
            fire(value)
        assert recorder.complete
        assert {code.co_name for code in recorder.codes} == {"on_change", "clamp"}
    with NotebookCodeRecorder(ns, monitoring=monitoring) as recorder:
        fire(3)
    assert recorder.complete
    assert {code.co_name for code in recorder.codes} == {"on_change", "clamp"}
    reads = ReadTracker().code_reads(recorder.codes, ns)
    assert {"tuned", "clamp", "limits"} <= reads
    assert "unrelated" not in reads
    assert ns["tuned"][:3] == [10, 7, 3]
    assert sys.gettrace() is None  # removed again
    if monitoring:
        assert sys.monitoring.get_events(_MONITOR._tool) == 0  # events are off between recordings
        recorded = set(recorder.codes)
        ns["on_change"]({"new": 1})  # notebook code run after the recording is told to no one
        assert recorder.codes == recorded


def test_with_another_tracer_installed_the_trace_recorder_stands_aside_and_says_so() -> None:
    ns = notebook("def f():\n    return 1\n")
    calls: list[str] = []

    def other(frame: Any, event: str, arg: Any) -> None:
        calls.append(event)

    previous = sys.gettrace()  # a coverage run's own tracer, if any
    sys.settrace(other)
    try:
        with NotebookCodeRecorder(ns, monitoring=False) as recorder:
            ns["f"]()
        assert sys.gettrace() is other
    finally:
        sys.settrace(previous)
    assert not recorder.complete and not recorder.codes
    assert calls  # the other tracer kept working


def test_a_tracer_installed_meanwhile_is_left_in_place_and_the_trace_record_is_incomplete() -> None:
    ns = notebook("def f():\n    return 1\n")

    def debugger(frame: Any, event: str, arg: Any) -> None:
        return None

    previous = sys.gettrace()
    try:
        with NotebookCodeRecorder(ns, monitoring=False) as recorder:
            ns["f"]()
            sys.settrace(debugger)  # a debugger attaching while the handler runs
        assert sys.gettrace() is debugger
    finally:
        sys.settrace(previous)
    assert not recorder.complete


@pytest.mark.parametrize("monitoring", MECHANISMS)
def test_a_profiler_does_not_stop_the_recorder(monitoring: bool) -> None:
    ns = notebook("def f():\n    return 1\n")
    sys.setprofile(lambda frame, event, arg: None)
    try:
        with NotebookCodeRecorder(ns, monitoring=monitoring) as recorder:
            ns["f"]()
    finally:
        sys.setprofile(None)
    assert recorder.complete and {code.co_name for code in recorder.codes} == {"f"}


@pytest.mark.parametrize("monitoring", MECHANISMS)
def test_generators_and_nested_notebook_calls_are_recorded(monitoring: bool) -> None:
    ns = notebook("def inner():\n    return 2\ndef gen():\n    yield inner()\n    yield inner()\n")
    made = ns["gen"]()
    next(made)  # started outside: only its resumption runs inside
    with NotebookCodeRecorder(ns, monitoring=monitoring) as recorder:
        assert list(made) == [2]
    assert {code.co_name for code in recorder.codes} == {"gen", "inner"}


@needs_monitoring
def test_with_monitoring_a_debuggers_tracer_leaves_the_record_complete() -> None:
    ns = notebook("def f():\n    return 1\n")
    calls: list[str] = []
    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: calls.append(event))
    try:
        with NotebookCodeRecorder(ns) as recorder:
            ns["f"]()
    finally:
        sys.settrace(previous)
    assert recorder.complete and {code.co_name for code in recorder.codes} == {"f"}
    assert calls  # the debugger's tracer kept working


@needs_monitoring
def test_notebook_code_is_never_silenced_and_library_code_is_silenced_once() -> None:
    ns = notebook("def f():\n    return 1\n")
    library: dict[str, Any] = {}
    exec("def helper(g):\n    return g()\n", library)  # noqa: S102 - library code, in a test
    seen: list[set[str]] = []

    def another_thread() -> None:  # notebook code on another thread, while no recorder is active
        ns["f"]()

    with NotebookCodeRecorder(ns):
        library["helper"](ns["f"])
    thread = threading.Thread(target=another_thread)
    thread.start()
    thread.join()
    exec("def g():\n    return 2\n", ns)  # defined later  # noqa: S102
    for _ in range(2):
        with NotebookCodeRecorder(ns) as recorder:
            library["helper"](ns["f"])
            library["helper"](ns["g"])
        seen.append({code.co_name for code in recorder.codes})
    assert seen == [{"f", "g"}, {"f", "g"}]


@needs_monitoring
def test_nested_and_concurrent_recorders_each_get_what_ran_and_the_events_go_off_after_the_last() -> None:
    ns = notebook("def f():\n    return 1\ndef g():\n    return 2\n")
    with NotebookCodeRecorder(ns) as outer:
        ns["f"]()
        with NotebookCodeRecorder(ns) as inner:
            ns["g"]()
        assert sys.monitoring.get_events(_MONITOR._tool) != 0  # the outer one still records
        ns["f"]()
    assert sys.monitoring.get_events(_MONITOR._tool) == 0
    assert {code.co_name for code in outer.codes} == {"f", "g"}
    assert {code.co_name for code in inner.codes} == {"g"}
    assert outer.complete and inner.complete


@needs_monitoring
def test_a_tool_id_taken_from_the_recorder_makes_the_record_incomplete() -> None:
    ns = notebook("def f():\n    return 1\n")
    with NotebookCodeRecorder(ns) as recorder:
        ns["f"]()
        tool = _MONITOR._tool
        sys.monitoring.free_tool_id(tool)  # another library freeing what it should not
    try:
        assert not recorder.complete
        with NotebookCodeRecorder(ns) as fallback:  # the trace function takes over
            ns["f"]()
        assert fallback.complete and {code.co_name for code in fallback.codes} == {"f"}
    finally:
        _MONITOR._tried = False
        _MONITOR._tool = None  # the next recorder takes a tool id again


@needs_monitoring
def test_every_tool_id_taken_falls_back_to_the_trace_function(monkeypatch: pytest.MonkeyPatch) -> None:
    from persistent_kernel import events

    monitor = events._Monitor()
    monkeypatch.setattr(monitor, "_TOOL_IDS", ())
    monkeypatch.setattr(events, "_MONITOR", monitor)
    ns = notebook("def f():\n    return 1\n")
    with NotebookCodeRecorder(ns) as recorder:
        assert sys.gettrace() is not None  # the trace function
        ns["f"]()
    assert recorder.complete and {code.co_name for code in recorder.codes} == {"f"}


class _Widget:
    def _handle_msg(self, msg: Any) -> None:
        pass


class IntSlider(_Widget):
    pass


class _Comm:
    def __init__(self, owner: Any = None, target_name: str = "jupyter.widget") -> None:
        self._msg_callback = owner._handle_msg if owner is not None else None
        self.target_name = target_name


class _Manager:
    def __init__(self, comms: dict[str, _Comm]) -> None:
        self.comms = comms

    def get_comm(self, comm_id: str) -> _Comm | None:
        return self.comms.get(comm_id)


def message(msg_type: str, content: Any) -> dict[str, Any]:
    return {"header": {"msg_type": msg_type}, "content": content}


def test_comm_messages_are_named_as_the_user_knows_them() -> None:
    manager = _Manager({"s": _Comm(IntSlider()), "raw": _Comm(target_name="my.target")})
    update = {"comm_id": "s", "data": {"method": "update", "state": {"value": 42}, "buffer_paths": []}}
    assert describe_comm_message(message("comm_msg", update), manager) == "IntSlider update value=42"
    click = {"comm_id": "s", "data": {"method": "custom", "content": {"event": "click"}}}
    assert describe_comm_message(message("comm_msg", click), manager) == "IntSlider click"
    assert describe_comm_message(message("comm_msg", {"comm_id": "raw", "data": {"x": 1}}), manager) == "comm_msg my.target"
    assert describe_comm_message(message("comm_open", {"comm_id": "n", "target_name": "t"}), manager) == "comm_open t"
    assert describe_comm_message(message("comm_close", {"comm_id": "s"}), manager) == "comm_close IntSlider"
    long_text = {"comm_id": "s", "data": {"method": "update", "state": {"value": "x" * 500}}}
    assert len(describe_comm_message(message("comm_msg", long_text), manager)) < 100


def test_malformed_comm_messages_are_still_named() -> None:
    manager = _Manager({})
    assert describe_comm_message(message("comm_msg", "not a dict"), manager) == "comm_msg"
    assert describe_comm_message(message("comm_msg", {"comm_id": "gone", "data": [1]}), manager) == "comm_msg comm"
    assert describe_comm_message({}, None) == "comm_msg comm"
