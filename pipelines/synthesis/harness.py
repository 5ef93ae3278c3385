"""How a (prompt, solution, tests) record becomes a program, and how each language runs it.

The ``humaneval`` layout is the common shape of HumanEval-style data (McEval, MBXP,
MultiPL-E): the code a user sees is ``prompt + solution``; the program that is run is that
code, a newline, then the tests. A run passes when every step exits 0 and no assertion failed.
Per language (all from Debian packages):

============  ==========================================================================
Python        ``python3 main.py``; a test that only defines ``check`` gets
              ``check(<entry_point>)`` appended, as HumanEval's own harness does
Ruby          ``ruby main.rb``
JavaScript    ``node -r assert-fails.js main.js``: the preloaded module makes a failed
              ``console.assert`` (which only prints) set a non-zero exit code; ``NODE_PATH``
              has Debian's module folders, so ``require('lodash')`` (MBXP's tests) finds
              node-lodash
C             ``gcc main.c -lm`` then ``./prog``
C++           ``g++ -std=gnu++17 main.cpp`` then ``./prog``
Java          ``javac`` then ``java -ea`` on the class declaring ``main`` (assertions on)
C#            ``mcs -d:DEBUG`` with an entry point that makes a failed ``Debug.Assert`` exit
              1 (Mono's default only prints), then ``mono``; the program gets the ``using``
              lines .NET SDK projects import implicitly (``System.Linq``...), which
              HumanEval-style C# data relies on
Go            the program is ``main_test.go`` of package ``main``: ``go test -c`` then the
              test binary; GOPATH mode (``GO111MODULE=off``) with ``GOPATH=/usr/share/gocode``,
              where Debian's golang-github-stretchr-testify-dev puts testify, so no network
============  ==========================================================================
"""

from __future__ import annotations

import functools
import glob
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from codeprefs.core.schema import Language
from codeprefs.parsers.treesitter import ParseLimitExceeded, parse
from codeprefs.pipelines.synthesis.sandbox import SAFE_PATH, Limits, Sandbox, Step

HARNESSES = ("humaneval",)
GO_PATH = "/usr/share/gocode"
NODE_PATHS = ("/usr/share/nodejs", "/usr/lib/nodejs")

_JS_ASSERT_FAILS = """\
'use strict';
// Loaded with `node -r`: a failed console.assert makes the process exit non-zero.
let failedAssertions = 0;
const printAssertion = console.assert.bind(console);
console.assert = function assertOrFail(condition, ...data) {
  if (!condition) {
    failedAssertions += 1;
    process.exitCode = 1;
  }
  printAssertion(condition, ...data);
};
process.on('exit', () => {
  if (failedAssertions > 0) process.exitCode = 1;
});
"""

# What ``<ImplicitUsings>`` adds in a .NET SDK project (System.Net.Http left out: not in Mono's
# default references). Types the program declares itself still win over imported ones.
_CSHARP_IMPLICIT_USINGS = ("using System; using System.Collections.Generic; using System.IO; "
                           "using System.Linq; using System.Threading; using System.Threading.Tasks;\n")

_CSHARP_ENTRY = """\
using System;
using System.Diagnostics;
using System.Reflection;

sealed class CodeprefsExitOnFailedAssert : TraceListener
{
    public override void Write(string message) { }
    public override void WriteLine(string message) { }
    public override void Fail(string message, string detail)
    {
        Console.Error.WriteLine("assertion failed: " + message + " " + detail);
        Console.Error.Flush();
        Environment.Exit(1);
    }
}

static class CodeprefsEntry
{
    static int Main(string[] args)
    {
        Trace.Listeners.Clear();
        Trace.Listeners.Add(new CodeprefsExitOnFailedAssert());
        foreach (Type type in typeof(CodeprefsEntry).Assembly.GetTypes())
        {
            if (type == typeof(CodeprefsEntry)) continue;
            foreach (MethodInfo main in type.GetMethods(
                BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            {
                if (main.Name != "Main") continue;
                object[] arguments = main.GetParameters().Length == 0 ? new object[0] : new object[] { args };
                try
                {
                    object result = main.Invoke(null, arguments);
                    return result is int ? (int)result : Environment.ExitCode;
                }
                catch (TargetInvocationException error)
                {
                    Console.Error.WriteLine(error.InnerException);
                    return 1;
                }
            }
        }
        Console.Error.WriteLine("no Main method found");
        return 2;
    }
}
"""

