"""A griffe extension for the API pages: Sphinx roles in docstrings become code spans.

sdeflow's docstrings name other objects with Sphinx roles (``:class:`sdeflow.ForwardProcess```,
``:meth:`~sdeflow.ForwardProcess.marginal```), which Markdown would show literally. This turns
``:role:`target``` into `` `target` `` and ``:role:`~a.b.c``` into `` `c` `` (Sphinx's tilde
shows the last component) before mkdocstrings renders the docstring.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|data|attr|mod|obj|exc|const):`(~?)([^`]+)`")


def _replace(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"``{target.rsplit('.', 1)[-1] if tilde else target}``"


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx cross-reference roles in every docstring to inline code."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:  # noqa: D102
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_replace, obj.docstring.value)
