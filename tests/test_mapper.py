"""VolumeDatasetMapper: output structure, shared augmentation across slices, clicks, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from synthetic import TempDatasets, write_image

from s2vnet.config import get_s2vnet_cfg
from s2vnet.data.augmentation import LSJSettings
from s2vnet.data.click_simulation import ClickSettings, border_distance, simulate_clicks
from s2vnet.data.dataset_mapper import VolumeDatasetMapper
from s2vnet.data.normalization import IntensitySettings
from s2vnet.data.preprocess import PreprocessSettings
from s2vnet.data.slice_cache import SliceCache
from s2vnet.data.slice_sampling import SliceSamplingSettings, sample_slice_indices

DEPTH, H, W = 10, 40, 56


@pytest.fixture(scope="module")
def marker_record(tmp_path_factory):
    """A volume whose slices share one asymmetric pattern plus an offset of 10 * z (the slice marker).

    CT window (0, 255) keeps HU == cached intensity, so the marker survives normalisation exactly.
    """
    tmp = tmp_path_factory.mktemp("marker")
    y, x = np.mgrid[:H, :W]
    base = (x * 2 + (y // 4) * 5) % 120 + 10  # no symmetry: a flip or a different crop changes it
    image = np.stack([base + 10 * z for z in range(DEPTH)]).astype(np.int16)
    label = np.zeros((DEPTH, H, W), dtype=np.uint8)
    label[:, 5:20, 6:30] = 1  # class 0, off-centre
    label[3:8, 25:36, 35:50] = 2  # class 1 on some slices
    pairs = [(str(write_image(tmp / "img.nii.gz", image)), str(write_image(tmp / "seg.nii.gz", label)))]
    registry = TempDatasets()
    name = registry.register(pairs)
    settings = PreprocessSettings(intensity=IntensitySettings(ct_window=(0.0, 255.0)))
    record = SliceCache(tmp / "cache", settings).build(name, progress=False)[0]
    yield record
    registry.close()


def make_mapper(**click_overrides) -> VolumeDatasetMapper:
    return VolumeDatasetMapper(
        sampling=SliceSamplingSettings(num_slices=3, gap=(1, 3)),
        lsj=LSJSettings(scale=(0.5, 1.75), crop_size=(48, 64), flip_prob=0.5),
        clicks=ClickSettings(**{"interactive_prob": 0.5, **click_overrides}),
        seed=0,
    )


def test_output_structure(marker_record):
    clip = make_mapper()(marker_record, rng=np.random.default_rng(1))
    assert clip["case_id"] == marker_record["case_id"] and len(clip["slice_indices"]) == 3
    for s in clip["slices"]:
        assert s["image"].dtype == torch.uint8 and s["image"].shape == (1, 48, 64)
        assert s["sem_seg"].dtype == torch.int64 and s["sem_seg"].shape == (48, 64)
        inst = s["instances"]
        assert inst.image_size == (48, 64)
        expected = sorted(int(v) - 1 for v in torch.unique(s["sem_seg"]) if 0 < v < 255)
        assert inst.gt_classes.tolist() == expected
        for c, mask in zip(inst.gt_classes, inst.gt_masks):
            assert torch.equal(mask, s["sem_seg"] == c + 1)
        assert set(s["clicks"]) == {"coords", "classes", "positive"}


def test_all_slices_share_one_crop_scale_and_flip(marker_record):
    """Slices differ only by their marker offset 10 * (z_i - z_j) wherever the crop holds image."""
    mapper = make_mapper()
    flips = set()
    for seed in range(25):
        clip = mapper(marker_record, rng=np.random.default_rng(seed))
        images = [s["image"][0].numpy().astype(int) for s in clip["slices"]]
        labels = [s["sem_seg"].numpy() for s in clip["slices"]]
        valid = labels[0] != 255
        assert all(np.array_equal(lbl != 255, valid) for lbl in labels)  # same crop/pad
        assert np.array_equal(labels[0] == 1, labels[1] == 1)  # class 0 is on every slice: same geometry
        z = clip["slice_indices"]
        for i in (1, 2):
            diff = (images[i] - images[0])[valid]
            assert np.abs(diff - 10 * (z[i] - z[0])).max() <= 1, (seed, z)
        flips.add(bool(labels[0][:, : labels[0].shape[1] // 2].sum() < labels[0][:, labels[0].shape[1] // 2 :].sum()))
    assert flips == {True, False}  # the flip does happen, for whole clips


def test_clips_vary_and_are_reproducible(marker_record):
    mapper = make_mapper()
    a = mapper(marker_record, rng=np.random.default_rng(5))
    b = mapper(marker_record, rng=np.random.default_rng(5))
    c = mapper(marker_record, rng=np.random.default_rng(6))
    assert a["slice_indices"] == b["slice_indices"]
    assert all(torch.equal(x["image"], y["image"]) for x, y in zip(a["slices"], b["slices"]))
    assert any(not torch.equal(x["image"], y["image"]) for x, y in zip(a["slices"], c["slices"]))


def test_mapper_from_config_uses_cfg_seed(marker_record):
    cfg = get_s2vnet_cfg()
    cfg.SEED = 3
    cfg.INPUT.VOLUME.CROP_SIZE = (32, 32)
    first = VolumeDatasetMapper(cfg)(marker_record)
    second = VolumeDatasetMapper(cfg)(marker_record)
    assert first["slices"][0]["image"].shape == (1, 32, 32)
    assert first["slice_indices"] == second["slice_indices"]
    assert torch.equal(first["slices"][0]["image"], second["slices"][0]["image"])


def test_clicks_lie_in_their_objects(marker_record):
    mapper = make_mapper(interactive_prob=1.0, max_extra=3, negative_prob=0.5)
    negatives = 0
    for seed in range(30):
        clip = mapper(marker_record, rng=np.random.default_rng(seed))
        present = {int(c) for s in clip["slices"] for c in s["instances"].gt_classes}
        assert sorted(present) == clip["interactive_classes"].tolist()
        clicked = set()
        for s in clip["slices"]:
            clicks, sem = s["clicks"], s["sem_seg"]
            for (y, x), c, pos in zip(
                clicks["coords"].long().tolist(), clicks["classes"].tolist(), clicks["positive"].tolist()
            ):
                value = int(sem[y, x])
                assert (value == c + 1) if pos else (value not in (c + 1, 255))
                negatives += not pos
                clicked.add(c)
        assert clicked == present  # every interactive class got clicks, on the first slice it appears on
    assert negatives > 0


def test_interactive_probability(marker_record):
    never = make_mapper(interactive_prob=0.0)
    assert all(len(never(marker_record, rng=np.random.default_rng(s))["interactive_classes"]) == 0 for s in range(10))
    half = make_mapper(interactive_prob=0.5)
    decisions = [len(half(marker_record, rng=np.random.default_rng(s))["interactive_classes"]) for s in range(150)]
    present = [
        len(
            {
                int(c)
                for sl in half(marker_record, rng=np.random.default_rng(s))["slices"]
                for c in sl["instances"].gt_classes
            }
        )
        for s in range(150)
    ]
    rate = sum(decisions) / sum(present)
    assert 0.38 < rate < 0.62  # binomial, n >= 150: about 5 standard deviations wide


def test_first_click_is_near_the_interior():
    mask = np.zeros((40, 60), dtype=bool)
    mask[5:35, 10:50] = True
    dist = border_distance(mask)
    for seed in range(20):
        coords, positive = simulate_clicks(
            mask, np.ones_like(mask), np.random.default_rng(seed), ClickSettings(interior_fraction=0.5, max_extra=0)
        )
        y, x = coords[0].astype(int)
        assert positive.tolist() == [True]
        assert dist[y, x] >= 0.5 * dist.max()


def test_negative_clicks_stay_near_the_object_and_in_the_image():
    mask = np.zeros((40, 60), dtype=bool)
    mask[15:25, 20:30] = True
    valid = np.ones_like(mask)
    valid[:, 45:] = False
    near = ndimage.distance_transform_edt(~mask) <= 4
    settings = ClickSettings(max_extra=5, negative_prob=1.0, negative_band=4)
    for seed in range(20):
        coords, positive = simulate_clicks(mask, valid, np.random.default_rng(seed), settings)
        for (y, x), pos in zip(coords.astype(int), positive):
            if not pos:
                assert near[y, x] and not mask[y, x] and valid[y, x]


def test_slice_sampling_respects_gap_bounds_and_foreground():
    presence = np.zeros((30, 2), dtype=bool)
    presence[20:23, 0] = True
    settings = SliceSamplingSettings(num_slices=3, gap=(2, 4), foreground_prob=1.0, random_direction=True)
    directions = set()
    for seed in range(100):
        idx = sample_slice_indices(np.random.default_rng(seed), presence, settings)
        steps = np.diff(idx)
        assert len(set(np.abs(steps))) == 1 and 2 <= abs(steps[0]) <= 4
        assert all(0 <= z < 30 for z in idx)
        assert any(presence[z].any() for z in idx)
        directions.add(int(np.sign(steps[0])))
    assert directions == {-1, 1}


def test_slice_sampling_short_volume():
    presence = np.ones((2, 1), dtype=bool)
    idx = sample_slice_indices(np.random.default_rng(0), presence, SliceSamplingSettings(num_slices=3, gap=(1, 3)))
    assert len(idx) == 3 and all(0 <= z < 2 for z in idx)


def test_intensity_jitter_is_shared_by_the_clip(marker_record):
    """With contrast/brightness jitter on, slice differences scale by the one drawn contrast factor."""
    mapper = VolumeDatasetMapper(
        sampling=SliceSamplingSettings(num_slices=3, gap=(2, 2)),
        lsj=LSJSettings(
            scale=(1.0, 1.0), crop_size=(40, 56), flip_prob=0.0, contrast=(0.8, 1.2), brightness=(-20.0, 20.0)
        ),
        clicks=ClickSettings(interactive_prob=0.0),
        seed=0,
    )
    plain = make_mapper()
    ratios = []
    for seed in range(10):
        clip = mapper(marker_record, rng=np.random.default_rng(seed))
        images = [s["image"][0].numpy().astype(float) for s in clip["slices"]]
        z = clip["slice_indices"]
        factor = [(images[i] - images[0]).mean() / (10 * (z[i] - z[0])) for i in (1, 2)]
        assert abs(factor[0] - factor[1]) < 0.03  # one contrast factor for the whole clip
        ratios.append(factor[0])
    assert 0.78 < min(ratios) < max(ratios) < 1.22 and max(ratios) - min(ratios) > 0.05
    assert plain.lsj.contrast == (1.0, 1.0)  # off by default (the paper uses none)
