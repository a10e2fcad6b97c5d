"""Mutually attested secure sessions between two domains: a sans-I/O state machine.

Bytes and values in, bytes and values out. The kernel carries the handshake values and the
sealed messages as ordinary call bodies, and makes and checks the local reports
(:mod:`attestation._report`); this module never sees a report. It gives each side the
``report_data`` to bind into its own report and to expect in its peer's, derives the keys,
and seals and opens messages.

Handshake (one :class:`Handshake` per side and attempt; all four values are 32 bytes)::

    initiator                                       responder
    i_nonce, i_public = X25519(i_private)           r_nonce, r_public = X25519(r_private)
    ---------------- i_nonce, i_public ---------------->
    <------- r_nonce, r_public, report(R -> I, nonce=i_nonce,
                                       report_data=REPLY) ----
    ----- report(I -> R, nonce=r_nonce, report_data=HELLO) ---->
    finish(r_nonce, r_public)                       finish(i_nonce, i_public)

    HELLO = SHA-256("tre/v1/session/hello" || i_nonce || i_public)
    REPLY = SHA-256("tre/v1/session/reply" || i_nonce || i_public || r_nonce || r_public)

Each side's report binds its own public key (and REPLY the whole transcript), and carries
the peer's nonce as the report nonce, so a man in the middle who swaps a public key breaks
a report MAC it cannot recompute. Every field has a fixed size, so the concatenations are
unambiguous.

Key schedule (HKDF-SHA256, RFC 5869; the transcript hash is the salt, so the keys depend on
both nonces and both public keys; one expansion per direction, told apart by ``info``)::

    shared  = X25519(own private, peer public)      (all-zero result refused: low-order key)
    okm_i2r = HKDF(ikm=shared, salt=REPLY, info="tre/v1/session/initiator-to-responder", 44)
    okm_r2i = HKDF(ikm=shared, salt=REPLY, info="tre/v1/session/responder-to-initiator", 44)
    key, iv = okm[:32], okm[32:44]                  (per direction)

Messages (ChaCha20-Poly1305, RFC 8439)::

    header  = counter as 8 bytes big-endian         (0, 1, 2, ... per direction)
    nonce   = iv XOR counter as 12 bytes big-endian (RFC 8446 section 5.3)
    message = header || ChaCha20-Poly1305(key, nonce, plaintext, aad = header || aad)

A sender never reuses a counter and refuses to seal past ``rekey_after`` messages (there is
no rekeying: the session must end). A receiver checks the tag first, then the counter
against ``rekey_after`` and a sliding replay window (:class:`ipc.ReplayWindow`): a message
is accepted at most once, out of order within the window, never once it fell behind it.
The two directions have different keys, so a message cannot be reflected to its sender.

ChaCha20-Poly1305 rather than AES-GCM: it runs in constant time in plain software on any CPU,
whereas AES-GCM is only fast and free of timing leaks with AES and carry-less-multiply
instructions, which the CPU of a device hosting a TRE may lack; it always has a 256-bit key;
and it is the AEAD of WireGuard and the Noise protocols, whose handshake pattern this
follows. Both are equally fragile under nonce reuse, which the counter nonces rule out.

Every failure is :class:`SessionError` (``code = "SESSION"``), one opaque error with a
stable ``reason`` for logs and tests; :class:`SessionClosed` (``"SESSION_CLOSED"``) after
:meth:`SecureSession.close`. Keys never appear in a repr or an error.
"""

from __future__ import annotations

import enum
import hashlib
import os

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._errors import TREError
from ._replay import ReplayWindow

__all__ = [
    "DEFAULT_SESSION_LIMITS",
    "HANDSHAKE_TRANSITIONS",
    "SESSION_HEADER_SIZE",
    "SESSION_NONCE_SIZE",
    "SESSION_PUBLIC_SIZE",
    "SESSION_REASONS",
    "SESSION_TAG_SIZE",
    "SESSION_TRANSITIONS",
    "Handshake",
    "HandshakeState",
    "Role",
    "SecureSession",
    "SessionClosed",
    "SessionError",
    "SessionLimits",
    "SessionState",
    "hello_transcript",
    "reply_transcript",
]

#: Size of each side's handshake nonce (the report nonce the peer binds) and public key.
SESSION_NONCE_SIZE = 32
SESSION_PUBLIC_SIZE = 32
#: The send counter in front of every message.
SESSION_HEADER_SIZE = 8
#: The Poly1305 tag at the end of every message.
SESSION_TAG_SIZE = 16
_OVERHEAD = SESSION_HEADER_SIZE + SESSION_TAG_SIZE

