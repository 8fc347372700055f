"""Every numbered notebook, in order, under nbval against the local target.

The notebooks assert what must hold in their own cells (325 beers, nothing lost, the gates,
the model beating its baselines); nbval fails on any cell that raises. Run in a separate
pytest process so each notebook gets a fresh kernel, with the session's local target.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from brewops.paths import notebooks_dir
from brewops.runner import NotebookResult, discover


def nbval(notebooks: list[Path], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """pytest with nbval alone over `notebooks`: a plugin installed beside it (one that
    reorders tests, say) would run the cells out of order."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "nbval",
            "--nbval-lax",
            "-p",
            "no:cacheprovider",
            "--nbval-cell-timeout",
            "900",
            "-q",
            *map(str, notebooks),
        ],
        capture_output=True,
        encoding="locale",
        env={**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        cwd=notebooks_dir().parent,
    )


@pytest.mark.emulator
@pytest.mark.slow
def test_the_notebooks_pass_nbval_in_order(local_stack, local_state_dir: Path, tmp_path: Path):
    notebooks = discover()
    assert notebooks, f"no numbered notebooks in {notebooks_dir()}"
    env = {
        **os.environ,
        "BREWOPS_LOCAL_STATE_DIR": str(local_state_dir),
        "BREWOPS_BUILD_DIR": str(tmp_path / "build"),
        "MPLBACKEND": "Agg",
    }
    result = nbval(notebooks, env)
    tail = "\n".join(result.stdout.splitlines()[-60:])
    assert result.returncode == 0, f"nbval failed:\n{tail}\n{result.stderr[-2000:]}"
    recorded = {p.stem for p in (tmp_path / "build" / "figures").glob("*.json")}
    assert recorded == {nb.stem for nb in notebooks}, "every notebook records its key figures"


REVERSING_PLUGIN = """
def pytest_collection_modifyitems(items):
    items.reverse()
"""


def test_nbval_runs_the_cells_in_order_whatever_other_pytest_plugins_are_installed(
    tmp_path: Path,
):
    import nbformat

    # an installed plugin that reorders tests, found by its entry point as pip would leave it
    (tmp_path / "reversing_plugin.py").write_text(REVERSING_PLUGIN, encoding="utf-8")
    dist_info = tmp_path / "reversing_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: reversing-plugin\nVersion: 1.0\n", encoding="utf-8"
    )
    (dist_info / "entry_points.txt").write_text(
        "[pytest11]\nreversing = reversing_plugin\n", encoding="utf-8"
    )
    notebook = tmp_path / "two_cells.ipynb"
    cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("assert x == 1")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), notebook)
    pythonpath = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))

    result = nbval([notebook], {**os.environ, "PYTHONPATH": pythonpath})

    assert result.returncode == 0, result.stdout[-2000:]


def numbered(prefix: str) -> Path:
    [notebook] = [nb for nb in discover() if nb.stem.startswith(prefix)]
    return notebook


def run_alone(
    prefix: str,
    parameters: dict[str, Any],
    tmp_path: Path,
    monkeypatch,
    notebook: Path | None = None,
) -> NotebookResult:
    """The result of the notebook numbered `prefix` (or of `notebook`), executed by itself."""
    from brewops.runner import execute

    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = notebook or numbered(prefix)
    run = execute([notebook], parameters=parameters, out_dir=tmp_path / "build", progress=False)
    [result] = run.notebooks
    return result


def with_cell_run_twice(prefix: str, marker: str, folder: Path) -> Path:
    """A copy of the notebook numbered `prefix` in which the cell containing `marker` runs
    twice in a row, as when a learner runs it again in the same kernel."""
    import nbformat

    source = numbered(prefix)
    nb = nbformat.read(source, as_version=4)
    [index] = [i for i, cell in enumerate(nb.cells) if marker in cell.source]
    again = nbformat.from_dict(nb.cells[index])
    again.id = f"{again.id}-again"
    nb.cells.insert(index + 1, again)
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / source.name
    nbformat.write(nb, copy)
    return copy


def printed(executed: str, marker: str) -> list[str]:
    """What each cell containing `marker` printed, in the executed notebook."""
    import nbformat

    cells = nbformat.read(executed, as_version=4).cells
    return [
        "".join(out.get("text", "") for out in cell.outputs if out.output_type == "stream")
        for cell in cells
        if marker in cell.source
    ]


