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

from .conftest import crash_and_restart, run


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
        pass

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
