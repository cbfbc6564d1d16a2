"""`numpy-resnet assignment grade`: score a student copy, part by part.

For each part the grader copies its own test file (grading_tests/grade_<part>.py, with
grading_common.py) into a fresh temporary folder and runs `python -m pytest` there in a
subprocess, with PYTHONPATH=STUDENT_DIR so that `import numpy_resnet` is the student's.
Student code never runs in the grader's process; a part that hangs is killed after
`timeout` seconds and scores 0, the other parts keep their points. Output goes to a file
and only its first and last few kilobytes are kept. Score = points · passed / tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

from .parts import PARTS

GRADING_TESTS = Path(__file__).resolve().parent / "grading_tests"
OUTPUT_KEEP = 4000           # characters kept from each end of a part's output


@dataclass
class PartResult:
    part: str
    points: int
    score: float
    passed: int
    tests: int
    timed_out: bool
    seconds: float
    first_failure: str          # "test_name: message", or "" when everything passed
    output: str                 # the pytest output, truncated


def grade(student_dir: str | Path, parts: list[str], timeout: float = 120.0) -> list[PartResult]:
    """Run each part's grading tests against the package in `student_dir`."""
    student_dir = Path(student_dir).resolve()
    if not (student_dir / "numpy_resnet" / "__init__.py").is_file():
        raise FileNotFoundError(f"assignment grade: {student_dir} has no numpy_resnet/__init__.py")
    return [_grade_part(student_dir, part, timeout) for part in parts]


def _grade_part(student_dir: Path, part: str, timeout: float) -> PartResult:
    test_file = GRADING_TESTS / f"grade_{part}.py"
    if not test_file.is_file():
        raise FileNotFoundError(f"assignment grade: no grading tests for {part!r} ({test_file})")
    work = Path(tempfile.mkdtemp(prefix=f"numpy_resnet_grade_{part}_"))
    try:
        shutil.copy2(test_file, work / test_file.name)
        shutil.copy2(GRADING_TESTS / "grading_common.py", work / "grading_common.py")
        (work / "pytest.ini").write_text("[pytest]\naddopts =\n")      # pins the rootdir here
        env = dict(os.environ)
        env.update(PYTHONPATH=str(student_dir), NUMPY_RESNET_STUDENT_DIR=str(student_dir),
                   PYTHONDONTWRITEBYTECODE="1", PYTEST_ADDOPTS="", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
                   NUMBA_CACHE_DIR=str(work / "numba_cache"))
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env.setdefault(name, "1")
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file.name,
                   "--junitxml", "report.xml", "-o", "junit_family=xunit2"]
        start = time.monotonic()
        with open(work / "output.txt", "wb") as output:
            process = subprocess.Popen(command, cwd=work, env=env, stdout=output,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
            timed_out = False
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(process.pid, signal.SIGKILL)       # the whole group: pytest and its children
                process.wait()
        seconds = time.monotonic() - start
        text = _truncated(work / "output.txt")
        passed, tests, failure = _read_junit(work / "report.xml")
        if timed_out:
            passed, failure = 0, f"timed out after {timeout:g} s"
        elif tests == 0:
            failure = failure or _last_line(text) or f"pytest exited with {process.returncode}"
        points = PARTS[part].points
        score = round(points * passed / tests, 1) if tests else 0.0
        return PartResult(part, points, score, passed, tests, timed_out, round(seconds, 1),
                          failure, text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _truncated(path: Path) -> str:
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= 2 * OUTPUT_KEEP:
            return f.read().decode("utf-8", "replace")
        head = f.read(OUTPUT_KEEP).decode("utf-8", "replace")
        f.seek(size - OUTPUT_KEEP)
        tail = f.read().decode("utf-8", "replace")
    return f"{head}\n... [{size - 2 * OUTPUT_KEEP} bytes left out] ...\n{tail}"


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _read_junit(path: Path) -> tuple[int, int, str]:
    """(passed, tests, first failure) from pytest's JUnit XML; (0, 0, "") if it is missing."""
    if not path.is_file():
        return 0, 0, ""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        return 0, 0, f"unreadable test report: {error}"
    passed = tests = 0
    first = ""
    for case in root.iter("testcase"):
        problems = [c for c in case if c.tag in ("failure", "error", "skipped")]
        tests += 1
        if not problems:
            passed += 1
        elif not first:
            message = problems[0].get("message") or (problems[0].text or "").strip()
            first = f"{case.get('name')}: {' '.join(message.split())}"[:300]
    return passed, tests, first


def format_table(results: list[PartResult]) -> str:
    header = f"{'part':<12} {'points':>6} {'score':>6} {'tests':>7} {'time':>6}  first failure"
    lines = [header, "-" * len(header)]
    for r in results:
        note = r.first_failure[:90] if r.passed < r.tests or r.tests == 0 else ""
        lines.append(f"{r.part:<12} {r.points:>6} {r.score:>6.1f} {f'{r.passed}/{r.tests}':>7} "
                     f"{r.seconds:>5.1f}s  {note}")
    lines.append("-" * len(header))
    total, maximum = sum(r.score for r in results), sum(r.points for r in results)
    lines.append(f"{'total':<12} {maximum:>6} {total:>6.1f}")
    return "\n".join(lines)


def write_json(results: list[PartResult], student_dir: str | Path, path: str | Path) -> None:
    report = {"student_dir": str(Path(student_dir).resolve()),
              "score": round(sum(r.score for r in results), 1),
              "max_score": sum(r.points for r in results),
              "parts": [asdict(r) for r in results]}
    Path(path).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