@pytest.mark.emulator
@pytest.mark.parametrize(
    "reconciliation",
    [{"require_reconciliation": False}, {"expected_ids": []}],
    ids=["not required", "required of the raw table"],
)
def test_notebook_04_validates_the_raw_table_alone(
    local_stack,
    local_state_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reconciliation: dict[str, Any],
):
    """The cleaned-table sections stand aside instead of failing on what was not read (the
    known quirks of the real catalogue say they went unchecked), and a required
    reconciliation is asked of the raw table alone."""
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(local_state_dir))
    parameters = {"tables": ["raw"], "real_catalogue": True, **reconciliation}

    result = run_alone("04_", parameters, tmp_path, monkeypatch)

    assert result.status == "ok", result.error
    assert result.figures["gates_passed"] is True
    [quirks] = printed(result.executed, "known_quirks_unchecked")
    assert quirks.startswith("SKIPPED the real catalogue's known quirks were not checked")
    # without notebook 03's figures, only expected_ids give the raw table something to check
    assert result.figures["reconciliation_checked"] is ("expected_ids" in reconciliation)


def test_notebook_05_on_too_small_a_catalogue_says_how_many_beers_it_has(
    catalog_beers, write_catalog_file, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Set to a catalogue file, the notebook needs no stack; when the file holds too few
    beers the error says how many it has, not only to run the notebooks before it."""
    from brewops.catalog import to_v3_shape

    small = write_catalog_file([to_v3_shape(b) for b in catalog_beers[:20]], "small-v3.json")

    result = run_alone("05_", {"catalog": str(small), "register": False}, tmp_path, monkeypatch)

    assert result.status == "failed"
    assert "too few beers to train on (20 with an IBU, 100 needed)" in result.error
    assert "set catalog to a catalogue that has more" in result.error


def test_notebook_05_refuses_a_protocol_that_cannot_run_in_its_first_cell(
    catalog_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The protocol's folds and seed are parameters like its repeats; a value that cannot
    run is refused naming it, before the data is read."""
    import nbformat

    parameters = {"catalog": str(catalog_path), "register": False, "folds": 1, "seed": 7}
    result = run_alone("05_", parameters, tmp_path, monkeypatch)

    assert result.status == "failed"
    assert "Protocol n_splits=1: it must be a whole number, at least 2" in result.error
    executed = nbformat.read(result.executed, as_version=4)
    reading = next(c for c in executed.cells if "features.labelled(records)" in c.source)
    assert reading.execution_count is None


def first_failure(name: str, parameters: dict[str, Any]) -> tuple[Exception, str]:
    """(the error, the source of the cell raising it) when the code cells of notebook
    `name` run in order in one namespace as in Jupyter, with `parameters` typed into its
    parameters cell: values of any type, which `brewops notebooks run` would refuse."""
    namespace: dict[str, Any] = {"display": lambda *objects, **options: None}
    for source in _code_cells(name):
        try:
            exec(source, namespace)
        except Exception as error:
            return error, source
        if "\ntarget = " in f"\n{source}":  # the parameters cell
            namespace.update(parameters)
    pytest.fail(f"every cell of {name} ran")


@pytest.mark.parametrize(
    ("parameters", "said"),
    [
        ({"predict_ids": 5}, "predict_ids must be a list of beer ids such as [1, 25, 100], not 5"),
        ({"predict_ids": "1,2"}, "predict_ids must be a list of beer ids such as"),
        ({"catalog": "no-such-catalogue.json"}, "Cannot read the catalogue no-such-catalogue.json"),
        ({"catalog": ""}, "The catalogue must be the path of a file"),
    ],
    ids=["a number", "a string", "a missing catalogue", "an empty path"],
)
def test_notebook_05_refuses_beers_to_predict_or_a_catalogue_it_cannot_use_in_its_first_cell(
    catalog_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parameters, said
):
    """Refused before the target starts (none runs here) and the model trains: 5 was a
    TypeError after the training, "1,2" predicted five other beers."""
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path / "no-local-target"))
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))

    error, cell = first_failure(
        "05_train_evaluate_model", {"catalog": str(catalog_path), **parameters}
    )

    assert said in str(error)
    assert "protocol = train.Protocol(" in cell, "the first cell after the parameters"


