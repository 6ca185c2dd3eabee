"""Settings that hold code (display formatters, IPython event callbacks): stored with notebook names, made again."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from persistent_kernel import codesettings as cs

from .kernels import crash_and_restart, run

pytestmark = pytest.mark.fidelity  # the invariant these tests prove (tests/README.md)


@pytest.fixture(scope="module")
def shell() -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell

    saved = sys.displayhook, sys.excepthook, os.getcwd()
    ip = InteractiveShell.instance()
    yield ip
    InteractiveShell.clear_instance()
    sys.displayhook, sys.excepthook = saved[:2]


def cell(shell: Any, code: str) -> None:
    result = shell.run_cell(textwrap.dedent(code), store_history=False)
    assert result.success, result.error_in_exec or result.error_before_exec


def test_names_in_a_pickle_are_the_namespace_objects() -> None:
    class Card:
        """A notebook class, stored by name."""

    namespace = {"Card": Card, "deck": [1, 2], "n": 3}
    state = cs.dump_with_names([(Card, namespace["deck"], 3)], namespace)
    assert json.loads(json.dumps(state)) == state
    moved = {"Card": type("Other", (), {}), "deck": ["new"], "n": 3}
    loaded = cs.load_with_names(state, moved)
    assert loaded[0][0] is moved["Card"] and loaded[0][1] is moved["deck"], "found by name, not copied"
    with pytest.raises(cs._NotBoundYet):
        cs.load_with_names(state, {"Card": Card})


def test_formatters_for_type_and_by_name(shell: Any) -> None:
    provider = cs.DisplayFormatters()
    provider.rebase(shell)
    html = shell.display_formatter.formatters["text/html"]
    plain = shell.display_formatter.formatters["text/plain"]
    float_printer = plain.type_printers[float]
    assert provider.capture(shell) is None
    cell(
        shell,
        """
        class Card:
            def __init__(self, rank): self.rank = rank
        def card_html(card): return f"<b>{card.rank}</b>"
        get_ipython().display_formatter.formatters['text/html'].for_type(Card, card_html)
        get_ipython().display_formatter.formatters['text/plain'].for_type_by_name('decimal', 'Decimal', lambda d, p, cycle: p.text('D'))
        """,
    )
    state = json.loads(json.dumps(provider.capture(shell)))
    assert state and provider.capture(shell) is provider.capture(shell)
    Card = shell.user_ns["Card"]

    assert provider.apply(shell, None) == []  # a new session's start: the notebook's printers go, IPython's stay
    assert Card not in html.type_printers and ("decimal", "Decimal") not in plain.deferred_printers
    assert plain.type_printers[float] is float_printer
    assert provider.capture(shell) is None

    fresh = cs.DisplayFormatters()
    fresh.rebase(shell)
    assert fresh.apply(shell, state) == []
    assert html.type_printers[Card] is not None and html(Card(5)) == "<b>5</b>"
    assert plain.deferred_printers[("decimal", "Decimal")] is not None
    assert plain.type_printers[float] is float_printer, "IPython's own printers are never touched"
    assert fresh.apply(shell, None) == []
    del shell.user_ns["Card"]


@pytest.mark.parametrize(
    "change",
    [
        "fmt['text/html'].for_type(Card, lambda c: 'card')",
        "fmt['text/plain'].for_type_by_name('decimal', 'Decimal', lambda d, p, cycle: p.text('D'))",
        "fmt['text/html'].type_printers = {Card: lambda c: 'card'}",
        "fmt['text/html'].deferred_printers[('decimal', 'Decimal')] = lambda d: 'D'",
        "fmt['text/x-card'] = type(fmt['text/html'])(); fmt['text/x-card'].for_type(Card, lambda c: 'card')",
    ],
    ids=["for_type", "by name", "table assigned anew", "table changed in place", "a new formatter"],
)
def test_formatters_seen_again_after_any_change_to_a_printer_table(shell: Any, change: str) -> None:
    provider = cs.DisplayFormatters()
    provider.rebase(shell)
    cell(shell, "class Card: pass\nfmt = get_ipython().display_formatter.formatters")
    assert provider.capture(shell) is None and provider.capture(shell) is None  # the second one proven unchanged
    try:
        cell(shell, change)
        assert provider.capture(shell) is not None, "a registration made after an unchanged capture is seen"
    finally:
        provider.apply(shell, None)
        shell.display_formatter.formatters.pop("text/x-card", None)


def test_formatter_naming_a_missing_variable_is_a_problem_not_an_error(shell: Any) -> None:
    provider = cs.DisplayFormatters()
    cell(shell, "class Gone: pass\nget_ipython().display_formatter.formatters['text/html'].for_type(Gone, lambda g: 'gone')")
    state = provider.capture(shell)
    cell(shell, "get_ipython().display_formatter.formatters['text/html'].pop(Gone)\ndel Gone")
    assert provider.apply(shell, state) == ["display formatters (Gone is not in the namespace)"]


def test_event_callbacks(shell: Any) -> None:
    provider = cs.EventCallbacks()
    provider.rebase(shell)
    assert provider.capture(shell) is None
    cell(
        shell,
        """
        seen = []
        class Counter:
            def __init__(self): self.n = 0
            def tick(self, *args): self.n += 1
        counter = Counter()
        get_ipython().events.register('post_run_cell', counter.tick)
        get_ipython().events.register('pre_run_cell', lambda info: seen.append(1))
        """,
    )
    state = json.loads(json.dumps(provider.capture(shell)))
    assert provider.apply(shell, None) == []
    assert provider.capture(shell) is None
    fresh = cs.EventCallbacks()
    fresh.rebase(shell)
    assert fresh.apply(shell, state) == []
    assert fresh.apply(shell, state) == [], "applied twice (before and after the namespace loads): registered once"
    before = shell.user_ns["counter"].n, len(shell.user_ns["seen"])
    cell(shell, "1")
    assert (shell.user_ns["counter"].n, len(shell.user_ns["seen"])) == (before[0] + 1, before[1] + 1), "bound to the namespace's objects"
    assert fresh.apply(shell, None) == []


def test_numpy_formatter_and_errcall_are_kept_with_their_names(shell: Any) -> None:
    import numpy

    from persistent_kernel.settingslibraries import NumpyOptions

    provider = NumpyOptions()
    cell(
        shell,
        """
        import numpy as np
        errors = []
        def tag(v): return f"<{v}>"
        np.set_printoptions(formatter={"int": tag, "float": lambda v: f"~{v:.1f}"})
        np.seterrcall(lambda kind, flag: errors.append(kind))
        _ = np.seterr(divide="call")
        """,
    )
    state = json.loads(json.dumps(provider.capture(shell)))
    assert set(state["code"]) == {"printoptions formatter", "seterrcall"} and "unstored" not in state
    assert provider.apply(shell, None) == []
    assert numpy.geterrcall() is None and repr(numpy.arange(2)) == "array([0, 1])"
    fresh = NumpyOptions()
    saved = shell.user_ns.pop("tag")
    problems = fresh.apply(shell, state)
    assert [p.split(" (")[0] for p in problems] == ["numpy printoptions formatter"], "not bound yet: named, the rest applied"
    assert numpy.geterrcall() is not None
    shell.user_ns["tag"] = saved
    assert fresh.apply(shell, state) == []
    cell(shell, "print(np.arange(2), np.array([1.5]))\nnp.array([1.0]) / 0")
    assert repr(numpy.arange(2)) == "array([<0>, <1>])"
    assert numpy.get_printoptions()["formatter"]["int"] is shell.user_ns["tag"], "a named function is the namespace's"
    assert shell.user_ns["errors"] == ["divide by zero"], "errcall appends to the namespace's list"
    assert fresh.apply(shell, None) == [] and numpy.geterrcall() is None


def test_warnings_filter_with_a_notebook_category(shell: Any) -> None:
    import warnings

    from persistent_kernel.settingspython import WarningsFilters

    provider = WarningsFilters()
    provider.rebase(shell)
    cell(shell, "import warnings\nclass Noisy(UserWarning): pass\nwarnings.filterwarnings('error', category=Noisy)")
    state = json.loads(json.dumps(provider.capture(shell)))
    assert "unstored" not in state and len(state["front"]) == 1
    assert provider.apply(shell, None) == []
    assert all(entry[2] is not shell.user_ns["Noisy"] for entry in warnings.filters)
    fresh = WarningsFilters()
    fresh.rebase(shell)
    assert fresh.apply(shell, state) == []
    assert warnings.filters[0][2] is shell.user_ns["Noisy"], "the category is the namespace's class"
    assert fresh.apply(shell, state) == [] and sum(entry[2] is shell.user_ns["Noisy"] for entry in warnings.filters) == 1
    result = shell.run_cell("warnings.warn('x', Noisy)", store_history=False)
    assert type(result.error_in_exec).__name__ == "Noisy"
    assert fresh.apply(shell, None) == []


def test_logger_handlers_filters_propagate(shell: Any) -> None:
    import logging

    provider = cs.LoggerHandlers()
    provider.rebase(shell)
    assert provider.capture(shell) is None
    cell(
        shell,
        """
        import io, logging, sys
        buf = io.StringIO()
        class OnlyOdd(logging.Filter):
            def filter(self, record): return record.args[0] % 2 == 1
        app = logging.getLogger("nb_app")
        app.addHandler(logging.StreamHandler(buf))
        app.addHandler(logging.StreamHandler(sys.stdout))
        app.addFilter(OnlyOdd())
        app.propagate = False
        logging.getLogger("nb_quiet").disabled = True
        logging.getLogger("json.fake").propagate = False  # a library's logger: the library's own business
        """,
    )
    state = json.loads(json.dumps(provider.capture(shell)))
    assert set(state["loggers"]) == {"nb_app", "nb_quiet"}
    assert provider.capture(shell) is provider.capture(shell), "unchanged: the same object"
    assert provider.apply(shell, None) == []
    app = logging.getLogger("nb_app")
    assert (app.handlers, app.filters, app.propagate, logging.getLogger("nb_quiet").disabled) == ([], [], True, False)
    fresh = cs.LoggerHandlers()
    fresh.rebase(shell)
    saved = shell.user_ns.pop("buf")
    assert [p.split(" (")[0] for p in fresh.apply(shell, state)] == ["handlers of logger nb_app"], "not bound yet"
    shell.user_ns["buf"] = saved
    assert fresh.apply(shell, state) == [] and fresh.apply(shell, state) == []
    assert len(app.handlers) == 2 and app.handlers[0].stream is shell.user_ns["buf"] and app.handlers[1].stream is sys.stdout
    assert app.propagate is False and logging.getLogger("nb_quiet").disabled is True
    for i in range(4):
        app.warning("n=%d", i)
    assert shell.user_ns["buf"].getvalue() == "n=1\nn=3\n", "the filter (a notebook class) came back"
    assert fresh.apply(shell, None) == [] and app.handlers == []
    logging.getLogger("json.fake").propagate = True


def test_builtins_and_copyreg_additions(shell: Any) -> None:
    import builtins
    import copyreg
    import pickle

    provider = cs.ProcessRegistries()
    provider.rebase(shell)
    assert provider.capture(shell) is None
    cell(
        shell,
        """
        import builtins, copyreg
        class Point:
            def __init__(self, v): self.v = v
        builtins.nb_helper = lambda: "from builtins"
        copyreg.pickle(Point, lambda p: (Point, (p.v * 2,)))
        """,
    )
    state = json.loads(json.dumps(provider.capture(shell)))
    assert set(state) == {"builtins", "copyreg"}
    assert provider.apply(shell, None) == []
    assert not hasattr(builtins, "nb_helper") and shell.user_ns["Point"] not in copyreg.dispatch_table
    fresh = cs.ProcessRegistries()
    fresh.rebase(shell)
    saved = shell.user_ns.pop("Point")
    assert [p.split(" (")[0] for p in fresh.apply(shell, state)] == ["copyreg"], "not bound yet"
    shell.user_ns["Point"] = saved
    assert fresh.apply(shell, state) == [] and fresh.apply(shell, state) == []
    assert builtins.nb_helper() == "from builtins"
    assert pickle.loads(pickle.dumps(saved(2))).v == 4, "the reducer is registered for the namespace's class"
    assert fresh.apply(shell, None) == [] and not hasattr(builtins, "nb_helper") and saved not in copyreg.dispatch_table


def test_builtins_taken_out_and_put_back_are_not_a_change_and_a_rebinding_is(shell: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """IPython's builtin trap removes and restores names around every execution: the table's
    mutation counter moves with nothing changed. The same keys bound to the same objects are
    then proof enough; a name rebound to another object (or added) is still seen."""
    import builtins

    provider = cs.ProcessRegistries()
    provider.rebase(shell)
    cell(shell, "import builtins\nbuiltins.nb_tool = lambda: 1")
    try:
        first = provider.capture(shell)
        assert first is not None and "builtins" in first
        before = cs.dictversions.tag(vars(builtins))
        with shell.builtin_trap:  # what every execution does: names taken out and put back
            pass
        assert before is None or cs.dictversions.tag(vars(builtins)) != before, "the counter moved"
        looked_at: list[Any] = []
        real = cs._is_the_notebooks
        monkeypatch.setattr(cs, "_is_the_notebooks", lambda value: looked_at.append(value) or real(value))
        assert provider.capture(shell) is first
        assert looked_at == [], "no builtin was looked at again"
        cell(shell, "builtins.nb_tool = lambda: 2")  # rebound: another object under the same key
        second = provider.capture(shell)
        assert second is not None and second is not first and looked_at, "the table was looked at again"
        cell(shell, "builtins.nb_other = lambda: 3")  # added
        third = provider.capture(shell)
        assert third is not None and third is not second and third != second
    finally:
        for name in ("nb_tool", "nb_other"):
            if hasattr(builtins, name):
                delattr(builtins, name)


@pytest.mark.slow
def test_formatters_and_callbacks_survive_sigkill(kernel) -> None:
    k = kernel()
    run(
        k,
        """
        class Money:
            def __init__(self, cents): self.cents = cents
        fmt = get_ipython().display_formatter.formatters
        fmt['text/plain'].for_type(Money, lambda m, p, cycle: p.text(f"${m.cents / 100:.2f}"))
        ran = []
        get_ipython().events.register('post_run_cell', lambda result: ran.append(result.execution_count))
        """,
    )
    run(k, "price = Money(1250)")
    summary = crash_and_restart(k)
    assert "Restored session" in summary and "Not restored" not in summary, summary
    assert k.evaluate("price") == "$12.50"
    count = int(k.evaluate("len(ran)"))
    assert count >= 2, "the list the callback filled before the kill came back"
    run(k, "x = 1")
    assert k.evaluate("len(ran)") == str(count + 1), "the callback runs once per cell (silent ones not), on the restored list"
