"""Mutation testing of the protocol modules: ``python -m specs.mutation.run``.

See ``specs/mutants.md`` for the score and every survivor.
"""
