"""ipc/_hostauth.py: SCRAM-style host authentication with scrypt; the password never crosses."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import unicodedata
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ipc
from ipc import AuthFailed, ClientAuth, ServerAuth, Verifier, make_verifier
from ipc._hostauth import NONCE_SIZE, SALT_SIZE, SCRYPT_N, SCRYPT_P, SCRYPT_R
from tests.ipc.ipc_strategies import bodies

#: Small scrypt cost so the tests stay fast (one test runs the defaults).
FAST: dict[str, Any] = {"n": 2**10, "r": 8, "p": 1}
PASSWORD = "correct horse battery staple"
C_NONCE = bytes(range(NONCE_SIZE))
S_NONCE = bytes(range(100, 100 + NONCE_SIZE))
SALT = bytes(range(200, 200 + SALT_SIZE))


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return make_verifier(PASSWORD, **FAST)


def exchange(
    verifier: Verifier | None, password: str = PASSWORD, user: str = "alice"
) -> tuple[ClientAuth, ServerAuth, dict[str, Any], dict[str, Any]]:
    """A client and a server up to the proof: (client, server, challenge, answer)."""
    client = ClientAuth(user, password)
    server = ServerAuth(client.hello(), verifier)
    challenge = server.challenge()
    return client, server, challenge, client.answer(challenge)


def failed(exc: pytest.ExceptionInfo[AuthFailed]) -> None:
    """Every failure looks the same: one code, one message."""
    assert type(exc.value) is AuthFailed
    assert exc.value.code == "AUTH_FAILED"
    assert str(exc.value) == "authentication failed"


# --- an independent implementation of the documented computation (test-only) --------------


def reference(
    password: str, user: str, c_nonce: bytes, nonce: bytes, salt: bytes, n: int, r: int, p: int
) -> tuple[bytes, bytes, bytes, bytes]:
    """(proof, signature, stored_key, server_key) from the module docstring, with hashlib."""
    secret = unicodedata.normalize("NFC", password).encode()
    salted = hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=2**26)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    message = msgpack.packb(
        ["tre-host-auth/1", user, c_nonce, nonce, salt, n, r, p], use_bin_type=True
    )
    signature = hmac.new(stored_key, message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return proof, hmac.new(server_key, message, hashlib.sha256).digest(), stored_key, server_key


def test_the_computation_matches_an_independent_implementation() -> None:
    v = make_verifier(PASSWORD, salt=SALT, **FAST)
    client = ClientAuth("alice", PASSWORD, nonce=C_NONCE)
    server = ServerAuth(client.hello(), v, nonce=S_NONCE)
    challenge = server.challenge()
    assert challenge == {"nonce": C_NONCE + S_NONCE, "salt": SALT, **FAST}
    answer = client.answer(challenge)
    proof, signature, stored_key, server_key = reference(
        PASSWORD, "alice", C_NONCE, C_NONCE + S_NONCE, SALT, **FAST
    )
    assert (v.stored_key, v.server_key) == (stored_key, server_key)
    assert answer == {"proof": proof}
    assert server.verify(answer) == {"signature": signature}


# --- the exchange -----------------------------------------------------------------------------


def test_a_full_exchange_authenticates_both_sides(verifier: Verifier) -> None:
    client, server, challenge, answer = exchange(verifier)
    hello = client.hello()
    assert set(hello) == {"user", "nonce"} and hello["user"] == "alice"
    assert len(hello["nonce"]) == NONCE_SIZE
    assert set(challenge) == {"nonce", "salt", "n", "r", "p"}
    assert challenge["nonce"][:NONCE_SIZE] == hello["nonce"]
    assert len(challenge["nonce"]) == 2 * NONCE_SIZE
    assert set(answer) == {"proof"} and len(answer["proof"]) == 32
    outcome = server.verify(answer)
    assert set(outcome) == {"signature"} and len(outcome["signature"]) == 32
    client.check(outcome)  # the server knew the verifier
    assert server.user == "alice"


def test_the_default_parameters() -> None:
    v = make_verifier(PASSWORD)
    assert (v.n, v.r, v.p) == (SCRYPT_N, SCRYPT_R, SCRYPT_P) == (2**14, 8, 1)
    assert len(v.salt) == SALT_SIZE
    client, server, challenge, answer = exchange(v)
    assert (challenge["n"], challenge["r"], challenge["p"]) == (2**14, 8, 1)
    client.check(server.verify(answer))


def test_two_verifiers_of_one_password_differ_by_salt() -> None:
    a, b = make_verifier(PASSWORD, **FAST), make_verifier(PASSWORD, **FAST)
    assert a.salt != b.salt and a.stored_key != b.stored_key and a != b
    assert a == Verifier.from_bytes(a.to_bytes())


def test_the_password_is_nfc_normalised() -> None:
    composed, decomposed = "caf\u00e9-\u00c5ngstr\u00f6m", "cafe\u0301-A\u030angstro\u0308m"
    assert composed != decomposed
    v = make_verifier(composed, **FAST)
    client, server, _, answer = exchange(v, password=decomposed)
    client.check(server.verify(answer))


def test_a_wrong_password_fails(verifier: Verifier) -> None:
    _, server, _, answer = exchange(verifier, password=PASSWORD + "!")
    with pytest.raises(AuthFailed) as exc:
        server.verify(answer)
    failed(exc)


def test_verify_runs_once(verifier: Verifier) -> None:
    _, server, _, answer = exchange(verifier)
    server.verify(answer)
    with pytest.raises(AuthFailed) as exc:
        server.verify(answer)
    failed(exc)
    # after a failure too: one guess per challenge
    _, server, _, _ = exchange(verifier)
    with pytest.raises(AuthFailed):
        server.verify({"proof": bytes(32)})
    with pytest.raises(AuthFailed):
        server.verify(answer)


def test_a_replayed_answer_fails_against_a_new_challenge(verifier: Verifier) -> None:
    client, server, _, answer = exchange(verifier)
    server.verify(answer)
    # the attacker replays the recorded hello and answer: the server's nonce is fresh
    again = ServerAuth(client.hello(), verifier)
    again.challenge()
    with pytest.raises(AuthFailed) as exc:
        again.verify(answer)
    failed(exc)


def test_a_server_without_the_server_key_is_refused_by_the_client(verifier: Verifier) -> None:
    # It holds the stored key (so the proof checks) but not the server key.
    impostor = Verifier(
        verifier.salt, verifier.n, verifier.r, verifier.p, verifier.stored_key, bytes(32)
    )
    client, server, _, answer = exchange(impostor)
    outcome = server.verify(answer)
    with pytest.raises(AuthFailed) as exc:
        client.check(outcome)
    failed(exc)


def test_the_client_refuses_a_forged_or_misplaced_signature(verifier: Verifier) -> None:
    outcomes: list[Any] = [
        {"signature": bytes(32)},
        {"signature": b"x" * 31},
        {"signature": "x" * 32},
        {"signature": bytes(32), "extra": 1},
        {},
        [],
    ]
    for outcome in outcomes:
        client, *_ = exchange(verifier)
        with pytest.raises(AuthFailed) as exc:
            client.check(outcome)
        failed(exc)


def test_each_client_step_runs_once_and_in_order(verifier: Verifier) -> None:
    client = ClientAuth("alice", PASSWORD)
    with pytest.raises(AuthFailed):
        client.check({"signature": bytes(32)})  # before answer
    server = ServerAuth(client.hello(), verifier)
    answer = client.answer(server.challenge())
    with pytest.raises(AuthFailed):
        client.answer(server.challenge())  # twice
    client.check(server.verify(answer))
    with pytest.raises(AuthFailed):
        client.check({"signature": bytes(32)})  # after the end


# --- unknown users --------------------------------------------------------------------------


def test_an_unknown_user_gets_a_decoy_that_looks_real(verifier: Verifier) -> None:
    key = b"k" * 32
    real = ServerAuth(ClientAuth("alice", PASSWORD).hello(), verifier, decoy_key=key)
    ghost = ServerAuth(ClientAuth("mallory", PASSWORD).hello(), None, decoy_key=key)
    a, b = real.challenge(), ghost.challenge()
    assert set(a) == set(b)
    assert {k: (type(v), len(v)) for k, v in a.items() if isinstance(v, bytes)} == {
        k: (type(v), len(v)) for k, v in b.items() if isinstance(v, bytes)
    }
    assert (b["n"], b["r"], b["p"]) == (SCRYPT_N, SCRYPT_R, SCRYPT_P)
    # stable per name under one key; different per name and per key
    again = ServerAuth(ClientAuth("mallory", "other").hello(), None, decoy_key=key)
    assert again.challenge()["salt"] == b["salt"]
    other = ServerAuth(ClientAuth("trudy", PASSWORD).hello(), None, decoy_key=key)
    assert other.challenge()["salt"] != b["salt"]
    rekeyed = ServerAuth(ClientAuth("mallory", PASSWORD).hello(), None, decoy_key=b"j" * 32)
    assert rekeyed.challenge()["salt"] != b["salt"]
    assert b["nonce"] != again.challenge()["nonce"]  # fresh nonces all the same


def test_an_unknown_user_always_fails_the_same_way() -> None:
    client = ClientAuth("mallory", PASSWORD, nonce=C_NONCE)
    server = ServerAuth(client.hello(), None, decoy_key=b"k")
    answer = client.answer(server.challenge())  # the client cannot tell
    with pytest.raises(AuthFailed) as exc:
        server.verify(answer)
    failed(exc)


# --- a hostile server ---------------------------------------------------------------------------


def good_challenge(client: ClientAuth) -> dict[str, Any]:
    return {"nonce": client.hello()["nonce"] + S_NONCE, "salt": SALT, **FAST}


@pytest.mark.parametrize(
    "change",
    [
        {"nonce": C_NONCE + S_NONCE},  # does not extend this client's nonce
        {"nonce": bytes(2 * NONCE_SIZE)},
        {"n": 2**30},  # 128 GiB
        {"n": 2**21},
        {"n": 2**9},
        {"n": 3 * 2**10},  # not a power of two
        {"n": True},
        {"n": 2.0**10},
        {"r": 0},
        {"r": 33},
        {"p": 0},
        {"p": 17},
        {"n": 2**20, "r": 16},  # 2 GiB: over the memory cap
        {"salt": b"short"},
        {"salt": bytes(65)},
        {"salt": "a" * 16},
        {"extra": 1},
    ],
)
def test_the_client_refuses_a_hostile_challenge(change: dict[str, Any]) -> None:
    client = ClientAuth("alice", PASSWORD)
    challenge = good_challenge(client)
    challenge.update(change)
    with pytest.raises(AuthFailed) as exc:
        client.answer(challenge)
    failed(exc)


def test_the_client_refuses_a_challenge_missing_a_field() -> None:
    for key in ("nonce", "salt", "n", "r", "p"):
        client = ClientAuth("alice", PASSWORD)
        challenge = good_challenge(client)
        del challenge[key]
        with pytest.raises(AuthFailed):
            client.answer(challenge)


def test_the_extended_nonce_check_uses_the_whole_client_nonce() -> None:
    client = ClientAuth("alice", PASSWORD, nonce=C_NONCE)
    nonce = bytearray(C_NONCE + S_NONCE)
    nonce[NONCE_SIZE - 1] ^= 1
    with pytest.raises(AuthFailed):
        client.answer({"nonce": bytes(nonce), "salt": SALT, **FAST})


# --- malformed messages to the server ---------------------------------------------------------


@pytest.mark.parametrize(
    "hello",
    [
        {},
        {"user": "alice"},
        {"nonce": C_NONCE},
        {"user": "alice", "nonce": C_NONCE, "extra": 1},
        {"user": "Alice", "nonce": C_NONCE},
        {"user": "", "nonce": C_NONCE},
        {"user": "a" * 33, "nonce": C_NONCE},
        {"user": b"alice", "nonce": C_NONCE},
        {"user": "alice", "nonce": C_NONCE[:-1]},
        {"user": "alice", "nonce": C_NONCE + b"x"},
        {"user": "alice", "nonce": bytearray(C_NONCE)},
        {"user": "alice", "nonce": C_NONCE.hex()},
        ["alice", C_NONCE],
        None,
        b"",
    ],
)
def test_a_malformed_hello_is_refused(hello: Any, verifier: Verifier) -> None:
    with pytest.raises(AuthFailed) as exc:
        ServerAuth(hello, verifier)
    failed(exc)


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"proof": bytes(31)},
        {"proof": bytes(33)},
        {"proof": "x" * 32},
        {"proof": None},
        {"proof": bytes(32), "extra": b""},
        {"signature": bytes(32)},
        [bytes(32)],
        None,
    ],
)
def test_a_malformed_answer_is_refused(answer: Any, verifier: Verifier) -> None:
    _, server, _, _ = exchange(verifier)
    with pytest.raises(AuthFailed) as exc:
        server.verify(answer)
    failed(exc)


def junk_maps(keys: list[str]) -> st.SearchStrategy[Any]:
    """Dicts with the expected keys (and maybe others) holding any values, and any body."""
    fields = st.fixed_dictionaries(
        {},
        optional={k: st.binary(min_size=0, max_size=64) | st.integers() | bodies for k in keys},
    )
    extra = st.dictionaries(st.text(max_size=6), bodies, max_size=2)
    return fields | st.builds(lambda a, b: {**b, **a}, fields, extra) | bodies


VERIFIER_FOR_JUNK = make_verifier(PASSWORD, **FAST)


@settings(max_examples=150, deadline=None)
@given(
    hello=junk_maps(["user", "nonce"]),
    answer=junk_maps(["proof"]),
    challenge=junk_maps(["nonce", "salt", "n", "r", "p"]),
    outcome=junk_maps(["signature"]),
)
def test_junk_only_ever_raises_auth_failed(
    hello: Any, answer: Any, challenge: Any, outcome: Any
) -> None:
    v = VERIFIER_FOR_JUNK
    try:
        server = ServerAuth(hello, v)
    except AuthFailed:
        server = ServerAuth(ClientAuth("alice", PASSWORD).hello(), v)
    with pytest.raises(AuthFailed):
        server.verify(answer)
    client = ClientAuth("alice", PASSWORD)
    with contextlib.suppress(AuthFailed):
        client.answer(challenge)
    with pytest.raises(AuthFailed):
        client.check(outcome)


# --- nothing secret leaks ---------------------------------------------------------------------


def test_the_password_never_crosses(verifier: Verifier) -> None:
    password = "p\u00e4ss-w\u00f6rd-\U0001f511-0123"
    v = make_verifier(password, **FAST)
    client = ClientAuth("alice", password)
    server = ServerAuth(client.hello(), v)
    messages = [client.hello(), server.challenge()]
    answer = client.answer(messages[-1])
    messages.append(answer)
    messages.append(server.verify(answer))
    client.check(messages[-1])
    wire = b"".join(msgpack.packb(m, use_bin_type=True) for m in messages)
    wire += b"".join(ipc.encode_value(m) for m in messages)
    for form in (
        password.encode(),
        unicodedata.normalize("NFD", password).encode(),
        password.encode("utf-16-le"),
        password.encode().hex().encode(),
        b"w\xc3\xb6rd",  # a fragment
    ):
        assert form not in wire
    # and neither are the keys of the verifier
    assert v.stored_key not in wire and v.server_key not in wire


def test_reprs_and_errors_show_nothing_secret(verifier: Verifier) -> None:
    client, server, _, answer = exchange(verifier)
    texts = [repr(verifier), str(verifier), repr(client), repr(server)]
    with pytest.raises(AuthFailed) as exc:
        ServerAuth(client.hello(), verifier).verify({"proof": bytes(32)})
    texts += [repr(exc.value), str(exc.value)]
    joined = "\n".join(texts)
    for secret in (verifier.stored_key, verifier.server_key, answer["proof"]):
        assert secret.hex() not in joined and repr(secret) not in joined
    assert PASSWORD not in joined
    assert repr(verifier) == "Verifier(n=1024, r=8, p=1)"


def test_a_verifier_is_not_hashable(verifier: Verifier) -> None:
    with pytest.raises(TypeError):
        hash(verifier)


@pytest.mark.parametrize(
    "password", ["", "x" * 1025, b"bytes", None, 12345, "lone \ud800 surrogate"]
)
def test_bad_passwords_are_refused_without_being_quoted(password: Any) -> None:
    with pytest.raises(ValueError) as exc:
        make_verifier(password, **FAST)
    assert "surrogate" not in str(exc.value) and "bytes" not in str(exc.value)
    with pytest.raises(ValueError):
        ClientAuth("alice", password)


def test_the_longest_password_is_accepted() -> None:
    long = "\u00e9" * 1024
    v = make_verifier(long, **FAST)
    client, server, _, answer = exchange(v, password=long)
    outcome = server.verify(answer)  # AuthFailed otherwise
    assert set(outcome) == {"signature"}
    client.check(outcome)  # the server's proof checks too


def test_local_mistakes_are_value_errors() -> None:
    with pytest.raises(ValueError):
        ClientAuth("Alice", PASSWORD)
    with pytest.raises(ValueError):
        ClientAuth("alice", PASSWORD, nonce=b"short")
    with pytest.raises(ValueError):
        ServerAuth(ClientAuth("alice", PASSWORD).hello(), None, nonce=bytes(23))
    with pytest.raises(ValueError):
        make_verifier(PASSWORD, salt=b"short")
    with pytest.raises(ValueError):
        make_verifier(PASSWORD, n=2**30)
    with pytest.raises(ValueError):
        make_verifier(PASSWORD, n=1000)
    with pytest.raises(TypeError):
        ServerAuth(ClientAuth("alice", PASSWORD).hello(), object())  # type: ignore[arg-type]


# --- verifier bytes -------------------------------------------------------------------------


def test_verifier_bytes_round_trip(verifier: Verifier) -> None:
    data = verifier.to_bytes()
    back = Verifier.from_bytes(data)
    assert back == verifier
    assert (back.salt, back.n, back.r, back.p) == (verifier.salt, 2**10, 8, 1)


@pytest.mark.parametrize(
    "value",
    [
        [2, SALT, 1024, 8, 1, bytes(32), bytes(32)],  # unknown version
        [1, SALT, 1024, 8, 1, bytes(32)],
        [1, SALT, 1000, 8, 1, bytes(32), bytes(32)],
        [1, SALT, 1024, 8, 1, bytes(31), bytes(32)],
        [1, b"short", 1024, 8, 1, bytes(32), bytes(32)],
        [True, SALT, 1024, 8, 1, bytes(32), bytes(32)],
        [1, SALT, 1024, 8, 1, bytes(32), "x" * 32],
        {"salt": SALT},
    ],
)
def test_verifier_from_bytes_refuses_wrong_values(value: Any) -> None:
    with pytest.raises(ValueError):
        Verifier.from_bytes(msgpack.packb(value, use_bin_type=True))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_verifier_from_bytes_junk_is_a_value_error(data: bytes) -> None:
    try:
        parsed = Verifier.from_bytes(data)
    except ValueError:
        return  # the only error junk may raise
    assert isinstance(parsed, Verifier)


def test_verifier_from_bytes_refuses_trailing_bytes_and_non_bytes(verifier: Verifier) -> None:
    with pytest.raises(ValueError):
        Verifier.from_bytes(verifier.to_bytes() + b"\x00")
    with pytest.raises(ValueError):
        Verifier.from_bytes(bytearray(verifier.to_bytes()))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Verifier.from_bytes(msgpack.packb(msgpack.ExtType(1, b"x")))


def test_exports() -> None:
    for name in ("AuthFailed", "ClientAuth", "ServerAuth", "Verifier", "make_verifier"):
        assert name in ipc.__all__
    assert ipc.USER_RE.fullmatch("alice.smith-2_x")
    assert not ipc.USER_RE.fullmatch("2alice")
    assert issubclass(AuthFailed, ipc.TREError)
