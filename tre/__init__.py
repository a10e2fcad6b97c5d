"""tre: a model of the 3GPP TR 33.812 Trusted Environment with isolated stakeholder domains.

The public API. Embed a TRE with :func:`open_tre`; write a domain by subclassing
:class:`Domain` and marking handlers with :func:`service`; test it with
:mod:`tre.testing`. Everything else lives in private modules.
"""

from ipc import AuthFailed as AuthFailed
from ipc import InvalidFrame as InvalidFrame
from ipc import TREError as TREError

from ._audit_crypto import AuditError as AuditError
from ._audit_crypto import AuditUnreadable as AuditUnreadable
from ._config import HostPolicy as HostPolicy
from ._config import PortSpec as PortSpec
from ._config import TREConfig as TREConfig
from ._config import default_config as default_config
from ._config import load_config as load_config
from ._config import parse_config as parse_config
from ._context import Context as Context
from ._device import TREEvent as TREEvent
from ._errors import Aborted as Aborted
from ._errors import Busy as Busy
from ._errors import CallError as CallError
from ._errors import CallTimeout as CallTimeout
from ._errors import ConfigError as ConfigError
from ._errors import Denied as Denied
from ._errors import DomainFailed as DomainFailed
from ._errors import InstallRefused as InstallRefused
from ._errors import InternalError as InternalError
from ._errors import Locked as Locked
from ._errors import NoSuchDomain as NoSuchDomain
from ._errors import NoSuchMethod as NoSuchMethod
from ._errors import ProvisioningError as ProvisioningError
from ._errors import RemoteError as RemoteError
from ._errors import RollbackDetected as RollbackDetected
from ._errors import ServiceError as ServiceError
from ._errors import StateBusy as StateBusy
from ._errors import StorageError as StorageError
from ._errors import Terminated as Terminated
from ._errors import TooLarge as TooLarge
from ._integrity import IntegrityError as IntegrityError
from ._integrity import IntegrityStale as IntegrityStale
from ._keystore import MAX_RECORD as MAX_RECORD
from ._keystore import KeyExists as KeyExists
from ._keystore import KeyInfo as KeyInfo
from ._keystore import KeyKind as KeyKind
from ._keystore import KeyQuotaExceeded as KeyQuotaExceeded
from ._keystore import Keystore as Keystore
from ._keystore import KeystoreError as KeystoreError
from ._keystore import KeystoreLocked as KeystoreLocked
from ._keystore import KeyUnavailable as KeyUnavailable
from ._keystore import NoSuchKey as NoSuchKey
from ._keystore import SealPolicy as SealPolicy
from ._keystore import UnsealError as UnsealError
from ._keystore import WrongKeyKind as WrongKeyKind
from ._keystore import verify_ed25519 as verify_ed25519
from ._lifecycle import DomainLifecycle as DomainLifecycle
from ._lifecycle import DomainState as DomainState
from ._lifecycle import TREState as TREState
from ._loader import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
from ._loader import DomainSpec as DomainSpec
from ._loader import load_domain_dir as load_domain_dir
from ._loader import load_plugin as load_plugin
from ._manifest import HOST as HOST
from ._manifest import AbortPolicy as AbortPolicy
from ._manifest import Manifest as Manifest
from ._manifest import Quotas as Quotas
from ._manifest import load_manifest as load_manifest
from ._manifest import parse_manifest as parse_manifest
from ._plugin import Domain as Domain
from ._plugin import service as service
from ._policy import Decision as Decision
from ._policy import Policy as Policy
from ._policy import PortDecision as PortDecision
from ._ports import NoSuchPort as NoSuchPort
from ._ports import Port as Port
from ._ports import PortBusy as PortBusy
from ._ports import PortClosed as PortClosed
from ._ports import PortDenied as PortDenied
from ._ports import PortEnd as PortEnd
from ._ports import PortError as PortError
from ._ports import PortFull as PortFull
from ._records import KernelEvent as KernelEvent
from ._runtime import TRE as TRE
from ._runtime import DeviceInfo as DeviceInfo
from ._runtime import DomainInfo as DomainInfo
from ._runtime import open_tre as open_tre
from ._sessions import Expect as Expect
from ._sessions import SessionRefused as SessionRefused
from ._users import User as User
from ._users import UserError as UserError
from ._users import UserLocked as UserLocked
from ._users import UserUnreadable as UserUnreadable

__all__ = [
    "ENTRY_POINT_GROUP",
    "HOST",
    "MAX_RECORD",
    "TRE",
    "AbortPolicy",
    "Aborted",
    "AuditError",
    "AuditUnreadable",
    "AuthFailed",
    "Busy",
    "CallError",
    "CallTimeout",
    "ConfigError",
    "Context",
    "Decision",
    "Denied",
    "DeviceInfo",
    "Domain",
    "DomainFailed",
    "DomainInfo",
    "DomainLifecycle",
    "DomainSpec",
    "DomainState",
    "Expect",
    "HostPolicy",
    "InstallRefused",
    "IntegrityError",
    "IntegrityStale",
    "InternalError",
    "InvalidFrame",
    "KernelEvent",
    "KeyExists",
    "KeyInfo",
    "KeyKind",
    "KeyQuotaExceeded",
    "KeyUnavailable",
    "Keystore",
    "KeystoreError",
    "KeystoreLocked",
    "Locked",
    "Manifest",
    "NoSuchDomain",
    "NoSuchKey",
    "NoSuchMethod",
    "NoSuchPort",
    "Policy",
    "Port",
    "PortBusy",
    "PortClosed",
    "PortDecision",
    "PortDenied",
    "PortEnd",
    "PortError",
    "PortFull",
    "PortSpec",
    "ProvisioningError",
    "Quotas",
    "RemoteError",
    "RollbackDetected",
    "SealPolicy",
    "ServiceError",
    "SessionRefused",
    "StateBusy",
    "StorageError",
    "TREConfig",
    "TREError",
    "TREEvent",
    "TREState",
    "Terminated",
    "TooLarge",
    "UnsealError",
    "User",
    "UserError",
    "UserLocked",
    "UserUnreadable",
    "WrongKeyKind",
    "default_config",
    "load_config",
    "load_domain_dir",
    "load_manifest",
    "load_plugin",
    "open_tre",
    "parse_config",
    "parse_manifest",
    "service",
    "verify_ed25519",
]