@pytest.mark.parametrize(
    ("parameters", "said"),
    [
        ({"ticks": "3"}, "ticks must be a whole number of ticks, 0 or more, not '3'"),
        ({"ticks": -1}, "ticks must be a whole number of ticks, 0 or more, not -1"),
        ({"ticks": 2.5}, "ticks must be a whole number of ticks, 0 or more, not 2.5"),
        ({"delivery_timeout": 0}, "delivery_timeout must be a number of seconds above 0"),
        ({"delivery_timeout": "900"}, "delivery_timeout must be a number of seconds above 0"),
    ],
)
def test_notebook_03_refuses_ticks_or_a_delivery_timeout_that_cannot_run_before_it_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parameters, said
):
    """Refused in the first cell, not after the backfill: "3" was a TypeError once the
    catalogue had been sent, -1 ran no tick, a timeout of 0 reported every beer lost."""
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path / "no-local-target"))
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))

    error, cell = first_failure("03_produce_to_kinesis", {"progress": False, **parameters})

    assert said in str(error)
    assert "tgt = targets.use(target)" in cell, "the first cell after the parameters"


@pytest.mark.parametrize(
    ("name", "parameters", "first_cell"),
    [
        ("02_deploy_infra", {"deploy": False, "cleanup": "false"}, "infra.load_template()"),
        ("03_produce_to_kinesis", {"cleanup": "false"}, "tgt = targets.use(target)"),
        ("04_validate_glue_table", {"require_reconciliation": "false"}, "targets.use(target)"),
        ("05_train_evaluate_model", {"register": "False"}, "protocol = train.Protocol("),
    ],
    ids=["02 cleanup", "03 cleanup", "04 require_reconciliation", "05 register"],
)
def test_a_notebook_refuses_a_flag_given_as_a_string_in_its_first_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name, parameters, first_cell
):
    """papermill's `-p cleanup false` (`-r cleanup False` too) gives a string, which `if
    cleanup:` took as true: notebook 02 deleted the stack it was told to keep."""
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path / "no-local-target"))
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    [(flag, value)] = [(k, v) for k, v in parameters.items() if isinstance(v, str)]

    error, cell = first_failure(name, parameters)

    assert f"{flag} must be True or False, not {value!r}" in str(error)
    assert "papermill's -p reads True and False, capitalised" in str(error)
    assert first_cell in cell, "the first cell after the parameters"


def test_the_flag_check_names_every_flag_that_is_not_a_boolean():
    from brewops.parameters import checked_flags

    checked_flags(deploy=True, cleanup=False)  # booleans pass
    with pytest.raises(ValueError) as refused:
        checked_flags(deploy="true", progress=True, cleanup=0, register=None)

    said = str(refused.value)
    assert "deploy must be True or False, not 'true'; cleanup must be True or False, not 0" in said
    assert "register must be True or False, not None" in said
    assert "-y 'deploy: false'" in said, "the way papermill takes a boolean"
    assert "progress" not in said


def test_notebook_03_run_by_the_runner_refuses_a_negative_number_of_ticks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import nbformat

    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path / "no-local-target"))
    result = run_alone("03_", {"ticks": -1, "progress": False}, tmp_path, monkeypatch)

    assert result.status == "failed"
    assert "ticks must be a whole number of ticks, 0 or more, not -1" in result.error
    executed = nbformat.read(result.executed, as_version=4)
    backfill = next(c for c in executed.cells if "put_beers(" in c.source)
    assert backfill.execution_count is None


@pytest.mark.emulator
def test_notebook_05_refuses_a_model_version_not_in_the_registry_before_it_trains(
    local_stack, local_state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import nbformat

    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(local_state_dir))
    missing = "20200101T000000Z-deadbeef"

    result = run_alone("05_", {"model_version": missing, "register": False}, tmp_path, monkeypatch)

    assert result.status == "failed"
    assert f"no model version {missing} under s3://" in result.error
    # older than the local target: gone with an earlier emulator, as the error says
    assert "`brewops local down` discarded it" in result.error
    executed = nbformat.read(result.executed, as_version=4)
    training = next(c for c in executed.cells if "train.train(" in c.source)
    assert training.execution_count is None, "the check comes before the training"


