"""Large plain lists and dicts in a real kernel: chunked, killed with SIGKILL, restored exactly.

The unit tests (``test_chunked.py``) prove the chunks; this proves the path through the
checkpoint, the store and the restore, with aliases and shared records across cells.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .kernels import check_store, crash_and_restart, run

pytestmark = [pytest.mark.slow, pytest.mark.durability, pytest.mark.fidelity]

CELLS = [
    "d = {i: f'value {i}' for i in range(40_000)}\nrows = [{'id': i, 'x': i * 0.5} for i in range(40_000)]",
    "alias = rows\nlast = rows[-1]\ndata = {'meta': 'api', 'items': [(i, str(i)) for i in range(20_000)]}",
    "d[5] = 'changed'\ndel d[6]\nd['new'] = 1.0",
    "rows.append({'id': -1, 'x': True})\nrows[7]['x'] = -0.0\nlast['id'] = 'last'",
    "data['items'].append((1, 'one'))\nfor r in rows[100:110]: r['seen'] = None",
]

CHECK = (
    "(len(d), d[5], 6 in d, d['new'], list(d)[-1], len(rows), rows[7], rows[-1], alias is rows, last is rows[-2], "
    "last['id'], rows[105], len(data['items']), data['items'][-1], repr(rows[7]['x']))"
)


def test_chunked_containers_come_back_exactly_after_sigkill(kernel, pk_home: Path) -> None:
    k = kernel()
    for cell in CELLS:
        run(k, cell)
    before = k.evaluate(CHECK)
    summary = crash_and_restart(k)
    assert "replayed" not in summary, summary
    assert k.evaluate(CHECK) == before
    # Still chunked and still tracked after the restore: a change made now survives the next kill.
    run(k, "rows[0]['id'] = 'zero'\nd[0] = 'zero'")
    crash_and_restart(k)
    assert k.evaluate("(rows[0]['id'], d[0], alias is rows)") == "('zero', 'zero', True)"
    check_store(pk_home)


def test_a_record_shared_with_a_variable_stays_shared_through_changes(kernel, pk_home: Path) -> None:
    k = kernel()
    run(k, "rows = [{'id': i} for i in range(40_000)]")
    run(k, "mine = rows[123]")  # bound after the container was stored by chunks
    run(k, "mine['id'] = 'mine'")  # changed through the other name only
    crash_and_restart(k)
    assert k.evaluate("(mine is rows[123], rows[123]['id'])") == "(True, 'mine')"
    check_store(pk_home)
