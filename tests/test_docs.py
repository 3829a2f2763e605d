"""Every example in README.md and docs/*.md runs as written.

Each page's fenced code blocks are run in document order in a fresh directory of that page (with a copy of
``configs/``, as in a clone): its Python blocks in one namespace, as in a notebook; its ``hnnlab ...`` commands
in-process through :func:`hnnlab.cli.main` (the ``hnnlab`` entry point, without paying the start-up of a new
process for each). Every documented command must be classified in :data:`RULES`: run as written, run with a
documented size override (a training run shortened to a few epochs, a rollout to a few hundred steps), or
skipped with the reason (a GPU, an hour-long reproduction, the installer). A page that needs a file another
page makes (``docs/audit.md`` audits the README's ``rollout.h5``) names it in :data:`NEEDS`.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
# Fence languages whose blocks hold shell commands; an unlabelled block's lines are commands only when they
# start with a command (sample output and the layout listing are unlabelled too).
SHELL = ("bash", "sh", "shell", "console")
COMMAND_START = re.compile(r"^(\.venv/bin/)?hnnlab(\s|$)|^bash\b|^torchrun\b|^srun\b|^\.venv/bin/python\b|^wandb\b")

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


@dataclass
class Block:
    page: str
    line: int  # line of the opening fence
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def read_blocks(page: str) -> list[Block]:
    """The fenced code blocks of a page, in order."""
    text = (ROOT / page).read_text()
    out = []
    for match in re.finditer(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", text, flags=re.S | re.M):
        line = text.count("\n", 0, match.start()) + 1
        out.append(Block(page, line, match.group(1).lower(), match.group(2)))
    return out


def shell_commands(block: Block) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and ``#!``/``#SBATCH`` lines dropped,
    ``.venv/bin/hnnlab`` written ``hnnlab``, whitespace collapsed."""
    if block.lang not in SHELL and block.lang != "":
        return []
    commands = []
    for raw in block.code.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s+#\s.*$", "", raw).strip()  # a trailing comment (a `#` after whitespace)
        if not line or line.startswith("#"):
            continue
        if block.lang == "" and not COMMAND_START.search(line):
            continue
        line = re.sub(r"^\.venv/bin/hnnlab\b", "hnnlab", " ".join(line.split()))
        commands.append(line)
    return commands


# --- how each documented command is run ----------------------------------------------------------------------

CKPT = "{ckpt}"  # stands for the last.ckpt of the page's own `hnnlab fit` run
PLACEHOLDERS = (r"runs/hnnlab/<run( id)?>/checkpoints/last\.ckpt", r"<ckpt>")


@dataclass
class Run:
    """Run a command: ``subs`` (regex, replacement) and ``append`` make its size override; ``rcs`` are the
    accepted exit statuses; ``creates`` the files (globs) it must leave."""

    subs: tuple[tuple[str, str], ...] = ()
    append: tuple[str, ...] = ()
    rcs: tuple[int, ...] = (0,)
    creates: tuple[str, ...] = ()
    override: str = ""  # why the command is shortened (empty: run as written)


@dataclass
class Skip:
    reason: str


AUDIT_OF_A_SHORT_FIT = Run(
    rcs=(0, 1), creates=("report.json", "plots/*.png"),
    override="(as written; the model is trained for 3 epochs, so a threshold may fail: exit 1 names it)",
)
# (pattern, action); the first pattern that matches a command decides.
RULES: list[tuple[str, Run | Skip]] = [
    (r"^bash \.ci/setup", Skip("creates .venv and installs packages: the suite itself runs inside that .venv")),
    (r"^hnnlab demo", Skip("about 7 minutes on 2 cores; tests/test_demo.py runs the demo at a small size")),
    (r"^hnnlab reproduce ", Skip("an hour per paper, or a GPU; tests/test_reproduce_<paper>.py run them small")),
    (r"--trainer\.accelerator gpu|^torchrun |^srun ", Skip("needs GPUs or a cluster (checked on a lent GPU)")),
    (r"--trainer\.accelerator cpu --trainer\.devices 2 --trainer\.strategy ddp",
     Skip("2 DDP processes; the training tests compare 2-process DDP gradients on CPU with one process")),
    (r"^wandb sync ", Skip("uploads to W&B: needs the network and an account")),
    (r"^hnnlab fit( --config configs/spring_hnn\.yaml)? (--print_config|--help)$", Run()),
    (r"^hnnlab fit --config configs/spring_hnn\.yaml --ckpt_path " + "(" + "|".join(PLACEHOLDERS) + ")$",
     Run(subs=tuple((p, CKPT) for p in PLACEHOLDERS), append=("--trainer.max_epochs", "4"),
         override="resumes the 3-epoch run to 4 epochs (2000 as written)")),
    (r"^hnnlab fit --config configs/spring_hnn\.yaml$",
     Run(append=("--trainer.max_epochs", "3"), creates=("runs/hnnlab/*/checkpoints/last.ckpt",),
         override="3 epochs (2000 full-batch steps as written)")),
    (r"^hnnlab test --config configs/spring_hnn\.yaml --ckpt_path " + "(" + "|".join(PLACEHOLDERS) + ")$",
     Run(subs=tuple((p, CKPT) for p in PLACEHOLDERS))),
    (r"^hnnlab rollout --ckpt <ckpt> .*--steps 10000 ",
     Run(subs=(("<ckpt>", CKPT), (r"--steps 10000", "--steps 200")), creates=("rollout.h5",),
         override="200 steps (10,000 as written)")),
    (r"^hnnlab audit rollout\.h5 --json report\.json --plots plots/ ", AUDIT_OF_A_SHORT_FIT),
    (r"^hnnlab esn fit ", Run(creates=("esn.h5",))),
    (r"^hnnlab rollout --ckpt esn\.h5 ", Run(creates=("esn_rollout.h5",))),
    (r"^hnnlab (simulate|data check|audit) ", Run()),
    (r"^hnnlab identify ", Run(creates=("*.json",))),
]
# Files a page needs from another page's run: page -> {file: the page that makes it}.
NEEDS = {"docs/audit.md": {"rollout.h5": "README.md"}}


