"""``bnres fit --help`` is short enough to read, names the networks and the arguments taken from the data."""

from __future__ import annotations

import sys

import pytest

from bnres.cli.main import main


def _help(capsys, monkeypatch, *args: str) -> str:
    monkeypatch.setattr(sys, "argv", ["bnres"])
    with pytest.raises(SystemExit) as done:
        main(list(args))
    assert done.value.code == 0
    return capsys.readouterr().out


def test_network_help_marks_the_derived_arguments(capsys, monkeypatch):
    text = _help(capsys, monkeypatch, "fit", "--model.net.help", "bnres.cli.main.Network").split("Help for", 1)[1]  # past the usage
    for key in ("in_channels", "num_classes", "image_size"):
        block = text.split(f"--model.net.{key} ", 1)[1].split("--model.net.", 1)[0]
        assert "derived from the data module" in block and "required" not in block, block
    assert "{lenet,mlp,resnet18,resnet34,plain18,plain34,resnet_cifar,plain_cifar}" in text
