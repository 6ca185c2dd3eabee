"""``%persist``: the user's handle on the session's persistence.

Thin over the journal, the checkpointer, the recorder and time travel: it gathers
facts and renders them (``views``); the decisions are made in those modules. What
changes the next checkpoint (a checkout, a resume, names to store again) goes
through the recorder, never the checkpointer's own state.
"""

from __future__ import annotations

import shlex
import time
from typing import Any

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from . import timetravel, views
from .checkpoint import Checkpointer
from .errors import PersistenceError
from .journal import Journal
from .journalview import execution_rows, shown_records
from .recorder import SessionRecorder
from .records import MODULE, RECOMPUTE, STORED
from .replay import is_replaying
from .restoreplan import replayable
from .tracking import user_names

COMMANDS = ("status", "history", "checkout", "diff", "forget", "exclude", "include", "off", "on", "verify")
HISTORY_DEFAULT = 20
_VARIABLES_SHOWN = 40


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _durability(sync_interval: float) -> str:
    if sync_interval <= 0:
        return "every commit is fsynced"
    return f"safe against kernel death; an OS crash can lose the last {sync_interval:g} s"


def status_lines(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """``%persist status`` as (label, value) pairs, for both renderings."""
    state = "on" if facts["active"] else f"OFF - {facts['problem']}"
    if facts.get("paused"):
        state = f"PAUSED (%persist off) after cell {facts['paused']}: cells since are not journaled; %persist on resumes"
    if facts.get("durability_problem"):
        state = f"DEGRADED - {facts['durability_problem']}"
    if facts.get("background_problem"):
        state = f"DEGRADED - a large value could not be written to disk: {facts['background_problem']}"
    if facts["write_problem"]:
        state = f"DEGRADED - journal writes fail: {facts['write_problem']}"
    # A "started" record is the cell running now (this one) or one whose kernel died before a restore saw it.
    by_status = ", ".join(f"{n} {'running' if s == 'started' else s}" for s, n in sorted(facts["cells_by_status"].items())) or "none"
    lines = [
        ("Session", f"{facts['session_name'] or '-'}  (id {facts['session_id'] or '-'})"),
        ("Identified by", facts.get("session_origin") or facts["session_source"] or "-"),
        ("Notebook", facts["notebook_path"] or "-"),
        ("Store", f"{facts['store_path']}  ({views.human_bytes(facts['store_bytes'])}, format {facts['format_version'] or '-'})"),
        *([("Placement", facts["placement"])] if facts.get("placement") else []),
        ("Persistence", state),
        ("Cells journaled", f"{facts['cells']}  ({by_status})"),
        ("Durability", _durability(facts["sync_interval"])),
    ]
    replica = facts.get("replica")
    if replica:
        lines.append(("Replica", replica_line(replica)))
    if facts.get("excluded"):
        lines.append(("Excluded", ", ".join(facts["excluded"])))
    background = facts.get("background")
    if background and background["pending"]:
        lines.append(("Writing", f"{background['pending']} large value(s) still being written ({views.human_bytes(background['pending_bytes'])})"))
    if facts.get("refused"):
        shown = "; ".join(facts["refused"][:5]) + (f"; and {len(facts['refused']) - 5} more" if len(facts["refused"]) > 5 else "")
        lines.append(("Authentication", f"{_count(len(facts['refused']), 'stored record')} failed authentication and were not used: {shown}"))
    if facts["unjournaled"]:
        lines.append(("Unjournaled", f"{facts['unjournaled']} execution(s) ran while the journal could not be written"))
    report = facts.get("last_restore")
    if report:
        lines.append(
            (
                "Last restore",
                f"{views.clock(report['finished_at'])}: loaded {_count(report.get('loaded', 0), 'variable')}, "
                f"replayed {_count(report['replayed'], 'cell')} in {report['seconds']:.1f} s",
            )
        )
        for name, labels in sorted(report.get("recomputed", {}).items()):
            lines.append(("", f"{name} recomputed by replaying {', '.join(labels) or 'no cell'}"))
        for name, why in sorted(report.get("lost", {}).items()):
            if name not in report.get("excluded", {}):
                lines.append(("", f"{name} could not be rebuilt: {why}"))
        for name, how in sorted(report.get("excluded", {}).items()):
            lines.append(("", f"{name} is excluded from persistence: {how}"))
        for name, why in sorted(report.get("inexact", {}).items()):
            lines.append(("", f"{name} is not exact: {why}"))
        for problem in report.get("context_problems", []):
            lines.append(("", f"not restored: {problem}"))
        for label in report.get("died", []):
            lines.append(("", f"cell {label} was running when the kernel died (not replayed)"))
        for failure in report.get("failures", []):
            lines.append(("", f"cell {failure['label']} failed in replay: {failure['ename']}: {failure['evalue']}"))
    else:
        lines.append(("Last restore", "none (this session started fresh)"))
    return lines


def replica_line(replica: dict[str, Any]) -> str:
    """Where the replica is and how far behind: ``s3://b/p: up to date through #12 (shipped 0.4 s ago)``."""
    if replica.get("off"):
        return f"{replica['url']}: not written by this kernel (see the notice when it started)"
    where = replica["url"]
    shipped = replica.get("shipped_at")
    ago = f" (shipped {views.seconds(max(0.0, time.time() - shipped))} ago)" if shipped else ""
    if replica.get("problem"):
        since = views.clock(replica.get("problem_since"))
        return f"{where}: {replica['behind']} execution(s) behind, unreachable since {since}: {replica['problem']}"
    if replica["behind"]:
        return f"{where}: {replica['behind']} execution(s) behind, shipping{ago}"
    return f"{where}: up to date through execution #{replica['shipped_through']}{ago}"


def format_status(facts: dict[str, Any]) -> str:
    """Plain-text ``%persist status`` (without the variables table)."""
    return views.facts_text(status_lines(facts))


def _show_table(caption: str, headers: tuple[str, ...], rows: list[list[str]]) -> None:
    text = caption + "\n" + views.text_table(headers, rows)
    display(views.bundle(text, views.html_table(headers, rows, caption=caption)), raw=True)


@magics_class
class PersistMagics(Magics):
    """The ``%persist`` line magic."""

    def __init__(
        self,
        shell: Any,
        journal: Journal,
        checkpointer: Checkpointer,
        recorder: SessionRecorder,
        *,
        configured_exclusions: list[str] | None = None,
    ) -> None:
        super().__init__(shell)
        self.journal = journal
        self.checkpointer = checkpointer
        self.recorder = recorder
        self.configured_exclusions = list(configured_exclusions or [])

    @magic_arguments()
    @argument("command", nargs="?", default="status", choices=COMMANDS, metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    @argument("args", nargs="*", help="the command's arguments (cell numbers, names or patterns)")
    @line_magic
    def persist(self, line: str = "") -> None:
        """Inspect, time-travel and control this kernel's persistent session.

        Commands:

          %persist status          the session, its notebook, where the store is and how big, the cells
                                   journaled, every variable with its size and how it comes back after a
                                   restart (stored / recompute / excluded), the last restore, any problem
          %persist history [N]     the last N cells (default 20): number, time, duration, status, the
                                   names each changed, which were stored and which need a replay
          %persist checkout N      time travel: the namespace becomes what it was after cell [N]
                                   (stored versions; only unstorable values are replayed). Outputs on
                                   screen stay; the checkout is journaled, so checking out a later cell
                                   undoes it. Working directory, sys.path and environment are not changed.
          %persist diff N [M]      the variables that differ between after cell [N] and after cell [M]
                                   (default: now)
          %persist exclude NAME …  never store these names or shell-style patterns (secrets, scratch
                                   data: `token`, `tmp_*`); after a restart such a name is recomputed by
                                   replay if its cells are quick, otherwise absent, and the summary says
                                   which. Without arguments: list the exclusions
          %persist include NAME …  store these again (undoes exclude)
          %persist off             pause persistence in this kernel (a crash while paused restores
                                   the session as it was at `off`)
          %persist on              resume it: the namespace as it is now is stored
          %persist verify          hash every variable against the store and check the store's integrity
          %persist forget          erase this session's store; the next kernel start is fresh

        Examples: `%persist history 5`, `%persist checkout 12`, `%persist diff 3 7`,
        `%persist exclude api_key 'scratch_*'`.
        """
        if is_replaying():
            return  # a replayed cell that also holds a %persist line: the journal is not the replay's to change
        try:
            args = parse_argstring(self.persist, line)
        except Exception as exc:  # noqa: BLE001 - UsageError and argparse's exits: a message, never a traceback
            print(f"%persist: {exc}. Try %persist? for the commands.")
            return
        handler = getattr(self, f"_{args.command}")
        handler(args.args)

    # -- looking --------------------------------------------------------------------------

    def _status(self, _args: list[str]) -> None:
        facts = self.journal.status()
        facts["excluded"] = self._exclusions()
        lines = status_lines(facts)
        variables = self._variables()
        rows = views.variables_rows(variables[:_VARIABLES_SHOWN])
        more = f"… and {len(variables) - _VARIABLES_SHOWN} more" if len(variables) > _VARIABLES_SHOWN else ""
        text = views.facts_text(lines)
        html = views.facts_html(lines)
        if rows:
            text += "\n\nVariables:\n" + views.text_table(views.VARIABLE_HEADERS, rows) + (f"\n{more}" if more else "")
            html += views.html_table(views.VARIABLE_HEADERS, rows, caption=f"Variables ({len(variables)})") + (f"<p>{more}</p>" if more else "")
        display(views.bundle(text, html), raw=True)

    def _variables(self) -> list[dict[str, Any]]:
        """Every user variable: its type, its stored size, and how a restart brings it back."""
        ns = self.shell.user_ns
        replayed = {r.seq: r.label for r in self.journal.records() if replayable(r)}
        found = []
        for name in user_names(ns, self.shell.user_ns_hidden):
            state = self.checkpointer.names.get(name)
            size = None
            if state is not None and state.kind == MODULE:
                how = f"import {state.version}"
            elif self.checkpointer.is_excluded(name):
                how = "excluded: recomputed if quick, else absent"
            elif state is None:
                how = "not stored yet (stored when this cell ends)" if self.journal.journals_events else "not stored"
            elif state.kind == STORED:
                how = "stored" + (f" with {', '.join(sorted(state.group - {name}))}" if len(state.group) > 1 else "")
                size = state.nbytes
            elif state.kind == RECOMPUTE:
                how = "recompute: replays " + (", ".join(replayed[c] for c in state.cells if c in replayed) or "its cells")
            elif state.kind == MODULE:
                how = f"import {state.version}"
            else:
                how = state.kind
            found.append({"name": name, "type": type(ns[name]).__name__, "bytes": size, "restored_by": how})
        found.sort(key=lambda v: (-(v["bytes"] or 0), v["name"]))
        return found

    def _history(self, args: list[str]) -> None:
        count = self._numbers(args, "history", at_most=1)
        if count is None:
            return
        limit = count[0] if count else HISTORY_DEFAULT
        if limit <= 0:
            print(f"%persist history: N is how many of the last cells to show (1 or more), got {limit}.")
            return
        every = self.journal.records()
        records = shown_records(every, limit)
        if not records:
            print("No cells are journaled in this session yet." if self.journal.active else f"Persistence is off: {self.journal.problem}.")
            return
        rows = [
            [
                row.label,
                views.clock(row.started_at),
                views.seconds(row.duration),
                row.status,
                views.shorten(", ".join(row.changed), 40),
                views.shorten(", ".join(row.stored), 30),
                views.shorten(", ".join(row.recompute), 30),
                views.shorten(row.what, 40),
            ]
            for row in execution_rows(self.journal.store, records)
        ]
        total = len(every)
        caption = f"Last {len(rows)} of {total} journaled executions (-name: deleted)"
        _show_table(caption, views.HISTORY_HEADERS, rows)

    def _diff(self, args: list[str]) -> None:
        numbers = self._numbers(args, "diff", at_least=1, at_most=2)
        if numbers is None or not self._active("compare"):
            return
        records = self.journal.records()
        try:
            first = timetravel.cell_numbered(records, numbers[0])
            second = timetravel.cell_numbered(records, numbers[1]) if len(numbers) > 1 else records[-1]
        except LookupError as exc:
            print(f"%persist diff: {exc}.")
            return
        rows = [list(row) for row in timetravel.diff(self.journal.store, first, second, self.shell.user_module)]
        until = f"cell {second.label}" if len(numbers) > 1 else "now (as stored)"
        caption = f"Between after cell {first.label} and {until}: {len(rows)} variable(s) differ"
        if not rows:
            print(caption + ".")
            return
        _show_table(caption, views.DIFF_HEADERS, rows)

    # -- changing -------------------------------------------------------------------------

    def _checkout(self, args: list[str]) -> None:
        numbers = self._numbers(args, "checkout", at_least=1, at_most=1)
        if numbers is None or not self._active("check out"):
            return
        journal = self.journal
        if journal.paused is not None:
            print("%persist checkout: persistence is paused (%persist off); run %persist on first, so the checkout is journaled.")
            return
        started = time.monotonic()
        if journal.writer is not None and not journal.writer.drain(timeout=60):
            print("%persist checkout: large values are still being written to disk; try again in a moment.")
            return
        records = journal.records()
        try:
            target = timetravel.cell_numbered(records, numbers[0])
        except LookupError as exc:
            print(f"%persist checkout: {exc}.")
            return
        if target.status not in ("ok", "error", "interrupted"):
            print(f"%persist checkout: cell {target.label} did not finish ({target.status}); its state was never stored.")
            return
        result = self.recorder.checkout(records, target)
        print(result.summary() + f" ({time.monotonic() - started:.1f} s)")

    def _exclude(self, args: list[str]) -> None:
        if not args:
            shown = self._exclusions()
            hit = self._excluded_now()
            print(
                "Excluded from persistence: "
                + (", ".join(shown) if shown else "nothing")
                + (f" (matching now: {', '.join(hit)})" if hit else "")
                + "."
            )
            return
        if not self._active("exclude names"):
            return
        patterns = [p for arg in args for p in shlex.split(arg)]
        stored = self.journal.get_meta("excluded") or []
        self.journal.set_meta(excluded=sorted(set(stored) | set(patterns)))
        self._apply_exclusions()
        hit = self._excluded_now()
        self.recorder.look_again(hit)  # stored again (as excluded) when this cell ends
        already = sorted(n for n in hit if (s := self.checkpointer.names.get(n)) is not None and s.kind == STORED)
        print(
            f"Excluded from persistence: {', '.join(patterns)}."
            + (f" Matching now: {', '.join(hit)}." if hit else "")
            + " From now on these names are never stored; after a restart they are recomputed by replay if that is quick, otherwise absent."
            + (
                f" Versions of {', '.join(already)} stored before now stay in the history until %persist forget."
                if already
                else ""
            )
        )

    def _include(self, args: list[str]) -> None:
        if not args or not self._active("include names"):
            if not args:
                print("%persist include: name the names or patterns to store again, e.g. %persist include token.")
            return
        patterns = [p for arg in args for p in shlex.split(arg)]
        stored = self.journal.get_meta("excluded") or []
        self.journal.set_meta(excluded=[p for p in stored if p not in patterns])
        self._apply_exclusions()
        ns = self.shell.user_ns
        self.recorder.look_again(n for n in user_names(ns, self.shell.user_ns_hidden) if not self.checkpointer.is_excluded(n))
        message = f"Stored again from now on: {', '.join(p for p in patterns if p in stored) or 'nothing'}."
        still = [p for p in patterns if self.checkpointer.is_excluded(p)]
        if still:
            message += (
                f" Still excluded: {', '.join(still)}, by the pattern(s) {', '.join(self._exclusions())}"
                + (" (from configuration, PersistentKernel.exclude)" if self.configured_exclusions else "")
                + "."
            )
        print(message)

    def _off(self, _args: list[str]) -> None:
        if not self._active("pause"):
            return
        records = self.journal.records()
        label = records[-1].label if records else "-"
        self.journal.pause(label)
        print(
            "Persistence is paused in this kernel: cells are not journaled until %persist on. "
            f"A crash now restores the session as it was after cell {label}."
        )

    def _on(self, _args: list[str]) -> None:
        if not self.journal.paused:
            print("Persistence is already on." if self.journal.active else f"Persistence is off: {self.journal.problem}.")
            return
        self.recorder.resume()  # whatever the paused cells did is stored now, whole
        print("Persistence is on again: the namespace as it is now is stored, and cells are journaled.")

    def _verify(self, _args: list[str]) -> None:
        if not self._active("verify"):
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
        if findings["excluded"]:
            print(f"Excluded from persistence: {', '.join(findings['excluded'])}")
        problems = self.journal.store.check()
        print("Store check: " + ("no problems." if not problems else "; ".join(problems)))

    def _forget(self, _args: list[str]) -> None:
        if not self._active("forget"):
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

    # -- helpers --------------------------------------------------------------------------

    def _exclusions(self) -> list[str]:
        return sorted(set(self.configured_exclusions) | set(self.journal.get_meta("excluded") or []))

    def _excluded_now(self) -> list[str]:
        """The live names the exclusions match."""
        ns = self.shell.user_ns
        return sorted(n for n in user_names(ns, self.shell.user_ns_hidden) if self.checkpointer.is_excluded(n))

    def _apply_exclusions(self) -> None:
        self.checkpointer.set_excluded(self._exclusions())

    def _active(self, what: str) -> bool:
        if self.journal.active:
            return True
        print(f"Cannot {what}: persistence is off for this kernel ({self.journal.problem}).")
        return False

    @staticmethod
    def _numbers(args: list[str], command: str, *, at_least: int = 0, at_most: int) -> list[int] | None:
        """Cell numbers as the user typed them (``12`` or ``[12]``); None after telling what is wrong."""
        try:
            numbers = [int(arg.strip("[]")) for arg in args]
        except ValueError:
            numbers = None
        if numbers is None or not at_least <= len(numbers) <= at_most:
            expected = {"history": "[N]", "checkout": "N", "diff": "N [M]"}[command]
            print(f"%persist {command}: expected {expected} (cell numbers as shown in the notebook), got {' '.join(args) or 'nothing'}.")
            return None
        return numbers

