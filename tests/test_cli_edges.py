"""Edges of the command line: what `brewops validate run` reconciles with and which tables it
reads (against the emulator's tables), what `brewops stream reconcile` calls lost, the
figures file a notebook run by hand records into, the files the commands share, and the
environment a function runs in."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from types import SimpleNamespace

import pandas as pd
import pytest
from click.testing import CliRunner

from brewops import validation
from brewops.validation_cli import validate

ALL_IDS = sorted(range(1, 326))


@pytest.fixture
def validated(monkeypatch):
    """The `validate` calls the command makes; each returns a passing report with a note."""
    calls = []

    def fake_validate(target, **kwargs):
        calls.append(kwargs)
        return validation.ValidationReport(target="local", notes=["what was produced: test"])

    monkeypatch.setattr(validation, "resolve_target", lambda target: SimpleNamespace(name=target))
    monkeypatch.setattr(validation, "validate", fake_validate)
    return calls


def test_expected_ids_may_end_with_a_separator_or_hold_spaces(validated):
    result = CliRunner().invoke(validate, ["run", "--expected-ids", "1, 2,"])

    assert result.exit_code == 0, result.output
    assert validated[0]["expected"] == [1, 2]


def test_expected_ids_take_precedence_over_the_figures(validated, tmp_path):
    figures = tmp_path / "03_produce_to_kinesis.json"
    figures.write_text(json.dumps({"records_sent": 3, "ids_sent": [1, 2, 3]}), encoding="utf-8")

    result = CliRunner().invoke(validate, ["run", "--figures", str(figures), "--expected-ids", "7"])

    assert result.exit_code == 0, result.output
    assert validated[0]["expected"] == [7]
    assert validated[0]["tables"] == ("cleaned", "raw")


def test_the_report_ends_with_its_notes(validated):
    result = CliRunner().invoke(validate, ["run", "--expected-ids", "1"])

    assert result.output.splitlines()[-1] == "note: what was produced: test"


def test_a_finding_with_thousands_of_ids_prints_a_few_on_one_line(monkeypatch):
    offending = range(1, 3001)
    findings = pd.DataFrame(
        {"table": "cleaned", "rule": "range", "column": "ph", "id": offending, "value": 99.0}
    )
    report = validation.ValidationReport(target="local", quality=validation.QualityReport(findings))
    monkeypatch.setattr(validation, "resolve_target", lambda target: SimpleNamespace(name=target))
    monkeypatch.setattr(validation, "validate", lambda target, **kwargs: report)

    result = CliRunner().invoke(validate, ["run", "--expected-ids", "1"])

    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if " ph " in line)
    assert row.rstrip().endswith("1, 2, 3, 4, 5, 6 and 2994 more"), row
    assert len(row) <= 120


@pytest.fixture
def validate_cli(delivered, monkeypatch, tmp_path):
    monkeypatch.setattr(validation, "resolve_target", lambda target: delivered.tables)
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "empty-build"))
    monkeypatch.delenv("BREWOPS_FIGURES_FILE", raising=False)
    runner = CliRunner()
    return lambda *args: runner.invoke(validate, ["run", *args])


@pytest.mark.emulator
def test_expected_ids_may_be_separated_by_bars_as_well_as_commas(validate_cli):
    result = validate_cli("--table", "cleaned", "--expected-ids", "1|2|999")

    assert result.exit_code == 1
    assert "lost records (cleaned): 1 of 3 produced ids are missing: ids 999" in result.output


@pytest.mark.emulator
def test_only_the_tables_asked_for_are_validated(validate_cli):
    result = validate_cli("--table", "cleaned", "--expected-ids", ",".join(map(str, ALL_IDS)))

    assert result.exit_code == 0, result.output
    assert "Partitions of cleaned" in result.output
    assert "Partitions of raw" not in result.output


@pytest.mark.emulator
def test_figures_recorded_against_another_stack_are_not_reconciled_against(
    validate_cli, delivered, monkeypatch, tmp_path
):
    # the stack was deleted and deployed again: the figures describe records it never held
    monkeypatch.setattr(delivered.tables, "stack_id", "arn:stack/brewops-dev/new", raising=False)
    figures = tmp_path / "03_produce_to_kinesis.json"
    figures.write_text(
        json.dumps(
            {
                "records_sent": delivered.records,
                "ids_sent": ALL_IDS,
                "stack_id": "arn:stack/brewops-dev/old",
            }
        ),
        encoding="utf-8",
    )

    result = validate_cli("--figures", str(figures))

    assert result.exit_code == 1
    assert "nothing to reconcile against, so lost records cannot be checked" in result.output


@pytest.mark.emulator
def test_reconcile_fails_when_produced_beers_never_arrived(
    streaming_stack, catalog_beers, monkeypatch, tmp_path
):
    from types import SimpleNamespace

    from brewops import streaming_cli

    stack = streaming_stack()
    target = SimpleNamespace(
        name="local", outputs=stack.outputs, session=stack.session, stack_id="arn:stack/test/1"
    )
    monkeypatch.setattr(streaming_cli, "use_target", lambda name: target)
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(catalog_beers[:3]), encoding="utf-8")
    runner = CliRunner()

    sent = runner.invoke(streaming_cli.stream, ["backfill", "--catalog", str(catalog)])
    # no drain: the records wait in Kinesis and never reach the bucket
    result = runner.invoke(streaming_cli.stream, ["reconcile"])

    assert sent.exit_code == 0, sent.output
    assert result.exit_code == 1
    assert "records were lost" in result.output
    # what it advises finds them
    assert "`brewops stream drain` delivers what the stream holds" in result.output
    drained = runner.invoke(streaming_cli.stream, ["drain", "--no-progress"])
    again = runner.invoke(streaming_cli.stream, ["reconcile"])
    assert drained.exit_code == 0, drained.output
    assert again.exit_code == 0 and "nothing lost" in again.output, again.output


@pytest.mark.emulator
def test_without_figures_the_ids_the_stream_commands_recorded_are_reconciled_against(
    validate_cli, delivered, monkeypatch
):
    from brewops import streaming_cli

    stack = "arn:stack/brewops-dev/1"
    monkeypatch.setattr(delivered.tables, "stack_id", stack, raising=False)
    streaming_cli.remember_produced("local", [*ALL_IDS, 999], stack)  # 999 never arrived

    result = validate_cli("--table", "cleaned")

    assert result.exit_code == 1
    assert "ids 999" in result.output


def test_a_notebook_run_by_hand_records_its_figures_beside_the_build_and_keeps_them(
    monkeypatch, tmp_path, umask
):
    from brewops import summary

    umask(0o022)
    monkeypatch.delenv(summary.FIGURES_ENV, raising=False)
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))

    summary.record(records_sent=325)
    everything = summary.record(ids_sent=[1, 2])

    path = tmp_path / "build" / "figures" / "interactive.json"
    assert everything == {"records_sent": 325, "ids_sent": [1, 2]}
    assert summary.read(path) == everything
    assert summary.record("03_produce_to_kinesis", n=1) == {"n": 1}
    # what JSON has no type for (a time, a path) is kept as its text, not a crash
    summary.record("03_produce_to_kinesis", started=datetime(2024, 1, 1, tzinfo=UTC))
    kept = summary.read(tmp_path / "build" / "figures" / "03_produce_to_kinesis.json")
    assert kept == {"n": 1, "started": "2024-01-01 00:00:00+00:00"}
    assert (tmp_path / "build" / "figures" / "03_produce_to_kinesis.json").exists()
    # readable by others, as the run summary and the executed notebooks are
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_figures_counted_by_pandas_are_recorded_as_numbers_and_flags(monkeypatch, tmp_path):
    import numpy as np
    import pandas as pd

    from brewops import summary

    path = tmp_path / "figures.json"
    monkeypatch.setenv(summary.FIGURES_ENV, str(path))
    ibu = pd.Series([20.0, 120.0, 1157.0])

    summary.record(
        ibu_over_100=(ibu > 100).sum(),
        all_bitter=(ibu > 10).all(),
        top=ibu.max(),
        share=np.float32(0.5),  # no Python float underneath, unlike float64
        shares=np.array([0.25, 0.75]),  # no one number: its text
    )

    assert summary.read(path) == {
        "ibu_over_100": 2,
        "all_bitter": True,
        "top": 1157.0,
        "share": 0.5,
        "shares": "[0.25 0.75]",
    }
    assert isinstance((ibu > 100).sum(), np.integer)  # what a notebook is given to record


def test_figures_recorded_again_come_back_in_the_order_given(monkeypatch, tmp_path):
    """A notebook's key figures cell run a second time shows them as the first run did."""
    from brewops import summary

    monkeypatch.setenv(summary.FIGURES_ENV, str(tmp_path / "figures.json"))
    figures = {"rows_used": 320, "cv_accuracy": 0.6, "baseline_accuracy": 0.3}

    first = summary.record(**figures)
    summary.record(model_version="v1")
    again = summary.record(**{**figures, "cv_accuracy": 0.65})  # a run that scored otherwise

    assert list(first) == list(figures)
    assert list(again) == [*figures, "model_version"]
    assert again["cv_accuracy"] == 0.65, "the figure recorded last is kept"


