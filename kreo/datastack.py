"""Room on CPython 3.11's frame stack for a whole request.

CPython 3.11 keeps Python frames in chunks of 16 KiB that it maps with
``mmap`` and unmaps as soon as the first frame in one returns. A request
whose calls go to and fro across a chunk's edge maps and unmaps a chunk on
every such call (CPython gh-142183, "Calls across stack chunks perform
badly"; fixed in 3.13 and 3.14 by keeping one spare chunk, not in 3.11).
Which request hits an edge depends on how deep it starts, so one more
middleware can move a page onto one: the project list with the IP filter
and the request metrics in the chain mapped and unmapped 40 chunks a request
(strace), and none without them, which made it 3-4% slower while the two
middlewares' own work was 0.3% (bench/bench_limits.py, README "Benchmarks").

``with_headroom(call, *args)`` calls through one frame of about 33 KiB of
unused slots. Too big for what is left of the current chunk, it is put at the
start of a fresh 64 KiB one, and every frame the call makes below it has the
other 31 KiB to itself, away from any edge: one mapping a request, not one
per call. ``HeadroomApplication`` runs each WSGI request that way.

Hand-written because no library does this; remove it on a Python with the
spare chunk (3.13 or later).
"""

from __future__ import annotations

import types

# Slots of 8 bytes: a frame over 32 KiB takes a 64 KiB chunk of its own.
PAD_SLOTS = 4200


def _call(call, *args, **kwargs):
    return call(*args, **kwargs)


_code = _call.__code__
with_headroom = types.FunctionType(
    _code.replace(
        co_name="with_headroom",
        co_qualname="with_headroom",
        co_varnames=_code.co_varnames + tuple(f"_slot{i}" for i in range(PAD_SLOTS)),
        co_nlocals=_code.co_nlocals + PAD_SLOTS,
    ),
    globals(),
    "with_headroom",
)
with_headroom.__doc__ = "``call(*args, **kwargs)``, from the start of a fresh chunk."


class HeadroomApplication:
    """A WSGI application that runs each request through ``with_headroom``.

    The response's body is iterated by the server after the call returns,
    outside the headroom: streaming it is a loop at one depth, not a tree.
    """

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        return with_headroom(self.application, environ, start_response)
