"""The humaneval harness in every language: a right solution passes, a wrong one fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeprefs.core.schema import Language
from codeprefs.pipelines.synthesis.harness import (
    GO_PATH,
    assemble,
    closing_suffix,
    java_classes,
    missing_commands,
    user_code,
)
from codeprefs.pipelines.synthesis.sandbox import Sandbox
from codeprefs.pipelines.synthesis.verify import Verdict, Verifier

# language: (prompt, right solution, wrong solution, tests, entry point). The tests use each
# language's usual assertion style, including the ones that only print by default.
TASKS: dict[str, tuple[str, str, str, str, str | None]] = {
    "Python": (
        "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n",
        "    return a + b\n",
        "    return a - b\n",
        "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
        "add",
    ),
    "Ruby": (
        "def add(a, b)\n",
        "  a + b\nend\n",
        "  a - b\nend\n",
        "raise 'add failed' unless add(2, 3) == 5\n",
        None,
    ),
    "JavaScript": (
        "// Return a + b.\nfunction add(a, b)",
        " {\n  return a + b;\n}\n",
        " {\n  return a - b;\n}\n",
        "(() => {\n  console.assert(add(2, 3) === 5);\n  console.assert(add(-1, 1) === 0);\n})();\n",
        None,
    ),
    "C": (
        "#include <assert.h>\nint add(int a, int b)",
        "\n{\n    return a + b;\n}\n",
        "\n{\n    return a - b;\n}\n",
        "int main(void)\n{\n    assert(add(2, 3) == 5);\n    return 0;\n}\n",
        None,
    ),
    "C++": (
        "#include <bits/stdc++.h>\nusing namespace std;\nint add(int a, int b)",
        "\n{\n    return a + b;\n}\n",
        "\n{\n    return a - b;\n}\n",
        "int main()\n{\n    if (add(2, 3) != 5) throw runtime_error(\"add\");\n    return 0;\n}\n",
        None,
    ),
    "Java": (
        "import java.util.*;\n\nclass Solution {\n    static int add(int a, int b)",
        "\n    {\n        return a + b;\n    }\n",
        "\n    {\n        return a - b;\n    }\n",
        # McEval style: the tests hold main and close the class the prompt opened.
        "    public static void main(String[] args) {\n        assert add(2, 3) == 5;\n    }\n}\n",
        None,
    ),
    "C#": (
        "using System;\nusing System.Diagnostics;\n\nclass Program\n{\n    static int Add(int a, int b)",
        "\n    {\n        return a + b;\n    }\n",
        "\n    {\n        return a - b;\n    }\n",
        "    static void Main()\n    {\n        Debug.Assert(Add(2, 3) == 5);\n"
        "        Debug.Assert(new[] {1, 2}.Sum() == 3);\n    }\n}\n",
        None,
    ),
    "Go": (
        "package main\n\nimport (\n\t\"testing\"\n\n\t\"github.com/stretchr/testify/assert\"\n)\n\n"
        "func add(a, b int) int {\n",
        "\treturn a + b\n}\n",
        "\treturn a - b\n}\n",
        "func TestAdd(t *testing.T) {\n\tassert := assert.New(t)\n\tassert.Equal(5, add(2, 3))\n}\n",
        None,
    ),
}


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier(Sandbox())


def _skip_without_toolchain(language: Language) -> None:
    missing = missing_commands(language)
    if missing:
        pytest.skip(f"{language.value} toolchain not installed ({', '.join(missing)}); run `make toolchains`")
    if language == Language.GO and not (Path(GO_PATH) / "src/github.com/stretchr/testify").is_dir():
        pytest.skip("testify not installed (golang-github-stretchr-testify-dev)")


def _program(language: Language, prompt: str, solution: str, tests: str, entry: str | None) -> str:
    code = user_code(language, prompt, solution)
    suffix = closing_suffix(language, code)
    assert suffix is not None, "the shown code must parse, with closing brackets if needed"
    return assemble(language, code, tests, entry)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_right_solutions_pass_and_wrong_ones_fail(verifier, name):
    language = Language(name)
    _skip_without_toolchain(language)
    prompt, right, wrong, tests, entry = TASKS[name]
    passed = verifier.run(language, _program(language, prompt, right, tests, entry))
    assert passed.verdict == Verdict.PASSED, passed.detail
    failed = verifier.run(language, _program(language, prompt, wrong, tests, entry))
    assert failed.verdict == Verdict.FAILED, failed.detail


@pytest.mark.parametrize("name", ["C", "Java", "Go"])
def test_code_that_does_not_compile_is_a_compile_error_not_a_failure(verifier, name):
    language = Language(name)
    _skip_without_toolchain(language)
    prompt, right, _, tests, entry = TASKS[name]
    broken = right.replace("a + b", "a + undefined_name")
    outcome = verifier.run(language, _program(language, prompt, broken, tests, entry))
    assert outcome.verdict == Verdict.COMPILE_ERROR


def test_a_slow_variant_times_out_after_a_multiple_of_the_original(verifier):
    _skip_without_toolchain(Language.PYTHON)
    prompt, right, _, tests, entry = TASKS["Python"]
    original = verifier.run(Language.PYTHON, _program(Language.PYTHON, prompt, right, tests, entry))
    limit = verifier.variant_wall_s(original)
    assert 2.0 <= limit < verifier.limits.run.wall_s
    looping = "    while True:\n        pass\n"
    outcome = verifier.run(Language.PYTHON, _program(Language.PYTHON, prompt, looping, tests, entry), limit)
    assert outcome.verdict == Verdict.TIMEOUT


def test_python_check_is_called_only_when_the_tests_do_not_call_it():
    assert assemble(Language.PYTHON, "x", "def check(c):\n    pass\n", "f").endswith("check(f)\n")
    called = "def check(c):\n    pass\n\ncheck(f)\n"
    assert assemble(Language.PYTHON, "x", called, "f") == "x\n" + called
    assert assemble(Language.RUBY, "x", "def check(c)\nend\n", "f") == "x\ndef check(c)\nend\n"


def test_prompt_and_solution_join_on_a_new_line_only_where_they_must():
    assert user_code(Language.PYTHON, '    """doc"""', "    return 1\n") == '    """doc"""\n    return 1\n'
    assert user_code(Language.PYTHON, "def f():\n    return ", "1\n") == "def f():\n    return 1\n"
    # a prompt ending in a line comment: only the joined form parses
    assert user_code(Language.C, "int f(void); // declared", "int f(void) { return 1; }") == \
        "int f(void); // declared\nint f(void) { return 1; }"


def test_closing_suffix_and_java_class_names():
    prompt, right, _, _, _ = TASKS["Java"]
    code = user_code(Language.JAVA, prompt, right)
    assert closing_suffix(Language.JAVA, code) == "\n}\n"
    assert closing_suffix(Language.PYTHON, "def f(:\n") is None
    assert java_classes("public class Main2 { }\nclass Runner { public static void main(String[] a) {} }") \
        == ("Main2", "Runner")


def test_a_javascript_solution_requiring_lodash_passes(verifier):
    # MBXP JavaScript tests start `const _ = require("lodash")` and compare with _.isEqual;
    # `make toolchains` installs Debian's node-lodash, found through the sandbox's NODE_PATH.
    _skip_without_toolchain(Language.JAVASCRIPT)
    prompt = "/**\n * The unique values of an array, sorted.\n */\nconst sortedUnique = function (values) {\n"
    solution = "    return [...new Set(values)].sort((a, b) => a - b);\n}"
    tests = ("\nconst _ = require(\"lodash\")\n\nfunction compare(object1, object2){\n"
             "    return _.isEqual(object1, object2)\n}\n\n"
             "if(!compare(sortedUnique([3, 1, 3, 2]), [1, 2, 3])){\n    throw 'Error at 1th assert'\n}\n")
    outcome = verifier.run(Language.JAVASCRIPT, _program(Language.JAVASCRIPT, prompt, solution, tests, None))
    assert outcome.verdict == Verdict.PASSED, outcome.detail
