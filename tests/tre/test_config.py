"""tre/_config.py: the TRE config file, the embedded default, and booting from a config."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import tre
from tre import ConfigError, HostPolicy, TREConfig

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tre.toml"

FULL = """\
[tre]
name = "m2m-test"

[domains]
enable = ["oem", "meter"]
paths = ["plugins/echo", "../shared/thing", "/opt/abs/domain"]

[host]
max_outstanding = 8

[[host.calls]]
domain = "oem"
methods = ["info"]

[[host.calls]]
domain = "meter"
methods = ["latest", "history"]

[[host.calls]]
domain = "oem"
methods = ["time", "info"]

[settings.meter]
interval = 0.5
seed = 3
nested = { a = [1, 2] }

[settings.oem]
model = "X-1"
"""


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# --- valid configs -------------------------------------------------------------------------------


def test_full_config(tmp_path: Path) -> None:
    p = write(tmp_path / "conf" / "tre.toml", FULL)
    cfg = tre.load_config(p)
    assert isinstance(cfg, TREConfig)
    assert cfg.name == "m2m-test"
    assert cfg.path == str(p)
    assert cfg.enable == ("oem", "meter")
    folder = tmp_path / "conf"
    assert cfg.paths == (
        folder / "plugins" / "echo",
        folder / "../shared/thing",
        Path("/opt/abs/domain"),
    )
    assert cfg.paths[1].resolve() == (tmp_path / "shared" / "thing").resolve()
    assert cfg.host.max_outstanding == 8
    # host.calls merged per callee
    assert dict(cfg.host.calls) == {
        "oem": frozenset({"info", "time"}),
        "meter": frozenset({"latest", "history"}),
    }
    assert all(type(v) is frozenset for v in cfg.host.calls.values())
    assert dict(cfg.settings) == {
        "meter": {"interval": 0.5, "seed": 3, "nested": {"a": [1, 2]}},
        "oem": {"model": "X-1"},
    }


def test_empty_config_defaults() -> None:
    cfg = tre.parse_config({})
    assert cfg.name == "tre"
    assert cfg.path == "<memory>"
    assert cfg.enable == ()
    assert cfg.paths == ()
    assert cfg.host == HostPolicy()
    assert dict(cfg.host.calls) == {}
    assert cfg.host.max_outstanding == 64
    assert dict(cfg.settings) == {}


def test_default_config() -> None:
    cfg = tre.default_config()
    assert cfg.enable == ("oem", "meter", "mno", "vault")
    assert cfg.paths == ()
    assert dict(cfg.host.calls) == {
        "oem": frozenset({"info", "time"}),
        "meter": frozenset({"latest", "history", "selftest", "backup"}),
        "mno": frozenset(
            {
                "status",
                "mid_key",
                "install_package",
                "mids",
                "enable",
                "disable",
                "delete",
                "authenticate",
            }
        ),
    }
    assert "install_plain" not in cfg.host.calls["mno"]  # removed: MIDs come only as packages
    assert "vault" not in cfg.host.calls
    assert tre.default_config() == cfg  # a fresh, equal value each time


def test_relative_paths_resolved_against_the_config_folder_not_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "a" / "b" / "tre.toml", '[domains]\npaths = ["plug", "../up"]\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = tre.load_config(Path("a") / "b" / "tre.toml")
    assert [p.resolve() for p in cfg.paths] == [
        (tmp_path / "a" / "b" / "plug").resolve(),
        (tmp_path / "a" / "up").resolve(),
    ]
    monkeypatch.chdir(elsewhere)
    cfg = tre.load_config(tmp_path / "a" / "b" / "tre.toml")
    assert cfg.paths == (tmp_path / "a" / "b" / "plug", tmp_path / "a" / "b" / "../up")


def test_in_memory_config_paths_are_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = tre.parse_config({"domains": {"paths": ["plug"]}})
    assert cfg.paths == (tmp_path / "plug",)


def test_settings_values_are_free_form() -> None:
    cfg = tre.parse_config({"settings": {"anything": {"k": [1, {"x": None}], "b": True}}})
    assert dict(cfg.settings) == {"anything": {"k": [1, {"x": None}], "b": True}}


# --- invalid configs -----------------------------------------------------------------------------

CPATH = "conf/tre.toml"


def _hc(**entry: Any) -> dict[str, Any]:
    return {"host": {"calls": [entry]}}


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("unknown top-level key", {"domain": {}}, "domain"),
    ("unknown key in [tre]", {"tre": {"name": "x", "version": 1}}, "tre.version"),
    ("unknown key in [domains]", {"domains": {"enabled": ["oem"]}}, "domains.enabled"),
    ("unknown key in [host]", {"host": {"call": []}}, "host.call"),
    (
        "unknown key in [[host.calls]]",
        _hc(domain="oem", methods=["info"], wait=True),
        "host.calls[0].wait",
    ),
    ("tre not a table", {"tre": "x"}, "tre"),
    ("tre.name empty", {"tre": {"name": ""}}, "tre.name"),
    ("tre.name not a string", {"tre": {"name": 3}}, "tre.name"),
    ("domains not a table", {"domains": ["oem"]}, "domains"),
    ("enable not a list", {"domains": {"enable": "oem"}}, "domains.enable"),
    ("enable item not a string", {"domains": {"enable": ["oem", 1]}}, "domains.enable"),
    ("enable item empty", {"domains": {"enable": [""]}}, "domains.enable"),
    ("paths not a list", {"domains": {"paths": "x"}}, "domains.paths"),
    ("host not a table", {"host": []}, "host"),
    ("host.calls not a list", {"host": {"calls": {"domain": "oem"}}}, "host.calls"),
    ("host.calls item not a table", {"host": {"calls": ["oem"]}}, "host.calls[0]"),
    ("host.calls without domain", _hc(methods=["info"]), "host.calls[0].domain"),
    ("host.calls bad domain id", _hc(domain="OEM", methods=["info"]), "host.calls[0].domain"),
    ("host.calls domain host", _hc(domain="host", methods=["info"]), "host.calls[0].domain"),
    ("host.calls domain tre", _hc(domain="tre", methods=["info"]), "host.calls[0].domain"),
    ("host.calls domain not a string", _hc(domain=5, methods=["x"]), "host.calls[0].domain"),
    ("host.calls without methods", _hc(domain="oem"), "host.calls[0].methods"),
    ("host.calls methods empty", _hc(domain="oem", methods=[]), "host.calls[0].methods"),
    ("host.calls methods not a list", _hc(domain="oem", methods="info"), "host.calls[0].methods"),
    (
        "host.calls bad method name",
        _hc(domain="oem", methods=["info", "Time"]),
        "host.calls[0].methods[1]",
    ),
    ("host.max_outstanding 0", {"host": {"max_outstanding": 0}}, "host.max_outstanding"),
    ("host.max_outstanding bool", {"host": {"max_outstanding": True}}, "host.max_outstanding"),
    ("host.max_outstanding float", {"host": {"max_outstanding": 4.0}}, "host.max_outstanding"),
    ("host.max_outstanding too big", {"host": {"max_outstanding": 65537}}, "host.max_outstanding"),
    ("settings not a table", {"settings": 5}, "settings"),
    ("settings.x not a table", {"settings": {"meter": 0.5}}, "settings.meter"),
]


@pytest.mark.parametrize(("data", "key"), [pytest.param(d, k, id=n) for n, d, k in INVALID])
def test_invalid_config_names_file_and_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        tre.parse_config(data, CPATH)
    assert info.value.key == key
    assert info.value.path == CPATH
    assert str(info.value).startswith(f"{CPATH}: {key}: ")


def test_invalid_value_in_a_file_names_the_file(tmp_path: Path) -> None:
    p = write(tmp_path / "tre.toml", "[host]\nmax_outstanding = 0\n")
    with pytest.raises(ConfigError) as info:
        tre.load_config(p)
    assert info.value.path == str(p)
    assert info.value.key == "host.max_outstanding"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read"),
        ("[tre\nname = 1\n", "invalid TOML"),
        (b'[tre]\nname = "\xc3\x28"\n', "not UTF-8"),
    ],
    ids=["missing file", "invalid TOML", "non-UTF-8"],
)
def test_file_level_errors(tmp_path: Path, content: str | bytes | None, problem: str) -> None:
    p = tmp_path / "tre.toml"
    if content is not None:
        write(p, content)
    with pytest.raises(ConfigError, match=problem) as info:
        tre.load_config(p)
    assert info.value.path == str(p)
    assert info.value.key == ""
    assert str(info.value).startswith(f"{p}: ")


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        *("tre", "name", "domains", "enable", "paths", "host", "calls"),
                        *("domain", "methods", "max_outstanding", "settings", "meter"),
                    ]
                )
                | st.text(max_size=6),
                c,
                max_size=4,
            )
        ),
        max_leaves=15,
    ).filter(lambda v: isinstance(v, dict))
)
def test_random_configs_give_config_or_config_error(data: dict[str, Any]) -> None:
    try:
        cfg = tre.parse_config(data, CPATH)
    except ConfigError as exc:
        assert exc.path == CPATH
    else:
        assert isinstance(cfg, TREConfig)


# --- booting from a config -----------------------------------------------------------------------


async def test_boot_from_a_config_file(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    folder = tmp_path / "conf"
    shutil.copytree(DATA / "echo_plugin", folder / "plugins" / "echo")
    p = write(
        folder / "tre.toml",
        """\
