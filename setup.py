"""The router's two small C modules; everything else is in pyproject.toml.

- router._speedups (router/_speedups.c): hot loops of the ingest path, plain C.
- router._hmac (router/_hmac.c): the hash filter's HMAC-SHA256 on OpenSSL's libcrypto.

Both are optional: where no C compiler (or, for _hmac, no OpenSSL headers) is there the install
goes on without them and their pure-Python twins run instead, with the same answers; the suite
tests both forms (router/speedups.py).
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("router._speedups", ["router/_speedups.c"], optional=True),
    Extension("router._hmac", ["router/_hmac.c"], libraries=["crypto"], optional=True),
])
