"""The command registry: every command's options live in one dataclass, and the CLI, the Python call, the
README and the bad-input table are checked against it so they cannot drift apart."""
import dataclasses
import re
import typing
from pathlib import Path

import pytest

from modeconn import commands
from modeconn.cli import build_parser, main
from modeconn.commands import COMMANDS
from modeconn.commands.reference import options_reference

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
SUBPARSERS = build_parser()._subparsers._group_actions[0].choices


def _flags(name: str) -> set[str]:
    return {s for a in SUBPARSERS[name]._actions for s in a.option_strings if s.startswith("--") and s != "--help"}


def _required_argv(name: str) -> tuple[list[str], dict]:
    """The least a command line can give (placeholders for what is required), and the same as keywords."""
    argv, kwargs = [name], {}
    hints = typing.get_type_hints(COMMANDS[name].options)
    for f in dataclasses.fields(COMMANDS[name].options):
        meta = f.metadata["option"]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            value = 3 if hints[f.name] is int else "x"
            kwargs[f.name] = [value] if meta["nargs"] == "+" else value
            argv += ([] if meta["positional"] else ["--" + f.name.replace("_", "-")]) + [str(value)]
    return argv, kwargs


def test_the_parser_is_generated_from_the_registry_and_every_command_is_exported():
    assert set(SUBPARSERS) == set(COMMANDS)
    for name, cmd in COMMANDS.items():
        assert getattr(commands, name.replace("-", "_")) is cmd
        assert name.replace("-", "_") in commands.__all__


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_cli_and_python_call_build_the_same_options(name):
    """Every option of the command line is a keyword of the Python call with the same default, and back."""
    argv, kwargs = _required_argv(name)
    parsed = vars(build_parser().parse_args(argv))
    parsed.pop("command")
    assert parsed == dataclasses.asdict(COMMANDS[name].options(**kwargs))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help(name):
    for f in dataclasses.fields(COMMANDS[name].options):
        assert f.metadata["option"]["help"], f"{name}: option {f.name} has no help"


def test_an_unknown_keyword_from_python_is_a_type_error():
    with pytest.raises(TypeError, match="gird"):
        commands.plane("out", curve="runs/ab", gird=5)


def test_the_readme_lists_every_option_of_every_command():
    assert options_reference() in README, ("README.md's list of options is out of date: run "
                                           "`python -m modeconn.commands.reference README.md`")


def _readme_rows() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in README.splitlines():
        m = re.match(r"\| `modeconn ([a-z-]+)", line)
        if m:
            rows[m.group(1)] = rows.get(m.group(1), "") + line
    return rows


def test_the_readme_describes_every_command_and_names_only_options_it_has():
    rows = _readme_rows()
    assert set(rows) == set(COMMANDS), set(rows) ^ set(COMMANDS)
    for name, row in rows.items():
        named = set()
        for span in re.findall(r"`([^`]*)`", row):
            words = span.split()
            first = words[1] if words[:1] == ["modeconn"] and len(words) > 1 else (words or [""])[0]
            if first in COMMANDS and first != name:
                continue  # another command's options, named in passing
            named |= set(re.findall(r"--[a-z][a-z0-9-]*", span))
        assert named <= _flags(name), f"README's {name} row names options it does not have: {named - _flags(name)}"


def test_the_bad_input_table_uses_only_options_its_commands_have():
    from test_bad_input import CASES

    for case in CASES:
        line, message = case.values[:2] if hasattr(case, "values") else case
        if "unrecognized arguments" in message:
            continue  # a case about an unknown option
        name, *rest = line.split(" ")
        used = {w for w in rest if w.startswith("--")}
        assert used <= _flags(name), f"{line!r} uses options {name} does not have: {used - _flags(name)}"


def test_info_prints_a_run_s_record(mnist1d_runs, capsys):
    assert main(["info", str(mnist1d_runs["ab"])]) == 0
    out = capsys.readouterr().out
    assert "curve run of conv1d on mnist1d, bezier curve, 1 bend(s)" in out
    assert re.search(r"midpoint_test_err 0\.\d{4}", out)
    record = commands.info(mnist1d_runs["a"])
    assert record["kind"] == "network" and 0 < record["metrics"]["test_err"] < 1


def test_only_run_folder_opens_an_output_folder():
    """Every command opens its folder through commands.common.RunFolder (door check, join, claim under the
    lock, checkpoint removed on success), so none can call the steps in another order."""
    import ast

    folder = Path(commands.__file__).parent
    for path in sorted(folder.glob("*.py")):
        if path.name == "common.py":
            continue
        tree = ast.parse(path.read_text())
        called = {n.func.id if isinstance(n.func, ast.Name) else n.func.attr
                  for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, (ast.Name, ast.Attribute))}
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert not ({"check_unfinished", "claim_output", "setup"} & (called | imported)), path.name


