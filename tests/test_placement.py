"""Safe placement: a store is never opened with LMDB on a network or FUSE filesystem.

The detection is statfs(2)'s f_type; the magic numbers of the filesystems LMDB forbids
(NFS, SMB/CIFS, FUSE mounts such as s3fs and gcsfuse, 9p, Lustre, GPFS, CephFS …) move
the live stores to local disk, and the user is told once why and where."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from persistent_kernel import placement
from persistent_kernel.placement import LOCAL_HOME_ENV, REMOTE_FILESYSTEMS, filesystem_type, place, remote_filesystem
from persistent_kernel.session import HOME_ENV, persistent_home, placement_note, store_placement

from .kernels import kernel_env

LOCAL_MAGICS = {"ext4": 0xEF53, "xfs": 0x58465342, "btrfs": 0x9123683E, "tmpfs": 0x01021994, "overlayfs": 0x794C7630, "zfs": 0x2FC12FC1}


@pytest.mark.parametrize("magic, name", sorted(REMOTE_FILESYSTEMS.items()))
def test_every_network_and_fuse_filesystem_moves_the_stores_to_local_disk(tmp_path: Path, magic: int, name: str) -> None:
    configured = Path("/home/jovyan/.local/share/jupyter/persistent_kernel")
    chosen = place(configured, {LOCAL_HOME_ENV: str(tmp_path / "local")}, magic=magic)
    assert chosen.moved and chosen.filesystem == name == remote_filesystem(magic)
    assert chosen.home.parent == tmp_path / "local" and not chosen.home.is_relative_to(configured)
    note = chosen.note()
    assert note and str(configured) in note and str(chosen.home) in note and name in note and LOCAL_HOME_ENV in note


@pytest.mark.parametrize("name, magic", sorted(LOCAL_MAGICS.items()))
def test_local_filesystems_keep_the_configured_location(name: str, magic: int) -> None:
    configured = Path("/data/stores")
    chosen = place(configured, {}, magic=magic)
    assert not chosen.moved and chosen.home == configured and chosen.note() is None


def test_the_magic_is_read_as_an_unsigned_32_bit_type() -> None:
    # On 64-bit Linux f_type is a signed long: CIFS's 0xFF534D42 may come back sign-extended.
    assert remote_filesystem(0xFF534D42 - (1 << 32)) == "CIFS"
    assert remote_filesystem(0xEF53) is None


def test_two_configured_locations_never_share_a_local_directory(tmp_path: Path) -> None:
    env = {LOCAL_HOME_ENV: str(tmp_path)}
    first = place(Path("/home/ada/.pk"), env, magic=0x6969).home
    second = place(Path("/home/bob/.pk"), env, magic=0x6969).home
    assert first != second and first.parent == second.parent == tmp_path
    assert place(Path("/home/ada/.pk"), env, magic=0x6969).home == first  # the same one on every start


def test_the_detection_asks_the_real_filesystem(tmp_path: Path) -> None:
    magic = filesystem_type(tmp_path)
    assert magic is not None and remote_filesystem(magic) is None  # the tests' temp dir is on local disk
    assert filesystem_type(tmp_path / "not" / "made" / "yet") == magic  # the nearest existing ancestor
    proc = filesystem_type(Path("/proc"))
    assert proc is not None and proc != magic


def test_a_chosen_local_directory_on_a_network_filesystem_is_passed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote_dirs = {str(tmp_path / "nfs-home"), str(tmp_path / "nfs-local")}
    real = placement.filesystem_type
    monkeypatch.setattr(placement, "filesystem_type", lambda path: 0x6969 if str(path) in remote_dirs else real(path))
    chosen = place(tmp_path / "nfs-home", {LOCAL_HOME_ENV: str(tmp_path / "nfs-local")})
    assert chosen.moved and not chosen.home.is_relative_to(tmp_path / "nfs-local")
    assert remote_filesystem(real(chosen.home)) is None


def test_the_session_home_and_the_status_note_follow_the_placement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configured = tmp_path / "home-on-nfs"
    monkeypatch.setenv(HOME_ENV, str(configured))
    monkeypatch.setenv(LOCAL_HOME_ENV, str(tmp_path / "local"))
    assert persistent_home() == configured and placement_note(configured) is None  # local: where configured
    real = placement.filesystem_type
    monkeypatch.setattr(placement, "filesystem_type", lambda path: 0x6969 if Path(path) == configured else real(path))
    home = persistent_home()
    assert home.parent == tmp_path / "local"
    note = placement_note(home)
    assert note is not None and "NFS" in note and store_placement().configured == configured


@pytest.fixture
def fuse_mount(tmp_path: Path) -> Iterator[Path]:
    """A real FUSE filesystem (bindfs mirroring a temp directory), unmounted afterwards."""
    from .e2e_helpers import in_ci

    if not shutil.which("bindfs") or not Path("/dev/fuse").exists():
        if in_ci():
            pytest.fail("bindfs and /dev/fuse are needed for the FUSE placement test (.ci/run installs bindfs)")
        pytest.skip("no bindfs or /dev/fuse here")
    source, mount = tmp_path / "fuse-source", tmp_path / "fuse-mount"
    source.mkdir()
    mount.mkdir()
    done = subprocess.run(["bindfs", "--no-allow-other", str(source), str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        if in_ci():
            pytest.fail(f"bindfs could not mount: {done.stderr}")
        pytest.skip(f"bindfs could not mount here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        unmount = shutil.which("fusermount3") or shutil.which("fusermount") or "umount"
        subprocess.run([unmount, "-u", str(mount)] if "fusermount" in unmount else [unmount, str(mount)], check=False)


@pytest.mark.slow
def test_a_home_on_a_real_fuse_mount_is_never_opened_with_lmdb(fuse_mount: Path, tmp_path: Path, kernel: Any) -> None:
    assert remote_filesystem(filesystem_type(fuse_mount) or 0) == "FUSE"
    home = fuse_mount / "persistent_kernel"
    local = tmp_path / "local-disk"
    env = dict(kernel_env(home, "on-fuse"), **{LOCAL_HOME_ENV: str(local)})
    k = kernel(env=env)
    first = k.execute("deck = list(range(52)); hands = {'ada': deck[:2]}")
    assert "is on FUSE" in first.said and str(local) in first.said, first.said
    status = k.execute("%persist status").text
    assert "Placement" in status and "FUSE" in status, status
    k.kill()
    k.start()
    assert k.evaluate("hands['ada'], len(deck)") == "([0, 1], 52)"
    # LMDB never touched the FUSE mount: every store file is on local disk.
    assert not [p for p in fuse_mount.rglob("*") if p.name in ("data.mdb", "lock.mdb")]
    assert [p for p in local.rglob("data.mdb")]
