"""The one native module, router._speedups (router/_speedups.c): two hot loops of the ingest
path in C. `optional=True`: where no C compiler is there the install goes on without it, and
the pure-Python twins run instead (the same answers; the suite tests both). Everything else is
in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("router._speedups", ["router/_speedups.c"], optional=True)])
