"""Every lesson runs to the end in quick mode, so that none of them rots.

Each lesson is a script: run it as a subprocess with NUMPY_RESNET_QUICK=1 (tiny sizes),
MPLBACKEND=Agg (no windows) and its figures sent to a temporary folder. It passes when it
exits cleanly, printed at least one passed check and saved at least one figure.
Lessons 07-10 read CIFAR-10 (the `cifar_dir` fixture: $NUMPY_RESNET_DATA or the shared subset).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

LESSONS_DIR = Path(__file__).resolve().parents[1] / "lessons"
LESSONS = sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))
NEEDS_DATA = {"07_gradient_flow", "08_degradation", "09_training_recipe", "10_fine_tuning"}
TIMEOUT = 180       # seconds; each lesson takes 2-6 s in quick mode (about 45 s for all eleven)


def test_every_lesson_is_collected():
    assert len(LESSONS) == 11, [p.name for p in LESSONS]


@pytest.mark.parametrize("lesson", LESSONS, ids=[path.stem for path in LESSONS])
def test_lesson_runs_in_quick_mode(lesson, tmp_path, request):
    # One thread each for BLAS and Numba: quick mode makes many tiny kernel calls, and on a
    # busy machine parallel Numba kernels spend more time waiting for threads than working.
    env = {**os.environ, "NUMPY_RESNET_QUICK": "1", "MPLBACKEND": "Agg",
           "NUMPY_RESNET_LESSON_OUTPUT": str(tmp_path), "OPENBLAS_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1"}
    env.pop("NUMPY_RESNET_SHOW", None)
    if lesson.stem in NEEDS_DATA:
        env["NUMPY_RESNET_DATA"] = str(request.getfixturevalue("cifar_dir"))
    result = subprocess.run([sys.executable, lesson.name], cwd=LESSONS_DIR, env=env,
                            capture_output=True, text=True, timeout=TIMEOUT)
    output = f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"{lesson.name} failed in quick mode\n{output}"
    assert "check passed" in result.stdout, f"{lesson.name} printed no passed check\n{output}"
    assert list(tmp_path.glob("*.png")), f"{lesson.name} saved no figure\n{output}"
