"""What libraries see while a restore loads them (issue #13, class 8).

Libraries decide things at import time from the environment: pandas picks its
display defaults by asking whether it runs in a kernel, tqdm.auto picks the
notebook progress bar, IPython's display picks its formatters. A library first
imported *during* the restore (to unpickle a stored value) must decide exactly as
it would in a fresh kernel.
"""

from __future__ import annotations

import pytest

from .kernels import crash_and_restart, run

pytestmark = pytest.mark.fidelity  # the invariant these tests prove (tests/README.md)

DETECTIONS = (
    "import pandas as pd\n"
    "from pandas.io.formats import console\n"
    "import tqdm.auto\n"
    "print(pd.get_option('display.max_columns'), pd.get_option('display.width'), console.in_ipython_frontend(),\n"
    "      console.in_interactive_session(), tqdm.auto.tqdm.__module__, repr(wide).count('\\n'), '...' in repr(wide),\n"
    "      type(get_ipython()).__name__, hasattr(get_ipython(), 'kernel'))"
)


@pytest.mark.slow
def test_libraries_imported_by_the_restore_see_a_kernel(kernel) -> None:
    fresh = kernel("fresh-session")
    run(fresh, "import numpy as np, pandas as pd\nwide = pd.DataFrame(np.arange(60).reshape(2, 30))")
    expected = fresh.execute(DETECTIONS).stdout
    fresh.shutdown()

    driver = kernel()
    # Nothing imported by name: the restore imports pandas and tqdm to unpickle these values.
    run(driver, "import numpy, pandas, tqdm.auto\nwide = pandas.DataFrame(numpy.arange(60).reshape(2, 30))\nbar_class = tqdm.auto.tqdm")
    run(driver, "del numpy, pandas, tqdm")
    assert "Restored session" in crash_and_restart(driver)
    assert driver.execute(DETECTIONS).stdout == expected
    assert expected.startswith("20 80 True True")  # a kernel's defaults, not a terminal's
