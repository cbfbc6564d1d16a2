"""`numpy-resnet assignment make`: write the student copy of the package, tests and lessons.

The library carries no marker: what a student writes is listed in parts.py. Each Stub names a
function by its file and qualified name ("Conv2d.forward", or "im2col_numpy" at module level),
the hint, and `keep`, how many leading statements of the body stay. make copies the package,
finds each stub's function with `ast`, keeps its signature, its docstring and the first `keep`
statements, and replaces the rest of the body (with the comment lines right above it) by the
hint as comment lines and `raise NotImplementedError("<part>: <hint>")` at the body's
indentation. Files of the parts not selected are copied unchanged.

Before writing anything make resolves every stub of every part, selected or not, and stops
with the file and the function named if one names no function or keeps the whole body: the
table cannot drift from the code unnoticed. It then checks that each stubbed body in the copy
parses and is exactly the kept statements and the raise.

The copy's default engine is the reference one: make rewrites the line `_engine = "fast"` of
the copy's engine/dispatch.py to `_engine = "reference"` (and stops if that line is not
there), whatever parts are stubbed. The fast engine has its own twins of Conv2d, BatchNorm2d,
ReLU and the blocks, which would answer in place of a student's stub; with the reference
engine a student who runs their copy runs their own code. (The grader sets the reference
engine itself too, so this default is for the student, not for the grades.)
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from .parts import PARTS, Stub

LINE_LENGTH = 110                 # the stub's lines, as ruff's limit for the library

# the copy's default engine: this line of engine/dispatch.py, rewritten
ENGINE_FILE = "engine/dispatch.py"
ENGINE_LINE = '_engine = "fast"'
ENGINE_REFERENCE = '_engine = "reference"'

# what is copied beside the package, and what never is
EXTRA_DIRS = ("tests", "lessons")
EXTRA_FILES = ("pyproject.toml", "README.md")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc", ".numba*", ".pytest_cache",
                                  "test_assignment.py", "output")
GRADER_ONLY = ("make.py", "grade.py", "grading_tests")     # of numpy_resnet/assignment/


def _ignore(folder: str, names: list[str]) -> set[str]:
    """Caches never go into the copy, nor the grader's own files (its tests hold reference code)."""
    ignored = set(_IGNORED(folder, names))
    if Path(folder).name == "assignment":
        ignored |= {n for n in names if n in GRADER_ONLY}
    return ignored


def stub_source(text: str, stubs: list[tuple[str, Stub]], where: str = "<text>") -> str:
    """One file's text with the bodies of `stubs` ([(part, Stub)]) replaced by their stubs."""
    lines = text.split("\n")
    tree = _parse(text, where)
    spans = []
    for part, stub in stubs:
        start, end, indent = _body_span(tree, lines, stub, where)
        spans.append((start, end, stub_lines(indent, part, stub.hint), stub))
    spans.sort(key=lambda span: span[0])
    for before, after in zip(spans, spans[1:], strict=False):
        if after[0] < before[1]:
            raise ValueError(f"{where}: the stubs of {before[3].function} and {after[3].function} overlap")
    for start, end, new, _ in reversed(spans):
        lines[start:end] = new
    stubbed = "\n".join(lines)
    _check_stubbed(stubbed, [stub for _, stub in stubs], where)
    return stubbed


def stub_lines(indent: str, part: str, hint: str) -> list[str]:
    """The hint as comment lines, then raise NotImplementedError("<part>: <hint>") (over several
    lines when it is long), at `indent`."""
    width = LINE_LENGTH - len(indent)
    comments = [f"{indent}# {line}" for line in _wrap(hint, width - 2)]
    message = f"{part}: {hint}"
    line = f"{indent}raise NotImplementedError({message!r})"
    if len(line) <= LINE_LENGTH:
        return comments + [line]
    pieces = [f"{indent}    {piece!r}" for piece in _wrap(message, width - 7, keep_spaces=True)]
    return comments + [f"{indent}raise NotImplementedError("] + pieces + [f"{indent})"]