def test_figures_recorded_on_a_full_disk_keep_those_recorded_before(monkeypatch, tmp_path):
    import os
    import resource
    import subprocess
    import sys

    from brewops import summary
    from fixtures.coverage_run import unmeasured

    path = tmp_path / "figures.json"
    monkeypatch.setenv(summary.FIGURES_ENV, str(path))
    summary.record(records_sent=325)
    before = path.read_text(encoding="utf-8")

    def disk_full_past_before() -> None:  # files may grow no larger than it is
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before), len(before)))

    recording = "from brewops import summary; summary.record(ids_sent=list(range(1, 326)))"
    full = subprocess.run(  # -B: no bytecode cached cut short at the limit, for later imports
        [sys.executable, "-B", "-c", recording],
        preexec_fn=disk_full_past_before,
        env=unmeasured(os.environ),  # no coverage data file to write either
        capture_output=True,
        encoding="locale",
        check=False,
    )

    assert "File too large" in full.stderr
    assert summary.read(path) == {"records_sent": 325}


def test_a_shared_file_whose_write_fails_keeps_its_old_text_and_leaves_no_litter(tmp_path):
    from brewops.files import write_atomically

    path = tmp_path / "produced-ids-local.json"
    write_atomically(path, '{"ids": [1]}')

    with pytest.raises(UnicodeEncodeError):
        write_atomically(path, '{"ids": ["\ud800"]}')  # cannot be written as UTF-8

    assert path.read_text(encoding="utf-8") == '{"ids": [1]}'
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_shared_file_interrupted_while_written_keeps_its_old_text_and_leaves_no_litter(
    monkeypatch, tmp_path
):
    import os

    from brewops.files import write_atomically

    path = tmp_path / "produced-ids-local.json"
    write_atomically(path, '{"ids": [1]}')

    def interrupted(descriptor: int) -> None:  # Ctrl-C while the disk catches up
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, '{"ids": [1, 2]}')

    assert path.read_text(encoding="utf-8") == '{"ids": [1]}'
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_shared_file_on_a_full_disk_names_the_file_and_the_folder_setting(monkeypatch, tmp_path):
    import errno
    import os

    from brewops.cli import _file_system_refusal
    from brewops.files import write_atomically

    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    path = tmp_path / "build" / "local" / "firehose" / "brewops-dev-raw.json"

    def disk_full(descriptor: int) -> None:  # as the write to the open file fails
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError) as raised:
        write_atomically(path, '{"shards": {}}')

    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(path)
    said = _file_system_refusal(raised.value)
    assert said.startswith(f"{path}: No space left on device.") and "BREWOPS_BUILD_DIR" in said
    assert list(path.parent.iterdir()) == []


