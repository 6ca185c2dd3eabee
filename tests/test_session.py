"""Session identity and location, without a kernel."""

from __future__ import annotations

from pathlib import Path

from jupyter_core.paths import jupyter_data_dir

from persistent_kernel.session import ensure_private_dir, resolve_session


def test_explicit_name_wins_over_notebook_and_directory(tmp_path: Path) -> None:
    env = {"PERSISTENT_KERNEL_SESSION": "analysis", "JPY_SESSION_NAME": "/n/a.ipynb", "PERSISTENT_KERNEL_HOME": str(tmp_path)}
    session = resolve_session(env, cwd="/somewhere")
    assert (session.id, session.name, session.source) == ("analysis", "analysis", "explicit")
    assert session.store_path == tmp_path / "sessions" / "analysis"


def test_notebook_path_names_the_session(tmp_path: Path) -> None:
    env = {"JPY_SESSION_NAME": "/home/u/work/analysis.ipynb", "PERSISTENT_KERNEL_HOME": str(tmp_path)}
    session = resolve_session(env, cwd="/elsewhere")
    assert session.source == "notebook"
    assert session.name == "analysis.ipynb"
    assert session.notebook_path == "/home/u/work/analysis.ipynb"
    assert session.id.startswith("analysis.ipynb-")


def test_same_notebook_name_in_two_folders_gets_two_sessions(tmp_path: Path) -> None:
    a = resolve_session({"JPY_SESSION_NAME": "/p/one/nb.ipynb", "PERSISTENT_KERNEL_HOME": str(tmp_path)})
    b = resolve_session({"JPY_SESSION_NAME": "/p/two/nb.ipynb", "PERSISTENT_KERNEL_HOME": str(tmp_path)})
    assert a.id != b.id and a.name == b.name


def test_working_directory_is_the_fallback(tmp_path: Path) -> None:
    a = resolve_session({"PERSISTENT_KERNEL_HOME": str(tmp_path)}, cwd="/data/project")
    b = resolve_session({"PERSISTENT_KERNEL_HOME": str(tmp_path)}, cwd="/data/other")
    assert a.source == "cwd" and a.name == "/data/project"
    assert a.id.startswith("cwd-project-") and a.id != b.id


def test_unsafe_explicit_names_become_safe_directory_names(tmp_path: Path) -> None:
    session = resolve_session({"PERSISTENT_KERNEL_SESSION": "../../etc/passwd", "PERSISTENT_KERNEL_HOME": str(tmp_path)})
    assert "/" not in session.id and not session.id.startswith(".")
    assert session.store_path.parent == tmp_path / "sessions"


def test_default_home_is_under_the_jupyter_data_dir() -> None:
    assert resolve_session({}, cwd="/x").home == Path(jupyter_data_dir()) / "persistent_kernel"


def test_private_dirs_are_mode_0700(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    assert ensure_private_dir(loose).stat().st_mode & 0o777 == 0o700
    assert ensure_private_dir(tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700
