"""Config keys are all commented and every shipped YAML loads; the Detectron2 wheel re-pack is sound."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
import zipfile
from pathlib import Path

import pytest

from s2vnet.config import get_s2vnet_cfg, setup_cfg
from s2vnet.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def _load_installer():
    spec = importlib.util.spec_from_file_location("install_detectron2", REPO / "tools" / "install_detectron2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_config_key_has_a_comment():
    lines = (REPO / "s2vnet" / "config.py").read_text().splitlines()
    keys = [
        (i, line)
        for i, line in enumerate(lines)
        if re.match(r"\s+\w+\.[A-Z0-9_]+ = ", line) and not line.strip().endswith("CN()")
    ]
    cfg = get_s2vnet_cfg()
    ours = [
        cfg.INPUT.VOLUME,
        cfg.MODEL.S2VNET,
        cfg.MODEL.PIXEL_DECODER,
        cfg.MODEL.SWIN_TIMM,
        cfg.TEST.S2VNET,
        cfg.SERVE,
    ]
    added_solver_keys = 2  # SOLVER.OPTIMIZER, SOLVER.BACKBONE_MULTIPLIER
    assert len(keys) == sum(_count_leaves(n) for n in ours) + added_solver_keys  # one line per key
    for i, line in keys:
        assert lines[i - 1].strip().startswith("#"), f"config.py:{i + 1} has no comment: {line.strip()}"


def _count_leaves(node) -> int:
    return sum(_count_leaves(v) if isinstance(v, dict) else 1 for v in node.values())


def test_cfg_has_volume_keys():
    cfg = get_s2vnet_cfg()
    assert tuple(cfg.INPUT.VOLUME.CT_WINDOW) == (-175.0, 250.0)
    assert tuple(cfg.INPUT.VOLUME.MRI_PERCENTILES) == (0.5, 99.5)
    assert cfg.INPUT.VOLUME.NUM_SLICES == 3 and cfg.INPUT.VOLUME.CLICKS.INTERACTIVE_PROB == 0.5


@pytest.mark.parametrize("path", sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml")))
def test_shipped_configs_load(path):
    if Path(path).name.startswith("Base-"):  # shared settings only: refused when used alone
        with pytest.raises(InputError, match="it is a base config"):
            setup_cfg(str(REPO / path))
        return
    cfg = setup_cfg(str(REPO / path))
    assert cfg.INPUT.VOLUME.ORIENTATION == "LPS"


def test_missing_config_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such config file"):
        setup_cfg(str(tmp_path / "nope.yaml"))


def _fake_registry_wheel(path: Path, dist: str) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("detectron2/__init__.py", "__version__ = '0.6'\n")
        z.writestr("detectron2/_C.cpython-310-x86_64-linux-gnu.so", b"\x7fELF")
        z.writestr("tools/train_net.py", "print('x')\n")
        z.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp310-cp310-linux_x86_64\n")
        z.writestr(f"{dist}/METADATA", "Name: sal-detectron2\nRequires-Dist: numpy<2\nRequires-Dist: yacs\n")
        z.writestr(f"{dist}/top_level.txt", "detectron2\ntools\n")
        z.writestr(f"{dist}/RECORD", "stale\n")


def test_repacked_wheel_is_pure_python_with_valid_record(tmp_path):
    installer = _load_installer()
    source = tmp_path / installer.WHEEL_NAME
    _fake_registry_wheel(source, installer.DIST_INFO)
    out = installer.repack(source, tmp_path)
    assert out.name == "sal_detectron2-0.7.2-py3-none-any.whl"
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        assert not any(n.endswith(".so") or n.startswith("tools/") for n in names)
        wheel = z.read(f"{installer.DIST_INFO}/WHEEL").decode()
        assert "Tag: py3-none-any" in wheel and "Root-Is-Purelib: true" in wheel
        assert "numpy<2" not in z.read(f"{installer.DIST_INFO}/METADATA").decode()
        for row in z.read(f"{installer.DIST_INFO}/RECORD").decode().splitlines():
            name, digest, size = row.split(",")
            if not digest:
                continue
            data = z.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={expected}" and int(size) == len(data)


def test_installed_detectron2_works_without_its_extension():
    import detectron2
    import torch
    from detectron2.config import get_cfg
    from detectron2.modeling import build_backbone

    assert not list(Path(detectron2.__file__).parent.glob("_C*.so"))
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 18, 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res5"]
    out = build_backbone(cfg)(torch.zeros(1, 3, 64, 64))
    assert out["res2"].shape == (1, 64, 16, 16) and out["res5"].shape == (1, 512, 2, 2)


def test_bad_override_is_an_input_error():
    with pytest.raises(InputError, match="command-line overrides: invalid config: Non-existent key: INPUT.VOLUME.NOPE"):
        setup_cfg("", ["INPUT.VOLUME.NOPE", "3"])
    with pytest.raises(InputError, match="Type mismatch"):
        setup_cfg("", ["INPUT.VOLUME.NUM_SLICES", "abc"])
