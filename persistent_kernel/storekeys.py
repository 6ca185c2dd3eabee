"""The store's layout: its databases, key encodings, tagged kinds and format numbers; no LMDB calls."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, TypeVar

from .records import LIVE, Pointer

# 1: journal only (replay); 2: + versions, names, blobs (snapshots);
# 3: + large blobs as files, versions that land later ("files", "landed", "pruned");
# 4: + an HMAC-SHA256 tag for every record, blob and file ("tags", "store_id")
FORMAT_VERSION = 4
FIRST_AUTHENTICATED_FORMAT = 4
DEFAULT_MAP_SIZE = 256 * 1024**2  # reserves address space only; the file grows as needed
MAX_DBS = 8  # meta, cells, and room for what later formats add

META = b"meta"  # format version, session identity, restore markers and reports (JSON values)
CELLS = b"cells"  # seq -> the cell as written ahead (JSON)
OUTCOMES = b"outcomes"  # seq -> how it ended (small JSON), written after it ran
VERSIONS = b"versions"  # seq + ordinal -> one group version (JSON: names, method, blob digests, or recompute)
NAMES = b"names"  # name NUL seq -> where that name stood after cell seq (JSON pointer)
BLOBS = b"blobs"  # digest (16 bytes) + chunk (4 bytes) -> content-addressed bytes
TAGS = b"tags"  # kind (1 byte) + the key of a value in another database -> its HMAC-SHA256 tag

# Kinds of tagged values (the first byte of a tag's key, and part of what the tag covers).
AS_CELL, AS_OUTCOME, AS_VERSION, AS_NAME, AS_BLOB, AS_META, AS_FILE, AS_SLOT = b"c", b"o", b"v", b"n", b"b", b"m", b"f", b"s"
AS_FILE_SEAL = b"F"  # a large file's identity when it was last verified (``Authenticator.file_seal``)
UNTAGGED_META = (b"format_version", b"store_id")  # the inputs of verification itself
REFUSED_ORDINAL = 0xFFFFFFFF  # the version key a refused pointer points to: never written

BLOB_CHUNK = 256 * 1024**2  # LMDB values must stay under 4 GiB; chunks keep each put moderate

T = TypeVar("T")


def seq_key(seq: int) -> bytes:
    # Big-endian so LMDB's byte order is sequence order.
    return seq.to_bytes(8, "big")


def version_key(seq: int, ordinal: int) -> bytes:
    """Key of the ``ordinal``-th group version a cell created."""
    return seq_key(seq) + ordinal.to_bytes(4, "big")


def refused_version_key(seq: int) -> bytes:
    """The version a refused pointer of cell ``seq`` points to: never written."""
    return version_key(seq, REFUSED_ORDINAL)


def refused_pointer(seq: int) -> Pointer:
    # A name whose pointer failed authentication: live, at a version that does not exist,
    # so it is rebuilt from its cells like any value whose version is missing.
    return Pointer(LIVE, version=refused_version_key(seq).hex(), refused=True, seq=seq)


def chunk_key(index: int) -> bytes:
    return index.to_bytes(4, "big")


def name_key(name: str, seq: int) -> bytes:
    # Names are identifiers (no NUL); surrogatepass keeps even globals()['\udcff'] storable.
    return name.encode("utf-8", "surrogatepass") + b"\x00" + seq_key(seq)


def split_name_key(key: bytes) -> tuple[str, int]:
    return key[:-9].decode("utf-8", "surrogatepass"), int.from_bytes(key[-8:], "big")


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def is_blob_name(name: str) -> bool:
    """A large blob's file name: the 32 hex digits of its xxh3-128 digest."""
    return len(name) == 32 and all(c in "0123456789abcdef" for c in name)


LMDB_MAGIC = 0xBEEFC0DE


def truncation(path: Path) -> str | None:
    """Why ``data.mdb`` is shorter than its own meta page says it is, or None.

    LMDB maps the file and trusts its meta page: reading a page past the end of a
    truncated file kills the process with SIGBUS instead of raising. The two meta
    pages (page 0 and 1) hold the page size and the last page in use; the newer
    one (higher transaction id) is the one LMDB would use. Offsets are those of
    64-bit builds (``MDB_meta`` after a 16-byte page header).
    """
    try:
        with open(path / "data.mdb", "rb") as data:
            head = data.read(2 * 65536)
            size = os.fstat(data.fileno()).st_size
    except FileNotFoundError:
        return None
    if size == 0 or len(head) < 152 or struct.unpack_from("<I", head, 16)[0] != LMDB_MAGIC:
        return None  # a new file, or not LMDB's: lmdb.open says so itself
    page_size = struct.unpack_from("<I", head, 40)[0]
    if page_size not in (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536):
        return None
    metas = []
    for offset in (0, page_size):
        if offset + 152 <= len(head) and struct.unpack_from("<I", head, offset + 16)[0] == LMDB_MAGIC:
            last_page, txn_id = struct.unpack_from("<QQ", head, offset + 136)
            metas.append((txn_id, last_page))
    if not metas:
        return None
    _txn_id, last_page = max(metas)
    needed = (last_page + 1) * page_size
    if size < needed:
        return f"its data file is truncated ({size:,} bytes; its last page ends at {needed:,})"
    return None
