"""Classroom assignments: a student copy with the chosen functions stubbed, and a grader.

    numpy-resnet assignment make OUT [--parts conv,batchnorm]        write the student copy
    numpy-resnet assignment grade STUDENT_DIR [--json report.json]   score it, part by part

parts.py lists, for each part, the functions of the library a student writes (file, qualified
name, hint, how many leading statements stay); the library itself carries no marker. `make`
replaces those bodies in the copy with the hint and `raise NotImplementedError("<part>: <hint>")`
(make.py and docs/assignments.md describe it) and makes the copy's default engine the
reference one; `grade` runs the grader's own tests for each part
(grading_tests/grade_<part>.py) against the student copy on the reference engine, each part
in its own subprocess. The student copy keeps parts.py and command.py of this package but
not make.py, grade.py or the grading tests.
"""

from .parts import PARTS, Part, Stub, parse_parts

__all__ = ["PARTS", "Part", "Stub", "parse_parts"]
