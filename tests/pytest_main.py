"""Runs pytest on the files given as arguments: the `main` of the Bazel py_test targets in BUILD.

A test target sees only its srcs, deps and data, so a parametrization built from files that BUILD forgot to
list would come out empty and be skipped: here it fails instead. Per-test results go to the JUnit XML file
Bazel asks for (XML_OUTPUT_FILE), so its test.xml lists each case. A target whose tests are all deselected by
`-m` (every test in the file is marked slow, under `--config=fast`) passes: pytest would exit 5 for it.
"""

import os
import sys

import pytest

if __name__ == "__main__":
    report = ["--junitxml", os.environ["XML_OUTPUT_FILE"]] if "XML_OUTPUT_FILE" in os.environ else []
    code = pytest.main(["-q", "-p", "no:cacheprovider", "-o", "empty_parameter_set_mark=fail_at_collect",
                        *report, *sys.argv[1:]])
    if code == pytest.ExitCode.NO_TESTS_COLLECTED and "-m" in sys.argv[1:]:
        code = pytest.ExitCode.OK
    sys.exit(code)
