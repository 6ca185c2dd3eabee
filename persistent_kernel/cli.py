"""The ``persistent-kernel`` command (also ``python -m persistent_kernel``)."""

from __future__ import annotations

import argparse
import sys

from . import DISPLAY_NAME, KERNEL_NAME, __version__


def _install(args: argparse.Namespace) -> int:
    from .install import install

    prefix = sys.prefix if args.sys_prefix else args.prefix
    path = install(user=args.user, prefix=prefix, kernel_name=args.name, display_name=args.display_name)
    print(f"Installed kernelspec {args.name} in {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(sys.stdout, keep=args.keep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="persistent-kernel",
        description="A Jupyter kernel for Python whose sessions survive crashes.",
    )
    parser.add_argument("--version", action="version", version=f"persistent_kernel {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    install = commands.add_parser("install", help="install the kernelspec (pip install already does, in its prefix)")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user")
    where.add_argument("--sys-prefix", action="store_true", help=f"install in this Python's prefix ({sys.prefix})")
    where.add_argument("--prefix", metavar="DIR", help="install in DIR/share/jupyter/kernels")
    install.add_argument("--name", default=KERNEL_NAME, help=f"kernelspec name (default {KERNEL_NAME})")
    install.add_argument("--display-name", default=DISPLAY_NAME, help=f"name shown in menus (default {DISPLAY_NAME!r})")
    install.set_defaults(run=_install)

    demo = commands.add_parser("demo", help="deal a poker table in a kernel, kill -9 it, and restore it")
    demo.add_argument("--keep", action="store_true", help="keep the demo's store instead of deleting it")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