@pytest.mark.emulator
def test_notebook_03_backfill_cell_run_again_reports_its_own_crawl(
    local_stack, local_state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Run a second time in the same kernel, the backfill cell counts the requests of that
    crawl, not those of both: a client kept from the first run would add them up."""
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(local_state_dir))
    marker = "api.all_beers("
    notebook = with_cell_run_twice("03_", marker, tmp_path / "notebooks")

    result = run_alone("03_", {"ticks": 0, "progress": False}, tmp_path, monkeypatch, notebook)

    assert result.status == "ok", result.error
    crawls = [
        [line for line in text.splitlines() if "requests" in line]
        for text in printed(result.executed, marker)
    ]
    assert len(crawls[0]) == 1 and crawls[0][0].startswith("325 beers from the Punk API in ")
    assert crawls[1] == crawls[0], "the same crawl again, the same number of requests"


@pytest.mark.emulator
def test_notebook_03_run_again_reconciles_only_what_that_run_delivered(
    local_stack,
    local_state_dir: Path,
    punkapi_server,
    catalog_beers,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """A second session on the same stack (another api_url, fewer beers) reads only the
    objects it delivered: the earlier run's copies could hide a beer this one lost."""
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(local_state_dir))
    quick = {"ticks": 0, "progress": False}
    first = run_alone("03_", quick, tmp_path / "first", monkeypatch)
    fewer = {**quick, "api_url": punkapi_server(beers=catalog_beers[:10])}

    second = run_alone("03_", fewer, tmp_path / "second", monkeypatch)

    assert first.status == "ok", first.error
    assert second.status == "ok", second.error
    [reconciliation] = printed(second.executed, "print(result)")
    assert "raw: 10 records, 10 unique ids" in reconciliation, reconciliation
    assert "cleaned: 10 rows, 10 unique ids" in reconciliation, reconciliation
    assert "objects delivered earlier" in reconciliation, reconciliation


