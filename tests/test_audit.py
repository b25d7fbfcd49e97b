"""``cascache-audit``: what an auditor reads (help, table, legend, replay lines) and exit codes."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from model.audit import Row, aimed, main, named, parse, plan
from model.machine import FAULTS
from model.run import CONTROLS, FAULT_HELP, TARGETED, TOPOLOGIES, TOPOLOGY_HELP, Result, Target
from model.zoo import VARIANTS


def test_every_topology_and_fault_family_is_explained(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(TOPOLOGY_HELP) == set(TOPOLOGIES)
    assert set(FAULT_HELP) == set(FAULTS)
    assert set(TARGETED) == set(CONTROLS)
    with pytest.raises(SystemExit) as exited:
        parse(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    for name, text in [*TOPOLOGY_HELP.items(), *FAULT_HELP.items()]:
        assert f"  {name} " in shown
        assert text.split()[0] in shown


def test_an_unknown_fault_family_names_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["--faults", "step,gremlins"])
    err = capsys.readouterr().err
    assert "unknown fault families: gremlins" in err
    assert "known: " + ", ".join(sorted(FAULTS)) in err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--budget", "nan"], "--budget must be a positive number of seconds, got nan"),
        (["--exhaustive", "--max-states", "-5"], "--max-states must be at least 1, got -5"),
        (["--exhaustive", "--json", "out.json"], "--exhaustive does not use --json"),
        (["--exhaustive", "--budget", "5", "--seed", "1"], "does not use --budget, --seed"),
        (["--redis-url", "foo"], "--redis-url 'foo': Redis URL must specify one of"),
        (["--json", "/nonexistent/dir/out.json"], "cannot write into /nonexistent/dir"),
        (["--nodes", "1"], "--nodes 1 cannot show the per-node-local-versions control"),
    ],
)
def test_options_that_could_not_work_are_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    # Each was accepted before: ignored, crashing after the run, or failing every time.
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    assert fragment in capsys.readouterr().err


def test_one_node_is_fine_without_the_per_node_control() -> None:
    assert parse(["--nodes", "1", "--topology", "local"]).nodes == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["--variant", "write-creates-fence", "--topology", "local"],
        ["--topology", "redis", "--backend", "cluster", "--no-real"],
        ["--exhaustive", "--variant", "write-creates-fence", "--topology", "local"],
    ],
)
def test_a_run_with_nothing_to_run_fails(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    # It printed "OK" with exit status 0: a CI job would have passed having checked nothing.
    assert main(argv) == 2
    assert "nothing to" in capsys.readouterr().out


def test_an_unreachable_redis_url_is_one_line_not_a_traceback() -> None:
    with pytest.raises(SystemExit, match=r"--redis-url redis://127\.0\.0\.1:1/0: .*111"):
        main(["--redis-url", "redis://127.0.0.1:1/0", "--topology", "redis", "--budget", "3"])


@pytest.mark.parametrize(
    ("variant", "expected_to_fail", "caught", "verdict", "unexpected"),
    [
        (None, False, False, "clean", False),
        (None, False, True, "UNEXPECTED VIOLATION", True),
        (None, True, True, "control caught", False),
        (None, True, False, "CONTROL NOT CAUGHT", True),
        ("no-compare", True, True, "variant caught", False),
        ("no-compare", True, False, "VARIANT NOT CAUGHT", True),
    ],
)
def test_each_outcome_is_labelled_as_what_it_is(
    variant: str | None, expected_to_fail: bool, caught: bool, verdict: str, unexpected: bool
) -> None:
    row = Row(Target("local"), variant, expected_to_fail=expected_to_fail)
    if caught:
        row.caught = Result(row.target, variant, failure="FRESH violated")
    assert row.verdict == verdict
    assert row.unexpected is unexpected


def _replay_argv(output: str, topology: str) -> list[str]:
    lines = output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("---") and topology in line)
    replay = next(line for line in lines[header:] if line.startswith("replay: "))
    argv = shlex.split(replay.removeprefix("replay: "))
    assert argv[0] == "cascache-audit"
    return argv[1:]


def test_a_small_audit_reads_without_help(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "audit.json"
    argv = ["--topology", "local", "--topology", "per-node-local-versions", "--no-real"]
    code = main([*argv, "--budget", "8", "--seed", "3", "--json", str(report)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| local | memory | 2 | - | swarm | clean |" in out
    assert "| per-node-local-versions | memory | 2 | - | targeted | control caught |" in out
    assert "| local | memory | 2 | - | races | clean |" in out  # every correct target's
    assert "Legend:" in out
    assert out.count("replay: cascache-audit ") == 3
    assert "reproduce_failure" not in out and "state = CacheModel()" not in out
    assert out.rstrip().splitlines()[-1].startswith("audit: OK in ")
    rows = json.loads(report.read_text())["rows"]
    assert [(r["topology"], r["phase"], r["verdict"]) for r in rows] == [
        ("local", "swarm", "clean"),
        ("per-node-local-versions", "targeted", "control caught"),
        ("local", "races", "clean"),
    ]

    # The replay line of the caught control finds the same violation again, and
    # --verbose adds Hypothesis's program and blob.
    caught = rows[1]
    replay = _replay_argv(out, "per-node-local-versions")
    assert main([*replay, "--verbose", "--json", str(report)]) == 0
    again = capsys.readouterr().out
    assert "control caught" in again
    assert "reproduce_failure" in again
    replayed = json.loads(report.read_text())["rows"][0]
    assert replayed["caught_seed"] == caught["caught_seed"]
    # The same property (the trace may be shorter: the replay shrinks for longer).
    assert replayed["violation"].split(":")[0] == caught["violation"].split(":")[0]


def test_a_control_that_is_not_caught_fails_the_audit(capsys: pytest.CaptureFixture[str]) -> None:
    # With no rule that races a fill against an invalidate, the control cannot break.
    code = main(
        [
            "--topology",
            "per-node-local-versions",
            "--no-real",
            "--swarm-controls",
            "--faults",
            "none",
            "--rounds",
            "1",
            "--examples",
            "3",
            "--steps",
            "1",
            "--seed",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "CONTROL NOT CAUGHT" in out
    assert "audit: 1 unexpected result(s)" in out


def test_a_coverage_phase_row_replays_from_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--topology", "local", "--no-real", "--phase", "stale singles"]
    code = main([*argv, "--rounds", "1", "--examples", "10", "--seed", "5", "--coverage"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| local | memory | 2 | - | stale singles | clean |" in out
    assert "| local | memory | 2 | - | swarm |" not in out  # --phase runs the phase alone
    replay = _replay_argv(out, "local")
    assert replay[replay.index("--phase") + 1] == "stale singles"
    assert "--- coverage of local/memory/2n, swarm and phases:" in out
    assert "reachable cells not reached: " in out


def test_a_races_row_replays_from_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--topology", "local", "--no-real", "--phase", "races"]
    code = main([*argv, "--rounds", "1", "--examples", "5", "--seed", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| local | memory | 2 | - | races | clean |" in out
    assert "| local | memory | 2 | - | swarm |" not in out
    replay = _replay_argv(out, "local")
    assert replay[replay.index("--phase") + 1] == "races"


def test_variants_run_in_the_race_phase_aimed_at_them() -> None:
    # --variant all --phase races: the variants a race phase aims at, each in its own.
    args = parse(["--variant", "all", "--phase", "races", "--no-real", "--topology", "local"])
    planned = [variant for _, variant in plan(args, real=False)]
    assert planned == sorted(name for name, v in VARIANTS.items() if v.race is not None)
    assert {aimed(v, named("races")) for v in planned if v is not None} == {
        ("coalesced singles",),
        ("coalesced batches",),
    }
    # The zoo hunts a variant the swarm meets too rarely in its race phase.
    assert VARIANTS["lost-batch-store-proves"].hunted_in == ("coalesced batches",)
    assert VARIANTS["join-any"].hunted_in == ()
