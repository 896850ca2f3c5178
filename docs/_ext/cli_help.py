"""``{cli-help}``: the ``optax-clr`` command line's ``--help``, at build time.

The directive renders the group's help and then one section per command
(sorted by name) with that command's ``--help`` as printed by click, so the
page lists every command and flag the installed CLI has and cannot drift
from it::

  ```{cli-help}
  ```
"""

from __future__ import annotations

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

WIDTH = 88


def command_help(args: list[str]) -> str:
  """What ``optax-clr *args --help`` prints (at ``WIDTH`` columns)."""
  from click.testing import CliRunner  # pylint: disable=import-outside-toplevel
  from optax_clr.cli import cli  # pylint: disable=import-outside-toplevel
  result = CliRunner().invoke(cli, [*args, "--help"], prog_name="optax-clr",
                              terminal_width=WIDTH)
  if result.exit_code != 0:
    raise RuntimeError(f"optax-clr {' '.join(args)} --help exited "
                       f"{result.exit_code}: {result.output}")
  return result.output.rstrip()


def command_names() -> list[str]:
  """The CLI's commands, sorted."""
  from optax_clr.cli import cli  # pylint: disable=import-outside-toplevel
  return sorted(cli.commands)


class CliHelp(SphinxDirective):
  """The whole CLI: the group's help, then a section per command."""

  has_content = False

  def _block(self, args: list[str]) -> nodes.literal_block:
    text = command_help(args)
    block = nodes.literal_block(text, text)
    block["language"] = "text"
    return block

  def run(self) -> list[nodes.Node]:
    out: list[nodes.Node] = [self._block([])]
    for name in command_names():
      title = f"optax-clr {name}"
      section = nodes.section(ids=[nodes.make_id(title)])
      section += nodes.title(title, title)
      section += self._block([name])
      out.append(section)
    return out


def setup(app: Sphinx) -> dict[str, bool]:
  app.add_directive("cli-help", CliHelp)
  return {"parallel_read_safe": True, "parallel_write_safe": True}
