"""The classroom tools: `assignment make` writes a clean student copy, `assignment grade` scores it.

Grading runs pytest in subprocesses; the default tests grade two or three small parts only.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import numpy_resnet
from numpy_resnet.assignment import PARTS, parse_parts
from numpy_resnet.assignment.grade import GRADING_TESTS, format_table, grade, write_json
from numpy_resnet.assignment.make import (
    ANY_MARKER,
    ENGINE_FILE,
    ENGINE_LINE,
    ENGINE_REFERENCE,
    default_to_reference_engine,
    make_student_copy,
    strip_regions,
)

PACKAGE = Path(numpy_resnet.__file__).resolve().parent
REPO = PACKAGE.parent


@pytest.fixture(autouse=True)
def single_threaded(monkeypatch):
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        monkeypatch.setenv(name, "1")


def _by_part(results):
    return {r.part: r for r in results}


def _unmarked(rel: str) -> str:
    """A reference file with its solution regions kept and its markers removed."""
    return strip_regions((PACKAGE / rel).read_text(encoding="utf-8"), set(), rel)[0]


SMALL_REGION = """\
class A:
    def f(self, x):
        # BEGIN SOLUTION linear
        # HINT: return twice x,
        # HINT: nothing more
        y = 2 * x
        return y
        # END SOLUTION

backend = "numba"
"""


def test_stubbed_region_becomes_not_implemented_with_the_hint_at_its_indentation():
    text, removed = strip_regions(SMALL_REGION, {"linear"})
    assert "        raise NotImplementedError('linear: return twice x, nothing more')" in text
    assert "y = 2 * x" not in text and [r.strip() for r in removed] == ["y = 2 * x", "return y"]
    assert 'backend = "numba"' in text and not ANY_MARKER.search(text)


def test_unstubbed_region_keeps_its_code_and_loses_its_markers():
    text, removed = strip_regions(SMALL_REGION, {"conv"})
    assert text == 'class A:\n    def f(self, x):\n        y = 2 * x\n        return y\n\nbackend = "numba"\n'
    assert removed == []


def test_unterminated_or_unknown_regions_are_errors():
    with pytest.raises(ValueError, match="no END SOLUTION"):
        strip_regions("# BEGIN SOLUTION linear\nx = 1\n", set())
    with pytest.raises(ValueError, match="unknown part"):
        strip_regions("# BEGIN SOLUTION nope\nx = 1\n# END SOLUTION\n", set())
    with pytest.raises(ValueError, match="unknown part"):
        parse_parts("linear,nope")


def test_every_part_has_regions_and_a_grading_file_that_pytest_would_not_collect():
    for name in PARTS:
        assert (GRADING_TESTS / f"grade_{name}.py").is_file()
    assert not list(GRADING_TESTS.glob("test_*.py")) and not list(GRADING_TESTS.glob("*_test.py"))
    assert sum(p.points for p in PARTS.values()) == 100


def test_student_copy_has_no_markers_caches_solutions_or_grader_files(tmp_path):
    out = tmp_path / "student"
    result = make_student_copy(out, list(PARTS))
    assert set(result["stubs"]) == set(PARTS) and all(n > 0 for n in result["stubs"].values())
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if "__pycache__" in p.parts or p.suffix in (".nbi", ".nbc", ".pyc")]
    assert not (out / "numpy_resnet" / "assignment" / "grading_tests").exists()
    assert not (out / "numpy_resnet" / "assignment" / "grade.py").exists()
    assert not (out / "tests" / "test_assignment.py").exists()
    assert (out / "lessons").is_dir() and (out / "tests" / "test_gradcheck.py").is_file()
    for path in (out / "numpy_resnet").rglob("*.py"):
        assert not ANY_MARKER.search(path.read_text(encoding="utf-8")), path
    # no line of a stubbed region survives, unless the same line also stands outside the regions
    for part in PARTS.values():
        for rel in part.files:
            original = (PACKAGE / rel).read_text(encoding="utf-8")
            copy_lines = {line.strip() for line in (out / "numpy_resnet" / rel).read_text().splitlines()}
            outside = {line.strip() for line in strip_regions(original, set(PARTS), rel)[0].splitlines()}
            _, removed = strip_regions(original, set(PARTS), rel)
            leaked = [s.strip() for s in removed if s.strip() and s.strip() not in outside
                      and s.strip() in copy_lines]
            assert not leaked, (rel, leaked)


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
    (out / "numpy_resnet" / "nn" / "linear.py").write_text(_unmarked("nn/linear.py"), encoding="utf-8")
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
