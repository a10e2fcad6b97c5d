"""Hypothesis strategies and comparison helpers shared by the ipc tests."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

import ipc

MAX_MSGID = 2**32 - 1

scalars: st.SearchStrategy[Any] = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(children, max_size=6)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=12), children, max_size=6)
    )


#: Any valid body value (tuples included: they encode as arrays and decode as lists).
bodies: st.SearchStrategy[Any] = st.recursive(scalars, _extend, max_leaves=25)

msgids = st.integers(min_value=0, max_value=MAX_MSGID)
methods = st.text(min_size=1, max_size=ipc.DEFAULT_LIMITS.max_method_len)
deadlines = st.none() | st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)
codes = st.from_regex(r"[A-Z0-9_]{1,64}", fullmatch=True)
messages = st.text(max_size=200)

requests = st.builds(ipc.Request, msgids, methods, bodies, deadlines)
responses = st.builds(ipc.Response, msgids, bodies)
notifications = st.builds(ipc.Notification, methods, bodies)
errors = st.builds(ipc.Error, msgids, codes, messages)
envelopes: st.SearchStrategy[ipc.Envelope] = requests | responses | notifications | errors


def depth(value: Any) -> int:
    """Container nesting of a value, counted as ipc counts it (a scalar is 0)."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list | tuple):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def envelope_depth(envelope: ipc.Envelope) -> int:
    return 0 if isinstance(envelope, ipc.Error) else depth(envelope.body)


def assert_same(got: Any, want: Any) -> None:
    """Deep equality as the wire sees it: exact types, tuples as lists, NaN equal to NaN."""
    if isinstance(want, tuple):
        want = list(want)
    assert type(got) is type(want), (got, want)
    if isinstance(want, float):
        if math.isnan(want):
            assert math.isnan(got)
        else:
            assert got == want
            assert math.copysign(1.0, got) == math.copysign(1.0, want)  # keeps -0.0
    elif isinstance(want, list):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same(g, w)
    elif isinstance(want, dict):
        assert list(got) == list(want)  # same keys, same order
        for key in want:
            assert_same(got[key], want[key])
    else:
        assert got == want


def assert_same_envelope(got: ipc.Envelope, want: ipc.Envelope) -> None:
    assert type(got) is type(want)
    if isinstance(want, ipc.Request):
        assert isinstance(got, ipc.Request)
        assert (got.msgid, got.method) == (want.msgid, want.method)
        assert_same(got.deadline, want.deadline)
        assert_same(got.body, want.body)
    elif isinstance(want, ipc.Response):
        assert isinstance(got, ipc.Response)
        assert got.msgid == want.msgid
        assert_same(got.body, want.body)
    elif isinstance(want, ipc.Notification):
        assert isinstance(got, ipc.Notification)
        assert got.method == want.method
        assert_same(got.body, want.body)
    else:
        assert got == want
