"""The classroom tools: `assignment make` writes a clean student copy, `assignment grade` scores it.

Grading runs pytest in subprocesses; the default tests grade two or three small parts only.
"""

import ast
import importlib
import inspect
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import numpy_resnet
from numpy_resnet.assignment import PARTS, parse_parts
from numpy_resnet.assignment.grade import GRADING_TESTS, format_table, grade, write_json
from numpy_resnet.assignment.make import (
    ENGINE_FILE,
    ENGINE_LINE,
    ENGINE_REFERENCE,
    LINE_LENGTH,
    default_to_reference_engine,
    find_function,
    make_student_copy,
    statements_after_docstring,
    stub_source,
    stubs_by_file,
)
from numpy_resnet.assignment.parts import Stub

PACKAGE = Path(numpy_resnet.__file__).resolve().parent
REPO = PACKAGE.parent
# the comment markers the library used to carry, spelt so that this file does not carry them
MARKERS = ("BEGIN " + "SOLUTION", "END " + "SOLUTION", "# " + "HINT")


@pytest.fixture(autouse=True)
def single_threaded(monkeypatch):
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        monkeypatch.setenv(name, "1")


def _by_part(results):
    return {r.part: r for r in results}


def _comments_above(text: str, lineno: int) -> list[str]:
    """The comment lines right above line `lineno` (1-based), without their "# "."""
    lines = text.splitlines()
    row = lineno - 2
    comments = []
    while lines[row].strip().startswith("# "):
        comments.insert(0, lines[row].strip()[2:])
        row -= 1
    return comments


SMALL_SOURCE = '''\
class A:
    def f(self, x):
        """Twice x."""
        check(x)
        # why we double
        y = 2 * x
        return y
        # a note after the last statement

    def g(self):
        return 1


def h(x):
    return x
'''


def test_a_stub_keeps_signature_docstring_and_kept_statements_then_hint_and_raise():
    text = stub_source(SMALL_SOURCE, [("linear", Stub("m.py", "A.f", keep=1, hint="return twice x"))])
    assert text == SMALL_SOURCE.replace(
        "        # why we double\n        y = 2 * x\n        return y\n"
        "        # a note after the last statement\n",
        "        # return twice x\n        raise NotImplementedError('linear: return twice x')\n")
    text = stub_source(SMALL_SOURCE, [("conv", Stub("m.py", "h", hint="x")),
                                      ("conv", Stub("m.py", "A.g", hint="1"))])
    assert "def h(x):\n    # x\n    raise NotImplementedError('conv: x')\n" in text
    assert "def g(self):\n        # 1\n        raise NotImplementedError('conv: 1')\n" in text
    assert "y = 2 * x" in text


def test_a_long_hint_is_wrapped_in_comments_and_in_the_message_within_the_line_length():
    hint = " ".join(f"word{i} = x·{i};" for i in range(60))
    text = stub_source(SMALL_SOURCE, [("linear", Stub("m.py", "A.f", hint=hint))])
    assert all(len(line) <= LINE_LENGTH for line in text.splitlines())
    (raise_,) = statements_after_docstring(find_function(ast.parse(text), "A.f"))
    assert ast.literal_eval(raise_.exc.args[0]) == f"linear: {hint}"
    comments = _comments_above(text, raise_.lineno)
    assert " ".join(comments) == hint and len(comments) > 1


def test_a_stub_that_names_no_function_or_keeps_the_whole_body_is_an_error_naming_both():
    for stub, problem in [(Stub("m.py", "A.nope", hint="-"), "found 0 function"),
                          (Stub("m.py", "B.f", hint="-"), "found 0 class"),
                          (Stub("m.py", "A.f", keep=3, hint="-"), "keep=3"),
                          (Stub("m.py", "h", keep=1, hint="-"), "keep=1")]:
        with pytest.raises(ValueError, match=problem) as error:
            stub_source(SMALL_SOURCE, [("linear", stub)], "numpy_resnet/m.py")
        assert "numpy_resnet/m.py" in str(error.value) and stub.function in str(error.value)
    with pytest.raises(ValueError, match="does not begin its line"):
        stub_source("def k(x):\n    y = 'μ'; return y\n", [("linear", Stub("m.py", "k", keep=1, hint="-"))])
    with pytest.raises(ValueError, match="unknown part"):
        parse_parts("linear,nope")