def test_claiming_before_joining_is_refused(tmp_path):
    from modeconn.commands.common import RunFolder

    folder = RunFolder(tmp_path / "out", "result.json")
    with pytest.raises(RuntimeError, match="before join"):
        with folder.claim():
            pass
    assert not (tmp_path / "out").exists()


def test_errors_below_the_commands_name_the_parameter_and_the_cli_the_option(tmp_path, capsys):
    """A Python caller reads `force`; the same refusal through a command or the CLI reads --force."""
    import numpy as np

    from modeconn import ModeconnError
    from modeconn.core.plane import grid_axes
    from modeconn.storage.runfolder import check_unfinished

    (tmp_path / "plane.json").write_text("{}")
    with pytest.raises(ModeconnError) as below:
        check_unfinished(tmp_path, "plane.json", force=False)
    assert "pass `force` to replace it" in str(below.value) and "--" not in str(below.value)
    assert "pass --force to replace it" in below.value.with_options()
    with pytest.raises(ModeconnError, match="pass --force to replace it"):
        commands.plane(tmp_path, curve="whatever", device="cpu", progress=False)
    assert main(["plane", "--curve", "whatever", "--out", str(tmp_path)]) == 2
    assert "pass --force to replace it" in capsys.readouterr().err
    with pytest.raises(ModeconnError, match="`grid` must be >= 2"):
        grid_axes(np.zeros((3, 2)), 1, 0.2)


def test_the_readme_lists_every_name_modeconn_exports():
    import modeconn as mc

    table = README.split("## Python API: the analyses", 1)[1].split("```python", 1)[0]
    listed = set(re.findall(r"`([A-Za-z_]+)`", table))
    assert listed == set(mc.__all__), listed ^ set(mc.__all__)


@pytest.mark.parametrize("settings,named", [(dict(epochs=0), "`epochs`"), (dict(epochs=10 ** 30), "`epochs`"),
                                            (dict(epochs=1.5), "`epochs`"), (dict(lr=-1.0), "`lr`"),
                                            (dict(lr=float("nan")), "`lr`"), (dict(momentum=1.0), "`momentum`"),
                                            (dict(wd=float("inf")), "`wd`"), (dict(batch_size=0), "`batch_size`")])
def test_a_training_config_no_run_can_use_is_refused_by_name(settings, named):
    from modeconn import ModeconnError, TrainConfig

    with pytest.raises(ModeconnError, match=named):
        TrainConfig(**settings)


def test_an_unknown_option_is_refused_by_the_command_s_own_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--out", "x", "--bogus", "1"])
    assert exit_.value.code == 2
    assert "modeconn train: error: unrecognized arguments: --bogus 1 (see modeconn train --help)" in \
        capsys.readouterr().err


def test_help_shows_the_defaults_and_python_shows_the_options(capsys):
    import inspect

    with pytest.raises(SystemExit):
        main(["plane", "--help"])
    shown = capsys.readouterr().out
    assert "(default: 0.2)" in shown
    assert "default: True" not in shown and "default: False" not in shown  # a flag's help says what it does
    assert "grid" in inspect.signature(commands.plane).parameters


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_prints_its_help(name, capsys):
    # a literal percent sign in an option's help ("down to 1%") once broke argparse's formatting of every command
    # with training options
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    assert f"usage: modeconn {name}" in capsys.readouterr().out


def test_written_files_get_the_mode_of_any_new_file(tmp_path):
    import os

    from modeconn.storage.files import write_json

    mask = os.umask(0o022)
    os.umask(mask)
    write_json(tmp_path / "r.json", {})
    (tmp_path / "plain").write_text("")
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777


@pytest.mark.parametrize("name,advice", [("train", "rerun the same command with --resume to continue"),
                                         ("plane", "rerun the same command to continue")])
def test_an_interrupted_command_says_how_to_continue(name, advice, monkeypatch, capsys):
    def interrupted(options):
        raise KeyboardInterrupt

    monkeypatch.setitem(COMMANDS, name, dataclasses.replace(COMMANDS[name], run=interrupted))
    args = {"train": ["train", "--out", "x"], "plane": ["plane", "--curve", "c", "--out", "x"]}[name]
    assert main(args) == 130
    assert f"modeconn {name}: interrupted; {advice}" in capsys.readouterr().err
