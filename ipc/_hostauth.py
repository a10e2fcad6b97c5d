"""Password authentication of host users that never sends the password: a sans-I/O SCRAM.

The structure of SCRAM (RFC 5802, with SHA-256 as in RFC 7677), with scrypt (RFC 7914)
instead of PBKDF2 as the password hash, and msgpack maps instead of SCRAM's text
attributes. Three messages; values in, values out (the caller carries them, e.g. as call
bodies)::

    client                                          server (holds a Verifier per user)
    ---- hello {"user", "nonce": c_nonce (24 bytes)} ---->
    <--- challenge {"nonce": c_nonce || s_nonce, "salt", "n", "r", "p"} ----
    ---- answer {"proof" (32 bytes)} ---->
    <--- outcome {"signature" (32 bytes)} ----      (or AuthFailed)
    check(outcome)                                  (the server knew the verifier)

    SaltedPassword = scrypt(NFC(password) as UTF-8, salt, n, r, p, 32 bytes)
    ClientKey      = HMAC-SHA256(SaltedPassword, "Client Key")
    StoredKey      = SHA-256(ClientKey)
    ServerKey      = HMAC-SHA256(SaltedPassword, "Server Key")
    AuthMessage    = msgpack ["tre-host-auth/1", user, c_nonce, c_nonce || s_nonce,
                              salt, n, r, p]
    ClientProof    = ClientKey XOR HMAC-SHA256(StoredKey, AuthMessage)
    ServerSignature = HMAC-SHA256(ServerKey, AuthMessage)

The server stores only (salt, n, r, p, StoredKey, ServerKey): a :class:`Verifier`. It
recovers ClientKey from the proof and accepts it if its SHA-256 is StoredKey; it never sees
the password or anything from which the password follows without a dictionary attack
against scrypt. A stolen verifier alone does not let its thief log in (a proof needs
ClientKey, not its hash), though together with one recorded exchange it does (SCRAM's known
limit: proof XOR HMAC(StoredKey, AuthMessage) is ClientKey). Every challenge carries a
fresh server nonce, so a recorded answer does not verify against any later challenge;
:meth:`ServerAuth.verify` runs once per challenge.

An unknown user gets a decoy challenge (a salt derived from the user name under a server
key, default parameters), the same shape as a real one and stable per name, so a client
cannot tell an unknown user from a wrong password. The client refuses a challenge that
does not extend its own nonce and scrypt parameters outside sane bounds (n a power of two
in 2**10..2**20, r 1..32, p 1..16, at most 1 GiB of memory): a hostile server cannot make
it burn unbounded memory.

Every failure, on either side and whatever its cause, is :class:`AuthFailed` with one
message. Passwords, salted passwords, keys and proofs never appear in a repr or an error.
"""

from __future__ import annotations

import hmac
import os
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, NoReturn

import attrs
import msgpack
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ._errors import TREError

__all__ = [
    "MAX_PASSWORD",
    "NONCE_SIZE",
    "SALT_SIZE",
    "SCRYPT_N",
    "SCRYPT_P",
    "SCRYPT_R",
    "USER_RE",
    "AuthFailed",
    "ClientAuth",
    "ServerAuth",
    "Verifier",
    "make_verifier",
]

#: A user name: lower case, starts with a letter, at most 32 characters.
USER_RE = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
#: Each side's nonce; the challenge carries both (48 bytes).
NONCE_SIZE = 24
#: A verifier's random salt (also the size of a decoy salt).
SALT_SIZE = 16
#: scrypt's defaults: 16 MiB and a few tens of milliseconds per derivation (RFC 7914's
#: interactive-login figure).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
#: Longest password, in characters.
MAX_PASSWORD = 1024

_LABEL = "tre-host-auth/1"
_KEY_SIZE = 32  # SHA-256
_MIN_SALT, _MAX_SALT = 16, 64
_MIN_N, _MAX_N = 2**10, 2**20
_MAX_R = 32
_MAX_P = 16
#: scrypt needs 128 * n * r bytes: never more than this, whatever a server asks for.
_MAX_MEMORY = 2**30
_VERIFIER_VERSION = 1
_MAX_VERIFIER_BYTES = 512

_HELLO_KEYS = frozenset({"user", "nonce"})
_CHALLENGE_KEYS = frozenset({"nonce", "salt", "n", "r", "p"})
_ANSWER_KEYS = frozenset({"proof"})
_OUTCOME_KEYS = frozenset({"signature"})


