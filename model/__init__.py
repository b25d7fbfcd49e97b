"""The executable model of cascache: a Hypothesis state machine over the real protocol code.

It ships in the wheel as the package ``cascache_audit`` (its dependencies come with the
``audit`` extra), and ``cascache`` never imports it: run it with ``cascache-audit``,
``python -m cascache_audit``, ``python -m model`` from a checkout, or from pytest.
"""
