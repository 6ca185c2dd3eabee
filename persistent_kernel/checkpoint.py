"""After a cell: what changed in the namespace, serialized, for one transaction.

The candidates are the names the cell touched (read, bound, deleted; see
``tracking``), widened to their co-variable groups. Each candidate group is
serialized and hashed; a group whose hash is unchanged costs nothing more. A
changed group becomes a new *version* (its blobs content-addressed, so bytes
already stored are not stored again); a group that cannot be serialized becomes a
*recompute* version naming the cells that rebuild it.

Nothing here touches LMDB: ``prepare`` returns a ``Checkpoint`` that the journal
commits in one transaction with the cell's outcome, and only then is ``applied``
to the in-memory view of what is stored. Buffers of ``large_blob_bytes`` or more
are not in that transaction: the version is committed *not landed* and its
buffers become ``WriteJob``s for the background writer (see ``writer``).
"""

from __future__ import annotations

import base64
import collections
import fnmatch
import re
import sys
import types
from collections.abc import (
    Iterable,
    Iterator,
    MutableMapping,
    MutableSequence,
    MutableSet,
)
from collections.abc import (
    Set as AbstractSet,
)
from dataclasses import dataclass, field, replace
from typing import Any

from . import chunked, looks
from .definitionindex import DefinitionIndex
from .localmodules import local_file
from .namespacescan import NamespaceScan
from .records import DELETED, LIVE, MODULE, RECOMPUTE, STORED, Pointer, Version
from .serialize import Unserializable, dumps
from .store import version_key
from .tracking import Groups, ReadTracker, components, user_names
from .writer import WriteJob

INLINE_PAYLOAD_BYTES = 1024  # pickles up to this size are stored in the version record itself
MAX_NAME_BYTES = 400  # LMDB keys stop at 511 bytes; a name is part of its key
EXCLUDED_REASON = "excluded from persistence (%persist exclude)"


@dataclass
class NameState:
    """What the store holds for one name (the in-memory mirror of its latest pointer)."""

    kind: str  # STORED | RECOMPUTE | MODULE
    bound_at: int  # the cell that last bound the name
    version: str | None = None  # hex key of its group version
    group: frozenset[str] = frozenset()
    digest: str | None = None  # group hash when stored
    cells: tuple[int, ...] = ()  # for RECOMPUTE: the cells that rebuild it
    nbytes: int = 0  # serialized size of its group, when stored


@dataclass
class Checkpoint:
    """Everything one cell changed, ready for one transaction."""

    seq: int
    reads: set[str]
    writes: set[str]
    deletes: set[str]
    versions: dict[bytes, Version] = field(default_factory=dict)
    pointers: dict[str, Pointer] = field(default_factory=dict)
    blobs: dict[bytes, Any] = field(default_factory=dict)
    states: dict[str, NameState | None] = field(default_factory=dict)  # applied after the commit
    unserializable: dict[str, str] = field(default_factory=dict)  # name -> why (for the user)
    scan: dict[str, int] = field(default_factory=dict)
    jobs: list[WriteJob] = field(default_factory=list)  # large blobs, written after the commit
    atomics: dict[str, Any] = field(default_factory=dict)  # small immutable values stored by this checkpoint
    retried: set[str] = field(default_factory=set)  # unlanded versions whose names this checkpoint stores again
    checked_out: dict[str, NameState] = field(default_factory=dict)  # what a %persist checkout in this cell bound
    result: dict[str, Any] | None = None  # the cell's Out[n], for its outcome record (see Checkpointer._result)


_MISSING = object()
_ATOMIC_TYPES = frozenset({int, float, complex, bool, type(None)})
_ATOMIC_SIZED = frozenset({str, bytes})


def is_atomic(value: Any) -> bool:
    """A small immutable value with nothing inside it (exact built-in types only)."""
    kind = type(value)
    return kind in _ATOMIC_TYPES or (kind in _ATOMIC_SIZED and len(value) <= 4096)


MAX_RESULT_BYTES = 1024 * 1024  # a cell's result (Out[n]) not held by a variable is kept up to this size
MODULE_STATE_BYTES = 64 * 1024  # a local module's variables are stored with its pointer up to this size


