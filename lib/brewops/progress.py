"""Progress bars: tqdm.auto's, a text bar on a terminal and a widget in a notebook.

A notebook output keeps, beside the widget, the text a viewer without widgets shows
instead (GitHub, an HTML rendering read offline). tqdm writes that text once, when the bar
appears, so an executed copy would say "0/25" forever; this bar writes it again when it
closes, so the copy says "25/25".
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def _draws_widgets() -> bool:
    # tqdm.auto imports tqdm.notebook, and subclasses its bar, only in a notebook kernel
    notebook = sys.modules.get("tqdm.notebook")
    return notebook is not None and issubclass(tqdm, notebook.tqdm_notebook)


class ProgressBar(tqdm):
    """tqdm.auto's bar; in a notebook, its output shows its final state once closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._output = None
        widgets = _draws_widgets()
        if widgets:
            kwargs["display"] = False  # displayed below, where it can be updated
        super().__init__(*args, **kwargs)
        if widgets and not self.disable:
            from IPython.display import display

            self._output = display(self.container, display_id=True)
            self.displayed = True

    def close(self) -> None:
        super().close()
        output, self._output = self._output, None
        if output is not None:  # the text saved beside the widget: the final count
            output.update(self.container)
