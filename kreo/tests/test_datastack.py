"""kreo.datastack: a request's calls stay off the edges of CPython 3.11's
frame-stack chunks, where every call would map and unmap a chunk.

Counted in minor page faults, not time: a chunk mapped afresh faults on its
first touch, one already in place does not.
"""

from __future__ import annotations

import resource
import sys
import types
import wsgiref.util

import pytest

from kreo import datastack, wsgi

CALLS = 2000
# A _down frame is 120 bytes: 200 of them span more than a 16 KiB chunk (136
# frames; some depth in the range is at an edge, wherever the test starts)
# and less than the 31 KiB of headroom (259 frames).
DEPTHS = range(200)


def _padded(function, slots: int):
    code = function.__code__
    return types.FunctionType(
        code.replace(
            co_varnames=code.co_varnames + tuple(f"_s{i}" for i in range(slots)),
            co_nlocals=code.co_nlocals + slots,
        ),
        function.__globals__,
    )


def _leaf():
    return None


# Bigger than a _down frame, so that at some depth it no longer fits.
_leaf = _padded(_leaf, 64)


def _down(depth: int) -> None:
    if depth:
        return _down(depth - 1)
    for _ in range(CALLS):
        _leaf()
    return None


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _worst(run) -> int:
    """The most page faults taken by ``CALLS`` calls at any one depth."""
    worst = 0
    for depth in DEPTHS:
        before = _faults()
        run(depth)
        worst = max(worst, _faults() - before)
    return worst


@pytest.mark.skipif(
    sys.version_info >= (3, 13), reason="3.13 and later keep a spare chunk"
)
def test_calls_at_a_chunk_edge_map_a_chunk_each_on_this_python():
    # What the module is for, shown on this interpreter: at some depth every
    # call maps a fresh chunk (and faults on it).
    assert _worst(_down) >= CALLS // 2


def test_calls_under_with_headroom_map_nothing_at_any_depth():
    # One fresh 64 KiB chunk per with_headroom call (a handful of faults),
    # never one per call below it.
    assert _worst(lambda depth: datastack.with_headroom(_down, depth)) < 100


def test_with_headroom_passes_arguments_and_results_and_errors():
    assert datastack.with_headroom(divmod, 17, 5) == (3, 2)
    assert datastack.with_headroom(dict, a=1) == {"a": 1}
    with pytest.raises(ZeroDivisionError):
        datastack.with_headroom(divmod, 1, 0)


@pytest.mark.django_db
def test_the_wsgi_application_runs_each_request_under_with_headroom():
    # The application gunicorn serves (deploy/gunicorn, bench, make run):
    # a request's view runs below a with_headroom frame.
    environ: dict = {"PATH_INFO": "/healthz"}
    wsgiref.util.setup_testing_defaults(environ)
    seen: list[str] = []
    started: list[str] = []

    def watch(frame, event, arg):
        if event == "call":
            seen.append(frame.f_code.co_name)

    sys.setprofile(watch)
    try:
        body = b"".join(
            wsgi.application(environ, lambda status, headers: started.append(status))
        )
    finally:
        sys.setprofile(None)
    assert started and started[0].startswith("200"), (started, body[:200])
    assert "with_headroom" in seen
    assert seen.index("with_headroom") < seen.index("get_response")
