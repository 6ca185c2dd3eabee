"""The restore plan against synthetic histories: no store, no kernel (``restoreplan`` is pure).

Each history is a list of cells and the pointers/versions their checkpoints left;
the plan must say which names load, which are rebuilt (and why), and which cells
replay, in order — the rules restore.py's docstring promises the user.
"""

from __future__ import annotations

import pytest

from persistent_kernel import records as rec
from persistent_kernel.records import DELETED, LIVE, MODULE, RECOMPUTE, STORED, CellRecord, Pointer, Version
from persistent_kernel.restoreplan import (
    cells_for,
    cells_to_replay,
    costly_excluded,
    full_rebuild_cells,
    is_persist_command,
    needed_cells,
    plan_names,
    rebuild_after_failed_load,
    replayable,
)


def cell(seq: int, code: str = "pass", *, status: str = rec.OK, reads: list[str] = (), checkpointed: bool = True, duration: float = 0.01, kind: str = "cell") -> CellRecord:
    return CellRecord(
        seq=seq, code=code, execution_count=seq, status=status, reads=list(reads), checkpointed=checkpointed, duration=duration, kind=kind
    )


def key(seq: int, ordinal: int = 0) -> str:
    return (seq.to_bytes(8, "big") + ordinal.to_bytes(4, "big")).hex()


def stored(*names: str, files: dict[str, int] | None = None, landed: bool = True, pruned: bool = False) -> Version:
    return Version(STORED, list(names), method="pickle", payload="ab" * 16, files=files or {}, landed=landed, pruned=pruned, nbytes=10)


def recompute(*names: str, cells: list[int], excluded: bool = False) -> Version:
    return Version(RECOMPUTE, list(names), cells=cells, reason="a generator cannot be stored", excluded=excluded)


def live(version: str, seq: int, bound_at: int | None = None) -> Pointer:
    return Pointer(LIVE, version=version, bound_at=bound_at, seq=seq)


def plan(pointers, versions, on_disk=lambda version: version.landed and not version.pruned, missing=lambda key: "its stored version is missing"):
    return plan_names(pointers, versions, on_disk, missing)


# -- which names load, which are rebuilt --------------------------------------------------


def test_a_stored_group_loads_once_and_binds_every_name_in_it() -> None:
    versions = {key(1): stored("a", "b"), key(2): stored("c")}
    pointers = {"a": live(key(1), 1), "b": live(key(1), 1), "c": live(key(2), 2)}
    names = plan(pointers, versions)
    assert names.load == {key(1): ["a", "b"], key(2): ["c"]}
    assert names.rebuild == {} and names.unlanded == {}
    assert names.live == {"a", "b", "c"} and names.deleted == set()


def test_deleted_names_are_neither_loaded_nor_rebuilt() -> None:
    versions = {key(1): stored("a")}
    pointers = {"a": live(key(1), 1), "gone": Pointer(DELETED, seq=3)}
    names = plan(pointers, versions)
    assert names.deleted == {"gone"} and names.live == {"a"}
    assert "gone" not in names.rebuild and all("gone" not in bound for bound in names.load.values())


def test_modules_are_imported_again_never_loaded() -> None:
    pointers = {"np": Pointer(MODULE, module="numpy", bound_at=1, seq=1)}
    names = plan(pointers, {})
    assert list(names.modules) == ["np"] and names.load == {} and names.rebuild == {}


def test_an_unstorable_value_is_rebuilt_from_its_cells_and_keeps_its_reason() -> None:
    versions = {key(3): recompute("gen", cells=[2, 3])}
    names = plan({"gen": live(key(3), 3, bound_at=2)}, versions)
    assert names.rebuild == {"gen": "a generator cannot be stored"}
    assert names.cells == {"gen": {2, 3}}
    state = names.recompute_states["gen"]
    assert (state.kind, state.bound_at, state.cells, state.group) == (RECOMPUTE, 2, (2, 3), frozenset({"gen"}))
    assert names.stale == set()  # once rebuilt, the store already says what it holds: not stored again


def test_a_missing_or_refused_version_is_rebuilt_and_says_why() -> None:
    names = plan({"x": live(key(4), 4)}, {key(4): None}, missing=lambda k: f"its stored record failed authentication ({k[:4]})")
    assert names.rebuild["x"].startswith("its stored record failed authentication")
    assert names.recompute_states["x"].group == frozenset({"x"})
    assert names.stale == {"x"}  # its value was meant to be stored: the next checkpoint stores it again


@pytest.mark.parametrize("version", [stored("big", files={"cd" * 16: 8}, landed=False), stored("big", pruned=True)], ids=["never landed", "pruned"])
def test_a_version_whose_bytes_are_not_all_there_starts_from_an_earlier_one(version: Version) -> None:
    names = plan({"big": live(key(5), 5, bound_at=1)}, {key(5): version})
    assert names.load == {}
    assert list(names.unlanded) == ["big"] and names.unlanded["big"].seq == 5
    assert names.rebuild["big"] == "its value from cell 5 never reached the disk"
    assert names.stale == {"big"}