def module_state(module: types.ModuleType) -> dict[str, Any] | None:
    """The data variables of one of the user's own modules (``helpers.SCALE = 3``), for its pointer.

    Returns ``{"digest", "method", "payload"}`` (base64), or only the digest when they
    cannot be stored small; None for library modules (their state is theirs).
    """
    if local_file(module.__name__, module) is None:
        return None
    data = {
        k: v
        for k, v in vars(module).items()
        if not k.startswith("__") and not issubclass(type(v), (types.ModuleType, types.FunctionType, type, types.BuiltinFunctionType))
    }
    if not data:
        return None
    try:
        serialized = dumps(data)
    except Unserializable as exc:
        return {"digest": None, "unstored": str(exc)[:200]}
    if serialized.buffers or len(serialized.payload) > MODULE_STATE_BYTES:
        return {"digest": serialized.group_digest, "unstored": "too large to keep with the module"}
    return {"digest": serialized.group_digest, "method": serialized.method, "payload": base64.b64encode(serialized.payload).decode("ascii")}


def advances_when_used(value: Any) -> bool:
    """Whether using an unstorable object changes it, so every cell that used it must be replayed.

    A generator moves on when read; a container or a notebook object changes in
    place. A connection, socket or lock keeps its state outside (the database
    file, the peer): only the cell that made it is replayed, never the cells that
    used it (a CREATE TABLE is not run twice).
    """
    kind = type(value)  # not isinstance(): a user __class__ property may raise
    if issubclass(kind, _ADVANCING):
        return True
    # Traitlets objects (every ipywidget) keep their state in the process: `s.value = 42` changes
    # a widget that is rebuilt (its comm cannot be stored), so that cell is replayed too.
    traitlets = sys.modules.get("traitlets")
    if traitlets is not None and issubclass(kind, traitlets.HasTraits):
        return True
    return kind.__module__ == "__main__"


# What holds what moves on: generators and iterators, and the containers a notebook keeps
# them in (a SimpleNamespace or tuple of generators advances when one of them is used).
_ADVANCING = (
    types.GeneratorType, Iterator, list, dict, set, tuple, types.SimpleNamespace, collections.deque,
    MutableMapping, MutableSequence, MutableSet,
)