# Executables each language needs, looked up on the sandbox's PATH.
REQUIRED_COMMANDS: dict[Language, tuple[str, ...]] = {
    Language.C: ("gcc",),
    Language.CPP: ("g++",),
    Language.CSHARP: ("mcs", "mono"),
    Language.GO: ("go",),
    Language.JAVA: ("javac", "java"),
    Language.JAVASCRIPT: ("node",),
    Language.PYTHON: ("python3",),
    Language.RUBY: ("ruby",),
}


def missing_commands(language: Language) -> list[str]:
    """The executables ``language`` needs that are not installed (empty: ready to run)."""
    return [command for command in REQUIRED_COMMANDS[Language(language)]
            if shutil.which(command, path=SAFE_PATH) is None]


# How each required executable prints its version (the first line of its output is kept).
_VERSION_ARGUMENT = {"go": "version", "javac": "-version", "java": "-version"}


def command_version(command: str, search_path: str | None = None) -> str | None:
    """The first line ``command`` prints about its version (None when it is not installed);
    ``search_path`` defaults to the sandbox's PATH.

    Verification results depend on the compilers and runtimes, so these lines go into the
    fingerprint of every source whose pairs are verified by running them. Asked once per
    executable file (a replaced file is asked again).
    """
    executable = shutil.which(command, path=search_path or SAFE_PATH)
    if executable is None:
        return None
    status = Path(executable).stat()
    return _version_line(executable, _VERSION_ARGUMENT.get(command, "--version"), status.st_ino,
                         status.st_mtime_ns, status.st_size)


@functools.cache
def _version_line(executable: str, argument: str, *identity: int) -> str:
    try:
        done = subprocess.run([executable, argument], capture_output=True, text=True, timeout=30,
                              env={"PATH": SAFE_PATH, "LANG": "C.UTF-8"})
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{executable}: version unknown ({type(error).__name__})"
    lines = [line.strip() for line in (done.stdout + "\n" + done.stderr).splitlines() if line.strip()]
    return lines[0] if lines else f"{executable}: version unknown (exit {done.returncode})"


def toolchain_versions(languages: list[Language], search_path: str | None = None) -> dict[str, str]:
    """``{command: version line}`` for the installed executables that ``languages`` need."""
    commands = sorted({command for language in languages for command in REQUIRED_COMMANDS[Language(language)]})
    return {command: version for command in commands if (version := command_version(command, search_path))}


@dataclass(frozen=True)
class RunLimits:
    """Limits of the compile steps and of the run step."""

    compile: Limits = Limits(wall_s=60, cpu_s=60, memory_mb=2048, file_mb=256, output_kb=256,
                             processes=512)
    run: Limits = Limits()


@dataclass(frozen=True)
class Job:
    """The files and steps that build and run one program."""

    files: dict[str, str]
    steps: list[Step]


_ENDS_A_LINE = frozenset(")]}{;:\"'>")


def user_code(language: Language, prompt: str, solution: str) -> str:
    """The code a user sees: the prompt's code followed by the solution.

    Some data sets cut the prompt right after a signature, a docstring or a line comment with
    no newline, and start the solution on what should be the next line (``...\"\"\"`` +
    ``"    for x in"``). There a newline joins the two: when the prompt ends with a character that
    ends a line (a bracket, ``;``, ``:``, a quote), or when only the joined form parses. A
    prompt that stops mid-line (``"return "``) is left as is.
    """
    plain = prompt + solution
    if not prompt or not solution or prompt.endswith("\n") or solution.startswith(("\n", "\r\n")):
        return plain
    joined = prompt + "\n" + solution
    if prompt[-1] in _ENDS_A_LINE or _ends_in_line_comment(language, prompt):
        return joined
    if _parses(language, plain) or not _parses(language, joined):
        return plain
    return joined


_CLOSERS = {Language.RUBY: "end", Language.PYTHON: None}


def closing_suffix(language: Language, code: str) -> str | None:
    """What the code needs appended to parse on its own ("" when it already does).

    In some data sets the tests close the class the prompt opens (McEval's Java and C#: the
    test holds ``main`` and the final ``}``), so ``prompt + solution`` alone does not parse. The
    code shown as a pair's side gets the missing closing brackets (or Ruby ``end``s), at most
    three; the program that is run is still the code without them plus the tests. None when
    no such suffix makes the code parse.
    """
    if _parses(language, code):
        return ""
    closer = _CLOSERS.get(Language(language), "}")
    if closer is None:
        return None
    suffix = ""
    for _ in range(3):
        suffix += "\n" + closer
        if _parses(language, code + suffix):
            return suffix + "\n"
    return None


