"""Maintenance from the command line, part of ``Store``: the files the versions name, garbage files, and a compact copy for export."""

from __future__ import annotations

from pathlib import Path

import lmdb

from .errors import (
    StoreUnavailable,
)
from .records import Version
from .storebase import StorePart
from .storekeys import (
    is_blob_name,
)


class StoreMaintenance(StorePart):
    """Maintenance from the command line, part of ``Store``: the files the versions name, garbage files, and a compact copy for export."""

    def referenced_files(self) -> dict[str, int]:
        """Large blobs (hex digest -> size) that a kept version names.

        A version that never landed still counts: a restore loads it when all its
        files are there (a kill can come between a file's rename and its mark).
        A pruned version names nothing: its files are gone on purpose.
        """
        referenced: dict[str, int] = {}
        with self._env.begin(db=self._versions) as txn:
            for _, value in txn.cursor():
                version = Version.decode(bytes(value))
                if not version.pruned:
                    referenced.update(version.files)
        return referenced

    def unreferenced_files(self) -> list[Path]:
        """Files in ``blobs/`` that nothing needs.

        Large blobs no kept version names (a kill between a prune's mark and its
        unlink, or during a forget) and temporary files of a killed write. While
        a kernel holds the session its writer's temporary files are in use: only
        a caller holding the session's lock may delete what this returns.
        """
        directory = self.files.directory
        if not directory.is_dir():
            return []
        referenced = self.referenced_files()
        found = []
        for path in sorted(directory.iterdir()):
            if not path.is_file() or path.is_symlink():
                continue  # not something a writer made: leave it to its owner
            if path.name.startswith("."):
                if path.name.endswith(".tmp"):
                    found.append(path)
            elif is_blob_name(path.name) and path.name not in referenced:
                found.append(path)
        return found

    def copy_to(self, directory: Path | str) -> Path:
        """A compacted copy of the LMDB environment in ``directory`` (existing, empty); returns its data file.

        One read transaction, so the copy is one committed state even while a
        kernel writes; large blobs are files and are not part of it.
        """
        try:
            self._env.copy(str(directory), compact=True)
        except lmdb.Error as exc:
            raise StoreUnavailable(f"cannot copy the store at {self.path} to {directory}: {exc}") from exc
        return Path(directory) / "data.mdb"
