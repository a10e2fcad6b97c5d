"""The lifecycle state tables (tre._lifecycle): every listed move is allowed, every other
one is an InternalError, the final states are final; and the Device applies them."""

from __future__ import annotations

import enum
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tre
from tre._config import default_config
from tre._device import Device
from tre._lifecycle import (
    ACCEPTING,
    DOMAIN_LIFECYCLE,
    TRANSITIONS,
    TRE_LIFECYCLE,
    DomainLifecycle,
    DomainState,
    TREState,
    check_move,
    check_transition,
)
from tre.testing import spec

TABLES: list[tuple[str, Mapping[enum.Enum, frozenset[enum.Enum]], type[enum.Enum]]] = [
    ("tre", TRE_LIFECYCLE, TREState),  # type: ignore[list-item]
    ("domain", DOMAIN_LIFECYCLE, DomainLifecycle),  # type: ignore[list-item]
    ("runtime", TRANSITIONS, DomainState),  # type: ignore[list-item]
]


def pairs(states: type[enum.Enum]) -> list[tuple[enum.Enum, enum.Enum]]:
    return [(a, b) for a in states for b in states]


# --- the tables themselves ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "table", "states"), TABLES, ids=[t[0] for t in TABLES])
def test_every_state_has_a_row_and_moves_stay_in_the_machine(name, table, states):
    assert set(table) == set(states)
    for old, targets in table.items():
        assert isinstance(targets, frozenset)
        assert targets <= set(states), (name, old)
        assert old not in targets, f"{name}: {old} -> itself is listed"


@pytest.mark.parametrize(("name", "table", "states"), TABLES, ids=[t[0] for t in TABLES])
def test_check_move_follows_the_table_for_every_pair(name, table, states):
    for old, new in pairs(states):
        if new in table[old]:
            check_move(table, name, old, new)
        else:
            with pytest.raises(tre.InternalError) as info:
                check_move(table, name, old, new)
            assert info.value.code == "INTERNAL"
            assert f"{old.value} -> {new.value}" in str(info.value)
            assert name in str(info.value)


def test_the_tre_lifecycle():
    assert {
        TREState.SECURED: {TREState.LOCKED, TREState.TERMINATED},
        TREState.LOCKED: {TREState.TERMINATED},
        TREState.TERMINATED: set(),
    } == TRE_LIFECYCLE
    # There is no way back to SECURED: neither a lock nor a termination can be undone.
    assert all(TREState.SECURED not in targets for targets in TRE_LIFECYCLE.values())


def test_the_domain_lifecycle():
    removed = DomainLifecycle.REMOVED
    assert {
        DomainLifecycle.INSTALLED: {DomainLifecycle.ACTIVE, DomainLifecycle.LOCKED, removed},
        DomainLifecycle.ACTIVE: {DomainLifecycle.LOCKED, removed},
        DomainLifecycle.LOCKED: {removed},
        removed: {DomainLifecycle.INSTALLED},
    } == DOMAIN_LIFECYCLE
    # The only way back to INSTALLED is a new install after a removal (a fresh epoch:
    # nothing sealed before survives), and a lock is never undone in place.
    assert [s for s, t in DOMAIN_LIFECYCLE.items() if DomainLifecycle.INSTALLED in t] == [removed]
    assert all(removed in t for s, t in DOMAIN_LIFECYCLE.items() if s is not removed)


def test_final_states_are_final():
    assert TRE_LIFECYCLE[TREState.TERMINATED] == frozenset()
    # A locked domain can only be removed (crypto-erased), never unlocked.
    assert DOMAIN_LIFECYCLE[DomainLifecycle.LOCKED] == frozenset({DomainLifecycle.REMOVED})
    assert TRANSITIONS[DomainState.LOCKED] == frozenset()
    for state in TREState:
        with pytest.raises(tre.InternalError):
            check_move(TRE_LIFECYCLE, "the TRE", TREState.TERMINATED, state)
    for lifecycle in DomainLifecycle:
        if lifecycle is DomainLifecycle.REMOVED:
            continue
        with pytest.raises(tre.InternalError):
            check_move(DOMAIN_LIFECYCLE, "domain", DomainLifecycle.LOCKED, lifecycle)
    for ds in DomainState:
        with pytest.raises(tre.InternalError):
            check_transition("d", DomainState.LOCKED, ds)


def test_locked_is_reachable_from_every_live_state():
    """Tamper response can strike at any moment: LOCKED must be a legal move from every
    state that is not already final."""
    assert TREState.LOCKED in TRE_LIFECYCLE[TREState.SECURED]
    for lifecycle in (DomainLifecycle.INSTALLED, DomainLifecycle.ACTIVE):
        assert DomainLifecycle.LOCKED in DOMAIN_LIFECYCLE[lifecycle]
    for ds in DomainState:
        if ds is not DomainState.LOCKED:
            assert DomainState.LOCKED in TRANSITIONS[ds], ds
    # ...and TERMINATED from every TRE state but itself.
    for state in (TREState.SECURED, TREState.LOCKED):
        assert TREState.TERMINATED in TRE_LIFECYCLE[state]


