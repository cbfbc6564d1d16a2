"""Classroom assignments: a student copy with solution regions stubbed, and a grader.

    numpy-resnet assignment make OUT [--parts conv,batchnorm]        write the student copy
    numpy-resnet assignment grade STUDENT_DIR [--json report.json]   score it, part by part

The library marks the code students write with comment lines (BEGIN SOLUTION <part>, HINT,
END SOLUTION; make.py and docs/assignments.md describe them). `make` replaces the regions of
the selected parts with `raise NotImplementedError("<part>: <hint>")` and makes the copy's
default engine the reference one; `grade` runs the grader's own tests for each part
(grading_tests/grade_<part>.py) against the student copy on the reference engine, each part
in its own subprocess. The student copy keeps parts.py and command.py of this package but
not make.py, grade.py or the grading tests.
"""

from .parts import PARTS, Part, parse_parts

__all__ = ["PARTS", "Part", "parse_parts"]
