"""Keeping the kernel's own work out of the cell's output."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any


@contextlib.contextmanager
def warnings_kept_out() -> Any:
    """Warnings raised while a checkpoint pickles (dill's PicklingWarning, a reducer's
    DeprecationWarning) never reach the cell's output: a checkpoint has no observable effect.

    Not ``warnings.catch_warnings()``: changing the filters clears every module's record of
    warnings already shown, so a warning the user saw once would show again after each cell.
    """
    shown = warnings.showwarning
    warnings.showwarning = lambda *args, **kwargs: None
    try:
        yield
    finally:
        warnings.showwarning = shown