def test_a_functions_environment_is_put_back_as_it_was_even_when_it_fails(monkeypatch):
    import os

    from brewops.environ import applied_environment

    monkeypatch.setenv("BREWOPS_TARGET", "aws")
    monkeypatch.delenv("PUNKAPI_URL", raising=False)

    with (
        pytest.raises(RuntimeError),
        applied_environment(
            {"BREWOPS_TARGET": "local", "PUNKAPI_URL": "http://127.0.0.1:1/v2", "BATCH": 80}
        ),
    ):
        assert os.environ["BATCH"] == "80"  # as Lambda passes it: a string
        raise RuntimeError("the handler failed")

    assert os.environ["BREWOPS_TARGET"] == "aws"
    assert "PUNKAPI_URL" not in os.environ and "BATCH" not in os.environ


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{not json", "Expecting property name"), ("[1, 2]", "a JSON list, not an object")],
)
def test_a_figures_file_that_is_not_notebook_03s_is_one_line(validated, tmp_path, content, problem):
    from brewops.cli import main

    figures = tmp_path / "figures.json"
    figures.write_text(content, encoding="utf-8")

    result = CliRunner().invoke(main, ["validate", "run", "--figures", str(figures)])

    assert result.exit_code == 1, result.output
    assert f"Error: {figures} is not a figures file notebook 03 wrote ({problem}" in result.output
    assert "--expected-ids" in result.output
    assert validated == []