def _wrap(text: str, width: int, keep_spaces: bool = False) -> list[str]:
    """Greedy wrap at spaces; with keep_spaces the pieces keep their trailing space, so that
    "".join(pieces) == text."""
    pieces: list[str] = []
    for word in text.split(" "):
        if pieces and len(pieces[-1]) + 1 + len(word) <= width:
            pieces[-1] += " " + word
        else:
            pieces.append(word)
    if keep_spaces:
        pieces = [piece + " " for piece in pieces[:-1]] + pieces[-1:]
    return pieces


def find_function(tree: ast.Module, qualname: str, where: str = "<text>") -> ast.FunctionDef:
    """The def of "Class.method" or "function" in a parsed module; ValueError if not exactly one."""
    scope: list[ast.stmt] = tree.body
    names = qualname.split(".")
    for depth, name in enumerate(names):
        last = depth == len(names) - 1
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef) if last else (ast.ClassDef,)
        found = [node for node in scope if isinstance(node, kinds) and node.name == name]
        if len(found) != 1:
            what = "function" if last else "class"
            raise ValueError(f"{where}: {qualname}: found {len(found)} {what}(s) named {name!r}, "
                             f"expected one; update its Stub in numpy_resnet/assignment/parts.py")
        scope = found[0].body
    return found[0]


def statements_after_docstring(function: ast.FunctionDef) -> list[ast.stmt]:
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[1:]
    return body


def _body_span(tree: ast.Module, lines: list[str], stub: Stub, where: str) -> tuple[int, int, str]:
    """(first line, end line) as list indices, and the indentation, of what the stub replaces."""
    function = find_function(tree, stub.function, where)
    statements = statements_after_docstring(function)
    if not 0 <= stub.keep < len(statements):
        raise ValueError(f"{where}: {stub.function} has {len(statements)} statement(s) after its "
                         f"docstring; keep={stub.keep} would leave nothing to write; update its Stub "
                         f"in numpy_resnet/assignment/parts.py")
    first = statements[stub.keep]
    line = lines[first.lineno - 1]
    indent = line[:len(line) - len(line.lstrip())]
    if len(indent.encode()) != first.col_offset:             # col_offset counts UTF-8 bytes
        raise ValueError(f"{where}: {stub.function}: the first statement to stub does not begin its line")
    start = first.lineno - 1
    index = function.body.index(first)
    previous = function.body[index - 1].end_lineno if index else function.lineno
    while start - 1 >= previous and lines[start - 1].strip().startswith("#"):
        start -= 1                          # a comment right above the first stubbed line explains it
    end = function.end_lineno
    def_indent = function.col_offset
    while end < len(lines) and lines[end].strip().startswith("#") \
            and len(lines[end]) - len(lines[end].lstrip()) > def_indent:
        end += 1                            # comments after the last statement belong to the body
    return start, end, indent


def _parse(text: str, where: str) -> ast.Module:
    try:
        return ast.parse(text)
    except SyntaxError as error:
        raise ValueError(f"{where}: does not parse: {error}") from error


def _check_stubbed(text: str, stubs: list[Stub], where: str) -> None:
    """Each stubbed body is now the kept statements and one raise, and the file parses."""
    tree = _parse(text, where)
    for stub in stubs:
        statements = statements_after_docstring(find_function(tree, stub.function, where))
        if len(statements) != stub.keep + 1 or not isinstance(statements[-1], ast.Raise):
            raise AssertionError(f"{where}: {stub.function} was not stubbed cleanly")


def stubs_by_file(parts: list[str]) -> dict[str, list[tuple[str, Stub]]]:
    """{file: [(part, Stub)]} for the stubs of `parts`."""
    by_file: dict[str, list[tuple[str, Stub]]] = {}
    for part in parts:
        for stub in PARTS[part].stubs:
            by_file.setdefault(stub.file, []).append((part, stub))
    return by_file


def check_stubs(package_dir: Path) -> None:
    """Resolve every stub of every part against a package folder; ValueError naming the first
    stub whose file or function is missing or whose body is too short for its `keep`."""
    empty = [name for name, part in PARTS.items() if not part.stubs]
    if empty:
        raise ValueError(f"assignment make: parts {empty} have no stubs")
    for rel, stubs in stubs_by_file(list(PARTS)).items():
        path = Path(package_dir) / rel
        if not path.is_file():
            raise ValueError(f"numpy_resnet/{rel}: no such file, named by the stub of "
                             f"{stubs[0][1].function}; update numpy_resnet/assignment/parts.py")
        stub_source(path.read_text(encoding="utf-8"), stubs, f"numpy_resnet/{rel}")


