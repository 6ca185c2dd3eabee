"""Crash consistency under fault injection (issue #6, item 1).

    python benchmarks/fault_injection.py --seed 1 --cells 200 --kills 50 [--large-mb 20] [--write-docs]

A seeded random program of small cells (ints, strings, lists and dicts mutated,
aliased, nested and deleted; small numpy arrays; large numpy arrays of
``--large-mb`` MiB, over the 16 MiB line, so the background writer runs;
generators, in-memory sqlite connections and locks, which cannot be stored and
are rebuilt by replay; now and then a cell that raises half-way) runs in a
persistent kernel, which is SIGKILLed at seeded points:

- ``during``: the execute request is sent and the kernel is killed 0-50 ms later,
  without waiting (in the cell, its checkpoint, its commit, or just after);
- ``after``: 0-200 ms after the reply (mostly after cells that changed a large
  array, so the background write and its "landed" commit are in flight);
- ``idle``: 0.6-1.0 s after the reply.

The same program runs first in a plain dict in this process: the model. Its
fingerprint after cell k is the expected state S_k: per variable a hash of a
canonical form of the value (numpy: dtype, shape and an xxh3 of the bytes;
containers: element by element; generators: their position; connections and
locks: their type), plus the aliasing structure (which names and container slots
are the same mutable object). After each kill the store's ``check()`` runs on
the dead kernel's store, a new kernel starts on the session, and its fingerprint
(computed by a user expression with no code, so nothing is journaled or bound)
must equal S_j for some j with ``last replied <= j <= cell in flight``: a smaller j
is state lost, no j at all is a mix. The run continues from the state restored:
a cell in flight that did not commit is sent again, as a user would.

The program and the kill plan depend only on the seed; where in the kernel a
kill lands depends on timing. Prints a table; ``--write-docs`` puts the figures
into docs/reliability.md.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
DOC_START = "<!-- fault-injection results: start (written by benchmarks/fault_injection.py --write-docs) -->"
DOC_END = "<!-- fault-injection results: end -->"

# The fingerprint, the same source in the model and in the kernel (exec'd into a
# fresh dict there, so no user name is bound).
FINGERPRINT_SRC = r'''
def fingerprint(ns):
    import hashlib, json, re, types
    import xxhash
    try:
        import numpy
    except ImportError:
        numpy = None
    pattern = re.compile(r"^(n|s|l|d|a|big|gen|con|lock|rec|tab)\d+$")
    modules = ("np", "sqlite3", "threading", "itertools")
    slots = {}

    def note(obj, path):
        slots.setdefault(id(obj), (obj, []))[1].append(path)

    active = {}

    def canon(obj, path):
        t = type(obj)
        if obj is None or t in (bool, int, float, complex, str, bytes):
            return repr(obj)
        if id(obj) in active:  # a cycle: name the path where the object was entered
            note(obj, path)
            return "cycle(" + active[id(obj)] + ")"
        active[id(obj)] = path
        try:
            return canon_inner(obj, path, t)
        finally:
            del active[id(obj)]

    def canon_inner(obj, path, t):
        if t is tuple:
            return "(" + ",".join(canon(x, f"{path}[{i}]") for i, x in enumerate(obj)) + ")"
        if t is list:
            note(obj, path)
            return "[" + ",".join(canon(x, f"{path}[{i}]") for i, x in enumerate(obj)) + "]"
        if t is dict:
            note(obj, path)
            return "{" + ",".join(canon(k, path + "@k") + ":" + canon(v, f"{path}[{k!r}]") for k, v in obj.items()) + "}"
        if t is set:
            note(obj, path)
            return "set(" + ",".join(sorted(canon(x, path + "@e") for x in obj)) + ")"
        if numpy is not None and t is numpy.ndarray:
            note(obj, path)
            data = numpy.ascontiguousarray(obj)
            return f"ndarray({obj.dtype.str},{obj.shape},{xxhash.xxh3_64_hexdigest(data) if data.size else '-'})"
        if t is types.GeneratorType:
            note(obj, path)
            frame = obj.gi_frame
            if frame is None:
                return "generator(done)"
            local = dict(frame.f_locals)
            source = local.pop(".0", None)
            position = source.__reduce__()[2] if type(source).__name__ == "range_iterator" else type(source).__name__
            return f"generator({obj.gi_code.co_name},{sorted(local.items())!r},{position!r})"
        if t is types.ModuleType:
            return "module(" + obj.__name__ + ")"
        note(obj, path)
        return "object(" + t.__module__ + "." + t.__qualname__ + ")"

    values, kinds = {}, {}
    for name in sorted(ns):
        if not (pattern.match(name) or name in modules):
            continue
        text = canon(ns[name], name)
        values[name] = hashlib.sha1(text.encode()).hexdigest()[:16]
        kinds[name] = text if len(text) <= 60 else text[:57] + "..."
    aliases = sorted(sorted(paths) for _obj, paths in slots.values() if len(paths) > 1)
    return json.dumps({"values": values, "aliases": aliases, "kinds": kinds}, sort_keys=True)
'''

KERNEL_FINGERPRINT = f"(lambda _pk_fi_ns: (exec({FINGERPRINT_SRC!r}, _pk_fi_ns), _pk_fi_ns['fingerprint'](globals()))[1])({{}})"

SETUP_CELL = "import numpy as np, itertools, sqlite3, threading"


def local_fingerprint() -> Any:
    ns: dict[str, Any] = {}
    exec(FINGERPRINT_SRC, ns)
    return ns["fingerprint"]


def state_key(fp: dict) -> str:
    """What must match: values and aliasing (``kinds`` is for reading only)."""
    return json.dumps({"values": fp["values"], "aliases": fp["aliases"]}, sort_keys=True)


# -- the program -------------------------------------------------------------------


@dataclass
class Program:
    cells: list[str]  # cells[0] is the setup cell
    states: list[dict]  # states[k]: the model's fingerprint after cells[0..k]
    large: list[bool]  # the cell changes a large array
    raised: list[bool]


def slot_name(rng: random.Random, prefix: str, count: int = 4) -> str:
    return f"{prefix}{rng.randint(1, count)}"


# What a statement does, and how often (``Generator.statement``).
KINDS = ["small-new", "small-mutate", "alias", "nest", "delete", "array", "large", "unstorable", "next", "chunked"]
KIND_WEIGHTS = [14, 22, 8, 5, 7, 10, 12, 5, 6, 9]


class Generator:
    """Random cells over a few names, run in a plain namespace (the model) as they are made."""

    def __init__(self, rng: random.Random, large_elements: int, large_vars: int) -> None:
        self.rng = rng
        self.large_elements = large_elements
        self.large_vars = large_vars
        self.ns: dict[str, Any] = {}
        self.fp = local_fingerprint()
        self.kinds_drawn: set[str] = set()

    def names(self, prefix: str) -> list[str]:
        return sorted(n for n in self.ns if re.fullmatch(prefix + r"\d+", n))

    def existing(self, kind: type | tuple) -> list[str]:
        import numpy as np  # noqa: F401

        return sorted(n for n, v in self.ns.items() if re.fullmatch(r"(n|s|l|d|a|big|gen|con|lock|rec|tab)\d+", n) and isinstance(v, kind))

    def literal(self, depth: int = 0) -> str:
        r = self.rng
        choice = r.random()
        if depth > 1 or choice < 0.4:
            return repr(r.randint(-50, 1000))
        if choice < 0.6:
            return repr("".join(r.choice("abcdefgh") for _ in range(r.randint(0, 6))))
        if choice < 0.8:
            return "[" + ", ".join(self.literal(depth + 1) for _ in range(r.randint(0, 4))) + "]"
        return "{" + ", ".join(f"'k{i}': {self.literal(depth + 1)}" for i in range(r.randint(0, 3))) + "}"

    def statement(self, kind: str | None = None) -> tuple[str, bool]:
        """One statement valid in the model's current namespace; True when it changes a large array.

        ``kind`` asks for one of ``KINDS`` instead of a weighted draw (``make_program`` asks for a
        kind no statement has had yet, so even a short program covers every kind).
        """
        import numpy as np

        r = self.rng
        ints, strs = self.existing(int), self.existing(str)
        lists, dicts = self.existing(list), self.existing(dict)
        arrays = [n for n in self.existing(np.ndarray) if n.startswith("a")]
        bigs = [n for n in self.existing(np.ndarray) if n.startswith("big")]
        gens = [n for n in self.ns if re.fullmatch(r"gen\d+", n)]
        anything = [n for n in self.ns if re.fullmatch(r"(n|s|l|d|a|big|gen|con|lock|rec|tab)\d+", n)]
        slot = lambda prefix, count: f"{prefix}{r.randint(1, count)}"  # noqa: E731
        if kind is None:
            kind = r.choices(KINDS, weights=KIND_WEIGHTS)[0]
        self.kinds_drawn.add(kind)
        if kind == "chunked":
            return self.chunked_statement(), False
        if kind == "small-new" or (kind == "small-mutate" and not (ints or strs or lists or dicts)):
            which = r.choice(["n", "s", "l", "d"])
            value = {
                "n": lambda: repr(r.randint(-100, 10**6)),
                "s": lambda: repr("".join(r.choice("xyzw") for _ in range(r.randint(1, 8)))),
                "l": lambda: "[" + ", ".join(self.literal(1) for _ in range(r.randint(0, 5))) + "]",
                "d": lambda: "{" + ", ".join(f"'k{i}': {self.literal(1)}" for i in range(r.randint(0, 4))) + "}",
            }[which]()
            return f"{slot(which, 4)} = {value}", False
        if kind == "small-mutate":
            options = []
            if ints:
                name = r.choice(ints)
                options.append(f"{name} {r.choice(['+=', '-=', '*='])} {r.randint(1, 9)}")
            if strs:
                name = r.choice(strs)
                options.append(f"{name} = {name}[-12:] + {r.choice('abc')!r}")
            if lists:
                name = r.choice(lists)
                options += [f"{name}.append({self.literal(1)})", f"{name}.insert(0, {r.randint(0, 99)})"]
                if self.ns[name]:
                    options += [f"{name}.pop()", f"{name}[0] = {self.literal(1)}", f"{name}.reverse()"]
            if dicts:
                name = r.choice(dicts)
                options.append(f"{name}['k{r.randint(0, 6)}'] = {self.literal(1)}")
                if self.ns[name]:
                    options.append(f"{name}.pop({next(iter(self.ns[name]))!r})")
            return r.choice(options), False
        if kind == "alias" and anything:
            source = r.choice(anything)
            prefix = re.match(r"[a-z]+", source).group(0)
            count = {"big": self.large_vars, "con": 1, "lock": 2}.get(prefix, 4)
            return f"{slot(prefix, count)} = {source}", prefix == "big"
        if kind == "nest" and (lists or dicts or arrays):
            holder = r.choice(lists + dicts) if lists or dicts else None
            inner = r.choice(lists + dicts + arrays)
            if holder is None or holder == inner:
                return f"{slot('l', 4)} = [{inner}, {r.randint(0, 9)}]", False
            if isinstance(self.ns[holder], dict):
                return f"{holder}['ref{r.randint(0, 2)}'] = {inner}", False
            return f"{holder}.append({inner})", False
        if kind == "delete" and anything:
            name = r.choice(anything)
            return f"del {name}", name.startswith("big")
        if kind == "array" or (kind == "large" and self.large_vars == 0):
            if arrays and r.random() < 0.6:
                name = r.choice(arrays)
                size = self.ns[name].size
                if size == 0:
                    return f"{name} = np.arange({r.randint(1, 500)}) * {r.randint(1, 9)}", False
                return r.choice(
                    [f"{name}[{r.randrange(size)}] = {r.randint(-9, 9)}", f"{name} += {r.randint(1, 5)}", f"{name} = {name}[::-1].copy()"]
                ), False
            return f"{slot('a', 3)} = np.random.default_rng({r.randint(0, 999)}).integers(0, 100, {r.randint(0, 800)})", False
        if kind == "large":
            if bigs and r.random() < 0.7:
                name = r.choice(bigs)
                n = self.ns[name].size
                start = r.randrange(n)
                return r.choice(
                    [
                        f"{name}[{start}:{start + r.randint(1, n)}] += {r.randint(1, 7)}",
                        f"{name}[{r.randrange(n)}] = {r.randint(-9, 9)}.5",
                        f"{name} = {name} * 2",
                    ]
                ), True
            return f"{slot('big', self.large_vars)} = np.full({self.large_elements}, {r.randint(0, 99)}.25)", True
        if kind == "next" and gens:
            return f"{slot('n', 4)} = next({r.choice(gens)})", False
        what = r.choice(["gen", "gen", "con", "lock"])
        if what == "gen":
            return f"{slot('gen', 2)} = (i * {r.randint(2, 9)} for i in range({10**6}))", False
        if what == "con":
            if "con1" in self.ns and r.random() < 0.6:
                return f"con1.execute('create table if not exists t (x)'); con1.execute('insert into t values ({r.randint(0, 9)})')", False
            return "con1 = sqlite3.connect(':memory:')", False
        return f"{slot('lock', 2)} = threading.Lock()", False

    def chunked_statement(self) -> str:
        """A large plain list of records (``rec``), dict (``tab``) or set (``ids``): stored by chunks (see ``chunked``)."""
        r = self.rng
        recs = [n for n in self.ns if re.fullmatch(r"rec\d+", n) and type(self.ns[n]) is list and self.ns[n]]
        tabs = [n for n in self.ns if re.fullmatch(r"tab\d+", n) and type(self.ns[n]) is dict and self.ns[n]]
        sets = [n for n in self.ns if re.fullmatch(r"ids\d+", n) and type(self.ns[n]) is set and self.ns[n]]
        size = r.choice([17_000, 20_000, 40_000])
        if r.random() < 0.3:
            if not sets or r.random() < 0.15:
                items = r.choice([f"f'id{{i}}' for i in range({size})", f"i * 3 for i in range({size})", f"(i, str(i)) for i in range({size})"])
                return f"ids{r.randint(1, 2)} = {{{items}}}"
            name = r.choice(sets)
            return r.choice(
                [
                    f"{name}.add({r.choice([repr('new'), str(r.randint(0, 10**6)), repr((1, 'one'))])})",
                    # nothing that depends on the order of iteration: strings hash differently in each process
                    f"{name}.discard({r.choice([repr(f'id{r.randrange(size)}'), str(3 * r.randrange(size)), repr((r.randrange(size), 'x'))])})",
                    f"{name}.update(range({r.randint(0, 10**6)}, {r.randint(0, 10**6)} + {r.randint(1, 500)}))",
                    f"{name} -= {{{', '.join(repr(f'id{r.randrange(size)}') for _ in range(5))}, {3 * r.randrange(size)}}}",
                    f"{slot_name(r, 'd')} = {name}",  # an alias of the set
                ]
            )
        if not (recs or tabs) or r.random() < 0.12:
            if r.random() < 0.5:
                return f"rec{r.randint(1, 2)} = [{{'id': i, 'v': i * 0.5}} for i in range({size})]"
            return f"tab{r.randint(1, 2)} = {{i: f'v{{i}}' for i in range({size})}}"
        if recs and (not tabs or r.random() < 0.5):
            name = r.choice(recs)
            k = r.randrange(len(self.ns[name]))
            return r.choice(
                [
                    f"{name}.append({{'id': -1, 'v': {r.randint(0, 99)}}})",
                    f"{name}[{k}]['v'] = {r.choice(['True', '1', '1.0', '-0.0', repr('x')])}",
                    f"{name}.pop(0)",
                    f"{name}.insert({k}, {{'new': {r.randint(0, 9)}}})",
                    f"{slot_name(r, 'd')} = {name}[{k}]",  # a record shared with a variable
                    f"{name}[{k}]['extra'] = None",
                ]
            )
        name = r.choice(tabs)
        key = r.randrange(len(self.ns[name]) + 10)
        return r.choice(
            [
                f"{name}[{key}] = {r.choice(['True', '1', '1.0', repr('changed')])}",
                f"{name}.pop({key}, None)",
                f"{name}[{key}] = {name}.pop({key}, 0)",
            ]
        )

    def run(self, code: str) -> bool:
        """Execute a cell in the model; True when it raised (a cell keeps what it did before)."""
        try:
            exec(compile(code, "<cell>", "exec"), self.ns)
            return False
        except Exception:  # noqa: BLE001
            return True

    def state(self) -> dict:
        return json.loads(self.fp(self.ns))


def make_program(seed: int, cells: int, large_mb: float, large_vars: int) -> Program:
    rng = random.Random(seed)
    gen = Generator(rng, int(large_mb * 2**20) // 8, large_vars)
    program = Program([SETUP_CELL], [], [False], [False])
    gen.run(SETUP_CELL)
    program.states.append(gen.state())
    for index in range(cells):
        statements, large = [], False
        # From the middle on, a cell opens with a kind no statement has had yet (by chance, a short
        # program can miss the rarer kinds, deletes among them); the draws stay seeded.
        missing = [kind for kind in KINDS if kind not in gen.kinds_drawn] if index >= cells // 2 else []
        for number in range(rng.choices([1, 2, 3], weights=[6, 3, 1])[0]):
            text, is_large = gen.statement(missing[0] if missing and number == 0 else None)
            # Statements are chosen against the namespace as it is: run each in a scratch copy? No:
            # the cell runs whole below, so keep a statement only if it is valid on its own now.
            statements.append(text)
            large |= is_large
            # Advance the model statement by statement, so the next one sees the names; the
            # cell then runs whole in the kernel, to the same effect (no generated statement raises).
            if gen.run(text):
                raise RuntimeError(f"generated statement raised in the model: {text}")
        raised = False
        if rng.random() < 0.05:
            statements.append("raise ValueError('injected error: the statements above stay done')")
            raised = True
        program.cells.append("\n".join(statements))
        program.states.append(gen.state())
        program.large.append(large)
        program.raised.append(raised)
    return program


# -- the kill plan -------------------------------------------------------------------


def make_plan(seed: int, program: Program, kills: int) -> dict[int, tuple[str, float]]:
    """cell index -> (phase, delay in seconds); seeded apart from the program."""
    rng = random.Random(seed * 7919 + 17)
    candidates = list(range(1, len(program.cells)))
    chosen = sorted(rng.sample(candidates, min(kills, len(candidates))))
    plan = {}
    for k in chosen:
        if program.large[k]:
            phase = rng.choices(["after", "during", "idle"], weights=[6, 3, 1])[0]
        else:
            phase = rng.choices(["during", "after", "idle"], weights=[5, 3, 2])[0]
        delay = {"during": rng.uniform(0, 0.05), "after": rng.uniform(0, 0.2), "idle": rng.uniform(0.6, 1.0)}[phase]
        plan[k] = (phase, delay)
    return plan


# -- the run ---------------------------------------------------------------------------


@dataclass
class Kill:
    cell: int
    phase: str  # during / after / idle as planned
    delay: float
    replied: bool  # the client had the in-flight cell's reply (during: it came before the kill)
    last_replied: int
    matched: int | None  # the j restored, None: no S_j matched
    verdict: str  # ok / lost / mix / future
    store_problems: list[str]
    restore_seconds: float
    summary: str
    detail: str = ""


@dataclass
class Result:
    seed: int
    cells: int
    large_mb: float
    kills: list[Kill] = field(default_factory=list)
    live_mismatches: list[str] = field(default_factory=list)
    resent: int = 0
    seconds: float = 0.0
    large_cells: int = 0
    raised_cells: int = 0
    large: list[bool] = field(default_factory=list)  # per cell: it changes a large array

    @property
    def mismatches(self) -> list[Kill]:
        return [k for k in self.kills if k.verdict != "ok"]

    @property
    def store_failures(self) -> list[Kill]:
        return [k for k in self.kills if k.store_problems]


def describe_difference(expected: dict, actual: dict) -> str:
    parts = []
    for name in sorted(set(expected["values"]) | set(actual["values"])):
        a, b = expected["values"].get(name), actual["values"].get(name)
        if a != b:
            parts.append(f"{name}: expected {expected['kinds'].get(name, 'absent')}, got {actual['kinds'].get(name, 'absent')}")
    if expected["aliases"] != actual["aliases"]:
        parts.append(f"aliases: expected {expected['aliases']}, got {actual['aliases']}")
    return "; ".join(parts)


class Runner:
    def __init__(
        self,
        program: Program,
        plan: dict,
        workdir: Path,
        log: Any,
        verbose: bool = False,
        keep_stores: bool = False,
        kernel_arguments: list[str] | None = None,
    ) -> None:
        from persistent_kernel.driver import KernelDriver
        from persistent_kernel.session import resolve_session

        self.program = program
        self.plan = plan
        self.workdir = workdir
        self.verbose = verbose
        self.keep_stores = keep_stores  # copy each dead kernel's store to workdir/stores before the restart
        self.keys = [state_key(s) for s in program.states]
        home = workdir / "pk-home"
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("JPY_SESSION_NAME", "PERSISTENT_KERNEL_SESSION")}
        env.update(PERSISTENT_KERNEL_HOME=str(home), PERSISTENT_KERNEL_SESSION="fault-injection")
        self.store_path = resolve_session(env).store_path
        self.driver = KernelDriver(env=env, cwd=str(workdir), kernel_log=log, extra_arguments=kernel_arguments)

    def say(self, text: str) -> None:
        if self.verbose:
            print(text, flush=True)

    def fingerprint(self) -> tuple[dict, str]:
        """The kernel's fingerprint, by a request with no code (nothing journaled); and its stderr (notices)."""
        result = self.driver.execute("", store_history=False, user_expressions={"fp": KERNEL_FINGERPRINT}, timeout=120)
        value = result.user_expressions["fp"]
        if value["status"] != "ok":
            raise RuntimeError(f"fingerprint failed in the kernel: {value.get('ename')}: {value.get('evalue')}")
        return json.loads(ast.literal_eval(value["data"]["text/plain"])), result.said

    def execute(self, k: int) -> None:
        result = self.driver.execute(self.program.cells[k], timeout=120)
        if (result.status == "ok") == self.program.raised[k]:
            raise RuntimeError(f"cell {k} {result.status} ({result.ename}: {result.evalue}) unlike the model:\n{self.program.cells[k]}")

    def kill_during(self, k: int, delay: float) -> bool:
        """Send cell k, SIGKILL the kernel ``delay`` s later; True when its reply had come (before or at the kill)."""
        kc = self.driver.kc
        msg_id = kc.execute(self.program.cells[k])
        time.sleep(delay)
        self.sigkill()
        replied = False
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            try:
                msg = kc.get_shell_msg(timeout=0.05)
            except Exception:  # noqa: BLE001 - queue.Empty
                continue
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_reply":
                replied = True
                break
        return replied

    def sigkill(self) -> None:
        process = self.driver.km.provisioner.process
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def check_store(self) -> list[str]:
        from persistent_kernel.store import Store

        try:
            store = Store(self.store_path, sync_interval=0)
        except Exception as exc:  # noqa: BLE001
            return [f"store does not open: {type(exc).__name__}: {exc}"]
        try:
            return list(store.check())
        finally:
            store.close()

    def run(self, result: Result) -> None:
        started = time.monotonic()
        self.driver.start()
        self.execute(0)
        k = 1  # the next cell to run
        done = 0  # the last cell whose effects the kernel holds (as far as the client knows)
        n = len(self.program.cells)
        killed_at: set[int] = set()
        while k < n:
            planned = self.plan.get(k) if k not in killed_at else None
            if planned is None:
                self.execute(k)
                done = k
                k += 1
                if k % 25 == 0:
                    self.live_check(done, result)
                continue
            killed_at.add(k)
            phase, delay = planned
            if phase == "during":
                replied = self.kill_during(k, delay)
                last_replied = k if replied else k - 1
            else:
                self.execute(k)
                time.sleep(delay)
                self.sigkill()
                replied, last_replied = True, k
            self.driver.kill()  # channels and the dead process's resources
            problems = self.check_store()
            if self.keep_stores:
                shutil.copytree(self.store_path, self.workdir / "stores" / f"kill-{len(result.kills) + 1}-cell-{k}")
            t0 = time.monotonic()
            self.driver.start()
            actual, notices = self.fingerprint()
            notices = "\n".join(part for part in (self.driver.restore_summary(timeout=120), notices) if part)
            restore_seconds = time.monotonic() - t0
            key = state_key(actual)
            matches = [j for j in range(n) if self.keys[j] == key]
            in_range = [j for j in matches if last_replied <= j <= k]
            summary = next((line for line in notices.splitlines() if line.startswith("Restored session")), notices.strip()[:300])
            if in_range:
                j, verdict, detail = max(in_range), "ok", ""
            elif matches:
                j = max(j for j in matches if j <= k) if any(j <= k for j in matches) else max(matches)
                verdict = "lost" if j < last_replied else "future"
                detail = describe_difference(self.program.states[last_replied], actual)
            else:
                j, verdict = None, "mix"
                detail = describe_difference(self.program.states[last_replied], actual)
            kill = Kill(k, phase, delay, replied, last_replied, j, verdict, problems, restore_seconds, summary, detail)
            result.kills.append(kill)
            self.say(
                f"kill {len(result.kills):3d} at cell {k:3d} ({phase:6s} {delay * 1000:5.0f} ms, replied={replied!s:5s}) "
                f"-> S_{j} {verdict}{' store: ' + '; '.join(problems) if problems else ''} restore {restore_seconds:.2f} s"
                + (f"\n    {detail}" if verdict != "ok" else "")
                + (f"\n    {summary}" if verdict != "ok" or self.keep_stores else "")
            )
            if j is None or j > k:
                # A state that is no S_j: continue on a fresh session from the model's state.
                self.driver.kill()
                self.driver.env["PERSISTENT_KERNEL_SESSION"] = f"fault-injection-{len(result.kills)}"
                from persistent_kernel.session import resolve_session

                self.store_path = resolve_session(self.driver.env).store_path
                self.driver.start()
                for i in range(last_replied + 1):
                    self.execute(i)
                j = last_replied
            if j < k:
                result.resent += k - j
            done, k = j, j + 1
        self.live_check(done, result)
        result.seconds = time.monotonic() - started
        self.driver.shutdown()

    def live_check(self, done: int, result: Result) -> None:
        """The live kernel against the model (no kill): a difference here is a driver or tracking problem."""
        actual, _ = self.fingerprint()
        if state_key(actual) != self.keys[done]:
            text = f"after cell {done}: {describe_difference(self.program.states[done], actual)}"
            result.live_mismatches.append(text)
            self.say("LIVE MISMATCH " + text)


