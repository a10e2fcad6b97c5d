"""``tre package keygen|build|sign|show``: the owner's side of signed domain packages.

A package file is a msgpack bundle ``{"format": "tre-package/1", "envelope": bytes,
"files": {relative path: contents}}``: the envelope is the TUF-style signed metadata of
:mod:`attestation._update` (target, release counter, expiry, each file's SHA-256 and
length), the files are what it describes. Signing adds a signature to the envelope over
its exact signed bytes; installing on a device (later work) verifies it with
:func:`attestation.verify_package` and :func:`attestation.check_files`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import attestation

from ._cli_json import days_arg, print_json
from ._errors import ConfigError
from ._factory import write_new_file, write_secret_file
from ._loader import load_domain_dir
from ._measure import code_files, read_tree, tre_roots

__all__ = ["FORMAT", "add_package_commands", "read_bundle", "write_bundle"]

FORMAT = "tre-package/1"
DAY = 86400


def write_bundle(path: Path, envelope: bytes, files: dict[str, bytes]) -> None:
    bundle = {"format": FORMAT, "envelope": envelope, "files": files}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(msgpack.packb(bundle, use_bin_type=True))
    tmp.replace(path)


def read_bundle(path: Path) -> tuple[bytes, dict[str, bytes]]:
    """The envelope and files of a package file; ConfigError naming the file otherwise."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from None
    try:
        bundle = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=len(data))
        if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
            raise ValueError("not a package")
        envelope, files = bundle["envelope"], bundle["files"]
        if not isinstance(envelope, bytes) or not isinstance(files, dict):
            raise ValueError("malformed")
        if not all(isinstance(k, str) and isinstance(v, bytes) for k, v in files.items()):
            raise ValueError("malformed files")
    except Exception:  # anything msgpack or the checks above raise
        raise ConfigError(str(path), "", f"is not a {FORMAT} file") from None
    return envelope, files


def _tre_files() -> dict[str, bytes]:
    """The installed TRE code (tre, ipc, attestation) as its integrity check reads it."""
    for name, root in tre_roots().items():
        for _, path in code_files(root):
            if path.is_symlink():
                raise ConfigError(str(path), "", f"{name}: a package cannot hold a symbolic link")
    return dict(read_tree(tre_roots()))


def cmd_build(args: argparse.Namespace) -> int:
    if args.tre:
        files = _tre_files()
        target, what = attestation.TRE_TARGET, "the TRE's own code"
    else:
        folder = Path(args.domain_dir)
        spec = load_domain_dir(folder)  # the manifest and the class must load and agree
        files = {}
        for rel, path in code_files(folder):
            if path.is_symlink():
                raise ConfigError(str(path), "", "a package cannot hold a symbolic link")
            files[rel] = path.read_bytes()
        target, what = attestation.domain_target(spec.id), f"domain {spec.id}"
    counter = args.counter if args.counter is not None else int(time.time())
    envelope = attestation.make_package(
        target=target,
        counter=counter,
        expires=int(time.time()) + int(args.expires_days * DAY),
        files=files,
        migrate=args.migrate,
    )
    write_bundle(Path(args.out), envelope, files)
    print(f"package of {what} (counter {counter}, {len(files)} files, unsigned): {args.out}")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    try:
        key = attestation.load_private_key_pem(Path(args.key).read_bytes())
    except OSError as exc:
        raise ConfigError(args.key, "", f"cannot read: {exc.strerror}") from None
    except attestation.AttestationError:
        raise ConfigError(args.key, "", "is not an Ed25519 private key (PEM)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(args.key, "", "is not an Ed25519 private key (PEM)")
    path = Path(args.package)
    envelope, files = read_bundle(path)
    try:
        signed = attestation.sign(envelope, key)
    except attestation.UpdateError as exc:
        raise ConfigError(str(path), "envelope", exc.message) from None
    write_bundle(path, signed, files)
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    print(f"signed {path} with key {attestation.key_id(raw)[:16]}...")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    """A stakeholder's Ed25519 key pair: FILE (private, PEM, 0600) and FILE.pub."""
    out = Path(args.out)
    pub = out.with_name(out.name + ".pub")
    for path in (out, pub):
        if path.exists() or path.is_symlink():
            raise ConfigError(str(path), "", "already exists (refusing to overwrite)")
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    write_secret_file(out, attestation.private_key_pem(key))
    try:
        write_new_file(pub, public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    print(f"private key: {out} (mode 0600)")
    print(f"public key:  {pub}")
    print(f"key id:      {attestation.key_id(raw)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    envelope, files = read_bundle(Path(args.package))
    try:
        info = attestation.describe_package(envelope)
    except attestation.UpdateError as exc:
        raise ConfigError(args.package, "envelope", exc.message) from None
    info["bundled_files"] = sorted(files)
    if args.json:
        print_json(info)
    else:
        print(f"target {info['target']}, counter {info['counter']}, expires {info['expires']}")
        print(f"{len(info['files'])} files, {len(info['signatures'])} signatures")
    return 0


def add_package_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("package", help="build, sign and inspect signed domain packages")
    psub = p.add_subparsers(dest="package_command", metavar="ACTION", parser_class=parser_class)
    psub.required = True
    pb = psub.add_parser("build", help="package a domain folder (unsigned)")
    source = pb.add_mutually_exclusive_group(required=True)
    source.add_argument("--domain-dir", metavar="DIR", help="folder with domain.toml")
    source.add_argument(
        "--tre",
        action="store_true",
        help="the installed TRE code (tre, ipc, attestation), to be signed by root keys",
    )
    pb.add_argument("--out", metavar="FILE", required=True, help="the package file to write")
    pb.add_argument("--counter", type=int, help="release counter (default: the time, seconds)")
    pb.add_argument(
        "--expires-days", type=days_arg, default=365.0, help="validity (default 365, at most 36500)"
    )
    pb.add_argument("--migrate", choices=["none", "owner"], help="how sealed data migrates")
    pb.set_defaults(func=cmd_build)
    ps = psub.add_parser("sign", help="add a signature to a package (in place)")
    ps.add_argument("--key", metavar="FILE", required=True, help="an Ed25519 private key (PEM)")
    ps.add_argument("package", metavar="PACKAGE", help="the package file")
    ps.set_defaults(func=cmd_sign)
    pk = psub.add_parser("keygen", help="make a stakeholder's Ed25519 key pair")
    pk.add_argument(
        "--out", metavar="FILE", required=True, help="private key (0600); public key: FILE.pub"
    )
    pk.set_defaults(func=cmd_keygen)
    pw = psub.add_parser("show", help="what a package says (not verified)")
    pw.add_argument("package", metavar="PACKAGE", help="the package file")
    pw.add_argument("--json", action="store_true", help="print it as JSON")
    pw.set_defaults(func=cmd_show)
