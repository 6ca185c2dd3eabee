"""Large plain lists, dicts and sets by chunks (``chunked``, ``dictversions``): no kernel, no store.

The claims, each proved over generated instances rather than one example:

- a chunked container round-trips exactly (types, values, order, identity of the
  records other values share);
- its group digest changes whenever its contents do (soundness: a missed change would
  be silent divergence) and stays put when they do not (no version stored for nothing);
- only changed chunks are pickled again; one item inserted or deleted anywhere stores one
  chunk (or two, where it cut a full one in two);
- what is not eligible (nested mutables, instances, a record held twice) is stored whole,
  as before;
- the sharing analysis links a variable to a container holding one of its records.
"""

from __future__ import annotations

import random

import pytest

from persistent_kernel import addresses, chunked, dictversions
from persistent_kernel.serialize import dumps, loads
from persistent_kernel.tracking import Groups

N = chunked.MIN_ITEMS + chunked.CHUNK_ITEMS // 2  # a little over two chunks and a half


def round_trip(values: dict) -> dict:
    serialized = dumps(values)
    return loads(serialized.method, serialized.payload, [bytes(buffer) for buffer in serialized.buffers])


def exact(value) -> str:
    """A fingerprint that tells 1 from True and 1.0, and 0.0 from -0.0, and sees order: for flat
    built-in values, ``repr`` is exact (and, unlike a pickle, blind to which equal objects are shared)."""
    return repr(value)


# -- the mutation counter -------------------------------------------------------------------


def test_dict_counters_are_readable_on_this_interpreter() -> None:
    # CI runs this on 3.10 to 3.13: the self-test must pass on every supported CPython.
    assert dictversions.available()


def test_the_tag_reader_sees_exactly_which_records_changed() -> None:
    records = [{"i": i} for i in range(5000)]
    reader = dictversions.TagReader(records)
    before = reader()
    rng = random.Random(3)
    changed = sorted(rng.sample(range(len(records)), 25))
    for index in changed:
        records[index]["i"] = -records[index]["i"] - 1
    after = reader()
    assert [i for i, (a, b) in enumerate(zip(before, after)) if a != b] == changed
    records[changed[0]]["i"] = records[changed[0]]["i"]  # the very same object again: nothing changed, and CPython agrees
    assert reader() == after


# -- generated containers and mutations ----------------------------------------------------------

ATOMS = [0, 1, -1, 2**70, 1.5, -0.0, 0.0, float("inf"), 1j, True, False, None, "", "text", "a longer text " * 5, b"", b"bytes"]


def atom(rng: random.Random):
    return rng.choice(ATOMS) if rng.random() < 0.3 else rng.choice([rng.randrange(10**6), rng.random(), f"s{rng.randrange(10**6)}"])


def record(rng: random.Random):
    if rng.random() < 0.2:
        return tuple(atom(rng) for _ in range(rng.randrange(4)))
    return {f"k{j}": atom(rng) for j in range(rng.randrange(5))}


def make_container(rng: random.Random, kind: str, flavour: str):
    item = atom if flavour == "atoms" else record
    if kind == "list":
        return [item(rng) for _ in range(N)]
    keys = set()
    while len(keys) < N:
        keys.add(rng.randrange(10**9) if rng.random() < 0.5 else (rng.randrange(100), f"t{rng.randrange(10**6)}"))
    return {key: item(rng) for key in keys}


def equal_of_another_type(value):
    """A value ``==`` to this one that is not the same (1 → True, True → 1.0, 0.0 → -0.0 …): what an
    equality check would miss and an identity check must not."""
    kind = type(value)
    if kind is bool:
        return int(value)
    if kind is int:
        return float(value) if value not in (0, 1) else bool(value)
    if kind is float:
        return -value if value == 0 else int(value) if value.is_integer() else complex(value)
    return 1.0