@pytest.mark.emulator
def test_after_notebook_03_the_commands_know_what_it_sent(
    local_target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`stream fill` after notebook 03 does not send the catalogue again (notebook 04 would
    count every beer a duplicate), and `stream reconcile` checks what the notebook sent."""
    from click.testing import CliRunner

    from brewops import streaming_cli

    # the commands switch this process to the local target: local_target switches it back
    result = run_alone("03_", {"ticks": 1, "progress": False}, tmp_path, monkeypatch)
    assert result.status == "ok", result.error

    fill = CliRunner().invoke(streaming_cli.stream, ["fill", "--no-progress"])
    reconciled = CliRunner().invoke(streaming_cli.stream, ["reconcile", "--target", "local"])

    assert fill.exit_code == 0, fill.output
    assert "326 records already produced into this stack: no backfill" in fill.output
    assert reconciled.exit_code == 0, reconciled.output
    assert "raw: 326 records" in reconciled.output, reconciled.output


@pytest.mark.emulator
def test_notebook_03_recording_cell_run_again_records_its_beers_once(
    local_target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Run twice in the same kernel, the cell that records what was sent recorded it twice:
    `stream reconcile` then expected every beer twice and said half of them were lost."""
    from click.testing import CliRunner

    from brewops import streaming_cli

    notebook = with_cell_run_twice("03_", "remember_produced(", tmp_path / "notebooks")
    result = run_alone("03_", {"ticks": 1, "progress": False}, tmp_path, monkeypatch, notebook)
    assert result.status == "ok", result.error

    produced, _ = streaming_cli.read_produced("local", local_target.stack_id)
    reconciled = CliRunner().invoke(streaming_cli.stream, ["reconcile", "--target", "local"])

    assert len(produced) == result.figures["records_sent"] == 326
    assert reconciled.exit_code == 0, reconciled.output


def _code_cells(name: str) -> list[str]:
    import nbformat

    notebook = nbformat.read(notebooks_dir() / f"{name}.ipynb", as_version=4)
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


@pytest.mark.emulator
def test_notebook_03_reconciles_a_backfill_run_again_without_the_earlier_runs_ticks(
    local_target: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # as in Jupyter: the whole notebook, then its backfill cell again, then its delivery
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    cells = _code_cells("03_produce_to_kinesis")
    namespace: dict[str, Any] = {"display": lambda *objects, **options: None}
    for source in cells:
        exec(source, namespace)
        if "ticks = " in source:  # the parameters cell
            namespace.update(progress=False, ticks=1)
    assert namespace["result"].ok and namespace["records_sent"] == 326

    backfill = next(source for source in cells if "put_beers(" in source)
    delivery = next(source for source in cells if "runtime.drain()" in source)
    checks = next(source for source in cells if "assert result.ok" in source)
    for source in (backfill, delivery, checks):
        exec(source, namespace)
    assert namespace["result"].produced == namespace["records_sent"] == 325


def test_notebook_02_refuses_a_template_parameter_the_template_does_not_declare_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`sam deploy` would leave a misspelt name out without a word; locally, nothing starts."""
    state_dir = tmp_path / "no-local-target"
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(state_dir))
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("MPLBACKEND", "Agg")

    from fixtures.local import local_command

    try:
        error, cell = first_failure("02_deploy_infra", {"template_parameters": "ShardCont=2"})
    finally:
        local_command("down", env_dir=state_dir)  # had it started

    assert "the template declares no parameter ShardCont; it declares Stage" in str(error)
    assert "infra.deploy(target, **overrides)" in cell
    assert not (state_dir / "state.json").exists()


@pytest.mark.emulator
def test_notebook_02_deploys_the_local_stack_with_the_template_parameters_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import json

    import boto3

    from brewops.local.state import CREDENTIALS
    from fixtures.local import local_command

    state_dir = tmp_path / "local"
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(state_dir))
    try:
        result = run_alone("02_", {"template_parameters": "ShardCount=2"}, tmp_path, monkeypatch)

        assert result.status == "ok", result.error
        state = json.loads((state_dir / "state.json").read_text(encoding="utf-8"))
        assert state["parameter_overrides"] == {"ShardCount": "2"}
        session = boto3.session.Session(region_name="us-east-1", **CREDENTIALS)
        kinesis = session.client("kinesis", endpoint_url=state["endpoint_url"])
        stream = kinesis.describe_stream(StreamName=state["outputs"]["StreamName"])
        assert len(stream["StreamDescription"]["Shards"]) == 2
    finally:
        local_command("down", env_dir=state_dir)


def run_cells(name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The namespace after the code cells of notebook `name` ran in order in it, as in
    Jupyter, with `parameters` typed into its parameters cell."""
    namespace: dict[str, Any] = {"display": lambda *objects, **options: None}
    for source in _code_cells(name):
        exec(source, namespace)
        if "\ntarget = " in f"\n{source}":  # the parameters cell
            namespace.update(parameters)
    return namespace


def test_notebook_02_run_only_to_delete_deletes_a_stack_whose_first_deploy_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime_retired: str
):
    """A stack whose first deploy rolled back has no Outputs to read: a run with deploy =
    False, cleanup = True must delete it all the same, as it must once AWS has retired the
    functions' runtime (a lint error that stops a deploy only)."""
    import boto3
    from botocore.stub import Stubber

    from brewops import target as targets

    session = boto3.session.Session(
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # pragma: allowlist secret
    )
    cloudformation = session.client("cloudformation")
    rolled_back = {
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/brewops-dev/1",
        "StackName": "brewops-dev",
        "CreationTime": "2026-01-01T00:00:00Z",
        "StackStatus": "ROLLBACK_COMPLETE",
    }
    stubber = Stubber(cloudformation)
    stubber.add_response("describe_stacks", {"Stacks": [rolled_back]}, {"StackName": "brewops-dev"})
    stubber.activate()
    monkeypatch.setattr(session, "client", lambda service_name, **kwargs: cloudformation)
    monkeypatch.setattr(targets, "aws_session", lambda **kwargs: session)
    calls = tmp_path / "calls"
    sam = tmp_path / "sam"  # the real one needs an AWS account
    sam.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n', encoding="utf-8")
    sam.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("BREWOPS_STACK_NAME", raising=False)
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("MPLBACKEND", "Agg")

    namespace = run_cells("02_deploy_infra", {"target": "aws", "deploy": False, "cleanup": True})

    assert calls.read_text(encoding="utf-8").splitlines() == [
        "delete --stack-name brewops-dev --no-prompts"
    ]
    assert namespace["figures"]["outputs"] is None  # nothing of the stack was read


def test_notebook_02_run_only_to_delete_a_local_target_that_is_not_running_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    state_dir = tmp_path / "no-local-target"
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(state_dir))
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("MPLBACKEND", "Agg")

    run_cells("02_deploy_infra", {"target": "local", "deploy": False, "cleanup": True})

    assert not (state_dir / "state.json").exists()
