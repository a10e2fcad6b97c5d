"""Identity and evidence, sans-I/O: DICE derivation, UEIDs, certificates.

Bytes and values in, bytes and values out: nothing here reads a file, a socket, a clock or
an event loop (a test enforces the imports). Times are passed in; randomness comes only
from ``cryptography`` (fresh CA keys, certificate serial numbers) or from the caller
(:func:`random_ueid` takes its entropy).

- DICE (:mod:`attestation._dice`): UDS -> DeviceID key and TRE CDIs -> per-domain CDIs ->
  alias keys and sealing keys, all HKDF-SHA256 (RFC 5869) in the style of the Open Profile
  for DICE and the TCG DICE Layering Architecture; measurements of code and domains.
- UEIDs (:mod:`attestation._ueid`): RFC 9711 section 4.2.1 (IMEI and RAND types), IMEI
  checks (3GPP TS 23.003) and URNs (RFC 9039 ``urn:dev:ueid``, RFC 7254 ``urn:gsma:imei``).
- Certificates (:mod:`attestation._certs`): manufacturer CA -> DeviceID -> alias, Ed25519,
  with the TCG DiceTcbInfo extension (:mod:`attestation._der`), and chain verification.
- Evidence (:mod:`attestation._cose`, :mod:`attestation._eat`): Entity Attestation Tokens
  (RFC 9711) as CWTs signed with COSE_Sign1 (RFC 9052, EdDSA), the DeviceID's outer token
  carrying one nested token per domain; private claim keys are listed in ``_eat``.
- Appraisal (:mod:`attestation._verify`, :mod:`attestation._reference`):
  :func:`verify_evidence` checks evidence in a fixed order against the manufacturer CA, a
  nonce and optional reference values, and returns an AR4SI-style :class:`Appraisal`.
- Merkle trees (:mod:`attestation._merkle`): RFC 9162 tree hashes, inclusion and
  consistency proofs over a store of complete subtrees, and their verifiers (the audit
  log's structure; ``root`` is exported as :func:`merkle_root`).

Every secret (UDS, CDI, derived key) is a :class:`Secret`, whose ``repr``/``str`` show only
its length. Errors are :class:`AttestationError` (``code = "ATTESTATION"``) and its
subclasses :class:`InvalidIdentity` (``"INVALID_IDENTITY"``) for malformed inputs,
:class:`EvidenceError` (``"EVIDENCE"``) for evidence that does not parse or verify (the
verifier turns these into problem codes, it does not raise) and :class:`InvalidReference`
(``"INVALID_REFERENCE"``) for a malformed reference-values document.

The certificate, COSE, EAT and verifier names are loaded on first use (PEP 562
``__getattr__``): ``cryptography.x509`` imports :mod:`email.utils`, which imports the
stdlib ``socket`` module, and ``import attestation`` must not load I/O modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._der import SHA256_OID as SHA256_OID
from ._der import TCB_INFO_OID as TCB_INFO_OID
from ._der import TcbInfo as TcbInfo
from ._der import decode_tcb_info as decode_tcb_info
from ._der import encode_tcb_info as encode_tcb_info
from ._dice import DIGEST_SIZE as DIGEST_SIZE
from ._dice import MAX_SVN as MAX_SVN
from ._dice import UDS_SIZE as UDS_SIZE
from ._dice import DomainCdis as DomainCdis
from ._dice import TreCdis as TreCdis
from ._dice import alias_key as alias_key
from ._dice import authority_hash as authority_hash
from ._dice import check_domain_id as check_domain_id
from ._dice import derive_key as derive_key
from ._dice import device_id_key as device_id_key
from ._dice import domain_cdis as domain_cdis
from ._dice import domain_epoch_key as domain_epoch_key
from ._dice import hash_files as hash_files
from ._dice import measure_domain as measure_domain
from ._dice import owner_key_hash as owner_key_hash
from ._dice import owner_seal_key as owner_seal_key
from ._dice import tre_cdis as tre_cdis
from ._errors import AttestationError as AttestationError
from ._errors import EvidenceError as EvidenceError
from ._errors import InvalidIdentity as InvalidIdentity
from ._errors import InvalidReference as InvalidReference
from ._merkle import EMPTY_ROOT as MERKLE_EMPTY_ROOT
from ._merkle import MemoryNodeStore as MemoryNodeStore
from ._merkle import NodeStore as NodeStore
from ._merkle import append_leaf as append_leaf
from ._merkle import complete_subtrees as complete_subtrees
from ._merkle import consistency_proof as consistency_proof
from ._merkle import frontier_root as frontier_root
from ._merkle import inclusion_proof as inclusion_proof
from ._merkle import leaf_hash as leaf_hash
from ._merkle import load_frontier as load_frontier
from ._merkle import node_hash as node_hash
from ._merkle import root as merkle_root
from ._merkle import verify_consistency as verify_consistency
from ._merkle import verify_inclusion as verify_inclusion
from ._reference import DomainReference as DomainReference
from ._reference import Reference as Reference
from ._reference import parse_reference as parse_reference
from ._reference import reference_to_dict as reference_to_dict
from ._report import MAX_REPORT_SIZE as MAX_REPORT_SIZE
from ._report import REPORT_INVALID_REASONS as REPORT_INVALID_REASONS
from ._report import Report as Report
from ._report import ReportInvalid as ReportInvalid
from ._report import check_report as check_report
from ._report import make_report as make_report
from ._report import report_key as report_key
from ._secret import Secret as Secret
from ._ueid import IMEI_URN_PREFIX as IMEI_URN_PREFIX
from ._ueid import UEID_TYPE_EUI as UEID_TYPE_EUI
from ._ueid import UEID_TYPE_IMEI as UEID_TYPE_IMEI
from ._ueid import UEID_TYPE_RAND as UEID_TYPE_RAND
from ._ueid import UEID_URN_PREFIX as UEID_URN_PREFIX
from ._ueid import check_imei as check_imei
from ._ueid import describe_ueid as describe_ueid
from ._ueid import imei_urn as imei_urn
from ._ueid import luhn_check_digit as luhn_check_digit
from ._ueid import random_ueid as random_ueid
from ._ueid import ueid_from_imei as ueid_from_imei
from ._ueid import ueid_urn as ueid_urn
from ._update import MAX_ENVELOPE_SIZE as MAX_ENVELOPE_SIZE
from ._update import TRE_TARGET as TRE_TARGET
from ._update import BadRootRotation as BadRootRotation
from ._update import BelowThreshold as BelowThreshold
from ._update import Expired as Expired
from ._update import FileInfo as FileInfo
from ._update import FileMismatch as FileMismatch
from ._update import MalformedPackage as MalformedPackage
from ._update import MisScoped as MisScoped
from ._update import Package as Package
from ._update import Role as Role
from ._update import Rollback as Rollback
from ._update import Root as Root
from ._update import UpdateError as UpdateError
from ._update import WrongTarget as WrongTarget
from ._update import check_files as check_files
from ._update import describe_package as describe_package
from ._update import domain_target as domain_target
from ._update import installed_package as installed_package
from ._update import key_id as key_id
from ._update import make_package as make_package
from ._update import make_root as make_root
from ._update import rotate_root as rotate_root
from ._update import sign as sign
from ._update import signed_by as signed_by
from ._update import trusted_root as trusted_root
from ._update import verify_package as verify_package

if TYPE_CHECKING:
    from ._certs import ALIAS_ORGANIZATION as ALIAS_ORGANIZATION
    from ._certs import CA_PATH_LENGTH as CA_PATH_LENGTH
    from ._certs import DEFAULT_ORGANIZATION as DEFAULT_ORGANIZATION
    from ._certs import DEVICE_COMMON_NAME as DEVICE_COMMON_NAME
    from ._certs import device_ueid as device_ueid
    from ._certs import issue_alias_cert as issue_alias_cert
    from ._certs import issue_device_cert as issue_device_cert
    from ._certs import load_cert_pem as load_cert_pem
    from ._certs import load_private_key_pem as load_private_key_pem
    from ._certs import make_ca as make_ca
    from ._certs import private_key_pem as private_key_pem
    from ._certs import read_tcb_info as read_tcb_info
    from ._certs import to_pem as to_pem
    from ._certs import verify_chain as verify_chain
    from ._cose import MAX_SIGN1_SIZE as MAX_SIGN1_SIZE
    from ._cose import Sign1 as Sign1
    from ._cose import parse_sign1 as parse_sign1
    from ._cose import sign1 as sign1
    from ._cose import verify_sign1 as verify_sign1
    from ._eat import BOOTCOUNT as BOOTCOUNT
    from ._eat import CWT_TAG as CWT_TAG
    from ._eat import DOMAIN_ID as DOMAIN_ID
    from ._eat import DOMAIN_STATE as DOMAIN_STATE
    from ._eat import EAT_PROFILE as EAT_PROFILE
    from ._eat import IAT as IAT
    from ._eat import LIFECYCLE as LIFECYCLE
    from ._eat import MAX_NONCE_SIZE as MAX_NONCE_SIZE
    from ._eat import MAX_SUBMODS as MAX_SUBMODS
    from ._eat import MEASUREMENT as MEASUREMENT
    from ._eat import MIN_NONCE_SIZE as MIN_NONCE_SIZE
    from ._eat import NONCE as NONCE
    from ._eat import OWNER_HASH as OWNER_HASH
    from ._eat import POLICY_HASH as POLICY_HASH
    from ._eat import PROFILE as PROFILE
    from ._eat import SUBMODS as SUBMODS
    from ._eat import SVN as SVN
    from ._eat import TRE_MEASUREMENT as TRE_MEASUREMENT
    from ._eat import UEID as UEID
    from ._eat import DomainClaims as DomainClaims
    from ._eat import TreClaims as TreClaims
    from ._eat import TreTokenTemplate as TreTokenTemplate
    from ._eat import domain_token as domain_token
    from ._eat import parse_claims as parse_claims
    from ._eat import tre_token as tre_token
    from ._eat import tre_token_payload as tre_token_payload
    from ._eat import unwrap_nested as unwrap_nested
    from ._eat import wrap_nested as wrap_nested
    from ._verify import PROBLEMS as PROBLEMS
    from ._verify import TRUST_CLAIMS as TRUST_CLAIMS
    from ._verify import Appraisal as Appraisal
    from ._verify import verify_evidence as verify_evidence

# Names served by modules that import cryptography.x509, imported on first access (see the
# module docstring): name -> module.
_LAZY = {
    **dict.fromkeys(
        (
            "ALIAS_ORGANIZATION",
            "CA_PATH_LENGTH",
            "DEFAULT_ORGANIZATION",
            "DEVICE_COMMON_NAME",
            "device_ueid",
            "issue_alias_cert",
            "issue_device_cert",
            "load_cert_pem",
            "load_private_key_pem",
            "make_ca",
            "private_key_pem",
            "read_tcb_info",
            "to_pem",
            "verify_chain",
        ),
        "._certs",
    ),
    **dict.fromkeys(("MAX_SIGN1_SIZE", "Sign1", "parse_sign1", "sign1", "verify_sign1"), "._cose"),
    **dict.fromkeys(
        (
            "BOOTCOUNT",
            "CWT_TAG",
            "DOMAIN_ID",
            "DOMAIN_STATE",
            "EAT_PROFILE",
            "IAT",
            "LIFECYCLE",
            "MAX_NONCE_SIZE",
            "MAX_SUBMODS",
            "MEASUREMENT",
            "MIN_NONCE_SIZE",
            "NONCE",
            "OWNER_HASH",
            "POLICY_HASH",
            "PROFILE",
            "SUBMODS",
            "SVN",
            "TRE_MEASUREMENT",
            "UEID",
            "DomainClaims",
            "TreClaims",
            "domain_token",
            "parse_claims",
            "TreTokenTemplate",
            "tre_token",
            "tre_token_payload",
            "unwrap_nested",
            "wrap_nested",
        ),
        "._eat",
    ),
    **dict.fromkeys(("PROBLEMS", "TRUST_CLAIMS", "Appraisal", "verify_evidence"), "._verify"),
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ALIAS_ORGANIZATION",
    "BOOTCOUNT",
    "CA_PATH_LENGTH",
    "CWT_TAG",
    "DEFAULT_ORGANIZATION",
    "DEVICE_COMMON_NAME",
    "DIGEST_SIZE",
    "DOMAIN_ID",
    "DOMAIN_STATE",
    "EAT_PROFILE",
    "IAT",
    "IMEI_URN_PREFIX",
    "LIFECYCLE",
    "MAX_ENVELOPE_SIZE",
    "MAX_NONCE_SIZE",
    "MAX_REPORT_SIZE",
    "MAX_SIGN1_SIZE",
    "MAX_SUBMODS",
    "MAX_SVN",
    "MEASUREMENT",
    "MERKLE_EMPTY_ROOT",
    "MIN_NONCE_SIZE",
    "NONCE",
    "OWNER_HASH",
    "POLICY_HASH",
    "PROBLEMS",
    "PROFILE",
    "REPORT_INVALID_REASONS",
    "SHA256_OID",
    "SUBMODS",
    "SVN",
    "TCB_INFO_OID",
    "TRE_MEASUREMENT",
    "TRE_TARGET",
    "TRUST_CLAIMS",
    "UDS_SIZE",
    "UEID",
    "UEID_TYPE_EUI",
    "UEID_TYPE_IMEI",
    "UEID_TYPE_RAND",
    "UEID_URN_PREFIX",
    "Appraisal",
    "AttestationError",
    "BadRootRotation",
    "BelowThreshold",
    "DomainCdis",
    "DomainClaims",
    "DomainReference",
    "EvidenceError",
    "Expired",
    "FileInfo",
    "FileMismatch",
    "InvalidIdentity",
    "InvalidReference",
    "MalformedPackage",
    "MemoryNodeStore",
    "MisScoped",
    "NodeStore",
    "Package",
    "Reference",
    "Report",
    "ReportInvalid",
    "Role",
    "Rollback",
    "Root",
    "Secret",
    "Sign1",
    "TcbInfo",
    "TreCdis",
    "TreClaims",
    "TreTokenTemplate",
    "UpdateError",
    "WrongTarget",
    "alias_key",
    "append_leaf",
    "authority_hash",
    "check_domain_id",
    "check_files",
    "check_imei",
    "check_report",
    "complete_subtrees",
    "consistency_proof",
    "decode_tcb_info",
    "derive_key",
    "describe_package",
    "describe_ueid",
    "device_id_key",
    "device_ueid",
    "domain_cdis",
    "domain_epoch_key",
    "domain_target",
    "domain_token",
    "encode_tcb_info",
    "frontier_root",
    "hash_files",
    "imei_urn",
    "inclusion_proof",
    "installed_package",
    "issue_alias_cert",
    "issue_device_cert",
    "key_id",
    "leaf_hash",
    "load_cert_pem",
    "load_frontier",
    "load_private_key_pem",
    "luhn_check_digit",
    "make_ca",
    "make_package",
    "make_report",
    "make_root",
    "measure_domain",
    "merkle_root",
    "node_hash",
    "owner_key_hash",
    "owner_seal_key",
    "parse_claims",
    "parse_reference",
    "parse_sign1",
    "private_key_pem",
    "random_ueid",
    "read_tcb_info",
    "reference_to_dict",
    "report_key",
    "rotate_root",
    "sign",
    "sign1",
    "signed_by",
    "to_pem",
    "tre_cdis",
    "tre_token",
    "tre_token_payload",
    "trusted_root",
    "ueid_from_imei",
    "ueid_urn",
    "unwrap_nested",
    "verify_chain",
    "verify_consistency",
    "verify_evidence",
    "verify_inclusion",
    "verify_package",
    "verify_sign1",
    "wrap_nested",
]