def mutate(rng: random.Random, value, flavour: str) -> str:
    """One change a notebook cell might make; returns its name (for the failure message)."""
    item = atom if flavour == "atoms" else record
    if isinstance(value, list):
        choice = rng.choice(["append", "insert", "pop0", "setitem", "same-value-other-type", "record", "extend", "reverse", "delslice"])
        if choice == "append":
            value.append(item(rng))
        elif choice == "insert":
            value.insert(rng.randrange(len(value)), item(rng))
        elif choice == "pop0":
            value.pop(0)
        elif choice == "setitem":
            value[rng.randrange(len(value))] = item(rng)
        elif choice == "same-value-other-type":
            index = rng.randrange(len(value))
            value[index] = equal_of_another_type(value[index])
        elif choice == "record":
            index = rng.randrange(len(value))
            if isinstance(value[index], dict):
                value[index]["new"] = atom(rng)
            else:
                value[index] = item(rng)
        elif choice == "extend":
            value.extend(item(rng) for _ in range(rng.randrange(1, 3000)))
        elif choice == "reverse":
            value.reverse()
        else:
            start = rng.randrange(len(value) - 100)
            del value[start : start + rng.randrange(1, 100)]
        return choice
    choice = rng.choice(["setitem", "delitem", "add", "record", "pop-readd", "same-value-other-type"])
    keys = list(value)
    key = rng.choice(keys)
    if choice == "setitem":
        value[key] = item(rng)
    elif choice == "delitem":
        del value[key]
    elif choice == "add":
        value[("added", rng.randrange(10**9))] = item(rng)
    elif choice == "record":
        if isinstance(value[key], dict):
            value[key].pop(next(iter(value[key]), None), None) if value[key] and rng.random() < 0.5 else value[key].update(z=1)
        else:
            value[key] = item(rng)
    elif choice == "pop-readd":
        value[key] = value.pop(key)  # same contents, new order
    else:
        old = value[key]
        value[key] = equal_of_another_type(old)
    return choice


@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("flavour", ["atoms", "records"])
@pytest.mark.parametrize("seed", range(4))
def test_generated_containers_round_trip_and_every_change_moves_the_digest(kind: str, flavour: str, seed: int) -> None:
    rng = random.Random(f"{kind}-{flavour}-{seed}")
    value = make_container(rng, kind, flavour)
    assert chunked.chunks_of(value) is not None
    digest, fingerprint = dumps({"v": value}).group_digest, exact(value)
    for step in range(12):
        change = mutate(rng, value, flavour)
        serialized = dumps({"v": value})
        now = exact(value)
        if now != fingerprint:
            assert serialized.group_digest != digest, f"step {step}: {change} was not seen"
        else:
            assert serialized.group_digest == digest, f"step {step}: {change} changed nothing, yet the digest moved"
        digest, fingerprint = serialized.group_digest, now
        back = loads(serialized.method, serialized.payload, [bytes(b) for b in serialized.buffers])["v"]
        assert exact(back) == now, f"step {step}: {change} did not round-trip"
    assert chunked.chunks_of(value) is not None  # still chunked after all that


def make_set(rng: random.Random, flavour: str) -> set:
    item = atom if flavour == "atoms" else lambda rng: tuple(atom(rng) for _ in range(rng.randrange(4)))
    value: set = set()
    while len(value) < N:
        value.add(item(rng))
    return value


def mutate_set(rng: random.Random, value: set, flavour: str) -> str:
    item = atom if flavour == "atoms" else lambda rng: tuple(atom(rng) for _ in range(rng.randrange(4)))
    choice = rng.choice(["add", "discard", "pop", "update", "difference_update", "same-value-other-type", "add-existing"])
    if choice == "add":
        value.add(item(rng))
    elif choice == "discard":
        value.discard(rng.choice(list(value)))
    elif choice == "pop":
        value.pop()
    elif choice == "update":
        value.update(item(rng) for _ in range(rng.randrange(1, 3000)))
    elif choice == "difference_update":
        value.difference_update(rng.sample(list(value), rng.randrange(1, 100)))
    elif choice == "same-value-other-type":
        old = rng.choice([x for x in value if type(x) in (bool, int, float)] or [0])
        value.discard(old)
        value.add(equal_of_another_type(old))
    else:
        value.add(rng.choice(list(value)))  # already there: nothing changes
    return choice