def make_student_copy(out: str | Path, parts: list[str], source_root: str | Path | None = None,
                      force: bool = False) -> dict:
    """Write numpy_resnet/, tests/ and lessons/ of `source_root` into `out`, `parts` stubbed.

    source_root: the folder holding numpy_resnet/ (default: the one this module belongs to).
    Returns {"out", "parts", "stubs": {part: number of stubbed functions}, "files": [changed files]}.
    """
    source_root = Path(source_root) if source_root else Path(__file__).resolve().parents[2]
    out = Path(out).resolve()
    package = source_root / "numpy_resnet"
    if not (package / "__init__.py").is_file():
        raise FileNotFoundError(f"assignment make: no numpy_resnet package in {source_root}")
    check_stubs(package)
    if out == source_root.resolve() or package.resolve() in (out, *out.parents):
        raise ValueError(f"assignment make: {out} would overwrite the reference")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"assignment make: {out} is not empty (use --force to replace it)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    shutil.copytree(package, out / "numpy_resnet", ignore=_ignore)
    for name in EXTRA_DIRS:
        if (source_root / name).is_dir():
            shutil.copytree(source_root / name, out / name, ignore=_ignore)
    for name in EXTRA_FILES:
        if (source_root / name).is_file():
            shutil.copy2(source_root / name, out / name)

    changed = []
    for rel, stubs in sorted(stubs_by_file(parts).items()):
        path = out / "numpy_resnet" / rel
        path.write_text(stub_source(path.read_text(encoding="utf-8"), stubs, f"numpy_resnet/{rel}"),
                        encoding="utf-8")
        changed.append(f"numpy_resnet/{rel}")
    default_to_reference_engine(out / "numpy_resnet")
    changed.append(f"numpy_resnet/{ENGINE_FILE}")
    _write_readme(out, parts)
    stubs_per_part = {part: len(PARTS[part].stubs) for part in parts}
    return {"out": str(out), "parts": list(parts), "stubs": stubs_per_part, "files": changed}


def default_to_reference_engine(package_dir: Path) -> None:
    """Make the copy's default engine the reference one: its own layers run, not the fast twins.

    A plain replacement of one line of engine/dispatch.py; the library carries no marker for
    it, so if that line changes this stops rather than hand out a copy whose stubs the fast
    engine would answer for.
    """
    path = Path(package_dir) / ENGINE_FILE
    lines = path.read_text(encoding="utf-8").split("\n")
    found = [i for i, line in enumerate(lines) if line == ENGINE_LINE]
    if len(found) != 1:
        raise ValueError(f"assignment make: expected the line {ENGINE_LINE!r} once in {path}, found it "
                         f"{len(found)} times; update ENGINE_LINE in numpy_resnet/assignment/make.py")
    lines[found[0]] = ENGINE_REFERENCE
    path.write_text("\n".join(lines), encoding="utf-8")


def _write_readme(out: Path, parts: list[str]) -> None:
    rows = "\n".join(f"| `{p}` | {PARTS[p].points} | {PARTS[p].description} | "
                     f"{', '.join('numpy_resnet/' + f for f in PARTS[p].files)} |" for p in parts)
    (out / "ASSIGNMENT.md").write_text(
        "# Your assignment\n\n"
        "Find every `raise NotImplementedError(\"<part>: <hint>\")` in `numpy_resnet/` and replace it "
        "with the code it describes. The rest of the library works and is there to read.\n\n"
        "| part | points | what | files |\n|---|---|---|---|\n" + rows + "\n\n"
        "Check yourself with the tests in `tests/` (e.g. `python -m pytest tests/test_gradcheck.py`) "
        "and with `python -m numpy_resnet gradcheck`. The grader uses its own tests on fresh random "
        "inputs.\n\n"
        "`numpy_resnet` runs on the reference engine here: every layer runs its own code, yours "
        "included. `numpy_resnet.use_engine(\"fast\")` switches to the fast engine, whose own "
        "versions of Conv2d, BatchNorm2d, ReLU and the residual blocks answer in place of yours "
        "(and the grader never uses it).\n",
        encoding="utf-8")
