"""Every lesson runs to the end in quick mode, so that none of them rots, and checks the code it
explains: a bug planted in the textbook's source makes its lesson fail.

Each lesson is a script: run it as a subprocess with NUMPY_RESNET_QUICK=1 (tiny sizes),
MPLBACKEND=Agg (no windows) and its figures sent to a temporary folder. It passes when it
exits cleanly, printed at least one passed check and saved at least one figure.
Lessons 07-10 read CIFAR-10 (the `cifar_dir` fixture: $NUMPY_RESNET_DATA or the shared subset).

The planted-bug tests edit a copy of the package as a student edits the textbook (the source
text of nn/batchnorm.py, nn/conv.py, nn/activation.py) and run the lesson that explains the
layer against that copy: the lessons select the reference engine, so the edited code is what
their checks run, and a backward 1% off must make them fail.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS_DIR = ROOT / "lessons"
PACKAGE_DIR = ROOT / "numpy_resnet"
LESSONS = sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))
NEEDS_DATA = {"07_gradient_flow", "08_degradation", "09_training_recipe", "10_fine_tuning"}
TIMEOUT = 180       # seconds; each lesson takes 1-4 s in quick mode (about 20 s for all eleven)


def lesson_env(figures: Path, pythonpath: Path | None = None) -> dict:
    """The environment a lesson runs in: quick mode, no windows, figures into `figures`."""
    # One thread each for BLAS and Numba: quick mode makes many tiny kernel calls, and on a
    # busy machine parallel Numba kernels spend more time waiting for threads than working.
    env = {**os.environ, "NUMPY_RESNET_QUICK": "1", "MPLBACKEND": "Agg",
           "NUMPY_RESNET_LESSON_OUTPUT": str(figures), "OPENBLAS_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1"}
    env.pop("NUMPY_RESNET_SHOW", None)
    if pythonpath is not None:                      # searched before the installed package
        existing = env.get("PYTHONPATH")
        env["PYTHONPATH"] = f"{pythonpath}{os.pathsep}{existing}" if existing else str(pythonpath)
    return env


def run_lesson(lesson: Path, env: dict) -> tuple[subprocess.CompletedProcess, str]:
    """Run the lesson from its folder; returns the process and the tail of its output."""
    result = subprocess.run([sys.executable, lesson.name], cwd=LESSONS_DIR, env=env,
                            capture_output=True, text=True, timeout=TIMEOUT)
    output = f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
    return result, output


def test_every_lesson_is_collected():
    assert len(LESSONS) == 11, [p.name for p in LESSONS]


@pytest.mark.parametrize("lesson", LESSONS, ids=[path.stem for path in LESSONS])
def test_lesson_runs_in_quick_mode(lesson, tmp_path, request):
    env = lesson_env(tmp_path)
    if lesson.stem in NEEDS_DATA:
        env["NUMPY_RESNET_DATA"] = str(request.getfixturevalue("cifar_dir"))
    result, output = run_lesson(lesson, env)
    assert result.returncode == 0, f"{lesson.name} failed in quick mode\n{output}"
    assert "check passed" in result.stdout, f"{lesson.name} printed no passed check\n{output}"
    assert list(tmp_path.glob("*.png")), f"{lesson.name} saved no figure\n{output}"


@pytest.mark.parametrize("lesson", LESSONS, ids=[path.stem for path in LESSONS])
def test_lesson_selects_the_reference_engine_before_its_checks(lesson):
    """The first engine a lesson selects is the reference, before any cell that checks."""
    source = lesson.read_text()
    selected = source.find('use_engine("reference")')
    assert selected != -1, f"{lesson.name} never selects the reference engine"
    assert selected < source.find("check("), f"{lesson.name} checks before selecting the reference"
    fast = source.find('use_engine("fast")')
    assert fast == -1 or selected < fast, f"{lesson.name} selects the fast engine first"


# ----- a bug planted in the textbook fails the lesson that explains it -----------------------
def plant_one_percent_error(path: Path, cls: str, method: str = "backward") -> str:
    """Edit `path` as a student would: the last `return value` of cls.method becomes
    `return 1.01 * (value)`. Returns the edited line; fails unless it found its target."""
    source = path.read_text()
    classes = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == cls]
    assert len(classes) == 1, f"{path.name}: expected one class {cls}"
    functions = [n for n in classes[0].body if isinstance(n, ast.FunctionDef) and n.name == method]
    assert len(functions) == 1, f"{path.name}: expected one {cls}.{method}"
    returns = [n for n in ast.walk(functions[0]) if isinstance(n, ast.Return) and n.value is not None]
    assert returns, f"{path.name}: {cls}.{method} returns nothing"
    last = max(returns, key=lambda node: node.lineno).value
    assert last.lineno == last.end_lineno, f"{path.name}: {cls}.{method}'s last return spans lines"
    lines = source.splitlines(keepends=True)
    line = lines[last.lineno - 1].encode()          # ast's column offsets count UTF-8 bytes
    start, end = last.col_offset, last.end_col_offset
    edited = (line[:start] + b"1.01 * (" + line[start:end] + b")" + line[end:]).decode()
    assert line.decode().strip().startswith("return ") and edited != line.decode()
    lines[last.lineno - 1] = edited
    path.write_text("".join(lines))
    return edited.strip()


PLANTED = {            # lesson: the file in numpy_resnet/ and the class whose backward it checks
    "02_conv_backward": ("nn/conv.py", "Conv2d"),
    "03_batchnorm": ("nn/batchnorm.py", "BatchNorm2d"),
    "04_relu_pooling_loss": ("nn/activation.py", "ReLU"),
}


@pytest.mark.parametrize("lesson", PLANTED)
def test_a_backward_one_percent_wrong_in_the_textbook_fails_its_lesson(lesson, tmp_path):
    path, cls = PLANTED[lesson]
    copy = tmp_path / "edited"
    shutil.copytree(PACKAGE_DIR, copy / "numpy_resnet", ignore=shutil.ignore_patterns("__pycache__"))
    planted = plant_one_percent_error(copy / "numpy_resnet" / path, cls)
    env = lesson_env(tmp_path, pythonpath=copy)

    # The lesson must import the edited copy, not the installed package.
    probe = subprocess.run([sys.executable, "-c", "import numpy_resnet; print(numpy_resnet.__file__)"],
                           cwd=LESSONS_DIR, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert probe.returncode == 0, probe.stderr
    imported = Path(probe.stdout.strip()).resolve()
    assert imported.is_relative_to(copy.resolve()), f"the lesson would import {imported}"

    result, output = run_lesson(LESSONS_DIR / f"{lesson}.py", env)
    assert result.returncode != 0, f"{lesson} passed with {cls}.backward edited to `{planted}`\n{output}"
    assert "check FAILED" in result.stderr, f"{lesson} failed, but not at a check\n{output}"
