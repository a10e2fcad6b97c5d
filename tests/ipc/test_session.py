"""ipc/_session.py: the attested-session handshake and the AEAD channel with its replay window."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

import ipc
from ipc import (
    Handshake,
    HandshakeState,
    SecureSession,
    SessionClosed,
    SessionError,
    SessionLimits,
    SessionState,
)
from ipc._session import HANDSHAKE_TRANSITIONS, SESSION_TRANSITIONS

# --- known-answer inputs: the X25519 keys of RFC 7748 section 6.1 -------------------------

ALICE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUBLIC = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
I_NONCE = bytes(range(32))
R_NONCE = bytes(range(32, 64))
KAT_PLAINTEXT = b"attested hello"
KAT_AAD = b"tre/demo"
#: initiator's message 0 (header || ciphertext || tag), pinned: a change to the transcript,
#: the key schedule, the nonce layout or the AEAD changes it.
KAT_MESSAGE_0 = "00000000000000009a3a41b298705015e5e05041251100894839a694669d404e50fab0cd045b"
KAT_TRANSCRIPT = "e1a9b320e2d28694890fd8534deb5d417e1a399b5605f6451a6677a05fc29a77"

# Every point of small order on Curve25519 (and non-canonical encodings of them): the
# shared secret would be all zero, so the session would have a key an attacker knows.
LOW_ORDER = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]


# --- an independent implementation of the documented key schedule (test-only) -------------


def ref_hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 from scratch."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def ref_keys(shared: bytes, transcript: bytes) -> dict[str, tuple[bytes, bytes]]:
    out = {}
    for name in ("initiator-to-responder", "responder-to-initiator"):
        okm = ref_hkdf(shared, transcript, b"tre/v1/session/" + name.encode(), 44)
        out[name] = (okm[:32], okm[32:])
    return out


def ref_seal(key: bytes, iv: bytes, counter: int, plaintext: bytes, aad: bytes) -> bytes:
    header = counter.to_bytes(8, "big")
    nonce = bytes(a ^ b for a, b in zip(iv, counter.to_bytes(12, "big"), strict=True))
    return header + ChaCha20Poly1305(key).encrypt(nonce, plaintext, header + aad)


# --- helpers ------------------------------------------------------------------------------


def pair(limits: SessionLimits = ipc.DEFAULT_SESSION_LIMITS) -> tuple[SecureSession, SecureSession]:
    """(initiator, responder) sessions after a full handshake."""
    i, r = Handshake.initiator(limits=limits), Handshake.responder(limits=limits)
    return i.finish(r.nonce, r.public), r.finish(i.nonce, i.public)


def kat_handshakes() -> tuple[Handshake, Handshake]:
    return (
        Handshake.initiator(I_NONCE, X25519PrivateKey.from_private_bytes(ALICE)),
        Handshake.responder(R_NONCE, X25519PrivateKey.from_private_bytes(BOB)),
    )


def reason_of(session: SecureSession, message: bytes, aad: bytes = b"") -> str:
    with pytest.raises(SessionError) as info:
        session.open(message, aad)
    assert info.value.code == "SESSION"
    return info.value.reason


# --- handshake ----------------------------------------------------------------------------


def test_a_full_handshake_gives_two_sessions_that_talk_both_ways() -> None:
    a, b = pair()
    assert a.role == "initiator" and b.role == "responder"
    assert a.state == b.state == "open" and a.transcript == b.transcript
    for n in range(3):
        assert b.open(a.seal(b"ping %d" % n, b"ctx"), b"ctx") == b"ping %d" % n
        assert a.open(b.seal(b"pong %d" % n)) == b"pong %d" % n
    assert a.sent == b.sent == 3


def test_both_sides_compute_the_same_transcripts() -> None:
    i, r = Handshake.initiator(), Handshake.responder()
    hello = i.transcript_hello()
    assert hello == r.transcript_hello(i.nonce, i.public) == ipc.hello_transcript(i.nonce, i.public)
    assert hello == hashlib.sha256(b"tre/v1/session/hello" + i.nonce + i.public).digest()
    reply = i.transcript_reply(r.nonce, r.public)
    assert reply == r.transcript_reply(i.nonce, i.public)
    assert (
        reply
        == hashlib.sha256(
            b"tre/v1/session/reply" + i.nonce + i.public + r.nonce + r.public
        ).digest()
    )
    assert i.finish(r.nonce, r.public).transcript == reply


def test_transcript_hello_arguments_follow_the_role() -> None:
    i, r = Handshake.initiator(), Handshake.responder()
    with pytest.raises(TypeError, match="initiator"):
        i.transcript_hello(r.nonce, r.public)
    with pytest.raises(TypeError, match="responder"):
        r.transcript_hello()
    with pytest.raises(SessionError) as info:
        r.transcript_hello(i.nonce[:31], i.public)
    assert info.value.reason == "malformed"


def test_fresh_handshakes_use_fresh_keys_and_nonces() -> None:
    first, second = Handshake.initiator(), Handshake.initiator()
    assert first.nonce != second.nonce and first.public != second.public
    assert len(first.nonce) == len(first.public) == 32
    assert first.state == HandshakeState.START


def test_known_answer() -> None:
    i, r = kat_handshakes()
    assert i.public == ALICE_PUBLIC and r.public == BOB_PUBLIC
    a, b = i.finish(r.nonce, r.public), r.finish(i.nonce, i.public)
    assert a.transcript.hex() == b.transcript.hex() == KAT_TRANSCRIPT
    assert (
        X25519PrivateKey.from_private_bytes(ALICE).exchange(
            X25519PrivateKey.from_private_bytes(BOB).public_key()
        )
        == SHARED
    )  # RFC 7748 section 6.1
    keys = ref_keys(SHARED, a.transcript)
    message = a.seal(KAT_PLAINTEXT, KAT_AAD)
    assert message == ref_seal(*keys["initiator-to-responder"], 0, KAT_PLAINTEXT, KAT_AAD)
    assert message.hex() == KAT_MESSAGE_0
    assert b.open(message, KAT_AAD) == KAT_PLAINTEXT
    reply = b.seal(b"ok")
    assert reply == ref_seal(*keys["responder-to-initiator"], 0, b"ok", b"")
    assert keys["initiator-to-responder"] != keys["responder-to-initiator"]


def test_finishing_a_handshake_twice_is_an_error() -> None:
    i, r = Handshake.initiator(), Handshake.responder()
    i.finish(r.nonce, r.public)
    assert i.state == HandshakeState.DONE
    with pytest.raises(SessionError) as info:
        i.finish(r.nonce, r.public)
    assert info.value.reason == "state"
    assert i.state == HandshakeState.DONE


@pytest.mark.parametrize("point", LOW_ORDER)
def test_a_low_order_peer_key_is_refused_and_ends_the_handshake(point: str) -> None:
    i, r = Handshake.initiator(), Handshake.responder()
    with pytest.raises(SessionError) as info:
        i.finish(r.nonce, bytes.fromhex(point))
    assert info.value.reason == "bad-key"
    assert i.state == HandshakeState.ERROR
    with pytest.raises(SessionError) as again:
        i.finish(r.nonce, r.public)  # no second attempt with the same handshake
    assert again.value.reason == "state"


def test_a_reflected_hello_is_refused() -> None:
    i = Handshake.initiator()
    with pytest.raises(SessionError) as info:
        i.finish(i.nonce, i.public)
    assert info.value.reason == "bad-key"


@pytest.mark.parametrize(
    ("nonce", "public"),
    [
        (bytes(31), "ok"),
        (bytes(33), "ok"),
        ("ok", bytes(31)),
        ("ok", b""),
        (None, "ok"),
        ("ok", "a string"),
    ],
)
def test_malformed_peer_values_are_refused(nonce: object, public: object) -> None:
    i, r = Handshake.initiator(), Handshake.responder()
    peer_nonce = r.nonce if nonce == "ok" else nonce
    peer_public = r.public if public == "ok" else public
    with pytest.raises(SessionError) as info:
        i.finish(peer_nonce, peer_public)  # type: ignore[arg-type]
    assert info.value.reason == "malformed"
    assert i.state == HandshakeState.ERROR


def test_bytes_like_peer_values_are_accepted() -> None:
    i, r = Handshake.initiator(), Handshake.responder()
    a = i.finish(bytearray(r.nonce), memoryview(r.public))  # type: ignore[arg-type]
    b = r.finish(i.nonce, i.public)
    assert b.open(a.seal(b"x")) == b"x"


def test_bad_local_arguments_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Handshake.initiator(nonce=bytes(16))
    with pytest.raises(TypeError, match="X25519PrivateKey"):
        Handshake.responder(private=ALICE)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="SessionLimits"):
        Handshake.initiator(limits={"window": 4})  # type: ignore[arg-type]


# --- the channel --------------------------------------------------------------------------


def test_a_message_reflected_to_its_sender_fails() -> None:
    a, b = pair()
    message = a.seal(b"to b")
    assert reason_of(a, message) == "bad-tag"
    assert b.open(message) == b"to b"  # the refusal changed nothing


def test_a_message_from_another_session_fails() -> None:
    a, _ = pair()
    _, d = pair()
    assert reason_of(d, a.seal(b"x")) == "bad-tag"


def test_a_replayed_message_fails() -> None:
    a, b = pair()
    message = a.seal(b"pay 10")
    assert b.open(message) == b"pay 10"
    assert reason_of(b, message) == "replay"
    assert reason_of(b, message) == "replay"
    assert b.open(a.seal(b"next")) == b"next"


def test_reordered_messages_within_the_window_are_accepted_once_each() -> None:
    a, b = pair(SessionLimits(window=8))
    messages = [a.seal(b"m%d" % n) for n in range(8)]
    for n in (7, 0, 5, 1, 6, 2, 4, 3):
        assert b.open(messages[n]) == b"m%d" % n
    for message in messages:
        assert reason_of(b, message) == "replay"


def test_a_message_behind_the_window_is_too_old() -> None:
    a, b = pair(SessionLimits(window=4))
    messages = [a.seal(b"m%d" % n) for n in range(10)]
    assert b.open(messages[9]) == b"m9"
    assert reason_of(b, messages[5]) == "too-old"
    assert reason_of(b, messages[0]) == "too-old"
    assert b.open(messages[6]) == b"m6"  # 9 - 4 < 6: still inside


def test_every_flipped_bit_fails_with_bad_tag() -> None:
    a, b = pair()
    message = a.seal(b"flip me", b"aad")
    for bit in range(len(message) * 8):
        tampered = bytearray(message)
        tampered[bit // 8] ^= 1 << (bit % 8)
        assert reason_of(b, bytes(tampered), b"aad") == "bad-tag", bit
    assert b.open(message, b"aad") == b"flip me"


def test_a_different_aad_fails() -> None:
    a, b = pair()
    message = a.seal(b"x", b"method=transfer")
    assert reason_of(b, message, b"method=refund") == "bad-tag"
    assert reason_of(b, message) == "bad-tag"
    assert b.open(message, b"method=transfer") == b"x"


def test_a_message_with_a_rewritten_counter_fails() -> None:
    a, b = pair()
    message = a.seal(b"x")
    forged = (5).to_bytes(8, "big") + message[8:]
    assert reason_of(b, forged) == "bad-tag"


@pytest.mark.parametrize(
    "message", [b"", bytes(8), bytes(23), "text", None, 12, bytes(8 + 16 + 65)]
)
def test_malformed_messages_are_refused(message: object) -> None:
    _, b = pair(SessionLimits(max_message=64))
    assert reason_of(b, message) == "malformed"  # type: ignore[arg-type]


def test_bytes_like_messages_are_accepted() -> None:
    a, b = pair()
    assert b.open(bytearray(a.seal(b"one"))) == b"one"  # type: ignore[arg-type]
    assert b.open(memoryview(a.seal(b"two"))) == b"two"  # type: ignore[arg-type]


def test_empty_and_largest_plaintexts() -> None:
    a, b = pair(SessionLimits(max_message=100))
    assert b.open(a.seal(b"")) == b""
    assert b.open(a.seal(bytes(100))) == bytes(100)
    with pytest.raises(SessionError) as info:
        a.seal(bytes(101))
    assert info.value.reason == "too-large"


def test_the_sender_refuses_past_rekey_after() -> None:
    a, b = pair(SessionLimits(rekey_after=3))
    for n in range(3):
        assert b.open(a.seal(b"%d" % n)) == b"%d" % n
    with pytest.raises(SessionError) as info:
        a.seal(b"one too many")
    assert info.value.reason == "exhausted"
    assert a.sent == 3 and a.state == "open"
    assert a.open(b.seal(b"the other direction still works")) == b"the other direction still works"


def test_the_receiver_refuses_counters_past_rekey_after() -> None:
    i = Handshake.initiator()
    r = Handshake.responder(limits=SessionLimits(rekey_after=2))
    a, b = i.finish(r.nonce, r.public), r.finish(i.nonce, i.public)
    messages = [a.seal(b"%d" % n) for n in range(3)]
    assert b.open(messages[0]) == b"0" and b.open(messages[1]) == b"1"
    assert reason_of(b, messages[2]) == "exhausted"


def test_a_closed_session_refuses_everything() -> None:
    a, b = pair()
    message = a.seal(b"in flight")
    b.close()
    assert b.state == "closed" and b.state is SessionState.CLOSED
    with pytest.raises(SessionClosed) as opening:
        b.open(message)
    with pytest.raises(SessionClosed) as sealing:
        b.seal(b"x")
    for info in (opening, sealing):
        assert isinstance(info.value, SessionError)
        assert info.value.code == "SESSION_CLOSED" and info.value.reason == "closed"
    b.close()  # idempotent
    assert b.state is SessionState.CLOSED
    assert a.state == "open"


def test_one_opaque_message_for_every_peer_fault() -> None:
    a, b = pair(SessionLimits(window=2))
    messages = [a.seal(b"%d" % n) for n in range(4)]
    b.open(messages[3])
    b.open(messages[2])
    faults = [messages[3], messages[0], b"short", messages[1][:-1] + b"\x00"]
    errors = []
    for fault in faults:
        with pytest.raises(SessionError) as info:
            b.open(fault)
        errors.append(info.value)
    assert [e.reason for e in errors] == ["replay", "too-old", "malformed", "bad-tag"]
    assert len({str(e) for e in errors}) == 1


def test_keys_appear_in_no_repr_or_error() -> None:
    i, r = kat_handshakes()
    a, b = i.finish(r.nonce, r.public), r.finish(i.nonce, i.public)
    secrets = [SHARED, ALICE, BOB]
    for key, iv in ref_keys(SHARED, a.transcript).values():
        secrets += [key, iv]
    texts = [repr(a), str(a), repr(b), repr(i), repr(r), repr(a.limits)]
    for fault in (b"", a.seal(b"x")):
        with pytest.raises(SessionError) as info:
            a.open(fault)
        texts += [repr(info.value), str(info.value), repr(info.value.args)]
    blob = "\n".join(texts)
    for secret in secrets:
        assert secret.hex() not in blob and repr(secret) not in blob
    assert "role='initiator'" in repr(a) and "state='open'" in repr(a)


def test_session_errors_need_a_known_reason() -> None:
    with pytest.raises(ValueError, match="unknown"):
        SessionError("nope")
    assert SessionError("replay").code == "SESSION"
    assert issubclass(SessionError, ipc.TREError)
    assert {"bad-tag", "replay", "too-old", "malformed", "exhausted"} <= ipc.SESSION_REASONS


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window": 0},
        {"window": (1 << 16) + 1},
        {"max_message": 0},
        {"max_message": 1 << 31},
        {"rekey_after": 0},
        {"rekey_after": 2**64 + 1},
        {"window": True},
        {"window": 4.0},
    ],
)
def test_session_limits_are_checked(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="SessionLimits"):
        SessionLimits(**kwargs)  # type: ignore[arg-type]


def test_the_state_tables_make_error_and_closed_final() -> None:
    assert set(HANDSHAKE_TRANSITIONS) == set(HandshakeState)
    assert HANDSHAKE_TRANSITIONS[HandshakeState.DONE] == {}
    assert HANDSHAKE_TRANSITIONS[HandshakeState.ERROR] == {}
    assert set(SESSION_TRANSITIONS) == set(SessionState)
    assert set(SESSION_TRANSITIONS[SessionState.CLOSED].values()) == {SessionState.CLOSED}


# --- delivery by an adversarial network ---------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    window=st.integers(1, 16),
    count=st.integers(1, 30),
    data=st.data(),
)
def test_any_delivery_order_accepts_each_message_at_most_once(
    window: int, count: int, data: st.DataObject
) -> None:
    a, b = pair(SessionLimits(window=window))
    messages = [a.seal(b"m%d" % n) for n in range(count)]
    order = data.draw(st.lists(st.integers(0, count - 1), max_size=3 * count), label="order")
    accepted: list[int] = []
    seen: set[int] = set()
    top = -1
    for n in order:
        # the specification: accepted iff never accepted and newer than top - window
        expected = "replay" if n in seen else None
        if n <= top - window:
            expected = "too-old"
        try:
            assert b.open(messages[n]) == b"m%d" % n
            got = None
        except SessionError as exc:
            got = exc.reason
        assert got == expected, (n, top)
        if got is None:
            accepted.append(n)
            seen.add(n)
            top = max(top, n)
    assert len(accepted) == len(set(accepted))