class AuthFailed(TREError):
    """Authentication failed. One error with one message for every cause (unknown user,
    wrong password, malformed or replayed message, hostile parameters, misuse): it never
    says which part was wrong."""

    code = "AUTH_FAILED"

    def __init__(self, message: str = "authentication failed") -> None:
        super().__init__(message)


def _fail() -> NoReturn:
    raise AuthFailed()


# --- primitives ---------------------------------------------------------------------------


def _hmac(key: bytes, data: bytes) -> bytes:
    mac = HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()


def _sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _params_ok(n: object, r: object, p: object) -> bool:
    """scrypt parameters a client accepts (and a verifier may have)."""
    if type(n) is not int or type(r) is not int or type(p) is not int:
        return False
    if not _MIN_N <= n <= _MAX_N or n & (n - 1):
        return False
    if not 1 <= r <= _MAX_R or not 1 <= p <= _MAX_P:
        return False
    return 128 * n * r <= _MAX_MEMORY


def _salt_ok(salt: object) -> bool:
    return type(salt) is bytes and _MIN_SALT <= len(salt) <= _MAX_SALT


def _password_bytes(password: object) -> bytes:
    """NFC-normalised UTF-8; ValueError (never quoting it) for anything else."""
    if not isinstance(password, str) or not 1 <= len(password) <= MAX_PASSWORD:
        raise ValueError(f"a password must be a str of 1..{MAX_PASSWORD} characters")
    try:
        return unicodedata.normalize("NFC", password).encode("utf-8")
    except UnicodeError:  # lone surrogates; the codec's message would quote the password
        raise ValueError("a password must be valid Unicode text") from None


def _keys(salted: bytes) -> tuple[bytes, bytes, bytes]:
    """(ClientKey, StoredKey, ServerKey) from SaltedPassword."""
    client_key = _hmac(salted, b"Client Key")
    return client_key, _sha256(client_key), _hmac(salted, b"Server Key")


def _salted(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=_KEY_SIZE, n=n, r=r, p=p).derive(password)


def _auth_message(
    user: str, client_nonce: bytes, nonce: bytes, salt: bytes, n: int, r: int, p: int
) -> bytes:
    packed: bytes = msgpack.packb(
        [_LABEL, user, client_nonce, nonce, salt, n, r, p], use_bin_type=True
    )
    return packed


def _fields(message: object, keys: frozenset[str]) -> Mapping[str, Any]:
    """A received message: a map with exactly ``keys``; AuthFailed otherwise."""
    if not isinstance(message, Mapping) or set(message.keys()) != keys:
        _fail()
    return message


def _user_ok(user: object) -> bool:
    return isinstance(user, str) and USER_RE.fullmatch(user) is not None


def _own_nonce(nonce: bytes | None) -> bytes:
    if nonce is None:
        return os.urandom(NONCE_SIZE)
    if type(nonce) is not bytes or len(nonce) != NONCE_SIZE:
        raise ValueError(f"a nonce must be {NONCE_SIZE} bytes")
    return nonce


# --- the verifier -------------------------------------------------------------------------