def test_make_stops_before_writing_if_a_stub_no_longer_matches_the_library(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(PACKAGE, source / "numpy_resnet", ignore=shutil.ignore_patterns("__pycache__", "*.nb?"))
    kernel = source / "numpy_resnet" / "kernels" / "im2col_numpy.py"
    kernel.write_text(kernel.read_text().replace("def col2im_numpy(", "def col2im_reference("))
    with pytest.raises(ValueError, match="kernels/im2col_numpy.py: col2im_numpy"):
        make_student_copy(tmp_path / "student", ["linear"], source_root=source)   # another part
    assert not (tmp_path / "student").exists()


def test_every_stub_resolves_to_a_function_of_its_file_with_a_statement_left_to_write():
    """Resolved by importing the library, not by make's own lookup."""
    seen = set()
    for part in PARTS.values():
        assert part.stubs, part.name
        for stub in part.stubs:
            assert (stub.file, stub.function) not in seen, stub
            seen.add((stub.file, stub.function))
            module_name = "numpy_resnet." + stub.file.removesuffix(".py").replace("/", ".")
            function = importlib.import_module(module_name)
            for name in stub.function.split("."):
                function = inspect.getattr_static(function, name)
            function = inspect.unwrap(function)             # Module wraps forward and backward
            assert Path(inspect.getsourcefile(function)).resolve() == PACKAGE / stub.file, stub
            (node,) = ast.parse(textwrap.dedent(inspect.getsource(function))).body
            assert node.name == stub.function.split(".")[-1]
            assert 0 <= stub.keep < len(statements_after_docstring(node)), stub
            assert stub.hint.strip() and "  " not in stub.hint and "\n" not in stub.hint, stub


def _files_with_markers(root: Path) -> list[str]:
    found = []
    for folder in ("numpy_resnet", "lessons", "tests", "docs"):
        for path in sorted((root / folder).rglob("*")):
            if path.suffix not in (".py", ".md") or "__pycache__" in path.parts:
                continue
            if path.is_relative_to(root / "numpy_resnet" / "assignment"):
                continue
            text = path.read_text(encoding="utf-8")
            found += [f"{path.relative_to(root)}: {m}" for m in MARKERS if m in text]
    return found


def test_no_file_outside_the_assignment_package_carries_an_assignment_marker():
    """The textbook holds no builder directive: what students write is listed in parts.py."""
    assert not _files_with_markers(REPO)


def test_every_part_has_a_grading_file_that_pytest_would_not_collect():
    for name in PARTS:
        assert (GRADING_TESTS / f"grade_{name}.py").is_file()
    assert not list(GRADING_TESTS.glob("test_*.py")) and not list(GRADING_TESTS.glob("*_test.py"))
    assert sum(p.points for p in PARTS.values()) == 100


def _functions(tree: ast.AST, prefix: str = "") -> dict[str, ast.AST]:
    """{qualified name: def} of every function in a module, methods included."""
    found = {}
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = prefix + node.name
            if not isinstance(node, ast.ClassDef):
                found[name] = node
            found.update(_functions(node, name + "."))
    return found


def test_student_copy_stubs_exactly_the_listed_bodies_and_leaves_everything_else(tmp_path):
    out = tmp_path / "student"
    result = make_student_copy(out, list(PARTS))
    assert result["stubs"] == {name: len(part.stubs) for name, part in PARTS.items()}
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if "__pycache__" in p.parts or p.suffix in (".nbi", ".nbc", ".pyc")]
    assert not (out / "numpy_resnet" / "assignment" / "grading_tests").exists()
    assert not (out / "numpy_resnet" / "assignment" / "grade.py").exists()
    assert not (out / "tests" / "test_assignment.py").exists()
    assert (out / "lessons").is_dir() and (out / "tests" / "test_gradcheck.py").is_file()
    assert not _files_with_markers(out)

    stubbed = stubs_by_file(list(PARTS))
    for path in sorted((out / "numpy_resnet").rglob("*.py")):
        rel = path.relative_to(out / "numpy_resnet").as_posix()
        if rel not in stubbed and rel != ENGINE_FILE and not rel.startswith("assignment/"):
            assert path.read_bytes() == (PACKAGE / rel).read_bytes(), rel      # copied unchanged
    for rel, stubs in stubbed.items():
        copy_text = (out / "numpy_resnet" / rel).read_text(encoding="utf-8")
        assert all(len(line) <= LINE_LENGTH for line in copy_text.splitlines()), rel
        copy, reference = _functions(ast.parse(copy_text)), _functions(ast.parse((PACKAGE / rel).read_text()))
        inside_a_stub = [k for k in reference for _, s in stubs if k.startswith(s.function + ".")]
        reference = {k: v for k, v in reference.items() if k not in inside_a_stub}
        assert copy.keys() == reference.keys(), rel
        for part, stub in stubs:
            body, original = copy.pop(stub.function).body, reference.pop(stub.function)
            kept = original.body
            n = len(kept) - len(statements_after_docstring(original)) + stub.keep   # docstring + keep
            assert [ast.dump(s) for s in body[:n]] == [ast.dump(s) for s in kept[:n]], stub
            assert len(body) == n + 1 and isinstance(body[n], ast.Raise), stub
            assert ast.literal_eval(body[n].exc.args[0]) == f"{part}: {stub.hint}", stub
            assert " ".join(_comments_above(copy_text, body[n].lineno)) == stub.hint, stub
        # every other function is the reference's, statement for statement
        assert {k: ast.dump(v) for k, v in copy.items()} == {k: ast.dump(v) for k, v in reference.items()}, \
            rel


