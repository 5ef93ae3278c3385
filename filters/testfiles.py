"""Whether a changed file is test code, by the naming conventions of the eight languages.

A commit message describes what the change does for the program: "speed up the parser" labels
the parser's change, not the benchmark beside it, and "fix the CSRF check" says nothing of
whether a spec file that asserts it got more secure. Mined pairs whose file is a test therefore
mostly carry labels their code does not earn (issue #13's judged sample: many of the wrong
labels were test-only changes), and ``filters.criteria.test_files: drop`` (the default) drops
them at the criteria stage as ``test_file``.

A path is test code when a folder on it is a test folder (``test``, ``tests``, ``spec``,
``__tests__``, ``testdata``, ``Foo.Tests``, ...) or its file name follows a test convention of its language
family (``test_x.py``, ``x_test.go``, ``XTest.java``, ``x.spec.ts``, ``x_spec.rb``,
``x_unittest.cc``). Names that merely contain "test" (``attestation.c``, ``latest.js``,
``contest/``) are not.
"""

from __future__ import annotations

import re

TEST_FOLDERS = frozenset({
    "test", "tests", "testing", "testdata", "test_data", "testcases", "spec", "specs",
    "__tests__", "__test__", "unittest", "unittests", "integration_tests", "e2e",
})

# a C# or Java test project beside the code it tests: Newtonsoft.Json.Tests, core-unittests
_TEST_PROJECT = re.compile(r"[._-](?:unit|integration|functional)?tests?$", re.IGNORECASE)

_TEST_FILE = re.compile(
    r"^(?:"
    r"tests?|test_.+|.+_test|.+_tests|.+_unittest|.+_spec"  # Python, Go, C/C++, Ruby
    r"|.+[a-z0-9]Tests?|.+[a-z0-9]Spec|Test[A-Z0-9].*"  # Java, C#, JS classes (FooTest, TestFoo)
    r"|.+\.(?:test|spec)"  # JavaScript / TypeScript (foo.test.js, foo.spec.ts)
    r")\.[A-Za-z0-9+]+$"
)


def is_test_path(path: str) -> bool:
    """Whether ``path`` (a repository path, ``/``-separated) names test code."""
    parts = [part for part in path.replace("\\", "/").split("/") if part]
    if not parts:
        return False
    if any(part.lower() in TEST_FOLDERS or _TEST_PROJECT.search(part) for part in parts[:-1]):
        return True
    return _TEST_FILE.match(parts[-1]) is not None
