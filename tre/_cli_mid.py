"""The MID commands of the ``tre`` CLI (issue 6, section 3): ``tre mid ...``.

- ``cert`` (device side) writes the document an issuer makes packages from: JSON
  ``{"ueid": hex, "mid_key": hex, "device_cert": PEM}`` -- the device's UEID, the public
  half of its mno ``mid-hpke`` key (X25519) and its DeviceID certificate.
- ``package`` (issuer side, no device needed) makes an HPKE-bound MID package
  (tre/_midpackage.py) from that document (``--device-cert FILE``), signed with the mno
  owner's Ed25519 key (the factory's ``owners/mno.key``). With ``--ca`` the DeviceID
  certificate is first checked to chain to the manufacturer CA and to name the UEID.
- ``install``, ``list``, ``enable``, ``disable``, ``delete``, ``authenticate`` (device side)
  boot the provisioned device and call the mno domain as the host.

K and OPc are only ever read from the issuer's command line; no command prints them. A MAC
failure in ``authenticate`` exits with status 3 (one line); other errors exit 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import trio
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding

import attestation

from ._cli_json import print_json
from ._context import endorsed_bytes
from ._errors import ConfigError, RemoteError
from ._midpackage import TXID_LEN, hpke_seal, mid_info, pack_header, signed_bytes
from ._runtime import open_tre

__all__ = ["MAC_FAILURE_STATUS", "add_mid_commands"]

#: the exit status of ``tre mid authenticate`` when AUTN's MAC does not verify
MAC_FAILURE_STATUS = 3
CMDLINE = "<command line>"


def _hex(value: str, what: str, size: int) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ConfigError(CMDLINE, what, "must be hexadecimal") from None
    if len(raw) != size:
        raise ConfigError(CMDLINE, what, f"must be {size} bytes ({2 * size} hex digits)")
    return raw


def _imsi(value: str) -> str:
    if not (value.isascii() and value.isdigit() and 6 <= len(value) <= 15):
        raise ConfigError(CMDLINE, "--imsi", "must be 6 to 15 digits")
    return value


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror or exc}") from None


def _hexed(data: Any) -> Any:
    if isinstance(data, bytes):
        return data.hex()
    if isinstance(data, dict):
        return {k: _hexed(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_hexed(v) for v in data]
    return data


def _call(state: str, method: str, body: Any = None) -> Any:
    """Boot the device in ``state``, call ``mno.method`` as the host, shut down."""

    async def run() -> Any:
        async with open_tre(state=state) as t:
            return await t.call("mno", method, body)

    return trio.run(run)


# --- device side ------------------------------------------------------------------------


def cmd_mid_cert(args: argparse.Namespace) -> int:
    async def run() -> dict[str, str]:
        async with open_tre(state=args.state) as t:
            key = await t.call("mno", "mid_key")
            pem = t.device_certificate.public_bytes(Encoding.PEM).decode()
            alias = x509.load_der_x509_certificate(key["certificate"])
            return {
                "ueid": t.device.ueid,
                "mid_key": key["public"].hex(),
                "device_cert": pem,
                "alias_cert": alias.public_bytes(Encoding.PEM).decode(),
                "mid_key_sig": key["signature"].hex(),
            }

    doc = trio.run(run)
    Path(args.out).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"MID key of UEID {doc['ueid']}: {args.out}")
    return 0


def cmd_mid_install(args: argparse.Namespace) -> int:
    out = _call(args.state, "install_package", {"package": _read(args.package)})
    if args.json:
        print_json(out)
    else:
        print(f"installed MID {out['imsi']} ({out['state']})")
    return 0


def cmd_mid_list(args: argparse.Namespace) -> int:
    mids = _call(args.state, "mids")
    if args.imsi is not None:
        mids = [m for m in mids if m["imsi"] == args.imsi]
    if args.json:
        print_json(mids)
        return 0
    for m in mids:
        print(f"{m['imsi']:<16} {m['state']:<10} sqn {m['sqn']}")
    if not mids:
        print("no MIDs")
    return 0


def _move(method: str) -> Any:
    def cmd(args: argparse.Namespace) -> int:
        out = _call(args.state, method, {"imsi": _imsi(args.imsi)})
        if args.json:
            print_json(out)
        else:
            print(f"MID {out['imsi']}: {out['state']}")
        return 0

    return cmd


def cmd_mid_authenticate(args: argparse.Namespace) -> int:
    body = {
        "imsi": _imsi(args.imsi),
        "rand": _hex(args.rand, "--rand", 16),
        "autn": _hex(args.autn, "--autn", 16),
    }
    try:
        out = _call(args.state, "authenticate", body)
    except RemoteError as exc:
        if exc.remote_code == "MAC_FAILURE":
            print("tre: error: MAC failure", file=sys.stderr)
            return MAC_FAILURE_STATUS
        raise
    result = _hexed(out)
    if args.json:
        print_json(result)
    else:
        for name in ("res", "ck", "ik", "auts"):
            if name in result:
                print(f"{name.upper()}: {result[name]}")
    return 0


# --- issuer side ------------------------------------------------------------------------


def _device_doc(path: str, ca_path: str | None) -> tuple[bytes, X25519PublicKey]:
    try:
        doc = json.loads(_read(path))
        ueid = bytes.fromhex(doc["ueid"])
        raw_key = bytes.fromhex(doc["mid_key"])
        mid_key = X25519PublicKey.from_public_bytes(raw_key)
        cert = attestation.load_cert_pem(doc["device_cert"].encode())
        alias = attestation.load_cert_pem(doc["alias_cert"].encode())
        signature = bytes.fromhex(doc["mid_key_sig"])
    except (ValueError, KeyError, TypeError, AttributeError, attestation.AttestationError):
        raise ConfigError(path, "", "is not a document from 'tre mid cert'") from None
    # The MID key is endorsed by the mno domain's alias key (ctx.endorse): check that it
    # signed exactly this key and UEID, and that the alias certificate names mno.
    alias_public = alias.public_key()
    try:
        if not isinstance(alias_public, Ed25519PublicKey):
            raise InvalidSignature
        alias_public.verify(signature, endorsed_bytes("mno", raw_key + ueid))
        if attestation.read_tcb_info(alias)["domain_id"] != "mno":
            raise InvalidSignature
    except (InvalidSignature, attestation.AttestationError):
        raise ConfigError(path, "mid_key", "is not endorsed by the device's mno domain") from None
    if ca_path is not None:
        try:
            ca = attestation.load_cert_pem(_read(ca_path))
            ca.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature, attestation.AttestationError):
            raise ConfigError(ca_path, "", "is not a self-signed CA certificate") from None
        try:
            attestation.verify_chain(cert, [], ca, dt.datetime.now(dt.UTC))
            attestation.verify_chain(alias, [cert], ca, dt.datetime.now(dt.UTC))
            if attestation.device_ueid(cert) != ueid:
                raise ConfigError(path, "ueid", "is not the UEID its DeviceID certificate names")
        except attestation.AttestationError as exc:
            raise ConfigError(path, "device_cert", f"does not chain to the CA: {exc}") from None
    return ueid, mid_key


def cmd_mid_package(args: argparse.Namespace) -> int:
    imsi = _imsi(args.imsi)
    k, opc = _hex(args.k, "--k", 16), _hex(args.opc, "--opc", 16)
    sqn = int.from_bytes(_hex(args.sqn, "--sqn", 6), "big")
    amf = _hex(args.amf, "--amf", 2)
    try:
        issuer = attestation.load_private_key_pem(_read(args.issuer_key))
    except (ValueError, TypeError, attestation.AttestationError):
        issuer = None
    if not isinstance(issuer, Ed25519PrivateKey):
        raise ConfigError(args.issuer_key, "", "is not an Ed25519 private key (PEM)")
    ueid, mid_key = _device_doc(args.device_cert, args.ca)
    counter = args.counter if args.counter is not None else time.time_ns()
    header = pack_header(imsi, os.urandom(TXID_LEN), counter, ueid)
    secret = {"imsi": imsi, "k": k, "opc": opc, "sqn": sqn, "amf": amf}
    plaintext = msgpack.packb(secret, use_bin_type=True)
    enc, ct = hpke_seal(mid_key, plaintext, mid_info(ueid), header)
    sig = issuer.sign(signed_bytes(header, enc, ct))
    package = msgpack.packb({"header": header, "enc": enc, "ct": ct, "sig": sig}, use_bin_type=True)
    Path(args.out).write_bytes(package)
    print(f"MID package for IMSI {imsi}, UEID {ueid.hex()} (counter {counter}): {args.out}")
    return 0


def add_mid_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Register ``tre mid ...`` on the ``tre`` subparsers."""
    p = sub.add_parser("mid", help="MIDs in the mno domain: packages, lifecycle, AKA")
    msub = p.add_subparsers(dest="mid_command", metavar="ACTION", parser_class=parser_class)
    msub.required = True

    def state_opt(q: argparse.ArgumentParser) -> None:
        q.add_argument("--state", metavar="DIR", required=True, help="the device's state folder")

    def json_opt(q: argparse.ArgumentParser) -> None:
        q.add_argument("--json", action="store_true", help="print the result as JSON")

    q = msub.add_parser("cert", help="write the device's MID key document for an issuer")
    state_opt(q)
    q.add_argument("--out", metavar="FILE", required=True, help="where to write it (JSON)")
    q.set_defaults(func=cmd_mid_cert)

    q = msub.add_parser("package", help="issuer: make an HPKE-bound MID package for a device")
    q.add_argument("--issuer-key", metavar="FILE", required=True, help="mno owner key (PEM)")
    q.add_argument(
        "--device-cert",
        metavar="FILE",
        required=True,
        help="the JSON from 'tre mid cert' (UEID, MID key, DeviceID certificate)",
    )
    q.add_argument("--ca", metavar="FILE", help="check the DeviceID certificate against this CA")
    q.add_argument("--imsi", metavar="IMSI", required=True, help="6 to 15 digits")
    q.add_argument("--k", metavar="HEX", required=True, help="K, 16 bytes")
    q.add_argument("--opc", metavar="HEX", required=True, help="OPc, 16 bytes")
    q.add_argument("--sqn", metavar="HEX", default="000000000000", help="initial SQN, 6 bytes")
    q.add_argument("--amf", metavar="HEX", default="8000", help="AMF, 2 bytes (default 8000)")
    q.add_argument("--counter", type=int, help="package counter (default: time in ns)")
    q.add_argument("--out", metavar="FILE", required=True, help="where to write the package")
    q.set_defaults(func=cmd_mid_package)

    q = msub.add_parser("install", help="install a MID package on the device")
    state_opt(q)
    json_opt(q)
    q.add_argument("package", metavar="FILE", help="a package from 'tre mid package'")
    q.set_defaults(func=cmd_mid_install)

    q = msub.add_parser("list", help="the device's MIDs and their states")
    state_opt(q)
    json_opt(q)
    q.add_argument("--imsi", metavar="IMSI", help="only this MID")
    q.set_defaults(func=cmd_mid_list)

    for name, what in (
        ("enable", "enable a MID"),
        ("disable", "disable a MID"),
        ("delete", "delete a MID (crypto-erase its K and OPc)"),
    ):
        q = msub.add_parser(name, help=what)
        state_opt(q)
        json_opt(q)
        q.add_argument("--imsi", metavar="IMSI", required=True, help="the MID")
        q.set_defaults(func=_move(name))

    q = msub.add_parser("authenticate", help="run UMTS AKA: RES, CK, IK or AUTS")
    state_opt(q)
    json_opt(q)
    q.add_argument("--imsi", metavar="IMSI", required=True, help="the MID (enabled)")
    q.add_argument("--rand", metavar="HEX", required=True, help="RAND, 16 bytes")
    q.add_argument("--autn", metavar="HEX", required=True, help="AUTN, 16 bytes")
    q.set_defaults(func=cmd_mid_authenticate)