def _ends_in_line_comment(language: Language, prompt: str) -> bool:
    """Whether the prompt stops inside a ``//`` or ``#`` comment (which would swallow code)."""
    source = prompt.encode("utf-8")
    try:
        root = parse(source, Language(language)).root_node
    except ParseLimitExceeded:
        return False
    node = root.descendant_for_byte_range(len(source) - 1, len(source))
    return (node is not None and "comment" in node.type and node.end_byte == len(source)
            and not source.rstrip().endswith(b"*/"))


def _parses(language: Language, code: str) -> bool:
    try:
        return not parse(code.encode("utf-8"), Language(language)).root_node.has_error
    except ParseLimitExceeded:
        return False


def assemble(language: Language, code: str, tests: str, entry_point: str | None) -> str:
    """The program that is run: the code, a newline, the tests (plus a Python ``check`` call)."""
    program = code + "\n" + tests
    if Language(language) == Language.PYTHON and entry_point and _defines_check_only(tests):
        program += f"\n\ncheck({entry_point})\n"
    return program


def _defines_check_only(tests: str) -> bool:
    return (re.search(r"^def check\s*\(", tests, re.MULTILINE) is not None
            and re.search(r"^check\s*\(", tests, re.MULTILINE) is None)


def java_classes(program: str) -> tuple[str | None, str | None]:
    """(the public top-level class, the top-level class declaring ``static void main``)."""
    try:
        tree = parse(program.encode("utf-8"), Language.JAVA)
    except ParseLimitExceeded:
        return None, None
    public = main = None
    source = program.encode("utf-8")
    for node in tree.root_node.named_children:
        if node.type != "class_declaration":
            continue
        name_node = node.child_by_field_name("name")
        name = source[name_node.start_byte:name_node.end_byte].decode() if name_node else None
        modifiers = next((c for c in node.children if c.type == "modifiers"), None)
        if modifiers is not None and b"public" in source[modifiers.start_byte:modifiers.end_byte].split():
            public = public or name
        if main is None and _declares_main(node, source):
            main = name
    return public, main


def _declares_main(class_node, source: bytes) -> bool:
    body = class_node.child_by_field_name("body")
    if body is None:
        return False
    for member in body.named_children:
        if member.type != "method_declaration":
            continue
        name = member.child_by_field_name("name")
        modifiers = next((c for c in member.children if c.type == "modifiers"), None)
        if name is not None and source[name.start_byte:name.end_byte] == b"main" and \
                modifiers is not None and b"static" in source[modifiers.start_byte:modifiers.end_byte]:
            return True
    return False


def _node_path() -> str:
    """Debian's Node module folders that exist here (arch-specific ones included)."""
    folders = [*NODE_PATHS, *sorted(glob.glob("/usr/lib/*-linux-gnu*/nodejs"))]
    return ":".join(path for path in folders if Path(path).is_dir())


_CPP_FLAGS = ("-std=gnu++17", "-O0", "-w")


@functools.cache
def _stdcpp_header() -> str | None:
    """The newest libstdc++ ``bits/stdc++.h`` installed (what ``<bits/stdc++.h>`` includes)."""
    found = glob.glob("/usr/include/*/c++/*/bits/stdc++.h") + glob.glob("/usr/include/c++/*/bits/stdc++.h")
    def version(path: str) -> tuple[int, ...]:
        match = re.search(r"/c\+\+/(\d+)", path)
        return (int(match.group(1)),) if match else (0,)
    return max(found, key=version) if found else None


def _precompiled_header_steps(sandbox: Sandbox, slot: int, header: str, limits: Limits) -> list[Step]:
    """Build ``bits/stdc++.h`` precompiled once per slot (it takes g++ ~1 s per program).

    g++ uses ``<cache>/bits/stdc++.h.gch`` when the header is the program's first include and
    the flags match, and silently reads the real header otherwise. Written under a temporary
    name then renamed; a failure only costs speed.
    """
    cache = sandbox.cache_dir(slot, "cpp-pch")
    target = cache / "bits" / "stdc++.h.gch"
    if target.is_file():
        return []
    temporary = f"{target}.tmp"
    script = (f"mkdir -p '{target.parent}' && g++ {' '.join(_CPP_FLAGS)} -x c++-header '{header}' "
              f"-o '{temporary}' && mv '{temporary}' '{target}'; exit 0")
    return [Step("precompile-header", ["sh", "-c", script],
                 replace(limits, file_mb=max(limits.file_mb, 512)), writable=(str(cache),))]


