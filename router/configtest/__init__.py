"""``beacon-router test``: unit tests for a config, run through dry-run, so nothing is sent.

The tests live in the config's ``tests:`` section, in a side file next to it (``router.yaml`` →
``router.tests.yaml``), or in files named with ``--tests``. Each case gives one input beacon
(plus request headers and environment) and what should come out: dropped by which filter and
why, or per backend the event it receives, the body or requests it would send, or that it is
skipped. Expected values match as subsets, with ``matches`` / ``exists`` / ``equals`` / ``in``
matchers (:mod:`router.configtest.match`); the format is in :mod:`router.configtest.suite`.

Tests are read as written: no ``${VAR}`` expansion in them. The config is expanded with the
tests' ``env:`` only, never the process environment, so a test passes or fails the same on every
machine. Exit codes: 0 all passed, 1 a test failed, 2 the config or a tests file is invalid.
"""