def rule_for(command: str) -> Run | Skip | None:
    for pattern, action in RULES:
        if re.search(pattern, command):
            return action
    return None


@dataclass
class PageRun:
    directory: Path
    log: list[str] = field(default_factory=list)


_RUNS: dict[str, PageRun] = {}


def _run_command(command: str, action: Run, directory: Path) -> str:
    from hnnlab.cli import main

    for pattern, replacement in action.subs:
        command = re.sub(pattern, replacement, command)
    if CKPT in command:
        found = sorted(directory.glob("runs/hnnlab/*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        assert found, f"{command}: no runs/hnnlab/*/checkpoints/last.ckpt (the page's `hnnlab fit` runs first)"
        command = command.replace(CKPT, str(found[-1].relative_to(directory)))
    argv = shlex.split(command)[1:] + list(action.append)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse and LightningCLI exit on --help and on bad input
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    text = f"$ hnnlab {' '.join(argv)}\n{out.getvalue()}{err.getvalue()}"
    assert rc in action.rcs, f"exit status {rc} (expected {action.rcs}):\n{text[-3000:]}"
    for pattern in action.creates:
        assert list(directory.glob(pattern)), f"{pattern} was not written:\n{text[-3000:]}"
    return text


def _run_python(block: Block, namespace: dict) -> None:
    code = compile(block.code, block.where, "exec")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, namespace)  # noqa: S102 - the documentation's own example


def run_page(page: str, root: Path) -> PageRun:
    """Run every block of ``page`` once per session, in its own directory under ``root``."""
    if page in _RUNS:
        return _RUNS[page]
    directory = root / re.sub(r"\W", "_", page)
    directory.mkdir()
    shutil.copytree(ROOT / "configs", directory / "configs")
    for name, source in NEEDS.get(page, {}).items():
        shutil.copy(run_page(source, root).directory / name, directory / name)
    result = PageRun(directory)
    namespace: dict = {"__name__": "__docs__"}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(directory)
        for block in read_blocks(page):
            if block.lang == "python":
                try:
                    _run_python(block, namespace)
                except Exception as exc:  # noqa: BLE001 - re-raised with the block's place
                    raise AssertionError(f"{block.where}: the Python example fails: {exc!r}") from exc
                result.log.append(f"{block.where}: python ok")
                continue
            for command in shell_commands(block):
                action = rule_for(command)
                assert action is not None, f"{block.where}: `{command}` is not classified in tests/test_docs.py RULES"
                if isinstance(action, Skip):
                    result.log.append(f"{block.where}: skipped `{command}`: {action.reason}")
                    continue
                try:
                    _run_command(command, action, directory)
                except AssertionError as exc:
                    raise AssertionError(f"{block.where}: `{command}`: {exc}") from None
                result.log.append(f"{block.where}: ran `{command}` {action.override}".rstrip())
    _RUNS[page] = result
    return result


@pytest.fixture(scope="module")
def docs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docs")


# --- the tests ----------------------------------------------------------------------------------------------


def test_every_documented_command_is_classified() -> None:
    commands = [(b.where, c) for page in PAGES for b in read_blocks(page) for c in shell_commands(b)]
    assert len(commands) >= 20  # the README's and the docs' command lines were found
    unclassified = [f"{where}: {c}" for where, c in commands if rule_for(c) is None]
    assert unclassified == []


def test_every_python_block_compiles() -> None:
    blocks = [b for page in PAGES for b in read_blocks(page) if b.lang == "python"]
    assert {b.page for b in blocks} >= {"README.md", "docs/rollout.md", "docs/training.md", "docs/audit.md"}
    for block in blocks:
        compile(block.code, block.where, "exec")


def test_the_reader_finds_blocks_commands_and_comments() -> None:
    block = Block("x.md", 1, "bash", "# a comment\nhnnlab audit a.h5 --x 1 \\\n    --y 2   # trailing\n"
                  ".venv/bin/hnnlab simulate --list-recipes\n")
    assert shell_commands(block) == ["hnnlab audit a.h5 --x 1 --y 2", "hnnlab simulate --list-recipes"]
    output = Block("x.md", 1, "", "system  model  verdict\nhnnlab demo\n")
    assert shell_commands(output) == ["hnnlab demo"]
    assert isinstance(rule_for("hnnlab demo"), Skip)
    assert rule_for("hnnlab frobnicate") is None


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if any(
    b.lang == "python" or shell_commands(b) for b in read_blocks(p))])
def test_page_examples_run_as_written(page: str, docs_root: Path) -> None:
    result = run_page(page, docs_root)
    assert result.log, f"{page}: no example ran"
