"""Re-creating notebook definitions at a restore or checkout: their cells' definition statements, run again.

A reference ``"<cell seq>:<qualname>"`` (see ``definitions``) is resolved by running the
*definition statements* of that cell — its top-level ``import``, ``def``, ``class``
statements and assignments of literals, as ``definitionindex`` reads them — in the user
namespace, with what the cell read bound as it stood before the cell ran. Each cell's
statements run once per ``DefinitionReplayer``; the namespace's bindings are put back
afterwards.
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .definitionindex import MISSING, bound_by, is_definition_statement, walk_nested
from .definitions import old_versions


@dataclass
class _CellDefinitions:
    statements: list[tuple[ast.stmt, list[str]]]
    filename: str
    reads: list[str]
    done: int = 0  # statements run so far
    captured: dict[str, Any] = field(default_factory=dict)  # what they bound


class DefinitionReplayer:
    """Re-creates definitions by running their cells' definition statements, once each.

    ``record_of(seq)`` gives a journaled cell (its code and the names it read);
    ``value_before(name, seq)`` the stored value of a name as it stood before that
    cell, as ``(found, value)``;
    ``guard()`` is entered while statements run (output suppressed, no file changes).
    """

    def __init__(
        self,
        shell: Any,
        record_of: Callable[[int], Any],
        value_before: Callable[[str, int], tuple[bool, Any]],
        guard: Callable[[], Any] = contextlib.nullcontext,
    ) -> None:
        self.shell = shell
        self.record_of = record_of
        self.value_before = value_before
        self.guard = guard
        self.cells: dict[int, _CellDefinitions | None] = {}
        self.resolved: dict[str, Any] = {}
        self.notes: dict[str, str] = {}  # qualname -> what is not exact about it
        self._running: set[int] = set()

    def resolve(self, seq: int, qualname: str) -> Any:
        key = f"{seq}:{qualname}"
        if key in self.resolved:
            return self.resolved[key]
        root, *rest = qualname.split(".")
        cell = self._cell(seq)
        if cell is None:
            raise LookupError(f"cell {seq}, which defines {qualname}, is not in the journal")
        if cell.done < len(cell.statements):
            # All of the cell's definitions, not just this one: a later statement may change an
            # earlier class (`__init_subclass__`), and that must happen before states are set.
            self._run(seq, cell, root)
        obj = walk_nested(cell.captured.get(root, MISSING), rest)
        if obj is MISSING:
            raise LookupError(f"replaying the definitions of cell {seq} did not make {qualname}")
        self.resolved[key] = obj
        return obj

    def _cell(self, seq: int) -> _CellDefinitions | None:
        if seq in self.cells:
            return self.cells[seq]
        record = self.record_of(seq)
        cell = None
        if record is not None and record.code:
            source, tree = record.code, None
            try:
                tree = ast.parse(source)  # as DefinitionIndex.note_cell read it: IPython's transform only if needed
            except (SyntaxError, ValueError):
                try:
                    source = self.shell.transform_cell(record.code)
                    tree = ast.parse(source)
                except Exception:  # noqa: BLE001 - a cell that no longer parses defines nothing
                    tree = None
            if tree is not None:
                statements = [(stmt, bound_by(stmt)) for stmt in tree.body if is_definition_statement(stmt)]
                filename = self._filename(source, record)
                cell = _CellDefinitions(statements, filename, list(record.reads or ()))
        self.cells[seq] = cell
        return cell

    def _filename(self, source: str, record: Any) -> str:
        """The cell's name in tracebacks and ``inspect.getsource`` (registered in linecache, as IPython does)."""
        try:
            return self.shell.compile.cache(source, record.execution_count or 0)
        except Exception:  # noqa: BLE001
            return f"<cell {record.seq}>"

    def _run(self, seq: int, cell: _CellDefinitions, name: str) -> None:
        if seq in self._running:
            raise LookupError(f"the definitions of cell {seq} refer to themselves before they exist")
        needed = max((i for i, (_stmt, names) in enumerate(cell.statements) if name in names), default=-1)
        last = len(cell.statements) - 1
        ns = self.shell.user_ns
        saved: dict[str, Any] = {}

        def bind(n: str, value: Any) -> None:
            if n not in saved:
                saved[n] = ns.get(n, MISSING)
            ns[n] = value

        self._running.add(seq)
        try:
            # What the cell read, as it stood before the cell: a metaclass filling a registry,
            # a base class from an earlier cell (itself resolved by reference, recursively).
            with old_versions():
                for read in cell.reads:
                    found, value = self.value_before(read, seq)
                    if found:
                        bind(read, value)
            for n, value in cell.captured.items():
                bind(n, value)
            for _stmt, names in cell.statements[cell.done : last + 1]:
                for n in names:
                    if n not in saved:
                        saved[n] = ns.get(n, MISSING)
            flags = getattr(getattr(self.shell, "compile", None), "flags", 0)
            with self.guard():
                while cell.done <= last:
                    stmt, names = cell.statements[cell.done]
                    code = compile(ast.Module(body=[stmt], type_ignores=[]), cell.filename, "exec", flags=flags, dont_inherit=True)
                    try:
                        exec(code, ns)  # noqa: S102 - the user's own journaled definition, authenticated
                    except Exception:
                        if cell.done <= needed:
                            raise  # what was asked for is not made (a later attempt resumes here)
                        break  # a later statement failed: what was asked for is made
                    for n in names:
                        if n in ns:
                            cell.captured[n] = ns[n]
                    cell.done += 1
        finally:
            self._running.discard(seq)
            for n, value in saved.items():
                if value is MISSING:
                    ns.pop(n, None)
                else:
                    ns[n] = value
