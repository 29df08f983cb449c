"""cli.py train/demo options: the model presets in --help, an unknown preset's one-line error, -v after the
subcommand."""
from __future__ import annotations

import re

from click.testing import CliRunner

from cli import main


def test_train_help_lists_the_presets():
    """Every model preset is named, as a word, in the help of --model-config (not just somewhere in --help:
    "cpu" is also a --device choice)."""
    from train.config import MODEL_PRESETS

    res = CliRunner().invoke(main, ["train", "--help"])
    assert res.exit_code == 0
    lines = res.output.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("--model-config"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("-"))
    block = " ".join(ln.strip() for ln in lines[start:end])
    missing = [p for p in MODEL_PRESETS if not re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", block)]
    assert not missing, (missing, block)


def test_unknown_preset_lists_the_valid_ones(tmp_path):
    res = CliRunner().invoke(main, ["train", "--cached", str(tmp_path / "s.zarr"), "--root", str(tmp_path),
                                    "--out", str(tmp_path / "run"), "--model-config", "cpux"])
    assert res.exit_code == 1
    assert "unknown model preset 'cpux'" in res.output and "fastvqa-b, cpu, tiny" in res.output
    assert "Traceback" not in res.output


def test_verbose_is_accepted_after_the_subcommand():
    for args in (["datasets", "-v"], ["datasets", "-vv"], ["datasets", "--verbose"], ["-v", "datasets"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, (args, res.output)
    res = CliRunner().invoke(main, ["datasets", "-x"])
    assert res.exit_code == 2                     # other unknown options are still refused


def test_train_names_only_what_is_missing(tmp_path):
    """`train --cached X` without --out said "--cached, --root and --out are required"."""
    from click.testing import CliRunner

    from cli import main

    res = CliRunner().invoke(main, ["train", "--model-config", "cpu"])
    assert res.exit_code == 2 and "train needs --cached STORE and --out RUN_FOLDER" in res.output
    store = tmp_path / "s.zarr"
    store.mkdir()
    res = CliRunner().invoke(main, ["train", "--cached", str(store), "--model-config", "cpu", "--root", str(tmp_path)])
    assert res.exit_code == 2 and "train needs --out RUN_FOLDER (or --config)" in res.output
    assert "--root" not in res.output.split("Error:")[-1]


def test_small_cli_consistencies():
    """--cached is a PATH everywhere; ablate/probe vsfa read dataset and root from the store like train
    (no required --root, no csv default); probe vsfa's device is auto; ablate's epochs the recipe, with --alpha."""
    import click

    from cli import main

    def cmd(*names):
        c = main
        for n in names:
            c = c.commands[n]
        return {p.name: p for p in c.params}

    for names in (("train",), ("evaluate",), ("predict",), ("ablate",), ("probe", "vsfa"), ("explain",)):
        assert isinstance(cmd(*names)["cached"].type, click.Path), names
    for names in (("ablate",), ("probe", "vsfa")):
        p = cmd(*names)
        assert not p["root"].required and p["dataset"].default is None, names
    assert cmd("probe", "vsfa")["device"].default == "auto"
    assert cmd("ablate")["epochs"].default is None and "alpha" in cmd("ablate")
