"""Tests of ``cascache.redis`` (named so it never shadows the ``redis`` library)."""