[tre]
name = "from-file"

[domains]
enable = ["oem"]
paths = ["plugins/echo"]

[[host.calls]]
domain = "echo"
methods = ["echo", "whoami"]

[[host.calls]]
domain = "oem"
methods = ["info"]

[settings.echo]
greeting = "hi from the config"
""",
    )
    async with tre.open_tre(p) as t:
        assert t.config.name == "from-file"
        assert [d.id for d in t.domains()] == ["echo", "oem"]  # boot_order 5, then 10
        assert all(d.state == "running" for d in t.domains())
        assert await t.call("echo", "echo", [1, "x"]) == {"caller": "host", "body": [1, "x"]}
        who = await t.call("echo", "whoami")
        assert who == {"id": "echo", "generation": 1, "greeting": "hi from the config"}
        info = await t.call("oem", "info")
        assert info["platform"]["manufacturer"] == "Acme Devices"
        with pytest.raises(tre.Denied):
            await t.call("oem", "time")  # oem allows the host, but the config does not grant it


async def test_open_tre_with_a_bad_config_file_raises_before_booting(tmp_path: Path) -> None:
    p = write(tmp_path / "tre.toml", '[domains]\nenable = ["no-such-plugin"]\n')
    with pytest.raises(ConfigError, match="no-such-plugin") as info:
        async with tre.open_tre(p):
            pytest.fail("booted")  # pragma: no cover
    assert info.value.path == str(p)
    assert info.value.key == "domains.enable"


@pytest.mark.skipif(not EXAMPLE.is_file(), reason=f"{EXAMPLE} does not exist yet")
async def test_example_config_loads_and_boots(autojump_clock: trio.abc.Clock) -> None:
    cfg = tre.load_config(EXAMPLE)
    assert cfg.path == str(EXAMPLE)
    async with tre.open_tre(cfg) as t:
        ids = [d.id for d in t.domains()]
        assert set(cfg.enable) <= set(ids)
        for d in t.domains():
            assert d.state == "running", d
        # a starting point should not grant the host anything the callee refuses
        for callee, methods in cfg.host.calls.items():
            for method in methods:
                decision = t.policy.evaluate(tre.HOST, callee, method)
                assert decision.allowed, (callee, method, decision)
        if "info" in cfg.host.calls.get("oem", ()):
            assert "platform" in await t.call("oem", "info")
