"""The API reference (docs/api/*.md) documents every public name.

The pages name each object in an autodoc directive (``.. autofunction::
optax_clr.range_test`` inside an ``{eval-rst}`` block, or the MyST form
``{autofunction} optax_clr.range_test``), or describe it by hand with a
``py:`` directive. These tests read those directives without Sphinx, so the
reference cannot fall behind the package: a name added to ``__all__``
without a page entry fails here, and so does an entry whose name no longer
imports.
"""

from __future__ import annotations

import importlib
import pathlib
import re

import optax_clr

API = pathlib.Path(__file__).resolve().parent.parent / "docs" / "api"

# Submodules whose names users import (``optax_clr.optimizers.sgd``,
# ``optax_clr.suggestions.classify``, ...); their public names must be
# documented too. engine/, drivers/ and cli/ are internal.
PUBLIC_SUBMODULES = ("data", "models", "optimizers", "plotting", "results",
                     "schedules", "suggestions")

_DIRECTIVE = re.compile(
    r"^\s*(?:\.\.\s+|```\{)"                       # rST or MyST fence
    r"(auto(?:function|class|data|module|exception|method|attribute)"
    r"|py:(?:function|class|data|module|exception|method|attribute))"
    r"(?:::|\})\s+([\w.]+)", re.M)


def documented() -> dict[str, str]:
  """``{target: page}`` of every object directive in docs/api/*.md."""
  found = {}
  for page in sorted(API.glob("*.md")):
    for _, target in _DIRECTIVE.findall(page.read_text()):
      found.setdefault(target, page.name)
  return found


def resolve(target: str):
  """The object a dotted name documents (module, then attributes)."""
  parts = target.split(".")
  for i in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:i]))
    except ImportError:
      continue
    for name in parts[i:]:
      obj = getattr(obj, name)
    return obj
  raise ImportError(target)


def public_names(module) -> list[str]:
  """``__all__``, else the functions and classes the module defines."""
  if hasattr(module, "__all__"):
    return list(module.__all__)
  return sorted(n for n, v in vars(module).items()
                if not n.startswith("_") and callable(v)
                and getattr(v, "__module__", None) == module.__name__)


def test_the_directive_pattern_reads_both_syntaxes():
  text = (".. autofunction:: optax_clr.a\n"
          "   .. autoclass:: optax_clr.B\n"
          "```{autofunction} optax_clr.c\n"
          ".. py:data:: optax_clr.results.D\n"
          "See ``.. autofunction::`` in prose.\n")
  assert [t for _, t in _DIRECTIVE.findall(text)] == [
      "optax_clr.a", "optax_clr.B", "optax_clr.c", "optax_clr.results.D"]


def test_every_name_in_all_is_in_the_api_reference():
  docs = documented()
  missing = [n for n in optax_clr.__all__ if f"optax_clr.{n}" not in docs]
  assert not missing, (
      f"{missing}: in optax_clr.__all__ but not documented; add "
      "'.. autofunction:: optax_clr.NAME' (or autoclass) to the fitting "
      f"page of {API}")


def test_every_public_submodule_name_is_in_the_api_reference():
  docs = documented()
  missing = []
  for sub in PUBLIC_SUBMODULES:
    module = importlib.import_module(f"optax_clr.{sub}")
    assert f"optax_clr.{sub}" in docs, f"optax_clr.{sub}: no automodule"
    for name in public_names(module):
      obj = getattr(module, name)
      # Re-exported at the top: documented once, under the flat name.
      flat = getattr(optax_clr, name, None) is obj and (
          f"optax_clr.{name}" in docs)
      if f"optax_clr.{sub}.{name}" not in docs and not flat:
        missing.append(f"optax_clr.{sub}.{name}")
  assert not missing, (
      f"{missing}: public but not documented in {API} (document each under "
      "its flat name when optax_clr re-exports it)")


def test_every_documented_name_imports():
  broken = {}
  for target, page in documented().items():
    try:
      resolve(target)
    except (ImportError, AttributeError) as e:
      broken[target] = f"{page}: {type(e).__name__}: {e}"
  assert not broken, f"documented names that do not import: {broken}"


def test_each_object_is_documented_under_one_name():
  # Two directives for one object are a duplicate description in Sphinx.
  by_object = {}
  for target in documented():
    obj = resolve(target)
    if callable(obj) and not isinstance(obj, type(optax_clr)):
      by_object.setdefault(id(obj), []).append(target)
  twice = [names for names in by_object.values() if len(names) > 1]
  assert not twice, f"documented under several names: {twice}"
