"""Global random generator states: captured JSON-safe, restored exactly."""

from __future__ import annotations

import json
import random

import numpy

from persistent_kernel.context import RandomStateTracker, apply_random_state, capture_random_state


def test_random_and_numpy_states_roundtrip_through_json() -> None:
    random.seed(11)
    numpy.random.seed(5)
    random.random()
    numpy.random.normal()  # leaves a cached gaussian in numpy's state
    state = json.loads(json.dumps(capture_random_state()))
    expected = (random.random(), random.gauss(0, 1), list(numpy.random.rand(3)), numpy.random.normal())
    apply_random_state(state)
    assert (random.random(), random.gauss(0, 1), list(numpy.random.rand(3)), numpy.random.normal()) == expected


def test_tracker_reports_only_changes() -> None:
    tracker = RandomStateTracker()
    assert tracker.changed_state() is not None
    assert tracker.changed_state() is None
    random.random()
    assert tracker.changed_state() is not None
    tracker.reset()
    assert tracker.changed_state() is not None


def test_numpy_generator_changes_are_seen_including_the_cached_gaussian() -> None:
    tracker = RandomStateTracker()
    numpy.random.seed(7)
    assert tracker.changed_state() is not None  # first call: always recorded
    assert tracker.changed_state() is None  # nothing drawn
    numpy.random.standard_normal()  # draws from MT19937 and caches the second Gaussian
    first = tracker.changed_state()
    assert first is not None and first["numpy"]["has_gauss"] == 1
    numpy.random.standard_normal()  # served from the cache: only the flag changes
    second = tracker.changed_state()
    assert second is not None and second["numpy"]["has_gauss"] == 0
    numpy.random.rand()
    assert tracker.changed_state() is not None
    assert tracker.changed_state() is None


def test_python_generator_changes_are_seen_including_the_cached_gauss() -> None:
    tracker = RandomStateTracker()
    random.seed(3)
    assert tracker.changed_state() is not None
    assert tracker.changed_state() is None
    random.gauss(0, 1)  # draws and caches a second value in gauss_next
    first = tracker.changed_state()
    assert first is not None and first["random"]["gauss_next"] is not None
    random.gauss(0, 1)  # served from gauss_next: the Mersenne Twister does not move
    second = tracker.changed_state()
    assert second is not None and second["random"]["gauss_next"] is None
    random.random()
    assert tracker.changed_state() is not None
    assert tracker.changed_state() is None
