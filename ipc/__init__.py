"""The wire between domains: frames, envelopes, limits. Sans-I/O.

``ipc`` never touches a socket, a file or an event loop (a test enforces that it imports
neither trio nor asyncio/socket/selectors): it turns envelopes into bytes and bytes into
envelopes, so the kernel can carry them over a trio memory channel or a socket alike, and
tests can drive it with plain bytes. It follows h11's pattern: feed received bytes to a
:class:`FrameDecoder` with ``receive_data()`` (``b""`` = end of stream) and pull envelopes
with ``next_event()`` until it returns :data:`NEED_DATA` or :data:`CLOSED`; turn an envelope
into bytes to send with :func:`frame`.

Stream layout: a 4-byte big-endian unsigned body length (:data:`HEADER_SIZE`), then the body:
one msgpack array, the envelope (msgpack-rpc numbering, plus ERROR)::

    kind              wire array                               reply
    ----------------  ---------------------------------------  -------------------------
    0 REQUEST         [0, msgid, method, deadline, body]       one RESPONSE or ERROR
    1 RESPONSE        [1, msgid, body]                         -
    2 NOTIFICATION    [2, method, body]                        none
    3 ERROR           [3, msgid, code, message]                -

``msgid`` is a uint32 (never a bool); ``method`` a non-empty str; ``deadline`` a relative
budget in seconds (float >= 0, finite) or nil for the receiver's default; ``code`` a
``[A-Z0-9_]+`` constant; ``body`` any msgpack value built from nil, bool, int, float, str,
bin, arrays and str-keyed maps, nested at most :attr:`Limits.max_depth` deep (the envelope
array not counted). Extension types, timestamps included, are refused.

Every fault in received bytes raises :class:`InvalidFrame` (``code = "INVALID_FRAME"``)
with a stable ``reason`` from :data:`REASONS`, and never any other exception.

Besides the wire: :mod:`ipc._session` (mutually attested secure sessions between domains)
and :mod:`ipc._hostauth` (SCRAM-style password authentication of host users, in which the
password never crosses; every failure is :class:`AuthFailed`).
"""

from ._codec import decode as decode
from ._codec import decode_value as decode_value
from ._codec import encode as encode
from ._codec import encode_value as encode_value
from ._envelope import Envelope as Envelope
from ._envelope import Error as Error
from ._envelope import Kind as Kind
from ._envelope import Notification as Notification
from ._envelope import Request as Request
from ._envelope import Response as Response
from ._envelope import from_wire as from_wire
from ._errors import REASONS as REASONS
from ._errors import InvalidFrame as InvalidFrame
from ._errors import TREError as TREError
from ._frame import CLOSED as CLOSED
from ._frame import HEADER_SIZE as HEADER_SIZE
from ._frame import NEED_DATA as NEED_DATA
from ._frame import FrameDecoder as FrameDecoder
from ._frame import frame as frame
from ._frame import frame_body as frame_body
from ._hostauth import USER_RE as USER_RE
from ._hostauth import AuthFailed as AuthFailed
from ._hostauth import ClientAuth as ClientAuth
from ._hostauth import ServerAuth as ServerAuth
from ._hostauth import Verifier as Verifier
from ._hostauth import make_verifier as make_verifier
from ._limits import DEFAULT_LIMITS as DEFAULT_LIMITS
from ._limits import Limits as Limits
from ._local import LocalCodec as LocalCodec
from ._replay import ReplayWindow as ReplayWindow
from ._session import DEFAULT_SESSION_LIMITS as DEFAULT_SESSION_LIMITS
from ._session import SESSION_HEADER_SIZE as SESSION_HEADER_SIZE
from ._session import SESSION_NONCE_SIZE as SESSION_NONCE_SIZE
from ._session import SESSION_PUBLIC_SIZE as SESSION_PUBLIC_SIZE
from ._session import SESSION_REASONS as SESSION_REASONS
from ._session import SESSION_TAG_SIZE as SESSION_TAG_SIZE
from ._session import Handshake as Handshake
from ._session import HandshakeState as HandshakeState
from ._session import Role as Role
from ._session import SecureSession as SecureSession
from ._session import SessionClosed as SessionClosed
from ._session import SessionError as SessionError
from ._session import SessionLimits as SessionLimits
from ._session import SessionState as SessionState
from ._session import hello_transcript as hello_transcript
from ._session import reply_transcript as reply_transcript

__all__ = [
    "CLOSED",
    "DEFAULT_LIMITS",
    "DEFAULT_SESSION_LIMITS",
    "HEADER_SIZE",
    "NEED_DATA",
    "REASONS",
    "SESSION_HEADER_SIZE",
    "SESSION_NONCE_SIZE",
    "SESSION_PUBLIC_SIZE",
    "SESSION_REASONS",
    "SESSION_TAG_SIZE",
    "USER_RE",
    "AuthFailed",
    "ClientAuth",
    "Envelope",
    "Error",
    "FrameDecoder",
    "Handshake",
    "HandshakeState",
    "InvalidFrame",
    "Kind",
    "Limits",
    "LocalCodec",
    "Notification",
    "ReplayWindow",
    "Request",
    "Response",
    "Role",
    "SecureSession",
    "ServerAuth",
    "SessionClosed",
    "SessionError",
    "SessionLimits",
    "SessionState",
    "TREError",
    "Verifier",
    "decode",
    "decode_value",
    "encode",
    "encode_value",
    "frame",
    "frame_body",
    "from_wire",
    "hello_transcript",
    "make_verifier",
    "reply_transcript",
]