def test_an_unlanded_version_whose_files_are_there_after_all_loads() -> None:
    # A kill between a file's rename and its "landed" mark: the bytes are there.
    version = stored("big", files={"cd" * 16: 8}, landed=False)
    names = plan_names({"big": live(key(5), 5)}, {key(5): version}, lambda v: True, lambda k: "")
    assert names.load == {key(5): ["big"]} and names.unlanded == {}


def test_excluded_names_are_marked_for_the_cost_check() -> None:
    versions = {key(2): recompute("token", cells=[2], excluded=True)}
    names = plan({"token": live(key(2), 2)}, versions)
    assert names.excluded == {"token"} and "token" in names.rebuild
    assert names.stale == set()


def test_a_failed_load_moves_the_name_to_the_rebuilds() -> None:
    versions = {key(1): stored("a", "b")}
    pointers = {"a": live(key(1), 1), "b": live(key(1), 1)}
    names = plan(pointers, versions)
    rebuild_after_failed_load(names, "a", pointers["a"], versions[key(1)], "ModuleNotFoundError: No module named 'gone'")
    assert names.rebuild["a"] == "stored value failed to load (ModuleNotFoundError: No module named 'gone')"
    assert names.recompute_states["a"].group == frozenset({"a", "b"})
    assert names.stale == {"a"}


def test_a_full_rebuild_replays_the_binding_cell_and_every_change_since() -> None:
    history = [live(key(1), 1, 1), Pointer(DELETED, seq=2), live(key(3), 3, 3), live(key(5), 5, 3), live(key(7), 7, 3)]
    assert full_rebuild_cells(history[-1], history) == {3, 5, 7}
    assert full_rebuild_cells(history[-1], history, {4}) == {3, 4, 5, 7}
    # An old pointer without bound_at: bound by the cell that wrote it.
    assert full_rebuild_cells(Pointer(LIVE, version=key(9), seq=9), []) == {9}


# -- which cells replay, in what order ------------------------------------------------------


def test_cells_for_follows_what_the_cells_read_that_is_rebuilt_too() -> None:
    by_seq = {1: cell(1), 2: cell(2, reads=["src"]), 3: cell(3, reads=["gen"]), 4: cell(4)}
    rebuild = {"src": "x", "gen": "x", "other": "x"}
    cells = {"gen": {2}, "src": {1}, "other": {4}}
    assert cells_for(rebuild, cells, by_seq, start=["gen"]) == {1, 2}
    assert cells_for(rebuild, cells, by_seq) == {1, 2, 4}
    assert cells_for(rebuild, {"gen": {99}}, by_seq, start=["gen"]) == set()  # a cell no longer in the journal


def test_only_finished_cells_replay_and_the_names_needing_others_are_told() -> None:
    records = [
        cell(1, "gen = iter(range(9))"),
        cell(2, "next(gen)", status=rec.INTERRUPTED),
        cell(3, "next(gen)", status=rec.DIED),
        cell(4, "next(gen)", status=rec.SKIPPED),
        cell(5, "next(gen)", status=rec.ERROR),
        cell(6, "%persist status"),
    ]
    by_seq = {r.seq: r for r in records}
    rebuild, cells = {"gen": "cannot be stored"}, {"gen": {1, 2, 3, 4, 5, 6}}
    to_replay, incomplete = cells_to_replay(by_seq, needed_cells(records, rebuild, cells), rebuild, cells)
    assert [r.seq for r in to_replay] == [1, 5]  # in order; errors replay (their effects are state), %persist never
    assert incomplete == {"gen": ["[2]", "[3]", "[4]"]}


def test_cells_never_checkpointed_replay_whole_and_in_order() -> None:
    records = [cell(3, "b = 2", checkpointed=False), cell(1, "a = 1", checkpointed=False), cell(2, "x = 0"), cell(4, "oops", status=rec.DIED, checkpointed=False)]
    by_seq = {r.seq: r for r in records}
    to_replay, incomplete = cells_to_replay(by_seq, needed_cells(records, {}, {}), {}, {})
    assert [r.seq for r in to_replay] == [1, 3] and incomplete == {}


def test_nothing_to_rebuild_means_nothing_replays() -> None:
    records = [cell(seq) for seq in range(1, 50)]
    assert needed_cells(records, {}, {}) == set()


def test_events_and_persist_commands_never_replay() -> None:
    assert not replayable(cell(1, "x = 1", kind="comm"))
    assert not replayable(cell(2, "%persist checkout 3\n%persist status"))
    assert replayable(cell(3, "%persist status\nx = 1"))  # it also builds state
    assert is_persist_command("  %persist off\n\n")
    assert not is_persist_command("")


def test_an_excluded_name_with_costly_cells_is_left_out_and_says_how_long() -> None:
    by_seq = {1: cell(1, duration=0.5), 2: cell(2, reads=["token"], duration=3.0), 3: cell(3, duration=0.1)}
    rebuild = {"token": "excluded", "header": "excluded", "cheap": "excluded"}
    cells = {"token": {1}, "header": {2}, "cheap": {3}}
    left_out = costly_excluded({"header", "cheap"}, rebuild, cells, by_seq, limit=2.0)
    assert left_out == {"header": "not restored: its cells took 3.5 s to run"}  # its own cell and token's
