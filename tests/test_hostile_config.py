"""Bad config files, values and devices give one InputError line naming the file (issue #12 item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from s2vnet.config import device_problem, resolve_device, setup_cfg
from s2vnet.errors import InputError

REPO = Path(__file__).resolve().parents[1]
DEMO = str(REPO / "configs" / "demo" / "s2vnet_r18_demo.yaml")


def _yaml(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("MODEL:\n  DEVICE: [cpu\n", r"is not valid YAML at line 3, column 1: expected ',' or ']'"),
        ("- MODEL\n- INPUT\n", "is a YAML list; a config file is a mapping of config keys"),
        ("just words\n", "is a YAML str; a config file is a mapping"),
        ("", "is an empty file; a config file is a mapping"),
        ("_BASE_: 3\n", "_BASE_ must name a config file, got 3"),
        ("MODEL: 3\n", "invalid config"),
    ],
)
def test_malformed_config_files_are_one_line_errors(tmp_path, text, message):
    path = _yaml(tmp_path, "bad.yaml", text)
    with pytest.raises(InputError, match=message) as info:
        setup_cfg(str(path))
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_a_missing_base_names_the_file_and_the_base(tmp_path):
    path = _yaml(tmp_path, "child.yaml", '_BASE_: "nope/Base.yaml"\n')
    with pytest.raises(InputError, match=r"child.yaml: its _BASE_ 'nope/Base.yaml' does not exist"):
        setup_cfg(str(path))


def test_a_looping_base_chain_is_refused(tmp_path):
    _yaml(tmp_path, "a.yaml", '_BASE_: "b.yaml"\n')
    _yaml(tmp_path, "b.yaml", '_BASE_: "a.yaml"\n')
    with pytest.raises(InputError, match="leads back to a file already in the chain"):
        setup_cfg(str(tmp_path / "a.yaml"))


def test_a_bad_base_is_named_not_its_child(tmp_path):
    _yaml(tmp_path, "base.yaml", "- not a mapping\n")
    _yaml(tmp_path, "child.yaml", '_BASE_: "base.yaml"\n')
    with pytest.raises(InputError, match=r"base.yaml: is a YAML list"):
        setup_cfg(str(tmp_path / "child.yaml"))


def test_python_tags_in_a_config_are_never_executed(tmp_path):
    marker = tmp_path / "ran"
    path = _yaml(tmp_path, "evil.yaml", f'!!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(InputError, match="is not valid YAML"):
        setup_cfg(str(path))
    assert not marker.exists()  # Detectron2 alone falls back to yaml.unsafe_load and would run it


def test_a_base_config_used_alone_is_refused_but_overrides_can_complete_it():
    base = str(REPO / "configs" / "Base-S2VNet.yaml")
    with pytest.raises(InputError, match=r"Base-S2VNet.yaml: names no classes .* it is a base config"):
        setup_cfg(base)
    cfg = setup_cfg(base, ["MODEL.S2VNET.NUM_CLASSES", "2", "MODEL.S2VNET.CLASS_NAMES", "['a', 'b']"])
    assert cfg.MODEL.S2VNET.CLASS_NAMES == ["a", "b"]


@pytest.mark.parametrize(
    "opts, message",
    [
        (
            ["INPUT.VOLUME.CT_WINDOW", "(250.0, -175.0)"],
            r"CT_WINDOW \(250.0, -175.0\) must be \(low, high\) HU with low < high",
        ),
        (["INPUT.VOLUME.CT_WINDOW", "(40.0, 40.0)"], "low < high"),
        (["INPUT.VOLUME.MRI_PERCENTILES", "(99.5, 0.5)"], "MRI_PERCENTILES"),
        (["INPUT.VOLUME.TARGET_SPACING", "(0.0, 2.0)"], r"TARGET_SPACING \(0.0, 2.0\) must be two voxel sizes"),
        (["INPUT.VOLUME.TARGET_SPACING", "(-2.0, 2.0)"], "TARGET_SPACING"),
        (["INPUT.VOLUME.SPACING_RANGE", "(1.0, 0.5)"], "SPACING_RANGE"),
        (["INPUT.VOLUME.MAX_VOXELS", "0"], "INPUT.VOLUME.MAX_VOXELS 0 must be a positive number"),
        (["SERVE.MAX_SLICES", "-1"], "SERVE.MAX_SLICES"),
        (["MODEL.DEVICE", "tpu"], "unknown device 'tpu'; use one of cpu, cuda, mps"),
    ],
)
def test_bad_values_are_refused_naming_the_config(opts, message):
    with pytest.raises(InputError, match=message) as info:
        setup_cfg(DEMO, opts)
    assert str(info.value).startswith(f"{DEMO}: ")


def test_values_without_a_file_name_the_overrides():
    with pytest.raises(InputError, match=r"^command-line overrides: INPUT.VOLUME.CT_WINDOW"):
        setup_cfg("", ["INPUT.VOLUME.CT_WINDOW", "(1.0, 0.0)"])


def test_the_shipped_demo_config_passes_every_check():
    assert setup_cfg(DEMO).INPUT.VOLUME.TARGET_SPACING == (2.0, 2.0)


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "gpu", ""])
def test_unknown_devices(device):
    if device == "":
        assert resolve_device(device) in ("cpu", "cuda")
        return
    with pytest.raises(InputError, match=f"^--device: unknown device '{device}'"):
        resolve_device(device)


def test_known_devices_are_checked_against_this_machine():
    assert resolve_device("cpu") == "cpu" and resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert (
        device_problem("cuda:99")
        == "device 'cuda:99' is not available on this machine (torch sees no such device); use --device cpu"
    )
    assert device_problem("cuda", check_available=False) is None
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="^--device: device 'cuda' is not available on this machine"):
            resolve_device("cuda")


def test_the_viewer_cli_refuses_a_bad_device_before_loading_the_model(capsys, tmp_path):
    from s2vnet.serve.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--config-file", DEMO, "--weights", str(tmp_path / "missing.pth"), "--port", "0", "--device", "tpu"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --device: unknown device 'tpu'; use one of cpu, cuda, mps (cuda:N for the N-th GPU)"
    ]
