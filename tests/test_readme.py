"""README.md runs as written: every ```bash and ```python block, in order.

The blocks are extracted from README.md at collection time and run one test
case each, in README order, in ONE fresh temporary directory shared by all
cases of this module (so a later command may read what an earlier one wrote,
e.g. ``--bounds-from runs/range-test-*/results.json``). The rules:

* **bash blocks** are split into commands: one per line, a line ending in
  ``\\`` continues on the next, blank lines and ``#`` comment lines are
  dropped. ``pip install ... && CMD`` runs only ``CMD`` (the package is
  installed already, and tests never run pip); a command that only installs
  is skipped, and so is one that runs the test suite itself (``pytest``,
  ``python -m pytest``: this test is part of it).
* **python blocks** run in a subprocess each. A block is preceded by the
  import statements of every earlier python block (a reader's session keeps
  its imports) and by the earlier python blocks of the same ``##`` section
  in full: blocks of one section may build on each other's definitions;
  a new section starts from the imports only.
* **slow**: a command that matches one of :data:`SLOW_COMMANDS` at its start
  (the demo, training runs, sweeps, example scripts: tens of seconds each),
  and every command or block of a fenced block that follows a
  ``<!-- slow -->`` line (blank lines may stand between them), is marked
  ``slow`` and runs only
  with ``python -m pytest -m slow``. A python block that replays a slow
  block of its section is slow too. A fast command that needs the output
  of a slow one must be marked slow itself.

The temporary directory holds copies of the repository's ``examples/``,
``benchmarks/``, ``tools/`` and ``docs/`` (without builds), so commands such
as ``python examples/range_test.py --update-docs`` work and never write into
the checkout. Commands see the same Python environment as the tests (its
``bin`` first on ``PATH``), the CPU backend and no compilation cache.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# Commands (after stripping ``pip install ... &&``) that take longer than
# ~20 s on 2 CPU cores: regular expressions matched at the command's start.
SLOW_COMMANDS = (
    r"optax-clr demo",
    r"optax-clr train",
    r"optax-clr fit",
    r"optax-clr disciplined",
    r"optax-clr range-test\b.*--(parallel|seeds)\b",  # many copies at once
    r"python examples/",
    r"(bash|python) benchmarks/",
)
SLOW_MARKER = "<!-- slow -->"
# Directories copied next to the commands, so that relative paths work.
COPIED = ("examples", "benchmarks", "tools", "docs")
TIMEOUT = {False: 180, True: 900}  # seconds per case: default, slow

_FENCE = re.compile(r"^```(\w+)\s*$")
_PIP = re.compile(r"^\s*(python\d?\s+-m\s+)?pip3?\s+install\b")
_PYTEST = re.compile(r"^\s*(python\d?\s+-m\s+)?pytest\b")


@dataclasses.dataclass(frozen=True)
class Block:
  """A fenced code block of the README."""
  lang: str      # "bash" or "python"
  code: str
  line: int      # 1-based line of the opening fence
  section: str   # the ``##`` heading above it ("" before the first)
  slow: bool     # a <!-- slow --> line precedes it


@dataclasses.dataclass(frozen=True)
class Case:
  """One test case: a shell command, or a python block with its prelude."""
  kind: str      # "bash" or "python"
  code: str      # the command, or the whole program
  line: int
  slow: bool
  skip: str | None = None  # why it is not run

  @property
  def id(self) -> str:
    head = self.code.strip().splitlines()[-1] if self.kind == "python" else (
        self.code)
    words = re.sub(r"[^\w.=/-]+", "_", head)[:40].strip("_")
    return f"L{self.line}-{self.kind}-{words}"


def parse_blocks(text: str) -> list[Block]:
  """The ```bash and ```python blocks of a Markdown text, in order."""
  blocks, lines = [], text.splitlines()
  section, pending_slow, i = "", False, 0
  while i < len(lines):
    line = lines[i]
    if line.startswith("## "):
      section, pending_slow = line[3:].strip(), False
    elif line.strip() == SLOW_MARKER:
      pending_slow = True
    fence = _FENCE.match(line)
    if fence:
      j = i + 1
      while j < len(lines) and not lines[j].startswith("```"):
        j += 1
      if fence.group(1) in ("bash", "python"):
        blocks.append(Block(fence.group(1), "\n".join(lines[i + 1:j]) + "\n",
                            i + 1, section, pending_slow))
      pending_slow, i = False, j + 1
      continue
    if line.strip() and line.strip() != SLOW_MARKER:
      pending_slow = False
    i += 1
  return blocks


def shell_commands(block: Block) -> list[tuple[int, str]]:
  """``(line, command)`` of each command of a bash block."""
  out, pending, start = [], "", 0
  for k, raw in enumerate(block.code.splitlines()):
    line = raw.rstrip()
    if not pending:
      start = block.line + 1 + k
      if not line.strip() or line.lstrip().startswith("#"):
        continue
    if pending:
      line = line.lstrip()
    if line.endswith("\\"):
      pending += line[:-1].rstrip() + " "
      continue
    out.append((start, pending + line))
    pending = ""
  if pending:
    out.append((start, pending))
  return out


def strip_install(command: str) -> str | None:
  """``pip install X && CMD`` -> ``CMD``; None for an install alone."""
  parts = [p.strip() for p in command.split("&&")]
  kept = [p for p in parts if not _PIP.match(p)]
  return " && ".join(kept) if kept else None


def is_slow_command(command: str) -> bool:
  return any(re.match(p, command.lstrip()) for p in SLOW_COMMANDS)


def import_lines(code: str) -> list[str]:
  """The top-level import statements of a python block."""
  try:
    tree = ast.parse(code)
  except SyntaxError:
    return []
  return [ast.get_source_segment(code, node) for node in tree.body
          if isinstance(node, (ast.Import, ast.ImportFrom))]


def readme_cases(text: str) -> list[Case]:
  """Every test case of a README text (see the module docstring)."""
  cases, imports = [], []  # imports of the sections before this one
  section_code: list[Block] = []
  section = None
  for block in parse_blocks(text):
    if block.section != section:
      for earlier in section_code:
        imports.extend(import_lines(earlier.code))
      section, section_code = block.section, []
    if block.lang == "bash":
      for line, command in shell_commands(block):
        run = strip_install(command)
        if run is None:
          cases.append(Case("bash", command, line, False,
                            "installs only (the package is installed)"))
        elif _PYTEST.match(run):
          cases.append(Case("bash", run, line, False,
                            "runs the test suite, which this test is in"))
        else:
          cases.append(Case("bash", run, line,
                            block.slow or is_slow_command(run)))
      continue
    prelude = "\n".join(imports)
    replay = "".join(b.code for b in section_code)
    program = "\n".join(p for p in (prelude, replay, block.code) if p)
    slow = block.slow or any(b.slow for b in section_code)
    cases.append(Case("python", program, block.line, slow))
    section_code.append(block)
  return cases


CASES = readme_cases(README.read_text()) if README.exists() else []


def _param(case: Case):
  marks = [pytest.mark.slow] if case.slow else []
  if case.skip:
    marks.append(pytest.mark.skip(reason=case.skip))
  return pytest.param(case, id=case.id, marks=marks)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """The fresh directory every case of this module runs in."""
  path = tmp_path_factory.mktemp("readme")
  for name in COPIED:
    if (ROOT / name).is_dir():
      shutil.copytree(ROOT / name, path / name, ignore=shutil.ignore_patterns(
          "_build", "__pycache__", "runs"))
  return path


def _env() -> dict[str, str]:
  env = dict(os.environ)
  bin_dir = os.path.dirname(sys.executable)
  env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
  env.update(JAX_PLATFORMS="cpu", MPLBACKEND="Agg", OPTAX_CLR_CACHE_DIR="",
             PYTHONUNBUFFERED="1")
  env.pop("XLA_FLAGS", None)  # a fresh shell's one device, whatever ran before
  return env


def _run(args: list[str], cwd: pathlib.Path, slow: bool
         ) -> subprocess.CompletedProcess:
  return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True,
                        text=True, timeout=TIMEOUT[slow], stdin=subprocess.DEVNULL)


def _tail(text: str, lines: int = 40) -> str:
  return "\n".join(text.strip().splitlines()[-lines:])


@pytest.mark.xdist_group("readme")  # one directory, one order
@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_readme_block_runs(case: Case, workdir: pathlib.Path):
  if case.kind == "bash":
    proc = _run(["bash", "-c", case.code], workdir, case.slow)
    what = f"README.md line {case.line}: $ {case.code}"
  else:
    script = workdir / f"readme_L{case.line}.py"
    script.write_text(case.code)
    proc = _run([sys.executable, script.name], workdir, case.slow)
    what = f"README.md line {case.line}: python block (run as {script})"
  assert proc.returncode == 0, (
      f"{what}\nexit status {proc.returncode}\n--- stdout\n{_tail(proc.stdout)}"
      f"\n--- stderr\n{_tail(proc.stderr)}")


# ----------------------------------------------------------------------------
# The extraction rules themselves, on a small README.

SAMPLE = """# Title

