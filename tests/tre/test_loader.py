"""tre/_loader.py: entry-point plugins, plugin folders, manifest/class checks, boot order."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel

import tre
import tre._loader
from domains.meter import MeterDomain
from domains.mno import MnoDomain
from domains.oem import OemDomain
from domains.vault import VaultDomain
from tre import ConfigError, TREConfig
from tre._loader import available_plugins, resolve
from tre.testing import open_test_tre, spec

DATA = Path(__file__).parent / "data"
ECHO = DATA / "echo_plugin"
PKG = DATA / "pkg_plugin"

REFERENCE: dict[str, type[tre.Domain]] = {
    "oem": OemDomain,
    "meter": MeterDomain,
    "mno": MnoDomain,
    "vault": VaultDomain,
}


# --- entry-point plugins -------------------------------------------------------------------------


def test_entry_point_group_registers_the_reference_domains() -> None:
    assert tre.ENTRY_POINT_GROUP == "tre.domains"
    eps = available_plugins()
    for name in REFERENCE:
        assert eps[name].value == f"domains.{name}"
        assert eps[name].group == "tre.domains"


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_plugin_loads(name: str) -> None:
    s = tre.load_plugin(name)
    assert isinstance(s, tre.DomainSpec)
    assert s.id == s.manifest.id == name
    assert s.cls is REFERENCE[name]
    assert s.manifest.entry == f"domains.{name}:{REFERENCE[name].__name__}"
    assert Path(s.manifest.path).parts[-3:] == ("domains", name, "domain.toml")
    assert set(s.cls.service_names()) == set(s.manifest.services)


def test_unknown_plugin_lists_the_installed_ones() -> None:
    with pytest.raises(ConfigError) as info:
        tre.load_plugin("nope", "site/tre.toml")
    exc = info.value
    assert exc.path == "site/tre.toml"
    assert exc.key == "domains.enable"
    assert "'nope'" in str(exc)
    installed = str(exc).split("installed: ", 1)[1]
    for name in REFERENCE:
        assert name in installed


def test_unknown_plugin_default_where() -> None:
    with pytest.raises(ConfigError) as info:
        tre.load_plugin("nope")
    assert info.value.path == "<config>"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """Make importable plugin packages in a temporary folder and register them as entry
    points (name = package name); forget them afterwards."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    made: dict[str, metadata.EntryPoint] = {}
    real = available_plugins

    def fake() -> dict[str, metadata.EntryPoint]:
        return {**real(), **made}

    monkeypatch.setattr(tre._loader, "available_plugins", fake)

    def make(package: str, files: dict[str, str] | None) -> str:
        """files=None registers the entry point without creating the package."""
        if files is not None:
            folder = root / package
            folder.mkdir()
            for name, text in files.items():
                (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")
        made[package] = metadata.EntryPoint(package, package, tre.ENTRY_POINT_GROUP)
        return package

    yield make
    for mod in list(sys.modules):
        if mod.split(".")[0] in made:
            del sys.modules[mod]


def _toml(domain_id: str, entry: str, services: tuple[str, ...] = ("hello",)) -> str:
    lines = [
        f'id = "{domain_id}"',
        'owner = "t"',
        'version = "1"',
        "svn = 1",
        f'entry = "{entry}"',
    ]
    for s in services:
        lines += [f"[services.{s}]", 'allow = ["host"]']
    return "\n".join(lines) + "\n"


HELLO_MODULE = """\
    import tre

    class Hello(tre.Domain):
        @tre.service
        async def hello(self, caller, body):
            return f"hello {caller}"
"""


async def test_entry_point_plugin_from_an_installed_package(site: Callable[..., str]) -> None:
    pkg = site(
        "tre_t_ep_hello",
        {
            "__init__.py": "",
            "impl.py": HELLO_MODULE,
            "domain.toml": _toml("ep-hello", "tre_t_ep_hello.impl:Hello"),
        },
    )
    s = tre.load_plugin(pkg)
    assert s.id == "ep-hello"
    assert s.cls.__name__ == "Hello"
    async with open_test_tre(enable=[pkg], host_calls={"ep-hello": ["hello"]}) as t:
        assert await t.call("ep-hello", "hello") == "hello host"


def test_entry_point_to_a_missing_package(site: Callable[..., str]) -> None:
    pkg = site("tre_t_ep_gone", None)  # registered, but not importable
    with pytest.raises(ConfigError) as info:
        tre.load_plugin(pkg, "c.toml")
    assert (info.value.path, info.value.key) == ("c.toml", "domains.enable")
    assert pkg in str(info.value)


def test_entry_point_package_without_manifest(site: Callable[..., str]) -> None:
    pkg = site("tre_t_ep_nomanifest", {"__init__.py": ""})
    with pytest.raises(ConfigError, match="cannot read") as info:
        tre.load_plugin(pkg)
    assert info.value.path.endswith(str(Path(pkg) / "domain.toml"))


def test_entry_point_entry_module_missing(site: Callable[..., str]) -> None:
    pkg = site(
        "tre_t_ep_nomod",
        {"__init__.py": "", "domain.toml": _toml("ep-nomod", "tre_t_ep_nomod.gone:Hello")},
    )
    with pytest.raises(ConfigError, match="cannot import") as info:
        tre.load_plugin(pkg)
    assert info.value.key == "entry"
    assert info.value.path.endswith(str(Path(pkg) / "domain.toml"))


@pytest.mark.parametrize("where", ["package", "entry module"])
def test_entry_point_plugin_raising_on_import(site: Callable[..., str], where: str) -> None:
    boom = "raise RuntimeError('boom at import')\n"
    pkg = f"tre_t_ep_boom_{where.split()[0]}"
    site(
        pkg,
        {
            "__init__.py": boom if where == "package" else "",
            "impl.py": boom,
            "domain.toml": _toml("ep-boom", f"{pkg}.impl:Hello"),
        },
    )
    with pytest.raises(ConfigError, match="boom at import") as info:
        tre.load_plugin(pkg, "c.toml")
    assert info.value.key in ("entry", "domains.enable")


# --- plugin folders ------------------------------------------------------------------------------


def test_load_domain_dir_sample_plugin() -> None:
    s = tre.load_domain_dir(ECHO)
    assert s.id == "echo"
    assert s.cls.__name__ == "EchoDomain"
    assert issubclass(s.cls, tre.Domain)
    assert s.manifest.path == str(ECHO / "domain.toml")
    assert s.manifest.directory == ECHO
    assert s.cls.service_names() == {"echo": "echo", "whoami": "identify"}
    assert tre.load_domain_dir(str(ECHO)).id == "echo"  # a str path works too


async def test_folder_plugin_boots_and_answers(autojump_clock: trio.abc.Clock) -> None:
    echo = tre.load_domain_dir(ECHO)
    async with open_test_tre(
        echo,
        host_calls={"echo": ["echo", "whoami", "identify"]},
        settings={"echo": {"greeting": "hej"}},
    ) as t:
        assert await t.call("echo", "echo", {"n": [1, 2.5, b"x"]}) == {
            "caller": "host",
            "body": {"n": [1, 2.5, b"x"]},
        }
        assert await t.call("echo", "whoami") == {"id": "echo", "generation": 1, "greeting": "hej"}
        info = t.domain("echo")
        assert (info.owner, info.version, info.svn, info.state) == (
            "Test Stakeholder",
            "1.2.3",
            4,
            "running",
        )
        with pytest.raises(tre.NoSuchMethod):
            await t.call("echo", "identify")  # the attribute name is not the service name
        with pytest.raises(tre.Denied):
            await t.call("echo", "nothing")  # not granted to the host: it learns nothing


async def test_package_folder_plugin_with_relative_import(autojump_clock: trio.abc.Clock) -> None:
    s = tre.load_domain_dir(PKG)
    assert s.id == "ping-pkg"
    async with open_test_tre(s, host_calls={"ping-pkg": ["ping"]}) as t:
        assert await t.call("ping-pkg", "ping", "x") == "pong:x"


def test_folder_whose_entry_is_an_installed_module(tmp_path: Path) -> None:
    """A folder with just a manifest: the entry module is imported from sys.path."""
    (tmp_path / "domain.toml").write_text(
        _toml(
            "oem-copy",
            "domains.oem:OemDomain",
            ("info", "time", "timestamp", "session", "archive"),
        )
    )
    s = tre.load_domain_dir(tmp_path)
    assert s.id == "oem-copy"
    assert s.cls is OemDomain


# (row id, services in the manifest, entry, module file name -> source, key, message part)
MISMATCH: list[tuple[str, tuple[str, ...], str, dict[str, str], str, str]] = [
    (
        "manifest service without handler",
        ("hello", "extra"),
        "mod_a:Hello",
        {"mod_a.py": HELLO_MODULE},
        "services.extra",
        "no @service handler",
    ),
    (
        "handler not in manifest",
        (),
        "mod_b:Hello",
        {"mod_b.py": HELLO_MODULE},
        "services",
        "'hello'",
    ),
    (
        "entry class not a Domain",
        ("hello",),
        "mod_c:Hello",
        {"mod_c.py": "class Hello:\n    async def hello(self, caller, body): ...\n"},
        "entry",
        "not a tre.Domain subclass",
    ),
    (
        "entry names a function",
        ("hello",),
        "mod_d:make",
        {"mod_d.py": "def make(ctx): ...\n"},
        "entry",
        "not a tre.Domain subclass",
    ),
    (
        "entry names the Domain base itself",
        (),
        "mod_e:Domain",
        {"mod_e.py": "from tre import Domain\n"},
        "entry",
        "",  # allowed or not, it must not crash; see test below
    ),
    (
        "missing module",
        ("hello",),
        "tre_t_no_such_module_anywhere:Hello",
        {},
        "entry",
        "cannot import tre_t_no_such_module_anywhere",
    ),
    (
        "module without that class",
        ("hello",),
        "mod_f:Goodbye",
        {"mod_f.py": HELLO_MODULE},
        "entry",
        "has no Goodbye",
    ),
    (
        "module raising on import",
        ("hello",),
        "mod_g:Hello",
        {"mod_g.py": "raise RuntimeError('boom at import')\n"},
        "entry",
        "boom at import",
    ),
    (
        "module importing a missing dependency",
        ("hello",),
        "mod_h:Hello",
        {"mod_h.py": "import tre_t_missing_dependency\n"},
        "entry",
        "tre_t_missing_dependency",
    ),
    (
        "package raising on import",
        ("hello",),
        "pkg_i:Hello",
        {"pkg_i/__init__.py": "raise ValueError('bad package')\n"},
        "entry",
        "bad package",
    ),
]


@pytest.mark.parametrize(
    ("services", "entry", "files", "key", "part"),
    [pytest.param(*row[1:], id=row[0]) for row in MISMATCH],
)
def test_folder_plugin_mismatch(
    tmp_path: Path,
    services: tuple[str, ...],
    entry: str,
    files: dict[str, str],
    key: str,
    part: str,
) -> None:
    domain_id = "mm-" + entry.split(":")[0].replace("_", "-")[-20:]
    (tmp_path / "domain.toml").write_text(_toml(domain_id, entry, services))
    for name, source in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(source))
    if entry == "mod_e:Domain":
        s = tre.load_domain_dir(tmp_path)  # the base class offers nothing: an empty domain
        assert s.cls is tre.Domain
        return
    with pytest.raises(ConfigError) as info:
        tre.load_domain_dir(tmp_path)
    exc = info.value
    manifest = str(tmp_path / "domain.toml")
    assert exc.path == manifest
    assert exc.key == key
    assert str(exc).startswith(f"{manifest}: {key}: ")
    assert part in str(exc)
    if "import" in exc.problem:  # a failed import leaves nothing half-registered behind
        assert f"tre_plugin_{domain_id.replace('-', '_')}" not in sys.modules


