"""Every option of every command documents itself: argparse actions and typer params, found by
walking the parsers (no list of names here), and shown by the real ``--help``."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer.main

from codeprefs.cli import app
from codeprefs.trainers.evaluate import build_parser as evaluate_parser
from codeprefs.trainers.rerank import build_parser as rerank_parser
from codeprefs.trainers.score import build_parser as score_parser
from codeprefs.trainers.train import build_parser as train_parser

ROOT = Path(__file__).resolve().parents[1]


def undocumented_actions(parser: argparse.ArgumentParser) -> list[str]:
    return ["/".join(action.option_strings) or action.dest for action in parser._actions
            if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()]


@pytest.mark.parametrize("make_parser", [train_parser, evaluate_parser, score_parser, rerank_parser],
                         ids=["train", "evaluate", "score", "rerank"])
def test_every_trainer_option_has_help(make_parser):
    parser = make_parser()
    assert undocumented_actions(parser) == []
    text = parser.format_help()
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.option_strings and action.default is not argparse.SUPPRESS:
            # Each option's default shows next to its help (or the help says what happens without it).
            assert "default" in formatter._get_help_string(action), action.dest
        for option in action.option_strings:
            assert option in text


def click_commands(command: click.Command, prefix: str = "codeprefs"):
    yield prefix, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from click_commands(sub, f"{prefix} {name}")


def test_every_codeprefs_option_and_argument_has_help():
    missing = [f"{name} {param.name}" for name, command in click_commands(typer.main.get_command(app))
               for param in command.params if not (getattr(param, "help", None) or "").strip()]
    assert missing == []
    commands = [name for name, command in click_commands(typer.main.get_command(app))
                if not (command.help or "").strip()]
    assert commands == []


# The README's form (`python -m trainers.train`, from the repository root) and the package's.
@pytest.mark.parametrize("module", ["trainers.train", "trainers.evaluate", "codeprefs.trainers.train",
                                    "codeprefs.trainers.evaluate"])
def test_real_help_lists_defaults(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "(default: 4096)" in " ".join(result.stdout.split())


def test_build_prefs_script_help_documents_every_option():
    result = subprocess.run([sys.executable, "pipelines/build_prefs.py", "--help"], capture_output=True,
                            text=True, cwd=ROOT, timeout=300, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    for param in typer.main.get_command(app).commands["build"].params:
        for option in param.opts:
            line = next(line for line in result.stdout.splitlines() if option in line)
            assert line.split(option, 1)[1].strip(" ,-│").strip(), line