@attrs.frozen(repr=False, eq=False)
class Verifier:
    """What the server stores for one user: salt, scrypt parameters, StoredKey, ServerKey.

    Not the password and not enough to log in with, but enough for a dictionary attack
    against scrypt and to impersonate the server, so it is kept sealed (tre/_users.py) and
    never shown: the repr gives only the parameters. ``==`` compares in constant time.
    """

    salt: bytes
    n: int
    r: int
    p: int
    stored_key: bytes
    server_key: bytes

    def __attrs_post_init__(self) -> None:
        if not _salt_ok(self.salt):
            raise ValueError(f"a verifier's salt must be {_MIN_SALT}..{_MAX_SALT} bytes")
        if not _params_ok(self.n, self.r, self.p):
            raise ValueError("a verifier's scrypt parameters are out of bounds")
        for key in (self.stored_key, self.server_key):
            if type(key) is not bytes or len(key) != _KEY_SIZE:
                raise ValueError(f"a verifier's keys must be {_KEY_SIZE} bytes")

    def to_bytes(self) -> bytes:
        """msgpack ``[1, salt, n, r, p, stored_key, server_key]``."""
        packed: bytes = msgpack.packb(
            [
                _VERIFIER_VERSION,
                self.salt,
                self.n,
                self.r,
                self.p,
                self.stored_key,
                self.server_key,
            ],
            use_bin_type=True,
        )
        return packed

    @classmethod
    def from_bytes(cls, data: bytes) -> Verifier:
        """The inverse of :meth:`to_bytes`; ValueError for anything else."""
        if type(data) is not bytes or len(data) > _MAX_VERIFIER_BYTES:
            raise ValueError("not a verifier")
        try:
            value = msgpack.unpackb(
                data, raw=False, strict_map_key=True, use_list=True, ext_hook=_no_ext
            )
        except Exception:  # anything msgpack can raise on junk
            raise ValueError("not a verifier") from None
        if type(value) is not list or len(value) != 7:
            raise ValueError("not a verifier")
        version, salt, n, r, p, stored_key, server_key = value
        if type(version) is not int or version != _VERIFIER_VERSION:
            raise ValueError("not a verifier")
        return cls(salt, n, r, p, stored_key, server_key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verifier):
            return NotImplemented
        return hmac.compare_digest(self.to_bytes(), other.to_bytes())

    __hash__ = None  # type: ignore[assignment]  # a hash of the keys would fingerprint them

    def __repr__(self) -> str:
        return f"Verifier(n={self.n}, r={self.r}, p={self.p})"


def _no_ext(code: int, data: bytes) -> NoReturn:
    raise ValueError("extension types are not allowed")


def make_verifier(
    password: str,
    *,
    salt: bytes | None = None,
    n: int = SCRYPT_N,
    r: int = SCRYPT_R,
    p: int = SCRYPT_P,
) -> Verifier:
    """The verifier of ``password`` (1..1024 characters; NFC-normalised, UTF-8) under a new
    random 16-byte salt (or ``salt``) and the scrypt parameters. ValueError for a bad
    password, salt or parameters (the message never quotes the password)."""
    secret = _password_bytes(password)
    salt = os.urandom(SALT_SIZE) if salt is None else salt
    if not _salt_ok(salt):
        raise ValueError(f"a salt must be {_MIN_SALT}..{_MAX_SALT} bytes")
    if not _params_ok(n, r, p):
        raise ValueError(
            f"scrypt parameters out of bounds: n a power of two in {_MIN_N}..{_MAX_N}, "
            f"r 1..{_MAX_R}, p 1..{_MAX_P}, 128*n*r at most {_MAX_MEMORY} bytes"
        )
    _, stored_key, server_key = _keys(_salted(secret, salt, n, r, p))
    return Verifier(salt, n, r, p, stored_key, server_key)


# --- the two sides ------------------------------------------------------------------------


class ClientAuth:
    """The client's side: :meth:`hello`, then :meth:`answer` the challenge, then
    :meth:`check` the outcome. Each step once, in order; AuthFailed otherwise.

    ValueError at construction for a bad user name, password or nonce (local mistakes,
    before anything is sent). The password is dropped once the proof is made.
    """

    __slots__ = ("_client_nonce", "_expected", "_password", "_state", "user")

    def __init__(self, user: str, password: str, *, nonce: bytes | None = None) -> None:
        if not _user_ok(user):
            raise ValueError(f"a user name must match {USER_RE.pattern}")
        self.user = user
        self._password: bytes | None = _password_bytes(password)
        self._client_nonce = _own_nonce(nonce)
        self._expected: bytes | None = None
        self._state = "start"  # -> answered -> done; or failed

    def __repr__(self) -> str:
        return f"ClientAuth(user={self.user!r}, state={self._state!r})"

    def hello(self) -> dict[str, Any]:
        """The first message: ``{"user": str, "nonce": 24 bytes}``."""
        return {"user": self.user, "nonce": self._client_nonce}

    def answer(self, challenge: Mapping[str, Any]) -> dict[str, Any]:
        """The proof for the server's challenge: ``{"proof": 32 bytes}``.

        AuthFailed for a challenge that is malformed, does not extend this client's nonce,
        or asks for scrypt parameters outside the bounds (checked before any work)."""
        if self._state != "start":
            _fail()
        self._state = "failed"
        password, self._password = self._password, None
        fields = _fields(challenge, _CHALLENGE_KEYS)
        nonce, salt = fields["nonce"], fields["salt"]
        n, r, p = fields["n"], fields["r"], fields["p"]
        if type(nonce) is not bytes or len(nonce) != 2 * NONCE_SIZE:
            _fail()
        if not hmac.compare_digest(nonce[:NONCE_SIZE], self._client_nonce):
            _fail()
        if not _salt_ok(salt) or not _params_ok(n, r, p):
            _fail()
        assert password is not None  # "start" holds it
        client_key, stored_key, server_key = _keys(_salted(password, salt, n, r, p))
        message = _auth_message(self.user, self._client_nonce, nonce, salt, n, r, p)
        proof = _xor(client_key, _hmac(stored_key, message))
        self._expected = _hmac(server_key, message)
        self._state = "answered"
        return {"proof": proof}

    def check(self, outcome: Mapping[str, Any]) -> None:
        """Check the server's signature (mutual authentication): AuthFailed unless the
        server knew this user's verifier."""
        if self._state != "answered":
            _fail()
        self._state = "failed"
        expected, self._expected = self._expected, None
        signature = _fields(outcome, _OUTCOME_KEYS)["signature"]
        if type(signature) is not bytes or len(signature) != _KEY_SIZE:
            _fail()
        assert expected is not None  # "answered" holds it
        if not hmac.compare_digest(signature, expected):
            _fail()
        self._state = "done"


