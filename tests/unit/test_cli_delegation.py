"""`tierline --data-dir X <subcommand>`: the global option reaches subcommands that parse their own."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from tierline import cli
from tierline.settings import InfraSettings


def test_given_a_global_data_dir_when_a_delegated_command_runs_then_it_reads_that_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIERLINE_DATA_DIR", "unset-by-the-test")  # recorded, so teardown restores it
    monkeypatch.delenv("TIERLINE_DATA_DIR")
    seen: dict[str, object] = {}

    def fake_main(argv: list[str]) -> int:
        seen["argv"] = argv
        seen["data_dir"] = InfraSettings().data_dir
        return 0

    module = types.ModuleType("tierline_fake_subcommand")
    module.fake_main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tierline_fake_subcommand", module)
    run = cli._delegate("tierline_fake_subcommand", "fake_main")
    args = cli.build_parser().parse_args(["--data-dir", str(tmp_path / "stack"), "demo"])
    args.rest = ["--contacts", "5"]

    assert run(args) == 0
    assert seen == {"argv": ["--contacts", "5"], "data_dir": tmp_path / "stack"}


def test_given_no_global_data_dir_when_a_delegated_command_runs_then_the_environment_is_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TIERLINE_DATA_DIR", raising=False)
    module = types.ModuleType("tierline_fake_subcommand")
    module.fake_main = lambda argv: 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tierline_fake_subcommand", module)
    args = cli.build_parser().parse_args(["demo"])
    args.rest = []

    assert cli._delegate("tierline_fake_subcommand", "fake_main")(args) == 0
    assert InfraSettings().data_dir == Path(".tierline")