def build_job(language: Language, program: str, sandbox: Sandbox, slot: int,
              limits: RunLimits = RunLimits()) -> Job:
    """The sandbox job that compiles (where needed) and runs ``program``."""
    language = Language(language)
    compile_limits, run_limits = limits.compile, limits.run
    if language == Language.PYTHON:
        return Job({"main.py": program},
                   [Step("run", ["python3", "-B", "main.py"], run_limits,
                         env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"})])
    if language == Language.RUBY:
        return Job({"main.rb": program}, [Step("run", ["ruby", "main.rb"], run_limits)])
    if language == Language.JAVASCRIPT:
        env = {"NODE_PATH": _node_path()} if _node_path() else {}
        return Job({"main.js": program, "assert-fails.js": _JS_ASSERT_FAILS},
                   [Step("run", ["node", "--stack-size=4000", "-r", "./assert-fails.js", "main.js"],
                         run_limits, env=env)])
    if language == Language.C:
        return Job({"main.c": program}, [
            Step("compile", ["gcc", "-std=gnu11", "-O0", "-w", "-o", "prog", "main.c", "-lm"],
                 compile_limits),
            Step("run", ["./prog"], run_limits)])
    if language == Language.CPP:
        steps = []
        compile_argv = ["g++", *_CPP_FLAGS, "-o", "prog", "main.cpp"]
        header = _stdcpp_header()
        if header and "bits/stdc++.h" in program:
            steps += _precompiled_header_steps(sandbox, slot, header, compile_limits)
            compile_argv[1:1] = ["-I", str(sandbox.cache_dir(slot, "cpp-pch"))]
        return Job({"main.cpp": program}, [
            *steps, Step("compile", compile_argv, compile_limits),
            Step("run", ["./prog"], run_limits)])
    if language == Language.JAVA:
        public, main = java_classes(program)
        file_name = f"{public or main or 'Main'}.java"
        heap = max(64, (run_limits.memory_mb or 1024) // 2)
        cds = sandbox.cache_dir(slot, "javac-cds")
        archive = cds / "javac.jsa"
        # javac starts 3x faster from a class-data archive, written by the first compile.
        share = (f"-J-XX:SharedArchiveFile={archive}" if archive.is_file()
                 else f"-J-XX:ArchiveClassesAtExit={archive}")
        return Job({file_name: program}, [
            Step("compile", ["javac", share, "-J-XX:+UseSerialGC", "-J-XX:TieredStopAtLevel=1",
                             "-J-XX:-UsePerfData", "-J-Xmx512m", "-proc:none", "-g:none", "-nowarn",
                             "-encoding", "UTF-8", "-d", "classes", file_name], compile_limits,
                 writable=(str(cds),)),
            Step("run", ["java", "-ea", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                         "-XX:-UsePerfData", f"-Xmx{heap}m", "-cp", "classes", main or "Main"],
                 run_limits)])
    if language == Language.CSHARP:
        return Job({"Program.cs": _CSHARP_IMPLICIT_USINGS + program, "CodeprefsEntry.cs": _CSHARP_ENTRY}, [
            Step("compile", ["mcs", "-nologo", "-warn:0", "-d:DEBUG", "-d:TRACE",
                             "-main:CodeprefsEntry", "-r:System.Numerics", "-out:prog.exe",
                             "Program.cs", "CodeprefsEntry.cs"], compile_limits),
            Step("run", ["mono", "prog.exe"], run_limits)])
    if language == Language.GO:
        cache = str(sandbox.cache_dir(slot, "go-build"))
        # cgo stays on (Go's default): the standard library then comes precompiled with Go.
        env = {"GO111MODULE": "off", "GOPATH": GO_PATH, "GOCACHE": cache, "GOFLAGS": "",
               "GOTOOLCHAIN": "local", "GOTELEMETRY": "off"}
        return Job({"main_test.go": program}, [
            Step("compile", ["go", "test", "-c", "-vet=off", "-ldflags=-s -w", "-o", "prog.test",
                             "."],
                 compile_limits, env=env, writable=(cache,)),
            Step("run", ["./prog.test"], run_limits, env={"GOMAXPROCS": "2"})])
    raise ValueError(f"no harness for {language}")
