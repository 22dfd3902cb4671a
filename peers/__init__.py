"""The real tools ocibuild is checked against, started on loopback for the tests and for
the benchmarks (bench/run.py). Plain Python, no pytest; not part of the ocibuild package
(pyproject packages only ``builder``)."""
