"""The tre command line: help everywhere, exit 2 with one line on bad input, --json data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tre._cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tre.toml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # --help and --version exit through argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["demo", "--help"],
        ["run", "--help"],
        ["domains", "--help"],
        ["policy", "--help"],
        ["policy", "show", "--help"],
    ],
)
def test_every_command_has_help(capsys, argv):
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert "usage: tre" in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["policy"],
        ["run", "--duration", "soon"],
        ["run", "--duration", "-1"],
        ["demo", "--interval", "0"],
        ["domains", "--what"],
    ],
)
def test_bad_usage_exits_2_with_one_line(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("tre: error: ")


def test_bad_config_names_the_file_and_key(capsys, tmp_path):
    bad = tmp_path / "tre.toml"
    bad.write_text('[domains]\nenable = ["oem"]\nsurprise = 1\n')
    code, _, err = run(capsys, "domains", "--config", str(bad))
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert str(bad) in err and "domains.surprise" in err


def test_missing_config_and_unknown_plugin(capsys, tmp_path):
    code, _, err = run(capsys, "policy", "show", "--config", str(tmp_path / "none.toml"))
    assert code == 2 and "cannot read" in err
    cfg = tmp_path / "tre.toml"
    cfg.write_text('[domains]\nenable = ["nope"]\n')
    code, _, err = run(capsys, "run", "--config", str(cfg), "--duration", "0")
    assert code == 2 and "nope" in err and "oem" in err


def test_domains_table_and_json(capsys):
    code, out, _ = run(capsys, "domains")
    assert code == 0
    for name in ("oem", "meter", "mno", "vault", "isolated"):
        assert name in out
    code, out, _ = run(capsys, "domains", "--json")
    assert code == 0
    data = json.loads(out)
    assert [d["id"] for d in data] == ["oem", "meter", "mno", "vault"]
    assert data[3]["isolated"] is True
    assert data[0]["services"]["timestamp"] == ["meter"]


def test_example_config_loads_the_folder_plugin(capsys):
    code, out, _ = run(capsys, "domains", "--config", str(EXAMPLE), "--json")
    assert code == 0
    assert "hello" in [d["id"] for d in json.loads(out)]


def test_policy_show(capsys):
    code, out, _ = run(capsys, "policy", "show")
    assert code == 0
    assert "caller \\ callee" in out
    assert "mno -> oem.timestamp: DENIED" in out
    assert "Isolated domains: vault" in out
    code, out, _ = run(capsys, "policy", "show", "--json")
    data = json.loads(out)
    assert len(data["digest"]) == 64
    entry = next(
        e
        for e in data["entries"]
        if (e["caller"], e["callee"], e["method"]) == ("meter", "oem", "timestamp")
    )
    assert entry["decision"] == "OK"


def test_run_for_a_while_then_summarise(capsys):
    code, out, err = run(capsys, "run", "--config", str(EXAMPLE), "--duration", "0.3", "--json")
    assert code == 0
    data = json.loads(out)
    assert {d["id"] for d in data["domains"]} == {"oem", "meter", "mno", "vault", "hello"}
    assert all(d["state"] == "running" for d in data["domains"])
    assert "booted" in err


def test_demo_tells_the_whole_story(capsys):
    code, out, _ = run(capsys, "demo", "--interval", "0.02")
    assert code == 0, out
    assert "host -> oem.info" in out
    assert "DENIED" in out
    assert "ABORTED" in out
    assert "generation 1 -> 2" in out
    assert out.rstrip().endswith("demo completed")


def test_demo_installs_a_post_issue_domain_that_then_does_real_work(capsys):
    code, out, _ = run(capsys, "demo", "--interval", "0.02")
    assert code == 0, out
    assert "(granted to the host at provisioning, not installed yet): NO_SUCH_DOMAIN" in out
    step = out.split("A post-issue domain: the utility's signed package is installed after")[1]
    assert "delegates meter, mno, oem, utility, vault: rotated in on the device" in step
    assert "signed by Gridco: installed, counter 2, 2 files, svn 1, owner key " in step
    assert "an older release (counter 1), signed by Gridco: UPDATE_ROLLBACK" in step
    assert "a newer release signed with meter's owner key instead: UPDATE_MIS_SCOPED" in step
    work = step.split("The utility at work")[1]
    assert "utility (Gridco Utility, svn 1) is running, booted from its package" in work
    assert "host -> utility.tariff: 0.25 EUR/kWh" in work
    assert "a negative price: refused by the domain, BAD_TARIFF" in work
    assert "host -> utility.bill with meter.history" in work
    assert "checked with utility.public_key: verified; with the amount changed to 0: invalid" in (
        work
    )
    assert "policy: host -> utility.bill OK" in work
    assert "utility's alias certificate" in work
    assert "chains to the manufacturer CA" in work
    assert "5 nested domain tokens): affirming" in out
    assert "utility's nested token: affirming, owner hash of Gridco's package key" in out
    assert "0 other errors" in out
    assert out.rstrip().endswith("demo completed")


def test_demo_shows_users_and_the_host_interface(capsys):
    code, out, _ = run(capsys, "demo", "--interval", "0.02")
    assert code == 0, out
    assert "first user of the host interface: admin (role admin; the demo uses fixed" in out
    assert "demo admin password" not in out and "demo operator password" not in out
    offline = out.split("A post-issue domain")[1].split("Reboot (boot 2)")[0]
    assert (
        "user operator, role operator, granted meter.latest, utility.bill; users now: admin, "
        "operator" in offline
    )
    step = out.split("Users and the host interface: a host call allowed and one refused")[1]
    step = step.split("A MID:")[0]
    assert "on a Unix socket (mode 0600)" in step
    assert "user operator logs in (role operator, session 900 s)" in step
    assert "the password never crosses the socket" in step
    assert "user operator -> meter.latest (granted): allowed, " in step
    assert (
        "user operator -> utility.tariff (not granted): refused, DENIED (user 'operator' may "
        "not call utility.tariff)" in step
    )
    assert "user operator with a wrong password: AUTH_FAILED" in step
    assert "kernel event denied (host): utility.tariff: not granted to user 'operator'" in step
    assert "kernel event login_failed (host): user 'operator'" in step
    audit = out.split("Audit verification")[1]
    assert "TRE-wide entries naming user 'operator' (the host interface): denied, login, " in (
        audit
    )
    assert out.rstrip().endswith("demo completed")


def test_console_script_runs_as_a_module():
    proc = subprocess.run(
        [sys.executable, "-m", "tre", "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("tre ")
