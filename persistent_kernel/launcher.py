"""Entry point of the kernel process: ``python -m persistent_kernel.launcher -f CONNECTION_FILE``.

The kernelspec's argv points here. The application is ipykernel's, with our
kernel class and one step added: the session is restored after the shell and
its extensions are set up, before the event loop serves the first request.
"""

from __future__ import annotations

import os
import sys

from .replica import REPLICA_ENV
from .replicaworker import start_early

if os.environ.get(REPLICA_ENV) and __name__ == "__main__":
    # Before ipykernel's imports: the replica's worker starts on the other core meanwhile.
    start_early(os.environ[REPLICA_ENV])

from ipykernel.kernelapp import IPKernelApp  # noqa: E402 - after the worker's start, on purpose
from traitlets import Type  # noqa: E402

from .kernel import PersistentKernel  # noqa: E402


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
