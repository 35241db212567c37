"""The one click type: frames round-trip exactly on rotated, flipped and anisotropic volumes; strict JSON."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from synthetic import tiny_model

from s2vnet.data.clicks import Click, ClickFrames, click_tensors, parse_click, parse_clicks, read_clicks
from s2vnet.data.orientation import reorientation_for
from s2vnet.data.resample import plan_in_plane
from s2vnet.data.volume_io import Geometry
from s2vnet.errors import InputError
from s2vnet.inference import VolumeInference

STORED = (5, 7, 6)  # (z, y, x)
# Stored RAS-like and with i/j swapped: index i runs anterior->posterior flipped, j runs right->left flipped.
DIRECTIONS = {
    "identity": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "flipped": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
    "rotated": (0, 1, 0, -1, 0, 0, 0, 0, 1),
    "axial_swapped": (0, 0, 1, 1, 0, 0, 0, -1, 0),  # slices stored along physical y
}
CLASSES = ["liver", "spleen"]


def frames_for(direction, spacing=(3.0, 0.7, 1.3), target=(0.5, 0.5), code="LPS") -> ClickFrames:
    geometry = Geometry(STORED, spacing, (10.0, -4.0, 2.5), direction)
    working = reorientation_for(direction, code)
    canon_shape = working.shape(STORED)
    resampling = plan_in_plane(canon_shape, working.spacing(spacing), target)
    display = reorientation_for(direction, "LPS")
    return ClickFrames(STORED, working, resampling, display, geometry)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
@pytest.mark.parametrize("code", ["LPS", "RAS"])
def test_every_voxel_round_trips_through_every_frame(name, code):
    frames = frames_for(DIRECTIONS[name], code=code)
    for zyx in itertools.product(*(range(n) for n in STORED)):
        click = Click(1, zyx, "zyx", positive=False)
        for frame in ("ijk", "working", "display"):
            there = frames.convert(click, frame)
            back = frames.convert(there, "zyx")
            assert back.position == zyx and back.class_index == 1 and back.positive is False, (frame, zyx)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_index_maps_agree_with_the_array_maps(name):
    frames = frames_for(DIRECTIONS[name])
    stored = np.arange(np.prod(STORED), dtype=np.int32).reshape(STORED)
    working = frames.resampling.labels(np.ascontiguousarray(frames.working.apply(stored)))
    display = frames.display.apply(stored)
    for zyx in [(0, 0, 0), (4, 6, 5), (2, 3, 1), (1, 5, 4)]:
        w = frames.convert(Click(0, zyx, "zyx"), "working").position
        assert working[int(w[0]), int(round(w[1])), int(round(w[2]))] == stored[zyx]  # upsampled: inside the block
        d = frames.convert(Click(0, zyx, "zyx"), "display").position
        assert display[tuple(int(v) for v in d)] == stored[zyx]
        assert frames.convert(Click(0, zyx, "zyx"), "ijk").position == zyx[::-1]


def test_physical_points_map_like_simpleitk():
    frames = frames_for(DIRECTIONS["axial_swapped"])
    image = frames.geometry.to_sitk(np.zeros(STORED, dtype=np.uint8))
    for ijk in [(0, 0, 0), (5, 6, 4), (2, 3, 1)]:
        point = image.TransformIndexToPhysicalPoint(ijk)
        assert frames.from_physical(point) == ijk
        np.testing.assert_allclose(frames.geometry.physical_to_index(point), ijk, atol=1e-9)
    assert sitk.Version()  # SimpleITK is the reference here


def test_outside_clicks_are_refused_in_their_own_frame():
    frames = frames_for(DIRECTIONS["rotated"])
    with pytest.raises(InputError, match="outside the volume"):
        frames.convert(Click(0, (6, 0, 0), "ijk"), "working")  # i runs 0..5
    with pytest.raises(InputError, match="outside the volume"):
        frames.check_inside(Click(0, (0, 0, 99.0), "working"))
    frames.check_inside(Click(0, (0, -0.4, 0.0), "working"))  # inside the first pixel


@pytest.mark.parametrize(
    "obj, message",
    [
        ({"class": "liver", "positive": "false", "voxel": [0, 0, 0]}, "'positive' must be true or false"),
        ({"class": True, "voxel": [0, 0, 0]}, "'class' must be a class name or a label id"),
        ({"class": 1.5, "voxel": [0, 0, 0]}, "'class' must be a class name or a label id"),
        ({"class": 3, "voxel": [0, 0, 0]}, "unknown class id 3"),
        ({"class": "kidney", "voxel": [0, 0, 0]}, "unknown class name 'kidney'"),
        ({"class": "liver", "voxel": "123"}, "'voxel' must be a list of three numbers"),
        ({"class": "liver", "voxel": [0, None, 0]}, "'voxel' must be a list of three numbers"),
        ({"class": "liver", "voxel": [0, 1.5, 0]}, "three integer indices"),
        ({"class": "liver", "voxel": [0, float("nan"), 0]}, "must be finite"),
        ({"class": "liver", "voxel": [0, 0, 0], "point": [0, 0, 0]}, "exactly one of"),
        ({"class": "liver", "voxel": [0, 0, 0], "colour": "red"}, "unknown click key"),
        (["liver", 0, 0, 0], "must be an object"),
        ({"class": "\u00b2", "voxel": [0, 0, 0]}, "unknown class name"),  # str.isdigit() is True, int() fails
        ({"class": "9" * 5000, "voxel": [0, 0, 0]}, "unknown class name"),  # int() refuses > 4300 digits
        ({"class": "liver", "voxel": [10**400, 0, 0]}, "must be finite"),  # float() overflows
        ({"class": "liver", "point": [0, -(10**400), 0]}, "must be finite"),
    ],
)
def test_bad_click_values_are_refused(obj, message):
    with pytest.raises(InputError, match=message):
        parse_click(obj, CLASSES, source="c.json")


def test_click_json_meaning_is_one_thing():
    frames = frames_for(DIRECTIONS["identity"])
    by_name = parse_click({"class": "spleen", "voxel": [1, 2, 3]}, CLASSES, frames)
    by_id = parse_click({"class": 2, "positive": True, "voxel": [1, 2, 3]}, CLASSES, frames)
    by_text_id = parse_click({"class": "2", "voxel": [1, 2, 3]}, CLASSES, frames)
    assert by_name == by_id == by_text_id == Click(1, (1, 2, 3), "ijk", True)  # class 2 is the label id of index 1
    assert by_name.to_json(CLASSES) == {"class": "spleen", "positive": True, "voxel": [1, 2, 3]}
    assert by_name.to_json() == {"class": 2, "positive": True, "voxel": [1, 2, 3]}
    with pytest.raises(InputError, match=r"c.json \(click 2\): click at ijk \[9.0, 0.0, 0.0\] lies outside"):
        parse_clicks([{"class": 1, "voxel": [0, 0, 0]}, {"class": 1, "voxel": [9, 0, 0]}], CLASSES, frames, "c.json")


def test_read_clicks_refuses_nan_and_deep_json(tmp_path):
    nan = tmp_path / "nan.json"
    nan.write_text('[{"class": 1, "voxel": [NaN, 0, 0]}]')
    with pytest.raises(InputError, match="cannot be parsed as JSON"):
        read_clicks(nan)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(InputError, match="nested too deeply"):
        read_clicks(deep)
    fine = tmp_path / "ok.json"
    fine.write_text(json.dumps([{"class": "liver", "voxel": [0, 0, 0]}]))
    assert read_clicks(fine) == [{"class": "liver", "voxel": [0, 0, 0]}]


def test_click_type_checks_its_own_fields():
    for bad in [
        dict(class_index=-1),
        dict(class_index=True),
        dict(positive=1),
        dict(frame="xyz"),
        dict(position=(0, 0)),
        dict(position=(0, float("inf"), 0)),
    ]:
        with pytest.raises(ValueError):
            Click(**{"class_index": 0, "position": (0, 0, 0), "frame": "zyx", **bad})
    tensors = click_tensors([Click(1, (2, 3.5, 4.0), "working", False)])
    assert tensors["coords"].tolist() == [[3.5, 4.0]] and tensors["classes"] == [1]
    assert tensors["positive"] == [False]
    with pytest.raises(ValueError, match="working frame"):
        click_tensors([Click(1, (2, 3, 4), "zyx")])


@pytest.mark.parametrize("stride", [4, 8])
def test_mask_stride_comes_from_the_config_and_clicks_land_on_their_pixel(stride):
    model = tiny_model("MODEL.PIXEL_DECODER.COMMON_STRIDE", str(stride))
    engine = VolumeInference(model, slice_batch_size=4)
    image = np.zeros((2, 40, 36), dtype=np.uint8)
    features = engine.encode(image)
    assert features.padded_hw == (64, 64)  # padded to a multiple of 32, whatever the stride
    assert features.mask_features.shape[-2:] == (64 // stride, 64 // stride)
    # A click samples the mask feature of its own cell: make the features say which cell they are.
    cells = torch.arange((64 // stride) ** 2, dtype=torch.float32).view(1, 64 // stride, 64 // stride)
    from s2vnet.modeling.interaction import sample_features

    n = 64 // stride
    for cy, cx in [(1, n - 1), (n // 2, 0), (n - 1, n - 1)]:
        y, x = cy * stride + (stride - 1) / 2, cx * stride + (stride - 1) / 2  # the centre pixel of cell (cy, cx)
        value = sample_features(cells, torch.tensor([[y, x]]), features.padded_hw)[0, 0]
        assert value == pytest.approx(cy * n + cx, abs=1e-4)
    assert engine.labels(engine.automatic(features), features.image_hw, features.padded_hw).shape == (2, 40, 36)