def run(
    seed: int = 1,
    cells: int = 200,
    kills: int = 50,
    large_mb: float = 20,
    large_vars: int = 2,
    workdir: Path | None = None,
    verbose: bool = False,
    keep_stores: bool = False,
    kernel_arguments: list[str] | None = None,
) -> Result:
    program = make_program(seed, cells, large_mb, large_vars)
    plan = make_plan(seed, program, kills)
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="pk-fault-")) if workdir is None else workdir
    result = Result(seed, cells, large_mb, large_cells=sum(program.large), raised_cells=sum(program.raised), large=program.large)
    try:
        with open(workdir / "kernel.log", "ab") as log:
            Runner(program, plan, workdir, log, verbose, keep_stores, kernel_arguments).run(result)
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


# -- reporting -------------------------------------------------------------------------


def table(result: Result, command: str) -> str:
    kills = result.kills
    by_phase: dict[str, list[Kill]] = {}
    for kill in kills:
        by_phase.setdefault(kill.phase, []).append(kill)
    restore = [k.restore_seconds for k in kills]
    during = by_phase.get("during", [])
    lines = [
        f"Command: `{command}`  ",
        f"Run: {result.cells} cells ({result.large_cells} changing a {result.large_mb:g} MiB array, {result.raised_cells} raising half-way), "
        f"{len(kills)} SIGKILLs, {result.resent} cells sent again after a kill, {result.seconds:.0f} s.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| kills survived (store checks, kernel restarted, state = some S_j in range) | {len(kills) - len(result.mismatches)} of {len(kills)} |",
        f"| kills during a cell (sent, killed 0-50 ms later) | {len(during)}: {sum(not k.replied for k in during)} before the reply "
        f"(in-flight cell found committed in {sum((not k.replied) and k.matched == k.cell for k in during)}), "
        f"{sum(k.replied for k in during)} after it |",
        f"| kills 0-200 ms after a reply | {len(by_phase.get('after', []))} ({sum(result.large[k.cell] for k in by_phase.get('after', []))} after a cell that changed a large array) |",
        f"| kills when idle (0.6-1.0 s after a reply) | {len(by_phase.get('idle', []))} |",
        f"| restores that replayed cells (to rebuild unstorable objects, or large values not landed) | {sum('replayed' in k.summary for k in kills)} |",
        f"| restores of a large value that had not landed (previous version + replay) | {sum('still being written' in k.summary for k in kills)} |",
        f"| state lost (a cell whose reply was received, missing) | {sum(k.verdict == 'lost' for k in kills)} |",
        f"| mixes (a state after no cell) | {sum(k.verdict in ('mix', 'future') for k in kills)} |",
        f"| store check() failures | {len(result.store_failures)} |",
        f"| live kernel differing from the model (no kill) | {len(result.live_mismatches)} |",
        f"| restore, start to first reply: median / max | {statistics.median(restore) if restore else 0:.2f} s / {max(restore) if restore else 0:.2f} s |",
    ]
    for kill in result.mismatches:
        lines.append(f"\nMismatch at cell {kill.cell} ({kill.phase}): restored S_{kill.matched}, last replied {kill.last_replied}: {kill.detail}")
    for kill in result.store_failures:
        lines.append(f"\nStore check after the kill at cell {kill.cell}: {'; '.join(kill.store_problems)}")
    for text in result.live_mismatches:
        lines.append(f"\nLive mismatch {text}")
    return "\n".join(lines)


