"""Builds the numbered notebooks from these scripts, so every notebook opens the same way:
H1 title, Colab badge, Overview / What you need / Costs, the Colab install cell, one
`parameters` cell, the Colab cell that starts the local target. Run
`python notebooks/_build/NN_name.py` after editing a script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent
REPOSITORY = "brewops/brewops"
COLAB = "https://colab.research.google.com/github/{repo}/blob/main/notebooks/{name}.ipynb"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"

COLAB_INSTALL = f"""\
# In Colab, set up what `make setup` does locally: the repository (template, lock file) and
# the package at the lock file's versions (Colab keeps its own Jupyter).
import os
import shutil
import subprocess
import sys

if "google.colab" in sys.modules:
    home = "/content/brewops"
    installed = f"{{home}}/.colab-installed"
    if not os.path.exists(installed):  # an interrupted install is tried again
        if not os.path.isdir(home):  # cloned beside it, then moved: never half a clone
            partial, repository = f"{{home}}.partial", "https://github.com/{REPOSITORY}"
            shutil.rmtree(partial, ignore_errors=True)
            subprocess.run(["git", "clone", "-q", "--depth", "1", repository, partial], check=True)
            os.replace(partial, home)
        # the lock's pins without its hashes, which pip would ask of the project's folder too
        constraints = f"{{home}}/constraints.txt"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", constraints, home], check=True)
        open(installed, "w", encoding="utf-8").close()
    os.environ["BREWOPS_HOME"] = home  # where the template and the build folder live"""

# After the parameters, which choose the target: target "aws" needs no emulator.
COLAB_LOCAL_TARGET = """\
# In Colab, start the local target (emulator + Punk API) when this notebook uses it.
if "google.colab" in sys.modules and target == "local":
    subprocess.run(["brewops", "local", "up"], check=True)"""

# Notebooks that read what notebook 03 produced. A Colab runtime runs one notebook, so
# there the local stack is filled the way notebook 03 fills it (backfill, then delivery).
COLAB_FILL_STACK = """
    # this runtime has not run notebook 03: fill the stack as it does (once per stack)
    subprocess.run(["brewops", "stream", "fill", "--no-progress"], check=True)"""


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(text.strip("\n"))


def build(
    name: str,
    title: str,
    overview: str,
    needs: str,
    costs: str,
    parameters: str,
    cells: list,
    reads_produced_data: bool = False,
) -> Path:
    badge = f"[![Open In Colab]({BADGE})]({COLAB.format(repo=REPOSITORY, name=name)})"
    intro = (
        f"# {title}\n\n{badge}\n\n## Overview\n\n{overview.strip()}\n\n"
        f"## What you need\n\n{needs.strip()}\n\n## Costs\n\n{costs.strip()}"
    )
    params = code(parameters)
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook()
    local_target = COLAB_LOCAL_TARGET + (COLAB_FILL_STACK if reads_produced_data else "")
    nb.cells = [md(intro), code(COLAB_INSTALL), params, code(local_target), *cells]
    for number, cell in enumerate(nb.cells):  # stable ids keep regenerated notebooks diff-free
        cell.id = f"{name[:2]}-{number:02d}"
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    path = NOTEBOOKS / f"{name}.ipynb"
    nbformat.write(nb, path)
    # the same lint and format the tests apply, so a regenerated notebook is already clean
    ruff = Path(sys.executable).parent / "ruff"
    subprocess.run([ruff, "check", "--fix", "--quiet", path], check=False)
    subprocess.run([ruff, "format", "--quiet", path], check=True)
    return path
