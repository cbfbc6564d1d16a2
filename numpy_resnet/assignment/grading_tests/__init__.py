"""The grader's tests, one file per part (grade_<part>.py); see numpy_resnet/assignment/grade.py.

They are named grade_*.py so that no pytest run of the repository collects them: the grader
copies them into a temporary folder and runs them there, against the student's package.
"""
