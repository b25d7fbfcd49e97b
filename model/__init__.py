"""The executable model of cascache: a Hypothesis state machine over the real protocol code.

It is not part of the ``cascache`` distribution; run it with ``python -m model`` from a
checkout (see the README), or from pytest.
"""
