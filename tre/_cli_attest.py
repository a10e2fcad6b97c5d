"""The attestation commands of the ``tre`` CLI: attest, verify, reference."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
import tomllib
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

import attestation

from ._cli_json import print_json
from ._device import Device
from ._errors import ConfigError
from ._evidence import EvidenceMaker
from ._installed import device_specs
from ._policy import Policy

__all__ = ["add_attest_commands"]


def _hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ConfigError("<command line>", what, "must be hexadecimal") from None


def _nonce(value: str) -> bytes:
    nonce = _hex(value, "--nonce")
    if not 8 <= len(nonce) <= 64:
        raise ConfigError(
            "<command line>", "--nonce", "must be 8 to 64 bytes (16 to 128 hex digits)"
        )
    return nonce


def _offline_maker(state: Path) -> tuple[Device, EvidenceMaker]:
    """Evidence for a device that is not running: measured from its installed code."""
    device = Device.open_sync(state)
    specs = device_specs(state, device.config, device.records)
    config = device.config
    policy = Policy.compile((s.manifest for s in specs), config.host.calls, ports=config.ports)
    keys = {spec.id: device.domain_keys(spec) for spec in specs}
    return device, EvidenceMaker(device, bytes.fromhex(policy.digest()), keys)


def cmd_attest(args: argparse.Namespace) -> int:
    nonce = _nonce(args.nonce)
    device, maker = _offline_maker(Path(args.state))
    try:
        evidence = maker.evidence(nonce)
        detail = f"evidence made offline (nonce of {len(nonce)} bytes)"
        # An events row: the audit log takes it in at the next boot, like a running TRE's
        # own record of each attestation request.
        device.store.sync.write(
            lambda conn: conn.execute(
                "INSERT INTO events(time, kind, domain, detail) VALUES (?, 'attest', 'tre', ?)",
                (time.time(), detail),
            )
        )
    finally:
        device.store.sync.close()
    Path(args.out).write_bytes(evidence)
    print(
        f"evidence for UEID {device.ueid.hex()} (boot count {device.boot_count}, "
        f"{len(device.records)} domains): {args.out} ({len(evidence)} bytes)"
    )
    return 0


def _load_table(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from None
    try:
        data: dict[str, Any] = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), "", f"not valid {path.suffix or 'TOML'}: {exc}") from None
    return data


def cmd_reference(args: argparse.Namespace) -> int:
    device, maker = _offline_maker(Path(args.state))
    policy_hash = maker.policy_hash
    try:
        domains = {
            domain_id: attestation.DomainReference(
                measurements=frozenset({keys.measurement}),
                owner_hash=keys.owner_hash,
                min_svn=keys.svn,
            )
            for domain_id, keys in maker.domain_keys().items()
        }
    finally:
        device.store.sync.close()
    reference = attestation.Reference(
        domains=domains,
        tre_measurements=frozenset({device.tre_measurement}),
        policy_hashes=frozenset({policy_hash}),
    )
    Path(args.out).write_text(
        json.dumps(attestation.reference_to_dict(reference), indent=2, sort_keys=True) + "\n"
    )
    print(f"reference values for {len(domains)} domains: {args.out}")
    return 0


def _read_history(path: Path) -> dict[str, int]:
    """The verifier's memory: UEID (hex) -> last boot count seen. Always JSON."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(str(path), "", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", "must be a JSON object of UEID -> boot count")
    for key, value in data.items():
        if type(value) is not int or value < 0:
            raise ConfigError(str(path), str(key), "must be a non-negative integer boot count")
    return data


def cmd_verify(args: argparse.Namespace) -> int:
    nonce = _nonce(args.nonce)
    try:
        evidence = Path(args.evidence).read_bytes()
        ca = attestation.load_cert_pem(Path(args.ca).read_bytes())
    except OSError as exc:
        raise ConfigError(str(exc.filename), "", f"cannot read: {exc.strerror}") from None
    # The trust anchor's own signature is checked once, here, where it is loaded (the
    # appraisal then trusts it as delivered, RFC 5280 section 6.1).
    try:
        ca.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError(args.ca, "", "is not a self-signed CA certificate") from None
    reference = None
    if args.reference:
        try:
            reference = attestation.parse_reference(_load_table(Path(args.reference)))
        except attestation.AttestationError as exc:
            raise ConfigError(args.reference, "", exc.message) from None
    history = _read_history(Path(args.history)) if args.history else {}
    # The verifier learns the UEID only from the evidence; look the last boot count up after
    # a first pass, then appraise with it (the appraisal itself stays one call, I/O-free).
    now = dt.datetime.now(dt.UTC)
    first = attestation.verify_evidence(evidence, ca=ca, nonce=nonce, now=now, reference=reference)
    last = history.get(first.ueid.hex()) if first.ueid is not None else None
    result = first
    if last is not None:
        result = attestation.verify_evidence(
            evidence, ca=ca, nonce=nonce, now=now, reference=reference, last_bootcount=last
        )
    if args.history and result.status == "affirming" and result.ueid is not None:
        history[result.ueid.hex()] = int(result.bootcount or 0)
        Path(args.history).write_text(json.dumps(history, indent=2, sort_keys=True) + "\n")
    if args.json:
        print_json(result.to_dict())
    else:
        print(f"status: {result.status}")
        for claim, tier in sorted(result.vector.items()):
            print(f"  {claim:<18} {tier}")
        for problem in result.problems:
            print(f"  problem: {problem}")
    return 0 if result.status == "affirming" else 1


def add_attest_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("attest", help="write remote attestation evidence (an EAT) for a nonce")
    p.add_argument("--state", metavar="DIR", required=True, help="the device's state folder")
    p.add_argument("--nonce", metavar="HEX", required=True, help="the verifier's nonce, 8-64 bytes")
    p.add_argument("--out", metavar="FILE", required=True, help="where to write the evidence")
    p.set_defaults(func=cmd_attest)

    p = sub.add_parser("verify", help="appraise evidence; exit 0 only when affirming")
    p.add_argument("--evidence", metavar="FILE", required=True, help="evidence from tre attest")
    p.add_argument("--ca", metavar="FILE", required=True, help="the manufacturer CA (PEM)")
    p.add_argument("--nonce", metavar="HEX", required=True, help="the nonce you issued")
    p.add_argument("--reference", metavar="FILE", help="reference values (JSON or TOML)")
    p.add_argument("--history", metavar="FILE", help="last boot count per UEID (JSON; updated)")
    p.add_argument("--json", action="store_true", help="print the appraisal as JSON")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("reference", help="write reference values from a known-good device")
    p.add_argument("--state", metavar="DIR", required=True, help="the device's state folder")
    p.add_argument("--out", metavar="FILE", required=True, help="where to write them (JSON)")
    p.set_defaults(func=cmd_reference)
