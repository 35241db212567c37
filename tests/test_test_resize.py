"""INPUT.VOLUME.TEST_RESIZE: inference resizes each slice to the training size; labels come back on the input grid."""

from __future__ import annotations

import numpy as np
import pytest

from s2vnet.config import get_s2vnet_cfg
from s2vnet.data.label_map import LabelMap
from s2vnet.data.preprocess import PreprocessSettings, prepare_volume
from s2vnet.data.resample import plan_in_plane
from s2vnet.data.slice_cache import SliceCache


def settings(crop=(64, 64), resize: bool = True) -> PreprocessSettings:
    cfg = get_s2vnet_cfg()
    cfg.INPUT.VOLUME.CROP_SIZE = crop
    cfg.INPUT.VOLUME.TEST_RESIZE = resize
    return PreprocessSettings.from_cfg(cfg)


def test_the_key_reads_the_crop_size_and_is_off_by_default():
    assert settings().test_size == (64, 64)
    assert settings(resize=False).test_size is None
    assert PreprocessSettings.from_cfg(get_s2vnet_cfg()).test_size is None


def test_a_size_plan_gives_that_shape_and_the_spacing_that_follows():
    plan = plan_in_plane((5, 40, 50), (2.0, 0.8, 1.0), target=(1.5, 1.5), size=(64, 100))
    assert plan.out_shape == (64, 100)
    assert plan.out_spacing == pytest.approx((0.5, 0.5))


@pytest.mark.parametrize("shape", [(3, 40, 52), (3, 90, 70)], ids=["upsampled", "downsampled"])
def test_labels_come_back_on_the_input_grid(tmp_path, write_image, shape):
    rng = np.random.default_rng(0)
    stored = np.zeros(shape, dtype=np.uint8)
    stored[:, 8:30, 10:40] = 3
    stored[1:, 20:36, 30:48] = 7
    spacing = (2.5, 0.8, 0.9)
    image = write_image(tmp_path / "img.nii.gz", rng.integers(-200, 200, shape).astype(np.int16), spacing)
    label = write_image(tmp_path / "lbl.nii.gz", stored, spacing)

    prepared = prepare_volume(image, "CT", settings(), label, LabelMap((3, 7)))

    assert prepared.image.shape == prepared.label.shape == (3, 64, 64)
    assert prepared.spacing == pytest.approx((2.5, 0.8 * shape[1] / 64, 0.9 * shape[2] / 64))
    back = prepared.to_input_grid(prepared.label)
    assert back.shape == shape
    expected = LabelMap((3, 7)).encode(stored, "")
    if shape[1] < 64:  # nearest neighbour up and back down is exact
        np.testing.assert_array_equal(back, expected)
    else:  # shrinking loses at most the voxels next to a boundary
        assert (back == expected).mean() > 0.95


def test_the_slice_cache_keeps_the_training_grid(tmp_path):
    cache = SliceCache(tmp_path, settings())
    assert cache.settings.test_size is None
    assert "test_size" not in cache.settings.to_dict()