def _engine_of(copy: Path) -> str:
    """The engine `import numpy_resnet` starts with in a student copy, asked in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    run = subprocess.run([sys.executable, "-c", "import numpy_resnet; print(numpy_resnet.__file__, "
                          "numpy_resnet.get_engine())"], cwd=copy.parent, env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    where, engine = run.stdout.split()
    assert Path(where).resolve().is_relative_to(copy.resolve()), where
    return engine


def test_student_copy_defaults_to_the_reference_engine_whatever_is_stubbed(tmp_path):
    for parts in (["conv"], ["linear"], []):
        out = tmp_path / ("-".join(parts) or "none")
        make_student_copy(out, parts)
        assert _engine_of(out) == "reference", parts


def test_make_stops_if_the_default_engine_line_is_not_there_exactly_once(tmp_path):
    dispatch = tmp_path / ENGINE_FILE
    dispatch.parent.mkdir(parents=True)
    for text in ('_engine = "fast"  # a comment\n', '_engine = "fast"\n_engine = "fast"\n', ""):
        dispatch.write_text(text)
        with pytest.raises(ValueError, match="_engine"):
            default_to_reference_engine(tmp_path)
    dispatch.write_text('ENGINES = ("fast", "reference")\n_engine = "fast"\n')
    default_to_reference_engine(tmp_path)
    assert dispatch.read_text() == 'ENGINES = ("fast", "reference")\n_engine = "reference"\n'


@pytest.mark.parametrize("handout_engine", ["as made", "fast"])
def test_a_stubbed_conv_fails_its_grading_whatever_engine_the_copy_defaults_to(tmp_path, handout_engine):
    """The fast engine's Conv2d must not answer for a stubbed one: the grader runs the reference."""
    out = tmp_path / "student"
    make_student_copy(out, ["conv"])
    if handout_engine == "fast":                          # a student who set the default back
        dispatch = out / "numpy_resnet" / ENGINE_FILE
        text = dispatch.read_text()
        assert text.count(ENGINE_REFERENCE) == 1
        dispatch.write_text(text.replace(ENGINE_REFERENCE, ENGINE_LINE))
        assert _engine_of(out) == "fast"
    result = grade(out, ["conv"], timeout=120)[0]
    assert result.tests > 0 and result.score == 0, (result.first_failure, result.output)
    assert "NotImplementedError" in result.first_failure


