"""IPython's own objects held by variables come back as the new kernel's (``ip = get_ipython()``)."""

from __future__ import annotations

import pytest

from .kernels import kill_and_start, run

pytestmark = pytest.mark.fidelity  # the invariant these tests prove (tests/README.md)

CELLS = [
    "ip = get_ipython()",
    "fmt = ip.display_formatter.formatters['text/plain']\nevents = ip.events",
    "ns = ip.user_ns\nkernel_obj = ip.kernel",
    "kept = {'ip': ip, 'rows': [1, 2], 'fmt': fmt}",
    "%config PlainTextFormatter.max_seq_length = 4",  # after the formatters exist: IPython ignores it, and so must we
]
PROBE = (
    "now = get_ipython()\n"
    "print(ip is now, fmt is now.display_formatter.formatters['text/plain'], events is now.events,\n"
    "      ns is now.user_ns, kernel_obj is now.kernel, kept['ip'] is ip, kept['fmt'] is fmt, kept['rows'],\n"
    "      fmt.max_seq_length)"
)


@pytest.mark.slow
def test_shell_parts_are_stored_as_references_and_come_back_as_the_new_kernels(kernel) -> None:
    driver = kernel()
    for cell in CELLS:
        result = run(driver, cell)
        assert "cannot be stored" not in result.stderr, result.stderr  # no notice: nothing to rebuild
    assert driver.execute(PROBE).stdout == "True True True True True True True [1, 2] 1000\n"
    kill_and_start(driver)
    assert driver.execute(PROBE).stdout == "True True True True True True True [1, 2] 1000\n"
