"""Entry point of the kernel process: ``python -m persistent_kernel.launcher -f CONNECTION_FILE``.

The kernelspec's argv points here. The application is ipykernel's, with our
kernel class and one step added: the session is restored after the shell and
its extensions are set up, before the event loop serves the first request.
"""

from __future__ import annotations

import sys

from ipykernel.kernelapp import IPKernelApp
from traitlets import Type

from .kernel import PersistentKernel


class PersistentKernelApp(IPKernelApp):
    name = "persistent-kernel"
    kernel_class = Type(PersistentKernel, klass="ipykernel.kernelbase.Kernel", help="The kernel class to run.").tag(config=True)

    def init_code(self) -> None:
        super().init_code()
        self.kernel.restore()


def main() -> None:
    # ipykernel_launcher does this too: the launcher's own directory must not
    # shadow the user's modules.
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    PersistentKernelApp.launch_instance()


if __name__ == "__main__":
    main()