def test_make_then_grade_gives_zero_to_stubbed_parts_and_full_points_to_the_others(tmp_path):
    out = tmp_path / "student"
    make_student_copy(out, ["linear", "activations"])
    results = _by_part(grade(out, ["linear", "activations", "loss"], timeout=60))
    assert results["linear"].score == 0 and results["linear"].tests > 0
    assert "NotImplementedError" in results["linear"].first_failure
    assert results["activations"].score == 0
    assert results["loss"].score == PARTS["loss"].points
    table = format_table(list(results.values()))
    assert "total" in table and "loss" in table
    write_json(list(results.values()), out, tmp_path / "report.json")
    assert '"max_score": 25' in (tmp_path / "report.json").read_text()


def test_putting_a_solution_back_gives_that_part_its_points(tmp_path):
    out = tmp_path / "student"
    make_student_copy(out, ["linear"])
    shutil.copy2(PACKAGE / "nn" / "linear.py", out / "numpy_resnet" / "nn" / "linear.py")
    results = _by_part(grade(out, ["linear"], timeout=60))
    assert results["linear"].score == PARTS["linear"].points, results["linear"].first_failure


def test_a_hanging_part_and_a_crashing_part_lose_only_their_own_points(tmp_path):
    out = tmp_path / "student"
    make_student_copy(out, ["optim"])
    linear = out / "numpy_resnet" / "nn" / "linear.py"
    text = linear.read_text()
    anchor = '        x = self._saved("x")\n'
    assert text.count(anchor) == 1
    linear.write_text(text.replace(anchor, "        while True:\n            pass\n" + anchor))
    loss = out / "numpy_resnet" / "nn" / "loss.py"
    text = loss.read_text()
    anchor = "        N, K = logits.shape\n"
    assert text.count(anchor) == 1
    crash = ("        import os\n        os.write(2, b'noise ' * 500_000)\n        os._exit(3)\n")
    loss.write_text(text.replace(anchor, crash + anchor))

    results = _by_part(grade(out, ["linear", "loss", "activations"], timeout=8))
    assert results["linear"].timed_out and results["linear"].score == 0
    assert "timed out" in results["linear"].first_failure
    assert results["loss"].score == 0 and not results["loss"].timed_out
    assert len(results["loss"].output) < 10_000                  # 3 MB of output, truncated
    assert results["activations"].score == PARTS["activations"].points


@pytest.mark.slow
def test_every_part_stubbed_scores_zero(tmp_path):
    out = tmp_path / "student"
    make_student_copy(out, list(PARTS))
    results = grade(out, list(PARTS), timeout=120)
    assert all(r.score == 0 and r.tests > 0 for r in results), format_table(results)


@pytest.mark.slow
def test_the_reference_gets_full_marks():
    results = grade(REPO, list(PARTS), timeout=120)
    assert all(r.score == r.points for r in results), format_table(results)


@pytest.mark.slow
def test_the_cli_makes_and_grades(tmp_path):
    out = tmp_path / "student"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "numpy_resnet", "assignment", "make", str(out),
                          "--parts", "linear"], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    run = subprocess.run([sys.executable, "-m", "numpy_resnet", "assignment", "grade", str(out),
                          "--parts", "linear,loss", "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "total" in run.stdout and (tmp_path / "r.json").is_file()
