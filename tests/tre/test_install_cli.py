"""``tre install|remove|transfer`` end to end through the CLI, with the owner-side tools
(``tre package keygen|build|sign``) and the root role (``tre root new|rotate``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.device_helpers import EXAMPLE, assert_one_line_error, cli, status_json

HELLO = EXAMPLE.parent / "plugins" / "hello"


def _refused(code: int, out: str, err: str, what: str) -> None:
    assert code == 3, (code, out, err)
    assert out == ""
    assert err.strip().splitlines() == [err.strip()]
    assert err.startswith(f"tre: error: {what}: ")


def test_install_update_remove_and_transfer_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f, s = tmp_path / "factory", tmp_path / "state"
    assert cli(capsys, "factory", "init", "--factory", f)[0] == 0
    assert cli(capsys, "provision", "--state", s, "--factory", f)[0] == 0
    owner, new_owner = tmp_path / "hello.key", tmp_path / "new.key"
    for key in (owner, new_owner):
        assert cli(capsys, "package", "keygen", "--out", key)[0] == 0

    def package(counter: int, *keys: Path) -> Path:
        path = tmp_path / f"hello-{counter}.pkg"
        args = ("package", "build", "--domain-dir", HELLO, "--out", path)
        assert cli(capsys, *args, "--counter", str(counter))[0] == 0
        for key in keys:
            assert cli(capsys, "package", "sign", "--key", key, path)[0] == 0
        return path

    # Root v1 delegates nothing to hello: refused until the manufacturer delegates it.
    _refused(*cli(capsys, "install", "--state", s, package(1, owner)), "UPDATE_WRONG_TARGET")
    root2 = tmp_path / "root-2.cbor"
    args = ("root", "new", "--factory", f, "--owner", f"hello={owner}.pub", "--out", root2)
    assert cli(capsys, *args)[0] == 0
    assert cli(capsys, "root", "rotate", "--state", s, root2)[0] == 0

    code, out, err = cli(capsys, "install", "--state", s, "--json", package(1, owner))
    assert code == 0, err
    result = json.loads(out)
    assert (result["domain"], result["action"], result["counter"]) == ("hello", "installed", 1)
    hello = {d["id"]: d for d in status_json(capsys, s)["domains"]}["hello"]
    assert (hello["counter"], hello["source"]) == (1, "package:domains/hello/1")

    _refused(*cli(capsys, "install", "--state", s, package(1, owner)), "UPDATE_ROLLBACK")
    _refused(*cli(capsys, "install", "--state", s, package(2)), "UPDATE_BELOW_THRESHOLD")
    meter_key = f / "owners" / "meter.key"
    _refused(*cli(capsys, "install", "--state", s, package(2, meter_key)), "UPDATE_MIS_SCOPED")
    wrong = ("install", "--state", s, "--domain", "meter", package(2, owner))
    _refused(*cli(capsys, *wrong), "UPDATE_WRONG_TARGET")
    code, out, err = cli(capsys, "install", "--state", s, package(2, owner))
    assert code == 0 and "updated domain hello: counter 2" in out, err

    # Transfer: the root re-delegates hello, then old and new owner sign.
    root3 = tmp_path / "root-3.cbor"
    redelegate = ("root", "new", "--factory", f, "--owner", f"hello={new_owner}.pub")
    assert cli(capsys, *redelegate, "--out", root3)[0] == 0
    assert cli(capsys, "root", "rotate", "--state", s, root3)[0] == 0
    transfer = ("transfer", "--state", s, "--domain", "hello", "--package")
    _refused(*cli(capsys, *transfer, package(3, new_owner)), "UPDATE_BELOW_THRESHOLD")
    code, out, err = cli(capsys, *transfer, package(3, owner, new_owner), "--json")
    assert code == 0, err
    assert json.loads(out)["action"] == "transferred"

    code, out, err = cli(capsys, "remove", "--state", s, "--domain", "hello")
    assert code == 0 and "removed domain hello" in out, err
    _refused(*cli(capsys, "remove", "--state", s, "--domain", "hello"), "INSTALL_REFUSED")
    hello = {d["id"]: d for d in status_json(capsys, s)["domains"]}["hello"]
    assert (hello["state"], hello["counter"], hello["keys"]) == ("removed", 3, 0)


def test_bad_files_and_usage_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f, s = tmp_path / "factory", tmp_path / "state"
    cli(capsys, "factory", "init", "--factory", f)
    cli(capsys, "provision", "--state", s, "--factory", f)
    missing = tmp_path / "missing.pkg"
    assert_one_line_error(*cli(capsys, "install", "--state", s, missing), "cannot read")
    junk = tmp_path / "junk.pkg"
    junk.write_bytes(b"\x00" * 40)
    assert_one_line_error(*cli(capsys, "install", "--state", s, junk), "tre-package/1")
    shutil.copytree(HELLO, tmp_path / "hello")
    pkg = tmp_path / "h.pkg"
    cli(capsys, "package", "build", "--domain-dir", tmp_path / "hello", "--out", pkg)
    other = tmp_path / "not-a-state"
    assert_one_line_error(*cli(capsys, "install", "--state", other, pkg), "not a provisioned")
    code, out, err = cli(capsys, "transfer", "--state", s, "--domain", "hello")
    assert code == 2 and "--package" in err
    for command in ("install", "remove", "transfer"):
        code, out, _ = cli(capsys, command, "--help")
        assert code == 0 and "--state" in out
