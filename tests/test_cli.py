"""The `hark` console script: help for every command, lazy imports, dispatch, clear errors."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hark import REPO_ROOT, cli

FAMILY_COMMANDS = [
    (command, family)
    for family, spec in cli.FAMILIES.items()
    for command in cli.COMMANDS
    if command != "serve" and spec.target(command)
]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse exits for --help and usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def test_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for command in cli.COMMANDS:
        assert command in out
    for family in cli.FAMILIES:
        assert family in out


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_command_help_lists_families(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0
    assert f"hark {command}" in out
    for family, spec in cli.FAMILIES.items():
        if spec.target(command):
            assert family in out


@pytest.mark.parametrize(("command", "family"), FAMILY_COMMANDS)
def test_family_help(command: str, family: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = cli.FAMILIES[family].target(command)
    assert module is not None
    if not module_exists(module):
        pytest.skip(f"{module} (hark {command} {family}) is not in this checkout yet")
    code, out, err = run([command, family, "--help"], capsys)
    assert code == 0, err
    assert f"usage: hark {command} {family}" in out


def test_help_imports_no_heavy_module() -> None:
    # `hark --help` must stay fast and work without torch (serve-only installs).
    probe = textwrap.dedent(
        """
        import sys
        from hark.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        heavy = ("torch", "bentoml", "gradio", "onnxruntime", "numpy")
        print("LOADED", [m for m in heavy if m in sys.modules])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert "LOADED []" in result.stdout


def test_console_script() -> None:
    script = shutil.which("hark", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the hark console script is not installed in this environment")
    result = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "usage: hark" in result.stdout


@pytest.mark.parametrize("command", [c for c in cli.COMMANDS])
def test_unknown_family_is_a_clear_error(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([command, "no-such-family"], capsys)
    assert code == 2
    assert "unknown family 'no-such-family'" in err
    assert all(f in err for f, spec in cli.FAMILIES.items() if command == "serve" or spec.target(command))
    assert "Traceback" not in err


@pytest.fixture
def fake_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A family whose train module is a tiny file, to check dispatch without real training."""
    (tmp_path / "fake_train_module.py").write_text(
        textwrap.dedent(
            """
            def add_arguments_train(parser):
                parser.add_argument("--steps", type=int, default=1, help="optimizer steps")

            def run_train(args):
                return args.steps + 40
            """
        )
    )
    (tmp_path / "fake_needs_dep.py").write_text("import hark_test_missing_dependency\n")
    (tmp_path / "fake_incomplete.py").write_text("def add_arguments_export(parser):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fam = cli.Family(
        "a test family",
        train="fake_train_module",
        data="fake_needs_dep",
        eval="training.hark_test_not_written",
        export="fake_incomplete",
    )
    monkeypatch.setitem(cli.FAMILIES, "fake", fam)
    return "fake"


def test_dispatch_passes_parsed_arguments(fake_family: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(["train", fake_family, "--steps", "2"], capsys)
    assert code == 42
    code, out, _ = run(["train", fake_family, "--help"], capsys)
    assert code == 0
    assert "--steps" in out and "optimizer steps" in out


def test_missing_dependency_names_the_extra(fake_family: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["data", fake_family, "--help"], capsys)
    assert code == 1
    assert "pip install 'hark[train]'" in err
    assert "hark_test_missing_dependency" in err
    assert "Traceback" not in err


def test_missing_module_is_reported(fake_family: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["eval", fake_family], capsys)
    assert code == 1
    assert "not available in this checkout" in err
    assert "training.hark_test_not_written" in err


def test_module_without_entry_point_is_reported(fake_family: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["export", fake_family], capsys)
    assert code == 1
    assert "run_export" in err


def test_serve_dry_run_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for family in cli.FAMILIES:
        (tmp_path / family).mkdir()
        (tmp_path / family / "card.json").write_text("{}")
    code, out, _ = run(
        ["serve", "--dry-run", "--artifacts", str(tmp_path), "--port", "3123", "--workers", "2"], capsys
    )
    assert code == 0
    lines = out.splitlines()
    for family in cli.FAMILIES:
        assert f"register {tmp_path / family}" in lines
    command = lines[-1].split()
    assert command[1:5] == ["-m", "bentoml", "serve", cli.ALL_SERVICE]
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "3123"
    assert "HARK_WORKERS=2" in lines


def test_serve_one_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "transcriber").mkdir()
    (tmp_path / "transcriber" / "card.json").write_text("{}")
    code, out, _ = run(["serve", "transcriber", "--dry-run", "--artifacts", str(tmp_path)], capsys)
    assert code == 0
    assert out.splitlines()[0] == f"register {tmp_path / 'transcriber'}"
    assert "serve services.transcriber:Transcriber" in out


def test_serve_without_artifacts_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "transcriber" / "examples").mkdir(parents=True)  # a directory, but no model card
    code, _, err = run(["serve", "--dry-run", "--artifacts", str(tmp_path)], capsys)
    assert code == 1
    assert "no shipped models" in err


@pytest.mark.parametrize("target", [cli.ALL_SERVICE] + [s.serve for s in cli.FAMILIES.values() if s.serve])
def test_serve_targets_exist(target: str) -> None:
    module, _, name = target.partition(":")
    if not module_exists(module):
        pytest.skip(f"{module} is not in this checkout yet")
    assert hasattr(importlib.import_module(module), name), f"{target} names no service"
