"""The ``persistent-kernel`` command (also ``python -m persistent_kernel``).

Argument parsing and dispatch: ``install`` and ``demo`` here, the session
commands in ``clisessions`` (which renders them; ``catalog`` finds and describes
sessions, ``archive`` and ``archivetar`` change them). Exit codes: 0 done, 1 the
operation failed (no such session, a kernel holds it, an archive failed
verification), 2 bad usage. Errors go to stderr as ``persistent-kernel: error:
...``; ``--json`` prints one JSON document on stdout instead of text.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import DISPLAY_NAME, KERNEL_NAME, __version__, clisessions
from .clisessions import PROG, Refused

# -- install, demo -------------------------------------------------------------------


def _install(args: argparse.Namespace) -> int:
    from .install import install

    prefix = sys.prefix if args.sys_prefix else args.prefix
    path = install(
        user=args.user,
        prefix=prefix,
        kernel_name=args.name,
        display_name=args.display_name,
    )
    print(f"Installed kernelspec {args.name} in {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(sys.stdout, keep=args.keep)


# -- the parser ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A Jupyter kernel for Python whose sessions survive crashes.",
        epilog="ID: a session id, a unique prefix of one, a session name, or a notebook path.",
    )
    parser.add_argument(
        "--version", action="version", version=f"persistent_kernel {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    install = commands.add_parser(
        "install",
        help="install the kernelspec (pip install already does, in its prefix)",
    )
    where = install.add_mutually_exclusive_group()
    where.add_argument(
        "--user", action="store_true", help="install for the current user"
    )
    where.add_argument(
        "--sys-prefix",
        action="store_true",
        help=f"install in this Python's prefix ({sys.prefix})",
    )
    where.add_argument(
        "--prefix", metavar="DIR", help="install in DIR/share/jupyter/kernels"
    )
    install.add_argument(
        "--name", default=KERNEL_NAME, help=f"kernelspec name (default {KERNEL_NAME})"
    )
    install.add_argument(
        "--display-name",
        default=DISPLAY_NAME,
        help=f"name shown in menus (default {DISPLAY_NAME!r})",
    )
    install.set_defaults(run=_install)

    demo = commands.add_parser(
        "demo", help="deal a poker table in a kernel, kill -9 it, and restore it"
    )
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep the demo's store instead of deleting it",
    )
    demo.set_defaults(run=_demo)

    def command(
        name: str, run: Any, summary: str, *, progress: bool = False
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=summary, description=summary[0].upper() + summary[1:] + "."
        )
        sub.add_argument(
            "--json",
            action="store_true",
            help="print one JSON document instead of text",
        )
        if progress:
            sub.add_argument(
                "-q", "--quiet", action="store_true", help="no progress bar"
            )
        sub.set_defaults(run=run)
        return sub

    sessions = command(
        "sessions",
        clisessions.run_sessions,
        "list the sessions: notebook, cells, size, last activity, live kernel",
    )
    sessions.add_argument("--replica", metavar="URL", help="list the sessions a replica holds instead (s3://bucket/prefix …)")
    push = command("push", clisessions.run_push, "ship a session (no kernel on it) to a replica on object storage")
    push.add_argument("id", metavar="ID")
    push.add_argument("url", metavar="URL", help="fsspec URL: s3://bucket/prefix, gs://…, file:///dir")
    pull = command("pull", clisessions.run_pull, "fetch a session from a replica into this machine's home")
    pull.add_argument("id", metavar="ID")
    pull.add_argument("url", metavar="URL")
    show = command(
        "show",
        clisessions.run_show,
        "one session in detail: its store, cells and variables, the last restore",
    )
    show.add_argument("id", metavar="ID")
    history = command(
        "history",
        clisessions.run_history,
        "the last cells of a session: when, how long, what they changed",
    )
    history.add_argument("id", metavar="ID")
    history.add_argument(
        "-n", type=int, default=10, metavar="N", help="how many (default 10; 0: all)"
    )
    rm = command("rm", clisessions.run_rm, "delete a session's store (refused while a kernel uses it)")
    rm.add_argument("id", metavar="ID")
    rm.add_argument(
        "-y", "--yes", action="store_true", help="do not ask for confirmation"
    )
    gc = command(
        "gc", clisessions.run_gc, "delete large-blob files no version needs any more", progress=True
    )
    gc.add_argument(
        "id", metavar="ID", nargs="?", help="one session (default: all not in use)"
    )
    gc.add_argument(
        "--dry-run", action="store_true", help="only say what would be freed"
    )
    export = command(
        "export",
        clisessions.run_export,
        "write a session to a portable archive (.tar, or .tar.gz)",
        progress=True,
    )
    export.add_argument("id", metavar="ID")
    export.add_argument("file", metavar="FILE")
    imp = command(
        "import",
        clisessions.run_import,
        "install a session from an archive, after verifying every file",
        progress=True,
    )
    imp.add_argument("file", metavar="FILE")
    imp.add_argument(
        "--as",
        dest="as_name",
        metavar="NAME",
        help="under this session name (PERSISTENT_KERNEL_SESSION)",
    )
    imp.add_argument(
        "--force", action="store_true", help="replace a session with the same id"
    )
    imp.add_argument(
        "--trust",
        action="store_true",
        help="import an archive not written with your key (another user's or machine's), signing it with yours",
    )
    trust = command(
        "trust",
        clisessions.run_trust,
        "sign a session's store with your key (one from an older version, or copied from elsewhere)",
    )
    trust.add_argument("id", metavar="ID")
    trust.add_argument(
        "-y", "--yes", action="store_true", help="do not ask for confirmation"
    )
    attach = command(
        "attach", clisessions.run_attach, "give a session to a notebook that was renamed or moved"
    )
    attach.add_argument(
        "old", metavar="OLD", help="the session (ID, or the notebook's old path)"
    )
    attach.add_argument("notebook", metavar="NOTEBOOK", help="the notebook's new path")
    attach.add_argument(
        "--force",
        action="store_true",
        help="replace a session the new path already has",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from .catalog import CommandError
    from .errors import PersistenceError

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, PersistenceError, Refused) as exc:
        _error(str(exc))
    except OSError as exc:
        _error(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    return 1


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)