class Checkpointer:
    """The kernel's view of what is stored, and the per-cell change detection."""

    def __init__(self, shell: Any, large_blob_bytes: int = 16 * 1024**2) -> None:
        self.shell = shell
        self.large_blob_bytes = large_blob_bytes  # 0: everything in the cell's transaction
        self.reads = ReadTracker()
        self.scanner = NamespaceScan()  # the identity scan, read from what changed in the namespace's table
        self.groups = Groups()
        self.names: dict[str, NameState] = {}
        self.scan: dict[str, int] = {}
        self.dirty: set[str] = set()  # touched by cells whose checkpoint did not commit
        self.full_pass = False  # the next checkpoint considers every name (after %persist verify)
        self.atomics: dict[str, Any] = {}  # name -> the small immutable object last stored for it
        # Versions whose large blobs did not land (torn or failed): their names are stored
        # again by the next checkpoint. Added to by the writer thread (set.add is atomic).
        self.unlanded: set[str] = set()
        # Set by %persist checkout: name -> (the object it bound, its pointer, its state), recorded by
        # the checkout cell's own checkpoint instead of storing the old values a second time.
        self.checked_out: dict[str, tuple[Any, Pointer, NameState]] = {}
        self._excluded: re.Pattern[str] | None = None  # %persist exclude: never stored, see set_excluded
        # Notebook functions and classes a `def`/`class` bound: stored by reference (see definitions).
        self.definitions = DefinitionIndex(shell.user_ns)
        self._last_output = self._newest_output()  # Out[n] already journaled (or from before this kernel)

    def set_excluded(self, patterns: list[str]) -> None:
        """Names (or shell-style patterns) never stored: each becomes a recompute version."""
        self._excluded = re.compile("|".join(fnmatch.translate(p) for p in patterns)) if patterns else None

    def is_excluded(self, name: str) -> bool:
        return self._excluded is not None and self._excluded.match(name) is not None

    @property
    def namespace(self) -> dict[str, Any]:
        return self.shell.user_ns

    def adopt(self, states: dict[str, NameState], dirty: AbstractSet[str] = frozenset()) -> None:
        """Start from what a restore loaded (the store's latest pointers)."""
        self.names = dict(states)
        self.dirty = set(dirty)
        ns = self.namespace
        self.atomics = {
            name: ns[name] for name, state in self.names.items() if state.kind == STORED and name in ns and is_atomic(ns[name])
        }
        self.scan = user_names(ns, self.shell.user_ns_hidden)
        with looks.one_look():  # no user code runs meanwhile: the shell's parts and each large container looked at once
            for name in self.scan:
                self.groups.update(name, ns[name], ns)
        self._last_output = self._newest_output()  # the results a restore put back are journaled already

    def prepare(self, seq: int, source: str, ran: Iterable[types.CodeType] = ()) -> Checkpoint:
        """What the cell ``source`` (and the notebook code ``ran`` outside it: widget callbacks) changed."""
        chunked.sweep()  # containers dropped since: their chunks go too
        with looks.one_look():  # each large container (and the shell's parts) looked at once, for the walk and the pickling
            return self._prepare(seq, source, ran)

    def _prepare(self, seq: int, source: str, ran: Iterable[types.CodeType]) -> Checkpoint:
        ns = self.namespace
        scan = self.scanner.scan(ns, self.shell.user_ns_hidden)
        written, deleted = self.scanner.rebound(self.scan, scan)
        deleted |= {name for name in self.dirty if name not in scan and name in self.names}
        read = self.reads.reads(source, ns, self.shell.transform_cell) if source else set()
        if ran:
            read |= self.reads.code_reads(ran, ns)
        read = {name for name in read if name in scan}
        if written or deleted:
            self.definitions.note_cell(seq, source, written, deleted, self.shell.transform_cell)
        touched = written | read | (self.dirty & set(scan))
        retried = set(self.unlanded)  # a snapshot: the writer thread adds to the set
        if retried:
            touched |= {name for name, state in self.names.items() if state.version in retried and name in scan}
        if self.full_pass:
            touched = set(scan)
            self.full_pass = False
        elif self.atomics:
            touched = {name for name in touched if not self._unchanged_atomic(name, ns[name])}
        checkpoint = Checkpoint(seq, read, written, deleted, scan=scan, retried=retried)
        checkpoint.result = self._result(scan)
        if self.checked_out:
            # Still hashed below: the same cell may have changed a checked-out value after the checkout.
            touched |= self._record_checkout(checkpoint)

        for name in deleted:
            self.groups.remove(name)
            if name in self.names:
                checkpoint.pointers[name] = Pointer(DELETED)
                checkpoint.states[name] = None
        for name in touched:
            self.groups.update(name, ns[name], ns)

        ordinal = 0
        for group in self.groups.groups_of(touched):
            modules = {n for n in group if issubclass(type(ns[n]), types.ModuleType)}
            for name in modules:
                self._module(checkpoint, name, ns[name], name in written)
            members = sorted(group - modules)
            if not members:
                continue
            try:
                created = self._group(checkpoint, members, ordinal)
            except Exception as exc:  # noqa: BLE001 - one odd object costs its group, not the cell
                key = version_key(checkpoint.seq, ordinal)
                created = self._recompute(checkpoint, members, frozenset(members), key, f"could not be checked: {type(exc).__name__}: {exc}")
            ordinal += created
        return checkpoint

    def _newest_output(self) -> int:
        out = self.namespace.get("Out")
        return max(out, default=0) if isinstance(out, dict) else 0

    def _result(self, scan: dict[str, int]) -> dict[str, Any] | None:
        """The cell's result, if it made one (``Out[n]``): how a restore gets it back.

        A result that is a variable's object is recorded as that name (identity kept,
        nothing stored twice); another is pickled, up to ``MAX_RESULT_BYTES``.
        """
        newest = self._newest_output()
        if newest <= self._last_output:
            return None
        self._last_output = newest
        value = self.namespace["Out"][newest]
        for name, ident in scan.items():
            if ident == id(value):
                return {"n": newest, "alias": name}
        try:
            serialized = dumps({"value": value}, self.definitions.key_of)
        except Unserializable as exc:
            return {"n": newest, "dropped": f"cannot be stored ({str(exc)[:100]})"}
        if serialized.nbytes > MAX_RESULT_BYTES:
            return {"n": newest, "dropped": f"too large to keep: {serialized.nbytes} bytes"}
        encoded = {"n": newest, "method": serialized.method, "payload": base64.b64encode(serialized.payload).decode("ascii")}
        if serialized.buffers:
            encoded["buffers"] = [base64.b64encode(buffer).decode("ascii") for buffer in serialized.buffers]
        return encoded

    def _record_checkout(self, checkpoint: Checkpoint) -> set[str]:
        """Point the names a checkout bound at their old versions; returns the names recorded.

        Their states become what ``_group`` and ``_recompute`` compare against
        (``_previous``): an unchanged value keeps the old version, nothing is written
        twice; one changed after the checkout is stored as a new version.
        """
        ns = self.namespace
        pending, self.checked_out = self.checked_out, {}
        recorded = set()
        for name, (value, pointer, state) in pending.items():
            if ns.get(name, _MISSING) is not value:
                continue  # the same cell rebound it after the checkout: stored like any change
            checkpoint.pointers[name] = replace(pointer, bound_at=checkpoint.seq)
            checkpoint.states[name] = checkpoint.checked_out[name] = replace(state, bound_at=checkpoint.seq)
            if state.kind == STORED and is_atomic(value):
                checkpoint.atomics[name] = value
            self.groups.update(name, value, ns)
            recorded.add(name)
        return recorded

    def _unchanged_atomic(self, name: str, value: Any) -> bool:
        """The very object stored last, and immutable: nothing to check (``y = 2`` run again).

        Holding the stored object keeps its address from being reused by another
        value, so identity is proof here, where elsewhere a hash is needed.
        """
        if value is not self.atomics.get(name, _MISSING) or name in self.dirty:
            return False
        state = self.names.get(name)
        return state is not None and state.kind == STORED and state.version not in self.unlanded

    def recover(self) -> None:
        """After ``prepare`` itself failed: look at everything again at the next checkpoint."""
        self.scan = user_names(self.namespace, self.shell.user_ns_hidden)
        self.full_pass = True

    def _previous(self, checkpoint: Checkpoint, name: str) -> NameState | None:
        """What the store holds for ``name`` before this checkpoint (a checkout in the cell counts)."""
        return checkpoint.checked_out.get(name) or self.names.get(name)

    def _module(self, checkpoint: Checkpoint, name: str, module: types.ModuleType, bound: bool) -> None:
        previous = self._previous(checkpoint, name)
        state = module_state(module)  # the user's own module: the variables cells set in it
        digest = state["digest"] if state else None
        if previous is not None and previous.kind == MODULE and previous.version == module.__name__ and not bound and previous.digest == digest:
            return
        bound_at = checkpoint.seq if bound or previous is None or previous.kind != MODULE else previous.bound_at
        checkpoint.pointers[name] = Pointer(MODULE, module=module.__name__, module_state=state or None, bound_at=bound_at)
        checkpoint.states[name] = NameState(MODULE, bound_at, version=module.__name__, digest=digest)

    def _bound_at(self, name: str, checkpoint: Checkpoint) -> int:
        previous = self._previous(checkpoint, name)
        if name in checkpoint.writes or previous is None:
            return checkpoint.seq
        return previous.bound_at

    def _group(self, checkpoint: Checkpoint, members: list[str], ordinal: int) -> int:
        """Checkpoint one group; returns how many versions it created."""
        ns = self.namespace
        too_long = [name for name in members if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES]
        for name in too_long:
            checkpoint.unserializable[name] = f"its name is longer than {MAX_NAME_BYTES} bytes"
        members = [name for name in members if name not in too_long]
        excluded = [name for name in members if self.is_excluded(name)]
        if excluded:
            # Never stored (a secret, scratch data): rebuilt by replay at a restart, if cheap. The names
            # sharing objects with it go with it: storing them would store it (`items = cfg['k']`).
            reason = EXCLUDED_REASON
            if len(excluded) < len(members):
                reason += f"; it shares objects with {', '.join(excluded)}"
            return self._recompute(checkpoint, members, frozenset(members), version_key(checkpoint.seq, ordinal), reason, excluded=True)
        if not members:
            return 0
        group = frozenset(members)
        key = version_key(checkpoint.seq, ordinal)
        try:
            serialized = dumps({name: ns[name] for name in members}, self.definitions.key_of)
        except Unserializable as exc:
            if len(members) > 1:
                return self._split(checkpoint, members, ordinal, str(exc))
            return self._recompute(checkpoint, members, group, key, str(exc))
        digest = serialized.group_digest
        if all(
            (state := self._previous(checkpoint, name)) is not None
            and state.kind == STORED
            and state.digest == digest
            and state.group == group
            and state.version not in self.unlanded
            for name in members
        ):
            return 0  # unchanged: nothing to store
        blobs: dict[bytes, Any] = {serialized.payload_digest: serialized.payload}
        large: dict[bytes, Any] = {}
        for buffer_digest, buffer in zip(serialized.buffer_digests, serialized.buffers):
            parts = serialized.pieces.get(buffer_digest, [(buffer_digest, buffer)])  # pieces already stored are not written again
            blobs.update(parts)
            if self.large_blob_bytes and memoryview(buffer).nbytes >= self.large_blob_bytes:
                large.update(parts)  # every piece of a large buffer is a file, its last short one too
        if self.large_blob_bytes and memoryview(serialized.payload).nbytes >= self.large_blob_bytes:
            large[serialized.payload_digest] = serialized.payload
        version = checkpoint.versions[key] = Version(
            STORED,
            members,
            method=serialized.method,
            payload=serialized.payload_digest.hex(),
            buffers=[d.hex() for d in serialized.buffer_digests],
            pieces={d.hex(): [p.hex() for p, _ in pieces] for d, pieces in serialized.pieces.items()},
            nbytes=serialized.nbytes,
            digest=digest,
            notes=serialized.notes or None,  # named by a restore: see serialize._copied_views
        )
        if len(serialized.payload) <= INLINE_PAYLOAD_BYTES:
            # A small pickle travels inside its version record: one LMDB put fewer per cell.
            version.inline = base64.b64encode(serialized.payload).decode("ascii")
            del blobs[serialized.payload_digest]
        if large:
            version.files = {blob.hex(): memoryview(data).nbytes for blob, data in large.items()}
            version.landed = False
            checkpoint.jobs.append(WriteJob(key, group, large))
        for blob, data in blobs.items():
            if blob not in large:
                checkpoint.blobs[blob] = data
        for name in members:
            bound_at = self._bound_at(name, checkpoint)
            checkpoint.pointers[name] = Pointer(LIVE, version=key.hex(), bound_at=bound_at)
            checkpoint.states[name] = NameState(STORED, bound_at, key.hex(), group, digest, nbytes=serialized.nbytes)
            if is_atomic(ns[name]):
                checkpoint.atomics[name] = ns[name]
        return 1

    def _split(self, checkpoint: Checkpoint, members: list[str], ordinal: int, reason: str) -> int:
        """A group that cannot be stored whole: store what can be, recompute only the rest.

        A generator over a stored list reaches the list; without the split the list
        would be recomputed too (and a random value in it drawn again).
        """
        ns = self.namespace
        unstorable = []
        for name in members:
            try:
                dumps({name: ns[name]}, self.definitions.key_of)
            except Unserializable:
                unstorable.append(name)
        if not unstorable or len(unstorable) == len(members):
            return self._recompute(checkpoint, members, frozenset(members), version_key(checkpoint.seq, ordinal), reason)
        created = self._recompute(checkpoint, unstorable, frozenset(unstorable), version_key(checkpoint.seq, ordinal), reason)
        rest = [name for name in members if name not in unstorable]
        for part in components(rest, {name: self.groups.reach(name) for name in rest}):
            created += self._group(checkpoint, sorted(part), ordinal + created)
        return created

    def _recompute(
        self, checkpoint: Checkpoint, members: list[str], group: frozenset[str], key: bytes, reason: str, *, excluded: bool = False
    ) -> int:
        ns = self.namespace
        cells: set[int] = set()
        for name in members:
            previous = self._previous(checkpoint, name)
            bound_at = self._bound_at(name, checkpoint)
            cells.add(bound_at)
            if previous is not None and bound_at == previous.bound_at:
                # The cells that changed it while it was storable are in its history;
                # the restore adds them (see restoreplan.full_rebuild_cells).
                cells.update(previous.cells)
            cells.update(self._cells_of_object_under_other_names(checkpoint, name))
            if excluded or (advances_when_used(ns[name]) and (name in checkpoint.reads or name in checkpoint.writes)):
                # This cell used it (not merely a group neighbour); an excluded value may also have
                # been changed through a stored name sharing it (`items = cfg['k']`; `cfg['k'].append(3)`).
                cells.add(checkpoint.seq)
        ordered = tuple(sorted(cells))
        unchanged = all(
            (state := self._previous(checkpoint, name)) is not None
            and state.kind == RECOMPUTE
            and state.cells == ordered
            and state.group == group
            for name in members
        )
        if not excluded:
            for name in members:
                checkpoint.unserializable[name] = reason
        if unchanged:
            return 0
        checkpoint.versions[key] = Version(RECOMPUTE, members, cells=list(ordered), reason=reason[:300], excluded=excluded)
        for name in members:
            bound_at = self._bound_at(name, checkpoint)
            checkpoint.pointers[name] = Pointer(LIVE, version=key.hex(), bound_at=bound_at)
            checkpoint.states[name] = NameState(RECOMPUTE, bound_at, key.hex(), group, None, ordered)
        return 1

    def _cells_of_object_under_other_names(self, checkpoint: Checkpoint, name: str) -> set[int]:
        """The cells that made and used an unstorable object before it got this name.

        ``gen3 = gen1; gen1 = (…)``: ``gen3`` is the generator ``gen1`` was, advanced
        by the cells in ``gen1``'s history, which a rebuild of ``gen3`` must replay.
        (A linear look at the last scan: only when an unstorable value is recorded.)
        """
        ident = id(self.namespace[name])
        cells: set[int] = set()
        for other, other_id in self.scan.items():
            if other_id == ident and other != name:
                earlier = self._previous(checkpoint, other)
                if earlier is not None and earlier.kind == RECOMPUTE:
                    cells.add(earlier.bound_at)
                    cells.update(earlier.cells)
        return cells

    def stored_bytes(self) -> int:
        """Serialized size of everything stored for the live namespace (what a full pass hashes)."""
        sizes = {state.version: state.nbytes for state in self.names.values() if state.kind == STORED}
        return sum(sizes.values())

    def verify(self) -> dict[str, list[str]]:
        """Hash every group in the namespace against what is stored.

        Returns names by finding: ``unchanged``, ``changed`` (a mutation tracking
        did not see), ``unstored`` (never stored), ``unstorable``. The next
        checkpoint then stores whatever differs.
        """
        with looks.one_look():
            return self._verify()

    def _verify(self) -> dict[str, list[str]]:
        ns = self.namespace
        names = user_names(ns, self.shell.user_ns_hidden)
        for name in names:
            self.groups.update(name, ns[name], ns)
        findings: dict[str, list[str]] = {"unchanged": [], "changed": [], "unstored": [], "unstorable": [], "excluded": []}
        for group in self.groups.groups_of(names):
            members = sorted(n for n in group if not issubclass(type(ns[n]), types.ModuleType))
            findings["excluded"].extend(n for n in members if self.is_excluded(n))
            members = [n for n in members if not self.is_excluded(n)]
            if not members:
                continue
            try:
                digest = dumps({name: ns[name] for name in members}, self.definitions.key_of).group_digest
            except Unserializable:
                findings["unstorable"].extend(members)
                continue
            for name in members:
                state = self.names.get(name)
                if state is None:
                    findings["unstored"].append(name)
                elif state.kind == STORED and state.digest == digest and state.group == group:
                    findings["unchanged"].append(name)
                else:
                    findings["changed"].append(name)
        self.full_pass = True
        return findings

    def forget(self) -> None:
        """The store was emptied: nothing is stored any more."""
        self.names.clear()
        self.atomics.clear()
        self.dirty.clear()
        self.definitions.forget()

    def applied(self, checkpoint: Checkpoint) -> None:
        """The checkpoint committed: it is now what the store holds."""
        for name, state in checkpoint.states.items():
            self.atomics.pop(name, None)
            if state is None:
                self.names.pop(name, None)
            else:
                self.names[name] = state
        self.atomics.update(checkpoint.atomics)
        self.unlanded -= checkpoint.retried  # their names have newer versions now
        self.scan = checkpoint.scan
        self.dirty.clear()

    def not_committed(self, checkpoint: Checkpoint) -> None:
        """The commit failed: keep what it touched, and every name it stored, as candidates for the next cell.

        The names it stored count too: a full pass (after a failure) stores names no cell
        read or wrote, and the store still lacks them.
        """
        self.dirty |= checkpoint.reads | checkpoint.writes | checkpoint.deletes | checkpoint.pointers.keys()
        self.scan = checkpoint.scan

