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

Every secret (UDS, CDI, derived key) is a :class:`Secret`, whose ``repr``/``str`` show only
its length. Errors are :class:`AttestationError` (``code = "ATTESTATION"``) and its
subclass :class:`InvalidIdentity` (``"INVALID_IDENTITY"``) for malformed inputs.

The certificate functions are loaded on first use (PEP 562 ``__getattr__``):
``cryptography.x509`` imports :mod:`email.utils`, which imports the stdlib ``socket``
module, and ``import attestation`` must not load I/O modules.
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
from ._dice import hash_files as hash_files
from ._dice import measure_domain as measure_domain
from ._dice import owner_key_hash as owner_key_hash
from ._dice import owner_seal_key as owner_seal_key
from ._dice import tre_cdis as tre_cdis
from ._errors import AttestationError as AttestationError
from ._errors import InvalidIdentity as InvalidIdentity
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

# Names served by _certs, imported on first access (see the module docstring).
_LAZY = frozenset(
    {
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
    }
)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module("._certs", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)


__all__ = [
    "ALIAS_ORGANIZATION",
    "CA_PATH_LENGTH",
    "DEFAULT_ORGANIZATION",
    "DEVICE_COMMON_NAME",
    "DIGEST_SIZE",
    "IMEI_URN_PREFIX",
    "MAX_SVN",
    "SHA256_OID",
    "TCB_INFO_OID",
    "UDS_SIZE",
    "UEID_TYPE_EUI",
    "UEID_TYPE_IMEI",
    "UEID_TYPE_RAND",
    "UEID_URN_PREFIX",
    "AttestationError",
    "DomainCdis",
    "InvalidIdentity",
    "Secret",
    "TcbInfo",
    "TreCdis",
    "alias_key",
    "authority_hash",
    "check_domain_id",
    "check_imei",
    "decode_tcb_info",
    "derive_key",
    "describe_ueid",
    "device_id_key",
    "device_ueid",
    "domain_cdis",
    "encode_tcb_info",
    "hash_files",
    "imei_urn",
    "issue_alias_cert",
    "issue_device_cert",
    "load_cert_pem",
    "load_private_key_pem",
    "luhn_check_digit",
    "make_ca",
    "measure_domain",
    "owner_key_hash",
    "owner_seal_key",
    "private_key_pem",
    "random_ueid",
    "read_tcb_info",
    "to_pem",
    "tre_cdis",
    "ueid_from_imei",
    "ueid_urn",
    "verify_chain",
]
