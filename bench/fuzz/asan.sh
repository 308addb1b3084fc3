#!/bin/sh
# Fuzz with the C modules (router/_speedups.c, router/_hmac.c) built under AddressSanitizer, in
# a copy of the tree, so the repository's own router/*.so stay as they are.
#
#   bench/fuzz/asan.sh --seconds 900 --jobs 1 --out bench/results/fuzz_speedups_asan.json speedups
#
# Arguments go to bench/fuzz/run.py, run from the copy (ASAN_TREE, default /tmp/asan-tree):
# its corpus and crash files are written there (crashes: $ASAN_TREE/bench/fuzz/crashes/), a
# relative --out is taken from here. The environment of the run, and why:
# - LD_PRELOAD: atheris's libFuzzer first, then gcc's ASan runtime (which the extension needs)
#   and libstdc++. ASan's runtime defines the coverage callbacks too (weak, no-ops): loaded
#   before atheris's they would take its Python coverage (atheris warns "Coverage symbols are
#   being provided by a library other than libFuzzer" and finds nothing new); libstdc++ lets
#   ASan's __cxa_throw interceptor find the real one (else a CHECK failure on the first
#   Python exception). verify_asan_link_order=0 allows ASan not to come first.
# - PYTHONMALLOC=malloc: every Python object from malloc, so ASan sees each one's bounds and
#   its free (pymalloc's arenas would hide a use after free); detect_leaks=0: the interpreter
#   keeps memory to the end by design.
# The C is built with setuptools >= 77 (pyproject.toml's build requirement; a venv may hold an
# older one), installed for the build only into $ASAN_TREE/.setuptools.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TREE=${ASAN_TREE:-/tmp/asan-tree}
PY=$REPO/.venv/bin/python

rm -rf "$TREE"
mkdir "$TREE"
(cd "$REPO" && git ls-files -z | xargs -0 tar -c) | tar -x -C "$TREE"
# the fuzz targets and seeds as they are here, committed or not
(cd "$REPO" && tar -c --exclude=corpus --exclude='last_run.log' bench/fuzz) | tar -x -C "$TREE"
"$PY" -m pip install --quiet --target "$TREE/.setuptools" 'setuptools>=77'
(cd "$TREE" && PYTHONPATH="$TREE/.setuptools" \
    CFLAGS='-fsanitize=address -fno-omit-frame-pointer -O1 -g' LDFLAGS='-fsanitize=address' \
    "$PY" setup.py build_ext --inplace >"$TREE/build_ext.log" 2>&1) \
    || { cat "$TREE/build_ext.log"; exit 1; }

ATHERIS=$("$PY" -c 'import atheris.core_with_libfuzzer as c; print(c.__file__)')
LIBASAN=$(gcc -print-file-name=libasan.so)
LIBSTDCXX=$(gcc -print-file-name=libstdc++.so)
asan() {
    env PYTHONPATH="$TREE" LD_PRELOAD="$ATHERIS $LIBASAN $LIBSTDCXX" \
        ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0 PYTHONMALLOC=malloc "$@"
}
cd "$REPO"  # a relative --out is the repository's
# the ASan build is the one imported (fuzz_speedups.py also prints the module paths it loads;
# -P: not the current directory's router/)
asan "$PY" -P -c 'import router._speedups as s, sys; assert s.__file__.startswith(sys.argv[1]), s.__file__' "$TREE"
asan "$PY" "$TREE/bench/fuzz/run.py" "$@"
