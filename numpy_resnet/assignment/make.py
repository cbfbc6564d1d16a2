"""`numpy-resnet assignment make`: write the student copy of the package, tests and lessons.

Markers in the library (comment lines, so the reference runs unchanged):

    # BEGIN SOLUTION <part>         a region a student writes: whole statements at one indentation
    # HINT: <text>                  one or more lines right after BEGIN
    ...
    # END SOLUTION

A stubbed region becomes `raise NotImplementedError("<part>: <hint>")` at the region's
indentation; an unstubbed one keeps its code and loses its marker lines.

The copy's default engine is the reference one: make rewrites the line `_engine = "fast"` of
the copy's engine/dispatch.py to `_engine = "reference"` (and stops if that line is not
there), whatever parts are stubbed. The fast engine has its own twins of Conv2d, BatchNorm2d,
ReLU and the blocks, which would answer in place of a student's stub; with the reference
engine a student who runs their copy runs their own code. (The grader sets the reference
engine itself too, so this default is for the student, not for the grades.)
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .parts import PARTS

BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION (\w+)\s*$")
HINT = re.compile(r"^\s*# HINT: ?(.*)$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
ANY_MARKER = re.compile(r"#\s*(BEGIN SOLUTION|END SOLUTION|HINT:)")

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


def strip_regions(text: str, stubbed: set[str], where: str = "<text>") -> tuple[str, list[str]]:
    """Apply the markers to one file's text. Returns (new text, the lines of stubbed regions)."""
    out: list[str] = []
    removed: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        begin = BEGIN.match(line)
        if not begin:
            if ANY_MARKER.search(line):
                raise ValueError(f"{where}:{i + 1}: marker outside a region: {line.strip()!r}")
            out.append(line)
            i += 1
            continue
        indent, part = begin.groups()
        _check_part(part, where, i)
        start = i
        i += 1
        hints = []
        while i < len(lines) and HINT.match(lines[i]):
            hints.append(HINT.match(lines[i]).group(1).strip())
            i += 1
        body = []
        while i < len(lines) and not END.match(lines[i]):
            if ANY_MARKER.search(lines[i]):
                raise ValueError(f"{where}:{i + 1}: marker inside the region opened on line {start + 1}")
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{where}:{start + 1}: BEGIN SOLUTION {part} has no END SOLUTION")
        if not any(b.strip() for b in body):
            raise ValueError(f"{where}:{start + 1}: region {part} is empty")
        i += 1                                          # the END line
        if part in stubbed:
            out.extend(_stub(indent, part, hints))
            removed.extend(body)
        else:
            out.extend(body)
    return "\n".join(out), removed


def _stub(indent: str, part: str, hints: list[str]) -> list[str]:
    """raise NotImplementedError("<part>: <hint>"), over several lines when the hint is long."""
    message = f"{part}: " + (" ".join(hints) or "write this")
    line = f"{indent}raise NotImplementedError({message!r})"
    if len(line) <= 110 or len(hints) < 2:
        return [line]
    pieces = [f"{part}: {hints[0]} "] + [f"{h} " for h in hints[1:-1]] + [hints[-1]]
    return ([f"{indent}raise NotImplementedError("]
            + [f"{indent}    {piece!r}" for piece in pieces] + [f"{indent})"])


def _check_part(part: str, where: str, index: int) -> None:
    if part not in PARTS:
        raise ValueError(f"{where}:{index + 1}: unknown part {part!r}; the parts are {list(PARTS)}")


def find_regions(package_dir: Path) -> dict[str, list[str]]:
    """{part: [files holding its regions]}, from the markers of a package folder."""
    found: dict[str, list[str]] = {}
    for path in sorted(package_dir.rglob("*.py")):
        for line in path.read_text(encoding="utf-8").splitlines():
            m = BEGIN.match(line)
            if m:
                rel = path.relative_to(package_dir).as_posix()
                if rel not in found.setdefault(m.group(2), []):
                    found[m.group(2)].append(rel)
    return found


def make_student_copy(out: str | Path, parts: list[str], source_root: str | Path | None = None,
                      force: bool = False) -> dict:
    """Write numpy_resnet/, tests/ and lessons/ of `source_root` into `out`, `parts` stubbed.

    source_root: the folder holding numpy_resnet/ (default: the one this module belongs to).
    Returns {"out", "parts", "stubs": {part: number of regions}, "files": [changed files]}.
    """
    source_root = Path(source_root) if source_root else Path(__file__).resolve().parents[2]
    out = Path(out).resolve()
    package = source_root / "numpy_resnet"
    if not (package / "__init__.py").is_file():
        raise FileNotFoundError(f"assignment make: no numpy_resnet package in {source_root}")
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

    stubbed = set(parts)
    stubs = {p: 0 for p in parts}
    changed = []
    for path in sorted((out / "numpy_resnet").rglob("*.py")):
        rel = path.relative_to(out).as_posix()
        text = path.read_text(encoding="utf-8")
        new, removed = strip_regions(text, stubbed, rel)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(rel)
        for line in text.split("\n"):
            m = BEGIN.match(line)
            if m and m.group(2) in stubs:
                stubs[m.group(2)] += 1
        _check_no_leak(rel, text, new, removed, stubbed)
    missing = [p for p, n in stubs.items() if n == 0]
    if missing:
        raise ValueError(f"assignment make: no solution regions found for {missing}")
    default_to_reference_engine(out / "numpy_resnet")
    changed.append(f"numpy_resnet/{ENGINE_FILE}")
    _write_readme(out, parts)
    return {"out": str(out), "parts": list(parts), "stubs": stubs, "files": changed}


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


def _check_no_leak(rel: str, original: str, new: str, removed: list[str], stubbed: set[str]) -> None:
    """No marker survives, and no stubbed line is left (unless it also stands outside any region)."""
    for number, line in enumerate(new.split("\n"), 1):
        if ANY_MARKER.search(line):
            raise AssertionError(f"{rel}:{number}: a marker leaked into the student copy")
    kept, _ = strip_regions(original, set(PARTS), rel)     # the file with every region stubbed
    outside = {line.strip() for line in kept.split("\n")}
    new_lines = {line.strip() for line in new.split("\n")}
    for line in removed:
        s = line.strip()
        if s and not s.startswith("#") and s not in outside and s in new_lines:
            raise AssertionError(f"{rel}: solution line {s!r} leaked into the student copy")


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
