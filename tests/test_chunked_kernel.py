"""Large plain lists, dicts and sets in a real kernel: chunked, killed with SIGKILL, restored exactly.

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
    "seen = {f'id-{i}' for i in range(30_000)}\npairs = {(i, str(i)) for i in range(20_000)}\nholder = {'seen': seen}",
    "seen.add('id-new')\nseen.discard('id-7')\npairs.add((-1, 'minus one'))\nrows.insert(0, {'id': 'first'})\ndel d[9]",
]

CHECK = (
    "(len(d), d[5], 6 in d, d['new'], list(d)[-1], len(rows), rows[7], rows[-1], alias is rows, last is rows[-2], "
    "last['id'], rows[105], len(data['items']), data['items'][-1], repr(rows[7]['x']), "
    "len(seen), 'id-new' in seen, 'id-7' in seen, holder['seen'] is seen, type(seen).__name__, len(pairs), (-1, 'minus one') in pairs, "
    "rows[0], 9 in d, sorted(seen)[:3])"
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
    run(k, "rows[0]['id'] = 'zero'\nd[0] = 'zero'\nseen.add('after')")
    crash_and_restart(k)
    assert k.evaluate("(rows[0]['id'], d[0], alias is rows, 'after' in seen, holder['seen'] is seen)") == "('zero', 'zero', True, True, True)"
    check_store(pk_home)


def test_a_record_shared_with_a_variable_stays_shared_through_changes(kernel, pk_home: Path) -> None:
    k = kernel()
    run(k, "rows = [{'id': i} for i in range(40_000)]")
    run(k, "mine = rows[123]")  # bound after the container was stored by chunks
    run(k, "mine['id'] = 'mine'")  # changed through the other name only
    crash_and_restart(k)
    assert k.evaluate("(mine is rows[123], rows[123]['id'])") == "(True, 'mine')"
    check_store(pk_home)


def test_a_frame_of_strings_changed_in_place_comes_back_exactly(kernel, pk_home: Path) -> None:
    k = kernel()
    run(k, "import numpy as np, pandas as pd\nframe = pd.DataFrame({'name': [f'n{i}' for i in range(50_000)], 'note': np.array([None, 'x', (1, 'a')] * 10_000 + ['y'] * 20_000, dtype=object), 'v': np.arange(50_000)})")
    run(k, "col = frame['name']\nframe.at[7, 'name'] = 'changed'\nframe.at[49_999, 'note'] = (2, 'b')")
    check = "(frame.shape, frame.at[7, 'name'], frame.at[49_999, 'note'], frame.at[2, 'note'], str(frame.dtypes.to_dict()), int(frame['v'].sum()), col.iloc[7], frame['name'].str.len().sum())"
    before = k.evaluate(check)
    summary = crash_and_restart(k)
    assert "replayed" not in summary, summary
    assert k.evaluate(check) == before
    run(k, "frame.at[8, 'name'] = 'again'")
    crash_and_restart(k)
    assert k.evaluate("frame.at[8, 'name']") == "'again'"
    check_store(pk_home)
