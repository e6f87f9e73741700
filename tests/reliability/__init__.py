"""Reliability runs: crash consistency under SIGKILL and convergence under injected faults.

``harness.py`` holds the scenarios and the invariants; ``test_reliability.py`` runs a small,
fast version inside ``make test``; ``python -m tests.reliability`` (``make reliability``) runs
the full counts, prints a table of figures and writes them to ``.slotkeeper/reliability.json``.
"""
