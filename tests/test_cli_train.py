"""cli.py train/demo options: the model presets in --help, an unknown preset's one-line error, -v after the
subcommand."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli import main


def test_train_help_lists_the_presets():
    res = CliRunner().invoke(main, ["train", "--help"])
    assert res.exit_code == 0
    assert "fastvqa-b" in res.output and "cpu" in res.output and "tiny" in res.output


def test_unknown_preset_lists_the_valid_ones(tmp_path):
    """--model-config NAME that is neither a preset nor a file: a ConfigError naming the presets (the CLI ends
    such errors with one line and exit status 1); it is raised before any store is opened."""
    from cli import _model_config
    from clifvqa_core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown model preset 'cpux' \(did you mean 'cpu'\?\); known: fastvqa-b, cpu, tiny"):
        _model_config("cpux", "all", False, False, False, (str(tmp_path / "absent.zarr"),))


def test_verbose_is_accepted_after_the_subcommand():
    for args in (["datasets", "-v"], ["datasets", "-vv"], ["datasets", "--verbose"], ["-v", "datasets"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, (args, res.output)
    res = CliRunner().invoke(main, ["datasets", "-x"])
    assert res.exit_code == 2                     # other unknown options are still refused
