"""Sphinx configuration of the optax-clr documentation.

Build (what ``.ci/run`` does, warnings are errors)::

  pip install ".[docs]"
  python -m sphinx -W --keep-going -b html docs docs/_build/html
  python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest

The doctest builder runs every ``>>>`` example: the docstrings pulled in by
autodoc and the ``{doctest}``/``{testcode}`` blocks of the guide.
"""

import os
import pathlib
import sys

# Examples run on the CPU and never write to the user's compilation cache.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["OPTAX_CLR_CACHE_DIR"] = ""

DOCS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

import optax_clr  # noqa: E402  (after the environment above)

project = "optax-clr"
author = "optax-clr developers"
copyright = "optax-clr developers"  # noqa: A001  (Sphinx's name)
release = optax_clr.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "myst_parser",
    "cli_help",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "evidence/*.md", "Thumbs.db", ".DS_Store"]

# MyST: ::: fences, definition lists, $math$, and anchors for headings down to ###.
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3

# autodoc: members in source order, signatures without the long defaults'
# module paths; the package uses Google-style docstrings (napoleon).
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Attributes sections as :ivar: fields: dataclass fields documented by
# :members: would otherwise be described twice (a duplicate warning).
napoleon_use_ivar = True
napoleon_custom_sections = [("Specs", "params_style")]

# Doctests: every example imports what it uses; nothing is set up globally
# except quiet progress bars.
doctest_global_setup = """
import os
os.environ["OPTAX_CLR_CACHE_DIR"] = ""
"""

html_theme = "furo"
html_title = f"optax-clr {release}"
html_static_path = []
