"""Progress bars in executed notebooks: what viewers without widgets show."""

from __future__ import annotations

from pathlib import Path

import nbformat

from brewops.runner import discover, execute

WIDGET = "application/vnd.jupyter.widget-view+json"


def test_an_executed_notebook_shows_each_bar_at_its_final_count(tmp_path: Path):
    """GitHub, and the HTML rendering read offline, show the text saved beside a bar's
    widget: the count the bar ended at, not the 0 it started from."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from brewops.progress import ProgressBar\n\n"
            "for _ in ProgressBar(range(25), desc='folds'):\n"
            "    pass\n"
            "with ProgressBar(desc='drain', unit=' records') as bar:  # no total\n"
            "    bar.update(7)\n"
            "for _ in ProgressBar(range(3), desc='quiet', disable=True):  # no widget at all\n"
            "    pass"
        )
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, notebooks / "01_bars.ipynb")

    run = execute(discover(notebooks), target="aws", out_dir=tmp_path / "build", progress=False)

    [result] = run.notebooks
    assert result.status == "ok", result.error
    [cell] = nbformat.read(result.executed, as_version=4).cells[-1:]
    shown = [out.data["text/plain"] for out in cell.outputs if WIDGET in out.get("data", {})]
    assert len(shown) == 2, "one widget per bar shown, none for the disabled one"
    assert "25/25" in shown[0] and "0/25" not in shown[0]
    assert shown[1].startswith("drain: 7 records")
