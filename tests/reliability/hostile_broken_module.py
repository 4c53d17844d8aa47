"""A task module whose import fails at its top level (a row naming one of its
functions must fail that job, not the worker): see test_hostile_rows.py."""

raise RuntimeError("this module cannot be imported")