def write_docs(text: str, date: str) -> None:
    doc = DOC.read_text()
    block = f"{DOC_START}\n\n{text}\n\nDate: {date}\n\n{DOC_END}"
    if DOC_START in doc and DOC_END in doc:
        before, rest = doc.split(DOC_START, 1)
        doc = before + block + rest.split(DOC_END, 1)[1]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--large-mb", type=float, default=20, help="size of the large arrays (>= 16 for the background writer)")
    parser.add_argument("--large-vars", type=int, default=2, help="how many names may hold a large array")
    parser.add_argument("--workdir", type=Path, help="keep the session and the kernel log here (default: a temp dir, removed)")
    parser.add_argument("--keep-stores", action="store_true", help="copy the store after each kill to WORKDIR/stores (with --workdir)")
    parser.add_argument("--write-docs", action="store_true", help=f"write the figures into {DOC.relative_to(ROOT)}")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument(
        "--kernel-argument", action="append", default=[], help="pass to every kernel (e.g. --PersistentKernel.settle_delay=600)"
    )
    args = parser.parse_args(argv)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    result = run(args.seed, args.cells, args.kills, args.large_mb, args.large_vars, args.workdir, verbose=not args.quiet, keep_stores=args.keep_stores and args.workdir is not None, kernel_arguments=args.kernel_argument)
    command = f"python benchmarks/fault_injection.py --seed {args.seed} --cells {args.cells} --kills {args.kills} --large-mb {args.large_mb:g}"
    if args.large_vars != 2:
        command += f" --large-vars {args.large_vars}"
    text = table(result, command)
    print(text)
    if args.write_docs:
        write_docs(text, time.strftime("%Y-%m-%d"))
    return 0 if not result.mismatches and not result.store_failures and not result.live_mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