def test_folder_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read") as info:
        tre.load_domain_dir(tmp_path)
    assert info.value.path == str(tmp_path / "domain.toml")


def test_folder_with_invalid_manifest(tmp_path: Path) -> None:
    (tmp_path / "domain.toml").write_text(_toml("Bad", "m:C"))
    with pytest.raises(ConfigError) as info:
        tre.load_domain_dir(tmp_path)
    assert (info.value.path, info.value.key) == (str(tmp_path / "domain.toml"), "id")


# --- resolve: duplicates and boot order ----------------------------------------------------------

BOOT_LOG: list[str] = []


class Early(tre.Domain):
    async def setup(self) -> None:
        BOOT_LOG.append(self.ctx.id)


class Late(Early):
    async def run(self) -> None:
        BOOT_LOG.append(f"{self.ctx.id}:run")
        await trio.sleep_forever()


def test_resolve_orders_by_boot_order_then_id() -> None:
    cfg = TREConfig(enable=("vault", "mno", "meter", "oem"), paths=(ECHO,))
    extra = [
        spec(Early, id="zeta", boot_order=20),
        spec(Early, id="alpha", boot_order=20),
        spec(Late, id="last", boot_order=1000),
        spec(Early, id="first", boot_order=0),
    ]
    ids = [s.id for s in resolve(cfg, extra)]
    assert ids == ["first", "echo", "oem", "alpha", "meter", "zeta", "mno", "vault", "last"]