_HELLO_LABEL = b"tre/v1/session/hello"
_REPLY_LABEL = b"tre/v1/session/reply"
_I2R_INFO = b"tre/v1/session/initiator-to-responder"
_R2I_INFO = b"tre/v1/session/responder-to-initiator"
_KEY_SIZE = 32  # ChaCha20-Poly1305
_IV_SIZE = 12  # its nonce
_COUNTER_LIMIT = 1 << (8 * SESSION_HEADER_SIZE)  # counters must fit the header
#: Largest replay window: 64 Ki bits of bitmap (8 KiB) per session; RFC 6479 windows are
#: a few thousand messages at most.
_MAX_WINDOW = 1 << 16
#: cryptography's AEADs take at most 2**31 - 1 bytes; stay well below.
_MAX_MESSAGE = 1 << 30


# --- errors -------------------------------------------------------------------------------

#: Stable values of :attr:`SessionError.reason`.
SESSION_REASONS = frozenset(
    {
        "bad-tag",  # the AEAD tag does not check: tampered, wrong key, wrong aad, reflected
        "replay",  # an authentic message whose counter was already accepted
        "too-old",  # an authentic message whose counter fell behind the replay window
        "malformed",  # not bytes, too short or too long; a peer value of the wrong size
        "exhausted",  # a counter at or past SessionLimits.rekey_after
        "bad-key",  # the peer's public key gives a low-order (all-zero) shared secret
        "too-large",  # a plaintext over SessionLimits.max_message (local: not sent)
        "state",  # not allowed in the handshake's state (e.g. finishing it twice)
        "closed",  # the session was closed (SessionClosed)
    }
)

# What a peer may learn: one message whatever went wrong with its input.
_OPAQUE = "secure session message refused"


class SessionError(TREError):
    """A secure-session operation failed: one opaque error for every kind of failure.

    ``code`` is always ``"SESSION"`` and, for anything the peer sent, the message is always
    the same; ``reason`` (one of :data:`SESSION_REASONS`) says which check failed, for logs
    and tests. A failed :meth:`SecureSession.open` leaves the session usable (the message
    is dropped, as DTLS drops bad records); a failed :meth:`Handshake.finish` ends the
    handshake.
    """

    code = "SESSION"

    def __init__(self, reason: str, message: str = "") -> None:
        if reason not in SESSION_REASONS:
            raise ValueError(f"unknown SessionError reason {reason!r}")
        super().__init__(message or _OPAQUE)
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, message={self.message!r})"


class SessionClosed(SessionError):
    """The session was closed: every later seal or open raises this (reason ``"closed"``)."""

    code = "SESSION_CLOSED"

    def __init__(self, message: str = "the secure session is closed") -> None:
        super().__init__("closed", message)


# --- limits -------------------------------------------------------------------------------


@attrs.frozen
class SessionLimits:
    """Bounds of one secure session, with their reasons."""

    #: Replay window, in messages: how far out of order an authentic message may arrive and
    #: still be accepted (RFC 4303 requires 32 and recommends 64).
    window: int = 64
    #: Largest plaintext, in bytes: what one ipc frame can carry (``Limits.max_frame_bytes``),
    #: since a sealed message travels inside one call body. The frame limit, which also
    #: counts the envelope and the 24 bytes of header and tag, is the tighter in practice.
    max_message: int = 1 << 20
    #: Messages per direction before the session must end (counters 0..rekey_after - 1).
    #: Conservative: far inside the 2**64 nonces ChaCha20-Poly1305 allows per key, so one key
    #: never protects an unbounded stream. No rekeying: a new session is a new handshake.
    rekey_after: int = 2**32

    def __attrs_post_init__(self) -> None:
        bounds = {
            "window": _MAX_WINDOW,
            "max_message": _MAX_MESSAGE,
            "rekey_after": _COUNTER_LIMIT,
        }
        for name, high in bounds.items():
            value = getattr(self, name)
            if type(value) is not int or not 1 <= value <= high:
                raise ValueError(f"SessionLimits.{name} must be an int in 1..{high}, got {value!r}")


DEFAULT_SESSION_LIMITS = SessionLimits()


# --- the state machines, as tables (h11 _state.py style) ---------------------------------