class ServerAuth:
    """The server's side of one attempt: made from the client's hello and the user's
    verifier (None: unknown user), it gives the :meth:`challenge` and :meth:`verify`\\ s
    the answer, once.

    AuthFailed at construction for a malformed hello. An unknown user gets a decoy
    challenge: salt = HMAC-SHA256(decoy_key, user)[:16] and the default parameters, so it
    looks like a real one and stays the same for a name; its verify always fails.
    """

    __slots__ = ("_decoy", "_message", "_nonce", "_used", "_verifier", "user")

    def __init__(
        self,
        hello: Mapping[str, Any],
        verifier: Verifier | None,
        *,
        nonce: bytes | None = None,
        decoy_key: bytes = b"",
    ) -> None:
        if verifier is not None and not isinstance(verifier, Verifier):
            raise TypeError(f"verifier must be a Verifier or None, not {type(verifier).__name__}")
        if type(decoy_key) is not bytes:
            raise TypeError("decoy_key must be bytes")
        server_nonce = _own_nonce(nonce)
        fields = _fields(hello, _HELLO_KEYS)
        user, client_nonce = fields["user"], fields["nonce"]
        if not _user_ok(user) or type(client_nonce) is not bytes:
            _fail()
        if len(client_nonce) != NONCE_SIZE:
            _fail()
        self.user: str = user
        self._decoy = verifier is None
        if verifier is None:
            verifier = Verifier(
                _hmac(decoy_key, user.encode("utf-8"))[:SALT_SIZE],
                SCRYPT_N,
                SCRYPT_R,
                SCRYPT_P,
                os.urandom(_KEY_SIZE),
                os.urandom(_KEY_SIZE),
            )
        self._verifier = verifier
        self._nonce = client_nonce + server_nonce
        v = verifier
        self._message = _auth_message(user, client_nonce, self._nonce, v.salt, v.n, v.r, v.p)
        self._used = False

    def __repr__(self) -> str:
        return f"ServerAuth(user={self.user!r}, used={self._used})"

    def challenge(self) -> dict[str, Any]:
        """``{"nonce": client nonce || server nonce, "salt", "n", "r", "p"}``."""
        v = self._verifier
        return {"nonce": self._nonce, "salt": v.salt, "n": v.n, "r": v.r, "p": v.p}

    def verify(self, answer: Mapping[str, Any]) -> dict[str, Any]:
        """Check the client's proof; return ``{"signature": 32 bytes}`` for the client to
        check. AuthFailed for a wrong, malformed or replayed proof, an unknown user, and
        any call after the first."""
        if self._used:
            _fail()
        self._used = True
        proof = _fields(answer, _ANSWER_KEYS)["proof"]
        if type(proof) is not bytes or len(proof) != _KEY_SIZE:
            _fail()
        stored_key = self._verifier.stored_key
        client_key = _xor(proof, _hmac(stored_key, self._message))
        if not hmac.compare_digest(_sha256(client_key), stored_key) or self._decoy:
            _fail()
        return {"signature": _hmac(self._verifier.server_key, self._message)}