@pytest.mark.parametrize("ids", ["0", "5,-3"])
def test_expected_ids_below_1_are_refused_in_one_line(validated, ids):
    result = CliRunner().invoke(validate, ["run", "--expected-ids", ids])

    assert result.exit_code == 2 and not validated
    assert "beer ids start at 1" in result.output and "--expected-ids" in result.output


@pytest.mark.parametrize("names_the_file", [True, False], ids=["names-the-file", "no-number"])
def test_naming_leaves_an_error_that_names_the_file_or_has_no_number_as_it_is(
    names_the_file, tmp_path
):
    from brewops.files import naming

    path = tmp_path / "beers.json"
    error = (
        OSError(28, "No space left on device", str(path))
        if names_the_file
        else OSError("a message, no error number")
    )
    with pytest.raises(OSError) as raised, naming(path):
        raise error

    assert raised.value is error


def test_a_shared_hold_that_cannot_be_made_exclusive_at_once_is_kept(tmp_path):
    import fcntl

    from brewops.files import held_alone, shared

    lock = tmp_path / ".runs.lock"
    with shared(lock) as first:
        with shared(lock):
            assert not held_alone(first, wait=False)  # the second holds it too
        # Linux lets go of a shared flock it fails to turn exclusive: the first must not
        # have, so with the second gone no one else can hold it alone
        with lock.open("ab") as third, pytest.raises(BlockingIOError):
            fcntl.flock(third, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_variable_given_as_none_is_unset_for_the_duration_then_put_back(monkeypatch):
    import os

    from brewops.environ import applied_environment

    monkeypatch.setenv("MPLBACKEND", "TkAgg")
    monkeypatch.delenv("PYTHONOPTIMIZE", raising=False)

    with applied_environment({"MPLBACKEND": None, "PYTHONOPTIMIZE": None}):
        assert "MPLBACKEND" not in os.environ and "PYTHONOPTIMIZE" not in os.environ

    assert os.environ["MPLBACKEND"] == "TkAgg" and "PYTHONOPTIMIZE" not in os.environ


@pytest.mark.parametrize("mode", [None, 0o644], ids=["private", "shared"])
def test_a_shared_file_in_a_folder_that_refuses_it_names_the_file(monkeypatch, tmp_path, mode):
    import errno
    import os
    import tempfile

    from brewops.files import write_atomically

    path = tmp_path / "figures" / "run-summary.json"
    path.parent.mkdir()

    def refused(*args, **kwargs):  # as a folder another user owns refuses a new file
        raise PermissionError(errno.EACCES, "Permission denied", str(path.parent / ".x.part"))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    monkeypatch.setattr(os, "open", refused)
    with pytest.raises(PermissionError) as raised:
        write_atomically(path, "{}", mode=mode)

    assert raised.value.filename == str(path)  # not the temporary file the user never named


def test_a_shared_file_another_user_owns_is_refused_naming_it(monkeypatch, tmp_path):
    import errno
    import os

    from brewops.files import write_atomically

    path = tmp_path / "run-summary.json"
    write_atomically(path, "{}")

    def replace_refused(source, destination):  # as in /tmp, over another user's file
        raise PermissionError(errno.EPERM, "Operation not permitted", source, destination)

    monkeypatch.setattr(os, "replace", replace_refused)
    with pytest.raises(PermissionError) as raised:
        write_atomically(path, '{"records_sent": 325}')

    assert raised.value.filename == str(path)  # not the temporary file, gone by now
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_figures_that_are_not_finite_are_recorded_as_null(monkeypatch, tmp_path):
    # R² of a single beer is NaN: Python would write `NaN`, which jq and browsers refuse
    import numpy as np

    from brewops import summary

    path = tmp_path / "figures.json"
    monkeypatch.setenv(summary.FIGURES_ENV, str(path))

    summary.record(cv_r2=round(float("nan"), 4), top=np.float64("inf"), low=np.float32("-inf"))

    assert json.loads(path.read_text(encoding="utf-8"), parse_constant=pytest.fail) == {
        "cv_r2": None,
        "top": None,
        "low": None,
    }