class Role(enum.StrEnum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


class HandshakeState(enum.StrEnum):
    START = "start"  # keys made; transcripts available; waiting for the peer's values
    DONE = "done"  # final: finish() returned the SecureSession
    ERROR = "error"  # final: finish() failed; start a new attempt


class SessionState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"  # final


class _Event(enum.Enum):
    FINISH = "finish"
    FAIL = "fail"
    SEAL = "seal"
    OPEN = "open"
    CLOSE = "close"


# Bound once: enum member lookups through the class cost more than a global on the hot path.
_SEAL, _OPEN, _CLOSE = _Event.SEAL, _Event.OPEN, _Event.CLOSE

#: Every legal handshake move; anything else raises SessionError("state").
HANDSHAKE_TRANSITIONS: dict[HandshakeState, dict[_Event, HandshakeState]] = {
    HandshakeState.START: {
        _Event.FINISH: HandshakeState.DONE,
        _Event.FAIL: HandshakeState.ERROR,
    },
    HandshakeState.DONE: {},
    HandshakeState.ERROR: {},
}

#: Every legal session move; anything else raises SessionClosed. close() is idempotent.
SESSION_TRANSITIONS: dict[SessionState, dict[_Event, SessionState]] = {
    SessionState.OPEN: {
        _Event.SEAL: SessionState.OPEN,
        _Event.OPEN: SessionState.OPEN,
        _Event.CLOSE: SessionState.CLOSED,
    },
    SessionState.CLOSED: {
        _Event.CLOSE: SessionState.CLOSED,
    },
}


# --- transcripts --------------------------------------------------------------------------


def _as_bytes(value: object) -> bytes:
    """Bytes-like input from the peer as bytes, else SessionError("malformed")."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise SessionError("malformed")


def _check_value(value: object) -> bytes:
    """A 32-byte nonce or public key from the peer, else SessionError("malformed")."""
    value = _as_bytes(value)
    if len(value) != SESSION_NONCE_SIZE:
        raise SessionError("malformed")
    return value


def hello_transcript(i_nonce: bytes, i_public: bytes) -> bytes:
    """The initiator's report_data: SHA-256("tre/v1/session/hello" || i_nonce || i_public)."""
    return hashlib.sha256(_HELLO_LABEL + _check_value(i_nonce) + _check_value(i_public)).digest()


def reply_transcript(i_nonce: bytes, i_public: bytes, r_nonce: bytes, r_public: bytes) -> bytes:
    """The responder's report_data, and the HKDF salt: SHA-256("tre/v1/session/reply" ||
    i_nonce || i_public || r_nonce || r_public)."""
    fields = (i_nonce, i_public, r_nonce, r_public)
    return hashlib.sha256(_REPLY_LABEL + b"".join(_check_value(f) for f in fields)).digest()


def _direction(shared: bytes, salt: bytes, info: bytes) -> tuple[ChaCha20Poly1305, int]:
    okm = HKDF(algorithm=hashes.SHA256(), length=_KEY_SIZE + _IV_SIZE, salt=salt, info=info)
    material = okm.derive(shared)
    return ChaCha20Poly1305(material[:_KEY_SIZE]), int.from_bytes(material[_KEY_SIZE:], "big")


# --- the handshake ------------------------------------------------------------------------


class Handshake:
    """One side of one session attempt: an ephemeral X25519 key and a 32-byte nonce.

    Make it with :meth:`initiator` or :meth:`responder`, send :attr:`nonce` and
    :attr:`public` to the peer, bind the transcript into this side's report, check the
    peer's report against the transcript, then :meth:`finish` once with the peer's values.
    """

    __slots__ = ("_limits", "_nonce", "_private", "_public", "_role", "_state")

    def __init__(
        self,
        role: Role,
        nonce: bytes | None,
        private: X25519PrivateKey | None,
        limits: SessionLimits,
    ) -> None:
        if not isinstance(limits, SessionLimits):
            raise TypeError(f"limits must be SessionLimits, not {type(limits).__name__}")
        if private is None:
            private = X25519PrivateKey.generate()
        elif not isinstance(private, X25519PrivateKey):
            raise TypeError(f"private must be an X25519PrivateKey, not {type(private).__name__}")
        if nonce is None:
            nonce = os.urandom(SESSION_NONCE_SIZE)
        elif type(nonce) is not bytes or len(nonce) != SESSION_NONCE_SIZE:
            raise ValueError(f"the handshake nonce must be {SESSION_NONCE_SIZE} bytes")
        self._role = role
        self._nonce = nonce
        self._private: X25519PrivateKey | None = private
        self._public = private.public_key().public_bytes_raw()
        self._limits = limits
        self._state = HandshakeState.START

    @classmethod
    def initiator(
        cls,
        nonce: bytes | None = None,
        private: X25519PrivateKey | None = None,
        *,
        limits: SessionLimits = DEFAULT_SESSION_LIMITS,
    ) -> Handshake:
        """The side that opens the session. ``nonce`` (32 bytes) and ``private`` are made
        fresh when not given; pass them only for known-answer tests."""
        return cls(Role.INITIATOR, nonce, private, limits)

    @classmethod
    def responder(
        cls,
        nonce: bytes | None = None,
        private: X25519PrivateKey | None = None,
        *,
        limits: SessionLimits = DEFAULT_SESSION_LIMITS,
    ) -> Handshake:
        """The side that accepts the session; see :meth:`initiator`."""
        return cls(Role.RESPONDER, nonce, private, limits)

    @property
    def role(self) -> Role:
        return self._role

    @property
    def state(self) -> HandshakeState:
        return self._state

    @property
    def nonce(self) -> bytes:
        """This side's 32-byte nonce: the peer uses it as the nonce of ITS report."""
        return self._nonce

    @property
    def public(self) -> bytes:
        """This side's raw 32-byte X25519 public key."""
        return self._public

    @property
    def limits(self) -> SessionLimits:
        return self._limits

    def transcript_hello(
        self, peer_nonce: bytes | None = None, peer_public: bytes | None = None
    ) -> bytes:
        """HELLO, the initiator's report_data.

        On the initiator, called without arguments: what it binds into its own report. On
        the responder, called with the initiator's nonce and public key: what the
        initiator's report must carry. SessionError("malformed") for a peer value of the
        wrong size.
        """
        if self._role is Role.INITIATOR:
            if peer_nonce is not None or peer_public is not None:
                raise TypeError("the initiator's hello is its own: pass no peer values")
            return hello_transcript(self._nonce, self._public)
        if peer_nonce is None or peer_public is None:
            raise TypeError("the responder needs the initiator's nonce and public key")
        return hello_transcript(peer_nonce, peer_public)

    def transcript_reply(self, peer_nonce: bytes, peer_public: bytes) -> bytes:
        """REPLY over both sides' values, the same on both sides.

        On the responder: what it binds into its own report. On the initiator: what the
        responder's report must carry. SessionError("malformed") for a peer value of the
        wrong size.
        """
        if self._role is Role.INITIATOR:
            return reply_transcript(self._nonce, self._public, peer_nonce, peer_public)
        return reply_transcript(peer_nonce, peer_public, self._nonce, self._public)

    def _next(self, event: _Event) -> HandshakeState:
        new = HANDSHAKE_TRANSITIONS[self._state].get(event)
        if new is None:
            raise SessionError("state", f"cannot {event.value} a handshake in state {self._state}")
        return new

    def finish(self, peer_nonce: bytes, peer_public: bytes) -> SecureSession:
        """Agree keys with the peer's nonce and public key; return the session. Once only.

        The caller must have checked the peer's report (that it binds this transcript)
        before; this only derives keys. Raises SessionError: ``"state"`` if the handshake
        already finished or failed, ``"malformed"`` for peer values of the wrong size,
        ``"bad-key"`` for a low-order peer key (or this side's own key reflected back).
        Any failure moves the handshake to ERROR, and this side's private key is dropped
        either way.
        """
        done = self._next(_Event.FINISH)  # SessionError("state") unless START
        failed = self._next(_Event.FAIL)
        private, self._private = self._private, None  # one use: forward secrecy
        assert private is not None  # START always holds the key
        try:
            session = self._derive(private, peer_nonce, peer_public)
        except BaseException:
            self._state = failed
            raise
        self._state = done
        return session

    def _derive(
        self, private: X25519PrivateKey, peer_nonce: bytes, peer_public: bytes
    ) -> SecureSession:
        transcript = self.transcript_reply(peer_nonce, peer_public)  # checks sizes
        peer_public = _check_value(peer_public)
        if peer_public == self._public:
            raise SessionError("bad-key")
        try:
            shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
        except ValueError:  # OpenSSL refuses an all-zero result (RFC 7748 section 6.1)
            raise SessionError("bad-key") from None
        if shared == bytes(len(shared)):  # belt and braces: never key a session with zeros
            raise SessionError("bad-key")
        i2r = _direction(shared, transcript, _I2R_INFO)
        r2i = _direction(shared, transcript, _R2I_INFO)
        send, receive = (i2r, r2i) if self._role is Role.INITIATOR else (r2i, i2r)
        return SecureSession(self._role, transcript, send, receive, self._limits)

    def __repr__(self) -> str:
        return f"Handshake(role={self._role.value!r}, state={self._state.value!r})"


# --- the session --------------------------------------------------------------------------


class SecureSession:
    """An open, mutually attested session: :meth:`seal` to send, :meth:`open` to receive.

    Made by :meth:`Handshake.finish`, not directly. Not thread-safe (one owner, like every
    sans-I/O object here).
    """

    __slots__ = (
        "_limits",
        "_max_message",
        "_recv",
        "_recv_iv",
        "_rekey_after",
        "_role",
        "_send",
        "_send_counter",
        "_send_iv",
        "_state",
        "_transcript",
        "_window",
    )

    def __init__(
        self,
        role: Role,
        transcript: bytes,
        send: tuple[ChaCha20Poly1305, int],
        receive: tuple[ChaCha20Poly1305, int],
        limits: SessionLimits,
    ) -> None:
        self._role = role
        self._transcript = transcript
        self._send: ChaCha20Poly1305 | None = send[0]
        self._send_iv = send[1]
        self._recv: ChaCha20Poly1305 | None = receive[0]
        self._recv_iv = receive[1]
        self._limits = limits
        self._max_message = limits.max_message
        self._rekey_after = limits.rekey_after
        self._send_counter = 0
        self._window = ReplayWindow(limits.window)
        self._state = SessionState.OPEN

    @property
    def role(self) -> Role:
        return self._role

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def transcript(self) -> bytes:
        """REPLY, the 32-byte hash of the handshake: equal on both sides, public, a channel
        binding (RFC 5056) for whatever runs over the session."""
        return self._transcript

    @property
    def limits(self) -> SessionLimits:
        return self._limits

    @property
    def sent(self) -> int:
        """Messages sealed so far (the next send counter)."""
        return self._send_counter

    def _move(self, event: _Event) -> None:
        new = SESSION_TRANSITIONS[self._state].get(event)
        if new is None:
            raise SessionClosed()
        if new is not self._state:
            self._state = new

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Encrypt and authenticate ``plaintext`` (and ``aad``, which is not sent: the peer
        passes the same to :meth:`open`). Returns header || ciphertext || tag.

        SessionError ``"too-large"`` over ``max_message`` bytes, ``"exhausted"`` after
        ``rekey_after`` messages; SessionClosed after :meth:`close`.
        """
        self._move(_SEAL)
        counter = self._send_counter
        if counter >= self._rekey_after:
            raise SessionError("exhausted", "the session sent its last message: open a new one")
        if len(plaintext) > self._max_message:
            raise SessionError("too-large", f"plaintext over {self._limits.max_message} bytes")
        header = counter.to_bytes(SESSION_HEADER_SIZE, "big")
        nonce = (self._send_iv ^ counter).to_bytes(_IV_SIZE, "big")
        self._send_counter = counter + 1  # consumed even if encrypt fails: never reused
        assert self._send is not None  # OPEN holds the keys
        return header + self._send.encrypt(nonce, plaintext, header + aad)

    def open(self, message: bytes, aad: bytes = b"") -> bytes:
        """Check and decrypt one message from the peer; return its plaintext.

        Order: size (``"malformed"``), AEAD tag over header, ciphertext and ``aad``
        (``"bad-tag"``), then the authenticated counter: ``"exhausted"`` at or past
        ``rekey_after``, ``"replay"`` if already accepted, ``"too-old"`` if behind the
        window. A refused message changes nothing; the session stays open.
        SessionClosed after :meth:`close`.
        """
        self._move(_OPEN)
        if type(message) is not bytes:
            message = _as_bytes(message)
        size = len(message)
        if not _OVERHEAD <= size <= _OVERHEAD + self._max_message:
            raise SessionError("malformed")
        header = message[:SESSION_HEADER_SIZE]
        counter = int.from_bytes(header, "big")
        nonce = (self._recv_iv ^ counter).to_bytes(_IV_SIZE, "big")
        assert self._recv is not None  # OPEN holds the keys
        try:
            plaintext = self._recv.decrypt(nonce, message[SESSION_HEADER_SIZE:], header + aad)
        except InvalidTag:
            raise SessionError("bad-tag") from None
        if counter >= self._rekey_after:
            raise SessionError("exhausted")
        reason = self._window.accept(counter)
        if reason is not None:
            raise SessionError(reason)
        return plaintext

    def close(self) -> None:
        """Close the session and drop its keys. Idempotent; seal and open then raise
        SessionClosed."""
        self._move(_CLOSE)
        self._send = self._recv = None
        self._send_iv = self._recv_iv = 0

    def __repr__(self) -> str:
        return (
            f"SecureSession(role={self._role.value!r}, state={self._state.value!r}, "
            f"sent={self._send_counter}, received_top={self._window.top})"
        )
