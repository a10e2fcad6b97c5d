"""tre/_manifest.py: parsing and validating ``domain.toml``."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tre
from tre import AbortPolicy, ConfigError, Manifest, Quotas

PATH = "plugins/acme/domain.toml"

FULL_TOML = """\
id = "acme"
owner = "Acme Devices"
version = "1.2.3"
svn = 7
entry = "acme.domain:AcmeDomain"
description = "A full manifest"
boot_order = 15
default_deadline = 2.5

[services.info]
allow = ["host", "meter", "mno", "meter"]

[services.time]
allow = []

[services.reset]

[[calls]]
domain = "oem"
methods = ["info"]

[[calls]]
domain = "meter"
methods = ["latest"]

[[calls]]
domain = "oem"
methods = ["timestamp", "info"]

[quotas]
max_frame_bytes = 1048576
inbox_depth = 1
max_outstanding = 65536
calls_per_second = 10
burst = 3
concurrency = 64

[abort]
action = "stop"
max_restarts = 0
period = 0.5
"""


def base() -> dict[str, Any]:
    """The smallest valid manifest."""
    return {"id": "acme", "owner": "Acme", "version": "1.0", "svn": 1, "entry": "acme:Acme"}


def write(tmp_path: Path, content: str | bytes, name: str = "domain.toml") -> Path:
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


# --- valid manifests ------------------------------------------------------------------------


def test_full_manifest_from_file(tmp_path: Path) -> None:
    p = write(tmp_path, FULL_TOML)
    m = tre.load_manifest(p)
    assert isinstance(m, Manifest)
    assert (m.id, m.owner, m.version, m.svn) == ("acme", "Acme Devices", "1.2.3", 7)
    assert m.entry == "acme.domain:AcmeDomain"
    assert m.description == "A full manifest"
    assert m.path == str(p)
    assert m.directory == tmp_path
    assert m.isolated is False
    assert m.boot_order == 15
    assert m.default_deadline == 2.5
    # services: name -> frozenset of allowed callers (duplicates collapse, empty allowed)
    assert dict(m.services) == {
        "info": frozenset({"host", "meter", "mno"}),
        "time": frozenset(),
        "reset": frozenset(),
    }
    assert all(type(v) is frozenset for v in m.services.values())
    # calls: merged per callee across [[calls]] tables
    assert dict(m.calls) == {
        "oem": frozenset({"info", "timestamp"}),
        "meter": frozenset({"latest"}),
    }
    assert all(type(v) is frozenset for v in m.calls.values())
    assert m.quotas == Quotas(
        max_frame_bytes=1 << 20,
        inbox_depth=1,
        max_outstanding=65536,
        calls_per_second=10.0,
        burst=3,
        concurrency=64,
    )
    assert type(m.quotas.calls_per_second) is float  # an int in TOML becomes a float
    assert m.abort == AbortPolicy(action="stop", max_restarts=0, period=0.5)


def test_minimal_manifest_gets_defaults() -> None:
    m = tre.parse_manifest(base())
    assert m.path == "<memory>"
    assert m.directory is None
    assert m.description == ""
    assert m.isolated is False
    assert m.boot_order == 100
    assert m.default_deadline == 5.0
    assert dict(m.services) == {}
    assert dict(m.calls) == {}
    assert m.quotas == Quotas()
    assert m.abort == AbortPolicy()
    assert Quotas() == Quotas(
        max_frame_bytes=64 * 1024,
        inbox_depth=64,
        max_outstanding=64,
        calls_per_second=5000.0,
        burst=500,
        concurrency=1,
    )
    assert AbortPolicy() == AbortPolicy(action="restart", max_restarts=3, period=60.0)


def test_partial_quotas_and_abort_keep_other_defaults() -> None:
    m = tre.parse_manifest({**base(), "quotas": {"inbox_depth": 8}, "abort": {"period": 5}})
    assert m.quotas == Quotas(inbox_depth=8)
    assert m.abort == AbortPolicy(period=5.0)


def test_isolated_domain_may_offer_services_to_nobody() -> None:
    m = tre.parse_manifest(
        {**base(), "isolated": True, "services": {"seal": {"allow": []}}, "calls": []}
    )
    assert m.isolated is True
    assert dict(m.services) == {"seal": frozenset()}
    assert dict(m.calls) == {}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("id", "a"),
        ("id", "a" * 32),
        ("id", "m2m_gw-7"),
        ("entry", "pkg.sub.mod:Cls"),
        ("entry", "_m:_C1"),
        ("svn", 0),
        ("svn", 2**31 - 1),
        ("boot_order", 0),
        ("default_deadline", 3600),
    ],
)
def test_boundary_values_accepted(key: str, value: Any) -> None:
    m = tre.parse_manifest({**base(), key: value})
    assert getattr(m, key) == value


def test_parse_manifest_does_not_mutate_its_input() -> None:
    data = {**base(), "services": {"info": {"allow": ["host"]}}}
    before = copy.deepcopy(data)
    tre.parse_manifest(data)
    assert data == before


def test_host_may_be_allowed_but_not_called() -> None:
    m = tre.parse_manifest({**base(), "services": {"info": {"allow": ["host"]}}})
    assert m.services["info"] == frozenset({tre.HOST})


# --- invalid manifests: the table -------------------------------------------------------------

DELETE = object()


def _svc(allow: Any) -> dict[str, Any]:
    return {"info": {"allow": allow}}


def _call(domain: Any = "oem", methods: Any = ("info",)) -> list[dict[str, Any]]:
    return [{"domain": domain, "methods": list(methods) if isinstance(methods, tuple) else methods}]


# (row id, overrides of base() -- DELETE removes the key --, the dotted key in the error)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    # unknown keys, at every level
    ("unknown top-level key", {"colour": "red"}, "colour"),
    ("unknown key in quotas", {"quotas": {"inbox": 4}}, "quotas.inbox"),
    ("unknown key in abort", {"abort": {"actions": "stop"}}, "abort.actions"),
    ("unknown key in services.x", {"services": {"info": {"deny": []}}}, "services.info.deny"),
    (
        "unknown key in [[calls]]",
        {"calls": [{"domain": "oem", "methods": ["info"], "timeout": 1}]},
        "calls[0].timeout",
    ),
    # required keys
    ("missing id", {"id": DELETE}, "id"),
    ("missing owner", {"owner": DELETE}, "owner"),
    ("missing version", {"version": DELETE}, "version"),
    ("missing svn", {"svn": DELETE}, "svn"),
    ("missing entry", {"entry": DELETE}, "entry"),
    # id
    ("id uppercase", {"id": "Acme"}, "id"),
    ("id too long", {"id": "a" * 33}, "id"),
    ("id starts with digit", {"id": "1acme"}, "id"),
    ("id with dot", {"id": "ac.me"}, "id"),
    ("id empty", {"id": ""}, "id"),
    ("id not a string", {"id": 5}, "id"),
    ("id reserved host", {"id": "host"}, "id"),
    ("id reserved tre", {"id": "tre"}, "id"),
    ("id reserved kernel", {"id": "kernel"}, "id"),
    # owner, version
    ("owner empty", {"owner": ""}, "owner"),
    ("version not a string", {"version": 1}, "version"),
    # entry
    ("entry without colon", {"entry": "acme.Acme"}, "entry"),
    ("entry without class", {"entry": "acme:"}, "entry"),
    ("entry without module", {"entry": ":Acme"}, "entry"),
    ("entry with two colons", {"entry": "acme:Acme:x"}, "entry"),
    ("entry class starts with digit", {"entry": "acme:1Acme"}, "entry"),
    ("entry with dotted class", {"entry": "acme:Outer.Inner"}, "entry"),
    ("entry not a string", {"entry": ["acme", "Acme"]}, "entry"),
    # svn
    ("svn negative", {"svn": -1}, "svn"),
    ("svn bool", {"svn": True}, "svn"),
    ("svn float", {"svn": 1.0}, "svn"),
    ("svn string", {"svn": "1"}, "svn"),
    ("svn over 2**31-1", {"svn": 2**31}, "svn"),
    # bool where an int is expected (and the reverse)
    ("boot_order bool", {"boot_order": True}, "boot_order"),
    ("boot_order negative", {"boot_order": -1}, "boot_order"),
    ("isolated not a bool", {"isolated": 1}, "isolated"),
    ("isolated string", {"isolated": "yes"}, "isolated"),
    ("quota bool", {"quotas": {"inbox_depth": True}}, "quotas.inbox_depth"),
    ("abort.max_restarts bool", {"abort": {"max_restarts": False}}, "abort.max_restarts"),
    # default_deadline
    ("default_deadline zero", {"default_deadline": 0}, "default_deadline"),
    ("default_deadline NaN", {"default_deadline": math.nan}, "default_deadline"),
    ("default_deadline over an hour", {"default_deadline": 3601}, "default_deadline"),
    ("default_deadline string", {"default_deadline": "5"}, "default_deadline"),
    # quotas out of range
    ("quotas not a table", {"quotas": 5}, "quotas"),
    ("inbox_depth 0", {"quotas": {"inbox_depth": 0}}, "quotas.inbox_depth"),
    ("inbox_depth float", {"quotas": {"inbox_depth": 8.0}}, "quotas.inbox_depth"),
    (
        "max_frame_bytes over 1 MiB",
        {"quotas": {"max_frame_bytes": (1 << 20) + 1}},
        "quotas.max_frame_bytes",
    ),
    ("max_frame_bytes under 64", {"quotas": {"max_frame_bytes": 63}}, "quotas.max_frame_bytes"),
    ("max_outstanding 0", {"quotas": {"max_outstanding": 0}}, "quotas.max_outstanding"),
    ("concurrency 65", {"quotas": {"concurrency": 65}}, "quotas.concurrency"),
    ("concurrency 0", {"quotas": {"concurrency": 0}}, "quotas.concurrency"),
    ("burst 0", {"quotas": {"burst": 0}}, "quotas.burst"),
    ("calls_per_second 0", {"quotas": {"calls_per_second": 0}}, "quotas.calls_per_second"),
    (
        "calls_per_second negative",
        {"quotas": {"calls_per_second": -1.0}},
        "quotas.calls_per_second",
    ),
    (
        "calls_per_second NaN",
        {"quotas": {"calls_per_second": math.nan}},
        "quotas.calls_per_second",
    ),
    (
        "calls_per_second inf",
        {"quotas": {"calls_per_second": math.inf}},
        "quotas.calls_per_second",
    ),
    (
        "calls_per_second -inf",
        {"quotas": {"calls_per_second": -math.inf}},
        "quotas.calls_per_second",
    ),
    ("calls_per_second bool", {"quotas": {"calls_per_second": True}}, "quotas.calls_per_second"),
    ("calls_per_second string", {"quotas": {"calls_per_second": "10"}}, "quotas.calls_per_second"),
    # abort
    ("abort not a table", {"abort": "restart"}, "abort"),
    ("abort.action unknown", {"abort": {"action": "explode"}}, "abort.action"),
    ("abort.action not a string", {"abort": {"action": ["stop"]}}, "abort.action"),
    ("abort.max_restarts negative", {"abort": {"max_restarts": -1}}, "abort.max_restarts"),
    ("abort.period zero", {"abort": {"period": 0}}, "abort.period"),
    ("abort.period inf", {"abort": {"period": math.inf}}, "abort.period"),
    # services
    ("services not a table", {"services": ["info"]}, "services"),
    ("services.x not a table", {"services": {"info": ["host"]}}, "services.info"),
    ("service name uppercase", {"services": {"Info": {}}}, "services.Info"),
    ("service name with dash", {"services": {"get-info": {}}}, "services.get-info"),
    ("allow not a list", {"services": _svc("host")}, "services.info.allow"),
    ("allow item not a string", {"services": _svc([5])}, "services.info.allow[0]"),
    ("allow item bad id", {"services": _svc(["host", "Meter"])}, "services.info.allow[1]"),
    ("allow reserved tre", {"services": _svc(["tre"])}, "services.info.allow[0]"),
    ("allow reserved kernel", {"services": _svc(["kernel"])}, "services.info.allow[0]"),
    ("a domain allowing itself", {"services": _svc(["host", "acme"])}, "services.info.allow"),
    (
        "isolated domain allowing callers",
        {"isolated": True, "services": _svc(["meter"])},
        "services.info.allow",
    ),
    (
        "isolated domain allowing the host",
        {"isolated": True, "services": _svc(["host"])},
        "services.info.allow",
    ),
    # calls
    ("calls not a list", {"calls": {"domain": "oem", "methods": ["info"]}}, "calls"),
    ("isolated domain with calls", {"isolated": True, "calls": _call()}, "calls"),
    ("calls item not a table", {"calls": ["oem"]}, "calls[0]"),
    ("calls without methods", {"calls": [{"domain": "oem"}]}, "calls[0]"),
    ("calls without domain", {"calls": [{"methods": ["info"]}]}, "calls[0]"),
    ("calling itself", {"calls": _call("acme")}, "calls[0].domain"),
    ("calling host", {"calls": _call("host")}, "calls[0].domain"),
    ("calling the kernel", {"calls": _call("kernel")}, "calls[0].domain"),
    ("calling a bad id", {"calls": _call("Oem")}, "calls[0].domain"),
    ("calls domain not a string", {"calls": _call(7)}, "calls[0].domain"),
    ("methods not a list", {"calls": _call(methods="info")}, "calls[0].methods"),
    ("methods empty", {"calls": _call(methods=[])}, "calls[0].methods"),
    ("method bad name", {"calls": _call(methods=["info", "Reboot"])}, "calls[0].methods[1]"),
    ("method not a string", {"calls": _call(methods=[3])}, "calls[0].methods[0]"),
    ("method empty string", {"calls": _call(methods=[""])}, "calls[0].methods[0]"),
    (
        "error in the second [[calls]]",
        {"calls": [*_call(), {"domain": "meter", "methods": ["latest", "bad name"]}]},
        "calls[1].methods[1]",
    ),
]


def _apply(overrides: dict[str, Any]) -> dict[str, Any]:
    data = base()
    for k, v in overrides.items():
        if v is DELETE:
            del data[k]
        else:
            data[k] = v
    return data


@pytest.mark.parametrize(
    ("overrides", "key"), [pytest.param(o, k, id=name) for name, o, k in INVALID]
)
def test_invalid_manifest_names_file_and_key(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        tre.parse_manifest(_apply(overrides), PATH)
    exc = info.value
    assert exc.key == key
    assert exc.path == PATH
    assert exc.code == "CONFIG"
    assert str(exc).startswith(f"{PATH}: {key}: ")
    assert exc.problem and str(exc).endswith(exc.problem)
    assert isinstance(exc, tre.TREError)


def test_invalid_table_has_unique_row_names() -> None:
    names = [name for name, _, _ in INVALID]
    assert len(names) == len(set(names))


def test_invalid_value_from_a_file_names_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, FULL_TOML.replace("inbox_depth = 1\n", "inbox_depth = 0\n"))
    with pytest.raises(ConfigError) as info:
        tre.load_manifest(p)
    assert info.value.path == str(p)
    assert info.value.key == "quotas.inbox_depth"
    assert str(info.value) == (f"{p}: quotas.inbox_depth: must be an integer from 1 to 65536")


def test_unknown_key_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match=r"allowed: .*inbox_depth") as info:
        tre.parse_manifest({**base(), "quotas": {"inbox": 1}})
    assert info.value.key == "quotas.inbox"


def test_parse_manifest_default_path_is_memory() -> None:
    with pytest.raises(ConfigError) as info:
        tre.parse_manifest({**base(), "svn": -1})
    assert info.value.path == "<memory>"
    assert str(info.value).startswith("<memory>: svn: ")


@pytest.mark.parametrize("value", [5, {"text": "x"}, ["a"], True])
def test_description_must_be_a_string(value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        tre.parse_manifest({**base(), "description": value}, PATH)
    assert info.value.key == "description"
    assert str(info.value).startswith(f"{PATH}: description: ")


# --- file-level errors ------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nowhere" / "domain.toml"
    with pytest.raises(ConfigError, match="cannot read") as info:
        tre.load_manifest(p)
    assert info.value.path == str(p)
    assert info.value.key == ""
    assert str(info.value).startswith(f"{p}: ")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read") as info:
        tre.load_manifest(tmp_path)
    assert info.value.path == str(tmp_path)


def test_invalid_toml(tmp_path: Path) -> None:
    p = write(tmp_path, 'id = "acme"\nowner = \n')
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        tre.load_manifest(p)
    assert info.value.path == str(p)
    assert str(info.value).startswith(f"{p}: ")


def test_duplicate_toml_key_is_invalid_toml(tmp_path: Path) -> None:
    p = write(tmp_path, 'id = "acme"\nid = "other"\n')
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        tre.load_manifest(p)
    assert info.value.path == str(p)


def test_non_utf8_bytes(tmp_path: Path) -> None:
    p = write(tmp_path, b'id = "acme"\nowner = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        tre.load_manifest(p)
    assert info.value.path == str(p)
    assert str(info.value).startswith(f"{p}: ")


def test_load_manifest_accepts_str_path(tmp_path: Path) -> None:
    p = write(tmp_path, FULL_TOML)
    assert tre.load_manifest(str(p)) == tre.load_manifest(p)


# --- bugs found -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"id": "acme\n"}, "id"),
        ({"entry": "acme:Acme\n"}, "entry"),
        ({"services": {"info\n": {}}}, "services.info\n"),
        ({"services": _svc(["meter\n"])}, "services.info.allow[0]"),
        ({"calls": _call("oem\n")}, "calls[0].domain"),
        ({"calls": _call(methods=["info\n"])}, "calls[0].methods[0]"),
    ],
)
def test_trailing_newline_is_not_a_valid_name(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        tre.parse_manifest(_apply(overrides), PATH)
    assert info.value.key == key


@pytest.mark.parametrize(
    ("toml_line", "key"),
    [
        ("default_deadline = 1" + "0" * 400, "default_deadline"),
        ("[quotas]\ncalls_per_second = 1" + "0" * 400, "quotas.calls_per_second"),
        ("[abort]\nperiod = 1" + "0" * 400, "abort.period"),
    ],
)
def test_huge_integer_is_a_config_error(tmp_path: Path, toml_line: str, key: str) -> None:
    head = 'id = "acme"\nowner = "Acme"\nversion = "1"\nsvn = 1\nentry = "acme:Acme"\n'
    p = write(tmp_path, head + toml_line + "\n")
    with pytest.raises(ConfigError) as info:
        tre.load_manifest(p)
    assert info.value.key == key
    assert info.value.path == str(p)


# --- property: parse_manifest only ever returns a Manifest or raises ConfigError ---------------

# TOML integers are 64-bit; larger ones are covered (as a bug) by test_huge_integer_*.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["host", "tre", "kernel", "acme", "oem", "meter", "info", "restart", "stop"])
)
json_like = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
KNOWN = [
    "id",
    "owner",
    "version",
    "svn",
    "entry",
    "description",
    "isolated",
    "boot_order",
    "default_deadline",
    "services",
    "calls",
    "quotas",
    "abort",
]
service_tables = st.dictionaries(
    st.sampled_from(["info", "time", "Bad", "x-y", ""]) | st.text(max_size=8),
    st.fixed_dictionaries({}, optional={"allow": st.lists(scalars, max_size=3) | json_like})
    | json_like,
    max_size=3,
)
call_tables = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "domain": scalars,
            "methods": st.lists(scalars, max_size=3) | json_like,
        },
    )
    | json_like,
    max_size=3,
)
quota_tables = st.dictionaries(
    st.sampled_from(
        [
            "max_frame_bytes",
            "inbox_depth",
            "max_outstanding",
            "calls_per_second",
            "burst",
            "concurrency",
            "other",
        ]
    ),
    scalars,
    max_size=4,
)
abort_tables = st.dictionaries(
    st.sampled_from(["action", "max_restarts", "period", "other"]), scalars, max_size=3
)


@st.composite
def mutated_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid manifest with some keys dropped or replaced by random (often typed) values."""
    data: dict[str, Any] = base()
    data["services"] = {"info": {"allow": ["host"]}}
    data["calls"] = [{"domain": "oem", "methods": ["info"]}]
    for key in draw(st.lists(st.sampled_from([*KNOWN, "extra"]), max_size=4, unique=True)):
        if draw(st.booleans()) and key in data:
            del data[key]
            continue
        special = {
            "services": service_tables,
            "calls": call_tables,
            "quotas": quota_tables,
            "abort": abort_tables,
        }.get(key, scalars)
        data[key] = draw(special | json_like)
    return data


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), json_like, max_size=6) | mutated_manifests())
def test_random_dicts_give_manifest_or_config_error(data: dict[str, Any]) -> None:
    try:
        m = tre.parse_manifest(data, PATH)
    except ConfigError as exc:
        assert exc.path == PATH
        assert str(exc).startswith(PATH)
    else:
        assert isinstance(m, Manifest)
        assert all(isinstance(v, frozenset) for v in m.services.values())
        assert all(isinstance(v, frozenset) and v for v in m.calls.values())
        assert tre.HOST not in m.calls and m.id not in m.calls
