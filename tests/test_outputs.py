"""``Out[n]``, ``_n``, ``_``/``__``/``___`` and ``_iN`` after a crash (issue #13, class 9)."""

from __future__ import annotations

import pytest

from .kernels import crash_and_restart, run

pytestmark = pytest.mark.fidelity  # the invariant these tests prove (tests/README.md)

CELLS = [
    "import numpy as np, pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})\nitems = [1, 2]\nlabel = 'x'",
    "df",  # a variable's object, changed in place later: Out[2] is df
    "items",  # rebound later: Out[3] keeps the old list
    "df.describe()",  # computed, with numpy buffers
    "41 + 1",
    "{'k': [1, 2], 's': {3}}",
    "label * 3",
    "(x for x in range(3))",  # cannot be stored: named
    "np.zeros(400_000)",  # too large to keep: named
    "df['a'] = 0\nitems = [9]",
    "items",
]
PROBE = (
    "print(Out[2] is df, Out[3], Out[3] is items, type(Out[4]).__name__, Out[4].shape, _5, Out[6], _7, _11 is items,\n"
    "      _ is items, sorted(k for k in Out if k not in (8, 9)), _i5, _i10)"
)


@pytest.mark.slow
def test_results_come_back_as_the_user_left_them(kernel) -> None:
    stock = kernel(kernel_name="python3")
    for cell in CELLS:
        run(stock, cell)
    expected = stock.execute(PROBE).stdout
    stock.shutdown()
    driver = kernel()
    for cell in CELLS:
        run(driver, cell)
    summary = crash_and_restart(driver)
    assert "Not kept: Out[8] (cannot be stored" in summary and "Out[9] (too large to keep" in summary, summary
    assert driver.execute(PROBE).stdout == expected
    assert expected.startswith("True [1, 2] False DataFrame (8, 1) 42")