def content(value: set) -> list[str]:
    """A set's items, exactly (1 is not True), in no particular order: what a restore must keep."""
    return sorted(map(repr, value))


@pytest.mark.parametrize("flavour", ["atoms", "records"])
@pytest.mark.parametrize("seed", range(4))
def test_generated_sets_round_trip_and_every_change_moves_the_digest(flavour: str, seed: int) -> None:
    rng = random.Random(f"set-{flavour}-{seed}")
    value = make_set(rng, flavour)
    assert chunked.chunks_of(value) is not None
    digest, fingerprint = dumps({"v": value}).group_digest, content(value)
    for step in range(12):
        change = mutate_set(rng, value, flavour)
        serialized = dumps({"v": value})
        now = content(value)
        if now != fingerprint:
            assert serialized.group_digest != digest, f"step {step}: {change} was not seen"
        # (the same items in another order may move the digest: a version stored for nothing, never a change missed)
        digest, fingerprint = serialized.group_digest, now
        back = loads(serialized.method, serialized.payload, [bytes(b) for b in serialized.buffers])["v"]
        assert type(back) is set and content(back) == now, f"step {step}: {change} did not round-trip"
    assert chunked.chunks_of(value) is not None


def _new_chunks(before, after) -> int:
    return len(set(after.buffer_digests) - set(before.buffer_digests))


@pytest.mark.parametrize("seed", range(6))
def test_one_item_inserted_or_deleted_anywhere_stores_one_chunk(seed: int) -> None:
    rng = random.Random(seed)
    rows = [{"id": i} for i in range(6 * chunked.CHUNK_ITEMS)]
    table = {i: f"v{i}" for i in range(6 * chunked.CHUNK_ITEMS)}
    ids = set(range(0, 12 * chunked.CHUNK_ITEMS, 2))  # room in its table: no resize below
    for change in (
        lambda: rows.insert(rng.randrange(len(rows)), {"id": -1}),
        lambda: rows.pop(rng.randrange(len(rows))),
        lambda: rows.insert(0, {"id": -2}),
        lambda: table.pop(rng.randrange(len(table))),
        lambda: ids.add(2 * rng.randrange(6 * chunked.CHUNK_ITEMS, 7 * chunked.CHUNK_ITEMS) + 1),
        lambda: ids.discard(2 * rng.randrange(6 * chunked.CHUNK_ITEMS)),
    ):
        values = {"rows": rows, "table": table, "ids": ids}
        before = dumps(values)
        change()
        after = dumps(values)
        # an insert into a full chunk cuts it in two: at most two new chunks, every other one kept
        assert 1 <= _new_chunks(before, after) <= 2
        assert round_trip(values) == values


