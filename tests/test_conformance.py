"""Protocol conformance of persistent-python3 with the standard jupyter_kernel_test suite."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest

import jupyter_kernel_test
import pytest

from persistent_kernel import KERNEL_NAME

pytestmark = [pytest.mark.slow, pytest.mark.protocol]


class PersistentKernelConformance(jupyter_kernel_test.KernelTests):
    kernel_name = KERNEL_NAME
    language_name = "python"
    file_extension = ".py"

    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('oops', file=sys.stderr)"
    completion_samples = [{"text": "zi", "matches": {"zip"}}]
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n\n"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2"]
    invalid_code_samples = ["import = 7q"]
    code_page_something = "zip?"
    code_generate_error = "raise ValueError('persistent error')"
    code_execute_result = [{"code": "1+2+3", "result": "6"}, {"code": "[n*n for n in range(4)]", "result": "[0, 1, 4, 9]"}]
    code_display_data = [
        {"code": "from IPython.display import HTML, display; display(HTML('<b>test</b>'))", "mime": "text/html"},
        {"code": "from IPython.display import Math, display; display(Math('\\\\frac{1}{2}'))", "mime": "text/latex"},
    ]
    code_history_pattern = "1?2*"
    # "range" is left out as for the stock kernel, which fails it the same way here:
    # IPython writes history to SQLite from a background thread, so a range query on
    # the current session can come back empty.
    supported_history_operations = ("tail", "search")
    code_inspect_sample = "zip"
    code_clear_output = "from IPython.display import clear_output; clear_output()"

    @classmethod
    def setUpClass(cls) -> None:
        # The kernel inherits this process's environment: give it a store of its own.
        cls._home = tempfile.mkdtemp(prefix="pk-conformance-")
        cls._saved_env = {k: os.environ.get(k) for k in ("PERSISTENT_KERNEL_HOME", "PERSISTENT_KERNEL_SESSION")}
        os.environ["PERSISTENT_KERNEL_HOME"] = cls._home
        os.environ["PERSISTENT_KERNEL_SESSION"] = "conformance"
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        for key, value in cls._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(cls._home, ignore_errors=True)

    def test_kernel_info_names_the_implementation(self) -> None:
        self.flush_channels()
        self.kc.kernel_info()
        reply = self.kc.get_shell_msg(timeout=30)
        content = reply["content"]
        self.assertEqual(content["implementation"], "persistent_kernel")
        # Concurrent subshells are not journaled in order yet, so none are advertised.
        self.assertNotIn("kernel subshells", content["supported_features"])


if __name__ == "__main__":
    unittest.main()
