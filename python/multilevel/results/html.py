"""Jupyter's rich display: fits and summaries shown as their text report in a ``<pre>``.

Notebooks call ``_repr_html_`` when it exists. The report's text is laid out in columns, so
it is shown as it prints, escaped, in a monospaced block; the tables themselves are
DataFrames (``fit.tidy()``, ``fit.glance()``, ``summary.coefficients``) that notebooks
render as HTML tables of their own.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["HtmlFitMixin", "HtmlTextMixin", "pre"]


def pre(text: str, kind: str) -> str:
    """``text`` escaped in a ``<pre>`` with the class ``multilevel-<kind>``."""
    return f'<pre class="multilevel-{kind}">{html.escape(str(text), quote=False)}</pre>'


class HtmlFitMixin:
    """``_repr_html_`` of a fit: its ``summary()`` in a ``<pre>``."""

    def _repr_html_(self: Any) -> str:
        return pre(str(self.summary()), "fit")


class HtmlTextMixin:
    """``_repr_html_`` of a report object: its ``str()`` in a ``<pre>``."""

    def _repr_html_(self: Any) -> str:
        return pre(str(self), "summary")