def test_appends_one_at_a_time_keep_chunks_between_half_and_whole_size() -> None:
    rows = [{"id": i} for i in range(chunked.MIN_ITEMS)]
    for i in range(3 * chunked.CHUNK_ITEMS // 100):
        rows.extend({"id": -i} for _ in range(100))
        dumps({"rows": rows})
    sizes = [len(chunk.items) for chunk in chunked.chunks_of(rows).chunks]
    assert max(sizes) <= chunked.CHUNK_ITEMS and min(sizes[:-1]) >= chunked.CHUNK_ITEMS // 2, sizes
    assert sum(sizes) == len(rows)


def test_only_the_changed_chunk_is_pickled_again() -> None:
    rows = [{"id": i, "name": f"n{i}"} for i in range(5 * chunked.CHUNK_ITEMS)]
    first = dumps({"rows": rows})
    rows[3 * chunked.CHUNK_ITEMS + 5]["name"] = "changed"
    second = dumps({"rows": rows})
    changed = set(second.buffer_digests) - set(first.buffer_digests)
    assert len(first.buffers) == len(second.buffers) == 5
    assert len(changed) == 1
    rows.append({"id": -1})
    third = dumps({"rows": rows})
    assert len(set(third.buffer_digests) - set(second.buffer_digests)) == 1


def test_aliases_and_shared_records_keep_their_identity() -> None:
    rows = [{"id": i} for i in range(N)]
    table = {i: (i, str(i)) for i in range(N)}
    last, pair = rows[-1], table[7]
    back = round_trip({"rows": rows, "alias": rows, "last": last, "table": table, "pair": pair, "nested": {"rows": rows}})
    assert back["rows"] is back["alias"] is back["nested"]["rows"]
    assert back["last"] is back["rows"][-1]
    assert back["pair"] == back["table"][7]  # a tuple: equal, not the same object (documented)
    assert back["rows"] == rows and back["table"] == table


def test_a_large_container_one_level_inside_is_chunked_too() -> None:
    data = {"meta": {"source": "api"}, "items": [{"n": i} for i in range(N)]}
    serialized = dumps({"data": data})
    assert len(serialized.buffers) >= 3  # the list's chunks
    assert round_trip({"data": data}) == {"data": data}


@pytest.mark.parametrize(
    "make",
    [
        lambda: [[i] for i in range(N)],  # lists inside: no cheap proof they are unchanged
        lambda: [{"inner": [i]} for i in range(N)],  # a record holding a list
        lambda: [{"d": {"e": i}} for i in range(N)],  # a dict of dicts
        lambda: [type("Thing", (), {})() for _ in range(N)],  # instances
        lambda: [{"same": 1}] * N,  # one record many times
        lambda: [(1, [2])] * 3 + list(range(N)),  # a tuple holding a list
    ],
)
def test_what_is_not_flat_is_stored_whole_as_before(make) -> None:
    value = make()
    assert chunked.chunks_of(value) is None
    serialized = dumps({"v": value})
    assert not serialized.buffers
    back = loads(serialized.method, serialized.payload, [])["v"]
    assert len(back) == len(value)
    if isinstance(value[0], dict) and value[0] is value[1]:
        assert back[0] is back[1]


@pytest.mark.parametrize(
    "make",
    [
        lambda: {frozenset([i]) for i in range(N)},  # frozensets inside
        lambda: {(i, (i,)) for i in range(N)},  # nested tuples
        lambda: {type("Key", (), {})() for _ in range(N)},  # instances
    ],
)
def test_a_set_of_what_is_not_flat_is_stored_whole_as_before(make) -> None:
    value = make()
    assert chunked.chunks_of(value) is None
    serialized = dumps({"v": value})
    assert not serialized.buffers
    assert len(loads(serialized.method, serialized.payload, [])["v"]) == len(value)


def test_a_small_container_is_not_chunked() -> None:
    assert chunked.chunks_of(list(range(chunked.MIN_ITEMS - 1))) is None
    assert chunked.chunks_of(list(range(chunked.MIN_ITEMS))) is not None


def test_dict_subclasses_and_list_subclasses_are_stored_whole() -> None:
    from collections import OrderedDict, defaultdict

    class Rows(list):
        pass

    class Ids(set):
        pass

    for value in (OrderedDict((i, i) for i in range(N)), defaultdict(int, {i: i for i in range(N)}), Rows(range(N)), Ids(range(N)), frozenset(range(N))):
        assert chunked.chunks_of(value) is None
        assert round_trip({"v": value})["v"] == value


def test_a_container_nothing_holds_any_more_is_forgotten() -> None:
    value = list(range(N))
    chunked.chunks_of(value)
    assert id(value) in chunked._cache
    chunked.sweep()
    assert id(value) in chunked._cache
    del value
    chunked.sweep()
    assert not any(len(entry.obj) == N and entry.obj == list(range(N)) for entry in chunked._cache.values())


# -- the sharing analysis -------------------------------------------------------------------------


def test_a_variable_holding_a_record_is_grouped_with_its_container() -> None:
    rows = [{"id": i} for i in range(N)]
    other = [{"id": i} for i in range(N)]
    ns = {"rows": rows, "other": other, "r": rows[N // 2], "t": 5, "both": [rows[3], other[4]]}
    groups = Groups()
    for name, value in ns.items():
        groups.update(name, value, ns)
    assert groups.group_of("r") == {"rows", "r", "both", "other"}
    assert groups.group_of("t") == {"t"}
    ns["both"] = []
    groups.update("both", ns["both"], ns)
    assert groups.group_of("r") == {"rows", "r"}
    assert groups.group_of("other") == {"other"}
    assert id(rows[5]) in groups.reach("rows")


def test_two_containers_sharing_a_record_are_one_group() -> None:
    rows = [{"id": i} for i in range(N)]
    copy = list(rows)  # a shallow copy: the same records
    ns = {"rows": rows, "copy": copy}
    groups = Groups()
    for name, value in ns.items():
        groups.update(name, value, ns)
    assert groups.group_of("rows") == {"rows", "copy"}
    back = round_trip(ns)  # stored together, they share their records again (the copy's chunks may be inline)
    assert back["rows"] == rows and back["copy"] == copy
    assert all(a is b for a, b in zip(back["rows"], back["copy"]))


def test_a_loaded_container_keeps_the_chunks_it_was_loaded_from() -> None:
    rows = [{"id": i, "name": f"n{i}"} for i in range(N)]
    table = {i: f"v{i}" for i in range(N)}
    ids = set(range(N))
    stored = dumps({"rows": rows, "table": table, "ids": ids})
    back = loads(stored.method, stored.payload, [bytes(b) for b in stored.buffers])
    assert id(back["rows"]) in chunked._cache and id(back["table"]) in chunked._cache
    assert id(back["ids"]) in chunked._cache  # rebuilt in the same order: its chunks kept
    assert chunked._cache[id(back["rows"])].reach == set(map(id, back["rows"]))  # every record, gathered from the loaded chunks
    again = dumps(back)  # the first checkpoint after a restore: the same bytes, nothing pickled anew
    assert again.group_digest == stored.group_digest
    back["rows"][3]["name"] = "changed"  # and changes are still seen
    assert dumps(back).group_digest != stored.group_digest


# -- object arrays (numpy dtype object; pandas' object and python-string columns) ---------------


def _object_array(rng: random.Random, shape: tuple[int, ...], order: str):
    import numpy as np

    array = np.empty(shape, dtype=object, order=order)
    flat = array.ravel(order="K")  # a view in memory order
    for index in range(flat.size):
        flat[index] = atom(rng) if rng.random() < 0.9 else tuple(atom(rng) for _ in range(rng.randrange(3)))
    return array


def _array_content(array) -> tuple:
    return (array.shape, array.flags.f_contiguous, [exact(item) for item in array.ravel(order="K").tolist()])


@pytest.mark.parametrize(("shape", "order"), [((N,), "C"), ((N // 3, 3), "C"), ((N // 3, 3), "F"), ((3, N // 3), "F")])
@pytest.mark.parametrize("seed", range(2))
def test_generated_object_arrays_round_trip_and_every_change_moves_the_digest(shape, order, seed: int) -> None:
    rng = random.Random(f"array-{shape}-{order}-{seed}")
    array = _object_array(rng, shape, order)
    assert chunked.chunks_of(array) is not None
    digest, fingerprint = dumps({"a": array}).group_digest, _array_content(array)
    flat = array.ravel(order="K")
    for step in range(10):
        index = rng.randrange(flat.size)
        change = rng.choice(["atom", "same-value-other-type", "tuple", "none"])
        if change == "atom":
            flat[index] = atom(rng)
        elif change == "same-value-other-type":
            flat[index] = equal_of_another_type(flat[index])
        elif change == "tuple":
            flat[index] = (atom(rng), atom(rng))
        else:
            flat[index] = None
        serialized = dumps({"a": array})
        now = _array_content(array)
        assert (serialized.group_digest != digest) == (now != fingerprint), f"step {step}: {change}"
        digest, fingerprint = serialized.group_digest, now
        back = loads(serialized.method, serialized.payload, [bytes(b) for b in serialized.buffers])["a"]
        assert type(back) is type(array) and back.dtype == object and _array_content(back) == now, f"step {step}: {change} did not round-trip"


def test_an_unchanged_set_or_object_array_is_proven_so_without_listing_its_items(monkeypatch) -> None:
    """The address proofs (``addresses``): no item listed, no chunk compared, for what did not change;
    an object array with one item replaced makes one chunk again, the rest kept as they are."""
    pytest.importorskip("numpy")
    import numpy as np

    if not addresses.available():
        pytest.skip("set tables are not readable on this interpreter")
    monkeypatch.setattr(addresses, "_alone", lambda: True)  # threads other tests left behind never touch this set
    ids = {f"id{i}" for i in range(3 * N)}
    array = np.array([f"s{i}" for i in range(3 * N)], dtype=object)
    first_set, first_array = list(chunked.chunks_of(ids).chunks), list(chunked.chunks_of(array).chunks)

    def no_listing(*args):
        raise AssertionError("the items were listed and compared")

    monkeypatch.setattr(chunked, "_rechunk", no_listing)
    assert chunked.chunks_of(ids).chunks == first_set
    assert chunked.chunks_of(array).chunks == first_array
    array[N + 3] = "changed"
    again = chunked.chunks_of(array).chunks
    assert [a is b for a, b in zip(again, first_array)].count(False) == 1
    monkeypatch.undo()
    ids.add("new")
    assert chunked.chunks_of(ids).chunks != first_set
    assert round_trip({"ids": ids, "array": array})["ids"] == ids
    assert round_trip({"array": array})["array"].tolist() == array.tolist()


def test_a_pandas_string_column_changed_in_one_cell_stores_one_chunk() -> None:
    pd = pytest.importorskip("pandas")
    import numpy as np

    frame = pd.DataFrame({"name": [f"n{i}" for i in range(3 * N)], "kind": pd.array([None if i % 5 else f"k{i}" for i in range(3 * N)], dtype=object), "x": np.arange(3 * N)})
    values = {"frame": frame, "same": frame}
    before = dumps(values)
    assert len(before.buffers) >= 6  # two object columns by chunks
    again = dumps(values)
    assert again.group_digest == before.group_digest
    frame.at[N + 7, "name"] = "changed"
    after = dumps(values)
    assert after.group_digest != before.group_digest and _new_chunks(before, after) == 1
    back = loads(after.method, after.payload, [bytes(b) for b in after.buffers])
    assert back["frame"] is back["same"]
    assert back["frame"].equals(frame) and back["frame"].dtypes.to_dict() == frame.dtypes.to_dict()


@pytest.mark.parametrize(
    "make",
    [
        lambda np: np.array([[i] for i in range(N)] + [None], dtype=object),  # lists inside
        lambda np: np.array([type("Thing", (), {})() for _ in range(N)], dtype=object),  # instances
        lambda np: np.arange(N, dtype=np.float64),  # not an object array: its buffer goes out of band, as before
    ],
)
def test_an_object_array_of_what_is_not_flat_is_stored_as_before(make) -> None:
    np = pytest.importorskip("numpy")
    value = make(np)
    assert chunked.chunks_of(value) is None
    serialized = dumps({"v": value})
    back = loads(serialized.method, serialized.payload, [bytes(b) for b in serialized.buffers])["v"]
    assert back.shape == value.shape and back.dtype == value.dtype
