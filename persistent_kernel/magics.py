"""``%persist``: the user's handle on the session's persistence.

Thin over the journal and the last restore report; renders, never decides.
"""

from __future__ import annotations

import datetime
from typing import Any

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .checkpoint import Checkpointer
from .errors import PersistenceError
from .journal import Journal


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def format_status(facts: dict[str, Any]) -> str:
    """Plain-text ``%persist status``."""
    state = "on" if facts["active"] else f"OFF - {facts['problem']}"
    if facts["write_problem"]:
        state = f"DEGRADED - journal writes fail: {facts['write_problem']}"
    # A "started" record is the cell running now (this one) or one whose kernel died before a restore saw it.
    by_status = ", ".join(f"{n} {'running' if s == 'started' else s}" for s, n in sorted(facts["cells_by_status"].items())) or "none"
    lines = [
        f"Session:        {facts['session_name']}  (id {facts['session_id']}, from {facts['session_source']})",
        f"Notebook:       {facts['notebook_path'] or '-'}",
        f"Store:          {facts['store_path']}  ({_human_bytes(facts['store_bytes'])}, format {facts['format_version'] or '-'})",
        f"Persistence:    {state}",
        f"Cells journaled: {facts['cells']}  ({by_status})",
        f"Durability:     {_durability(facts['sync_interval'])}",
    ]
    if facts["unjournaled"]:
        lines.append(f"Unjournaled:    {facts['unjournaled']} execution(s) ran while the journal could not be written")
    report = facts.get("last_restore")
    if report:
        when = datetime.datetime.fromtimestamp(report["finished_at"]).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(
            f"Last restore:   {when}: loaded {report.get('loaded', 0)} variables, replayed {report['replayed']} cells "
            f"in {report['seconds']:.1f} s"
        )
        for name, labels in sorted(report.get("recomputed", {}).items()):
            lines.append(f"                {name} recomputed by replaying {', '.join(labels) or 'no cell'}")
        for name, why in sorted(report.get("lost", {}).items()):
            lines.append(f"                {name} could not be rebuilt: {why}")
        for label in report.get("died", []):
            lines.append(f"                cell {label} was running when the kernel died (not replayed)")
        for failure in report.get("failures", []):
            lines.append(f"                cell {failure['label']} failed in replay: {failure['ename']}: {failure['evalue']}")
    else:
        lines.append("Last restore:   none (this session started fresh)")
    return "\n".join(lines)


def _durability(sync_interval: float) -> str:
    if sync_interval <= 0:
        return "every commit is fsynced"
    return f"safe against kernel death; an OS crash can lose the last {sync_interval:g} s"


@magics_class
class PersistMagics(Magics):
    """``%persist status``, ``%persist verify`` and ``%persist forget``."""

    def __init__(self, shell: Any, journal: Journal, checkpointer: Checkpointer) -> None:
        super().__init__(shell)
        self.journal = journal
        self.checkpointer = checkpointer

    @magic_arguments()
    @argument(
        "command",
        choices=["status", "verify", "forget"],
        nargs="?",
        default="status",
        help=(
            "status: the session, where its store is, how many cells are journaled and what the last "
            "restore did. verify: hash every variable against the store and check the store itself; "
            "what changed without a cell seeing it (a background thread, a module keeping a reference) is "
            "stored when this cell ends. forget: erase this session's store and stop persisting in this kernel; "
            "the next kernel start is fresh (the running namespace is untouched until you restart)."
        ),
    )
    @line_magic
    def persist(self, line: str = "") -> None:
        """Inspect or reset this kernel's persistent session."""
        args = parse_argstring(self.persist, line)
        if args.command == "forget":
            self._forget()
        elif args.command == "verify":
            self._verify()
        else:
            print(format_status(self.journal.status()))

    def _verify(self) -> None:
        if not self.journal.active:
            print(f"Nothing to verify: persistence is off for this kernel ({self.journal.problem}).")
            return
        findings = self.checkpointer.verify()
        total = sum(len(names) for names in findings.values())
        print(f"Verified {total} variables against the store: {len(findings['unchanged'])} unchanged.")
        if findings["changed"]:
            print(f"Changed without a cell touching them (stored when this cell ends): {', '.join(findings['changed'])}")
        if findings["unstored"]:
            print(f"Not stored yet (stored when this cell ends): {', '.join(findings['unstored'])}")
        if findings["unstorable"]:
            print(f"Cannot be stored (rebuilt by replay after a restart): {', '.join(findings['unstorable'])}")
        problems = self.journal.store.check()
        print("Store check: " + ("no problems." if not problems else "; ".join(problems)))

    def _forget(self) -> None:
        if not self.journal.active:
            print(f"Nothing to forget: persistence is off for this kernel ({self.journal.problem}).")
            return
        try:
            dropped = self.journal.forget()
        except PersistenceError as exc:
            print(f"Could not forget the session: {exc}. Nothing was removed.")
            return
        self.checkpointer.forget()
        print(
            f"Forgot session '{self.journal.session.name}': {dropped} journaled cell(s) dropped. This kernel "
            "no longer persists; restart it for an empty namespace (the next kernel persists as usual)."
        )
