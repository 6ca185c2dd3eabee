"""The fidelity corpus (issue #13): does everyday Python come back exactly after a crash?

``scenarios.py`` generates the scenarios, ``known.py`` lists the ones known not to
come back exactly after a SIGKILL; ``benchmarks/fidelity.py`` runs them against the
stock ``python3`` kernel and ``tests/test_fidelity_corpus.py`` runs a sample in CI.
"""
