"""Benchmarks of django-lexoffice against the fake Lexware (never the real one).

Run them with ``python benchmarks/run.py [--quick]``; see ``benchmarks/README.md``.
"""