```bash
pip install . && optax-clr demo
pip install ".[dev]" && python -m pytest
pip install ".[bench]"
optax-clr range-test \\
  --steps 10   # short
optax-clr range-test --steps 50 --parallel 8
```

## One

```python
import numpy as np
x = np.arange(3)
```

```python
print(x.sum())
```

## Two

<!-- slow -->

```python
print(np.ones(2))
```

```text
not run
```
"""


def test_bash_commands_lose_pip_install_and_keep_continuations():
  bash = [c for c in readme_cases(SAMPLE) if c.kind == "bash"]
  assert [(c.code, c.slow, c.skip is not None) for c in bash] == [
      ("optax-clr demo", True, False),
      ("python -m pytest", False, True),
      ('pip install ".[bench]"', False, True),
      ("optax-clr range-test --steps 10   # short", False, False),
      ("optax-clr range-test --steps 50 --parallel 8", True, False),
  ]
  assert [c.line for c in bash] == [4, 5, 6, 7, 9]


def test_python_blocks_replay_their_section_and_keep_earlier_imports():
  py = [c for c in readme_cases(SAMPLE) if c.kind == "python"]
  assert len(py) == 3  # the ```text block is not run
  assert py[1].code == "import numpy as np\nx = np.arange(3)\n\nprint(x.sum())\n"
  # A new section: the imports only, not x.
  assert py[2].code == "import numpy as np\nprint(np.ones(2))\n"


def test_slow_marker_marks_the_next_block_only():
  py = [c for c in readme_cases(SAMPLE) if c.kind == "python"]
  assert [c.slow for c in py] == [False, False, True]


def test_blocks_run_on_one_device_whatever_the_test_process_forced(
    monkeypatch):
  # A forced device count left by an earlier test once ran the README's fit
  # on 8 CPU devices, where CI's busy cores hit XLA's collective time limit.
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  env = _env()
  assert "XLA_FLAGS" not in env
  assert env["JAX_PLATFORMS"] == "cpu"