def test_resolve_nothing() -> None:
    assert resolve(TREConfig()) == []


@pytest.mark.parametrize(
    ("cfg", "extra"),
    [
        pytest.param(TREConfig(enable=("oem", "oem")), [], id="enabled twice"),
        pytest.param(TREConfig(enable=("oem",)), [spec(Early, id="oem")], id="plugin and spec"),
        pytest.param(TREConfig(paths=(ECHO,)), [spec(Early, id="echo")], id="folder and spec"),
        pytest.param(TREConfig(paths=(ECHO, ECHO)), [], id="folder twice"),
        pytest.param(TREConfig(), [spec(Early, id="x"), spec(Late, id="x")], id="two specs"),
    ],
)
def test_duplicate_ids(cfg: TREConfig, extra: list[tre.DomainSpec]) -> None:
    with pytest.raises(ConfigError, match="also defined by") as info:
        resolve(cfg, extra)
    assert info.value.key == "id"


def test_duplicate_id_names_both_files() -> None:
    with pytest.raises(ConfigError) as info:
        resolve(TREConfig(enable=("oem",)), [spec(Early, id="oem")])
    first = tre.load_plugin("oem").manifest.path
    assert info.value.path == "<spec oem>"
    assert first in str(info.value)


async def test_open_tre_rejects_duplicates_before_booting() -> None:
    BOOT_LOG.clear()
    with pytest.raises(ConfigError):
        async with open_test_tre(spec(Early, id="dup"), spec(Early, id="dup")):
            pytest.fail("booted")  # pragma: no cover
    assert BOOT_LOG == []