def test_every_state_is_reachable_from_the_start():
    for table, start in (
        (TRE_LIFECYCLE, TREState.SECURED),
        (DOMAIN_LIFECYCLE, DomainLifecycle.INSTALLED),
        (TRANSITIONS, DomainState.INSTALLED),
    ):
        seen = {start}
        frontier = [start]
        while frontier:
            for nxt in table[frontier.pop()]:  # type: ignore[index]
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen == set(type(start)), table


def test_only_booting_and_running_accept_calls():
    assert frozenset({DomainState.BOOTING, DomainState.RUNNING}) == ACCEPTING


# --- a property over all pairs of every table ---------------------------------------------


@st.composite
def moves(
    draw: st.DrawFn,
) -> tuple[str, Mapping[enum.Enum, frozenset[enum.Enum]], enum.Enum, enum.Enum]:
    name, table, states = draw(st.sampled_from(TABLES))
    old = draw(st.sampled_from(list(states)))
    new = draw(st.sampled_from(list(states)))
    return name, table, old, new


@given(moves())
def test_check_move_is_the_table(move):
    name, table, old, new = move
    try:
        check_move(table, name, old, new)
    except tre.InternalError:
        allowed = False
    else:
        allowed = True
    assert allowed == (new in table[old])


@given(st.lists(st.sampled_from(list(TREState)), max_size=8))
def test_any_walk_of_the_tre_lifecycle_never_leaves_a_final_state(walk):
    """Apply a random sequence of moves, skipping the illegal ones: once TERMINATED, the
    walk stays there; once LOCKED, it never goes back to SECURED."""
    state = TREState.SECURED
    history = [state]
    for new in walk:
        try:
            check_move(TRE_LIFECYCLE, "the TRE", state, new)
        except tre.InternalError:
            continue
        state = new
        history.append(state)
    if TREState.TERMINATED in history:
        assert history[history.index(TREState.TERMINATED) :] == [TREState.TERMINATED]
    if TREState.LOCKED in history:
        assert TREState.SECURED not in history[history.index(TREState.LOCKED) :]


# --- the Device applies the tables ------------------------------------------------------------


class Noop(tre.Domain):
    pass


def ephemeral() -> Device:
    return Device.ephemeral(default_config(), [spec(Noop, id="noop")])


def tre_state(device: Device) -> TREState:
    return device.tre_state


def lifecycle_of(device: Device, domain_id: str) -> DomainLifecycle:
    return device.records[domain_id].state


async def test_device_refuses_illegal_tre_moves():
    device = ephemeral()
    try:
        await device.set_tre_state(TREState.LOCKED, "tamper")
        with pytest.raises(tre.InternalError):
            await device.set_tre_state(TREState.SECURED, "unlock")
        assert tre_state(device) is TREState.LOCKED
        await device.set_tre_state(TREState.TERMINATED, "end of life")
        for state in (TREState.SECURED, TREState.LOCKED):
            with pytest.raises(tre.InternalError):
                await device.set_tre_state(state, "revive")
        assert tre_state(device) is TREState.TERMINATED
        with pytest.raises(tre.Terminated):
            await device.boot()
        # The refused moves wrote nothing.
        kinds = await device.store.read(
            lambda c: c.execute("SELECT detail FROM events WHERE kind = 'tre_state'").fetchall()
        )
        assert [k[0].split(":")[0] for k in kinds] == [
            "secured -> locked",
            "locked -> terminated",
        ]
    finally:
        await device.close()


async def test_device_refuses_illegal_domain_moves():
    device = ephemeral()
    try:
        await device.activate(["noop"])
        assert lifecycle_of(device, "noop") is DomainLifecycle.ACTIVE
        with pytest.raises(tre.InternalError):
            await device.set_domain_state("noop", DomainLifecycle.INSTALLED, "reinstall")
        await device.set_domain_state("noop", DomainLifecycle.LOCKED, "tamper")
        for lifecycle in (DomainLifecycle.INSTALLED, DomainLifecycle.ACTIVE):
            with pytest.raises(tre.InternalError):
                await device.set_domain_state("noop", lifecycle, "unlock")
        # Activation skips a locked domain instead of reviving it.
        await device.activate(["noop"])
        assert lifecycle_of(device, "noop") is DomainLifecycle.LOCKED
        # Setting the state it already has is not a move (and not an error).
        await device.set_domain_state("noop", DomainLifecycle.LOCKED, "again")
    finally:
        await device.close()