async def test_boot_order_respected_in_a_tre(autojump_clock: trio.abc.Clock) -> None:
    BOOT_LOG.clear()
    specs = [
        spec(Late, id="c-late", boot_order=300),
        spec(Early, id="b-tie", boot_order=200),
        spec(Early, id="a-tie", boot_order=200),
        spec(Early, id="z-first", boot_order=1),
    ]
    async with open_test_tre(*specs) as t:
        await trio.lowlevel.checkpoint()
        assert [d.id for d in t.domains()] == ["z-first", "a-tie", "b-tie", "c-late"]
        setups = [x for x in BOOT_LOG if ":" not in x]
        assert setups == ["z-first", "a-tie", "b-tie", "c-late"]
        assert "c-late:run" in BOOT_LOG
        assert BOOT_LOG.index("c-late:run") > BOOT_LOG.index("c-late")


async def test_setup_may_call_a_domain_booted_earlier(autojump_clock: trio.abc.Clock) -> None:
    results: dict[str, Any] = {}

    class Asker(tre.Domain):
        async def setup(self) -> None:
            results["info"] = await self.ctx.call("oem", "info")

    # oem allows info to "mno" only among test ids, so the asker takes that id
    asker = tre.DomainSpec(
        tre.parse_manifest(
            {
                "id": "mno",
                "owner": "t",
                "version": "1",
                "svn": 0,
                "entry": "x:Asker",
                "boot_order": 50,
                "calls": [{"domain": "oem", "methods": ["info"]}],
            }
        ),
        Asker,
    )
    async with open_test_tre(asker, enable=["oem"]) as t:
        assert t.domain("mno").state == "running"
    assert results["info"]["platform"]["model"] == "M2M-Gateway-7"
