"""The slice cache equals the preprocessed source, is reused when fresh and rebuilt when stale."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from synthetic import TempDatasets, make_cases, organ_phantom, write_image

from s2vnet.data.datasets.register import label_map_for
from s2vnet.data.normalization import IntensitySettings
from s2vnet.data.preprocess import PreprocessSettings, prepare_volume
from s2vnet.data.slice_cache import SliceCache, class_presence, load_cached_slices
from s2vnet.errors import InputError


@pytest.fixture
def datasets():
    registry = TempDatasets()
    yield registry
    registry.close()


def _mtimes(records):
    return {r["case_id"]: os.stat(r["cache"]["image"]).st_mtime_ns for r in records}


def test_cache_equals_source(tmp_path, datasets):
    pairs = make_cases(tmp_path / "src", count=2)
    name = datasets.register(pairs)
    settings = PreprocessSettings(target_spacing=(0.5, 0.5))
    records = SliceCache(tmp_path / "cache", settings).build(name, progress=False)
    assert [r["case_id"] for r in records] == ["case0_img", "case1_img"]
    for (image, label), record in zip(pairs, records):
        expected = prepare_volume(image, "CT", settings, label, label_map_for(name))
        arrays = load_cached_slices(record["cache"])
        assert isinstance(arrays["image"], np.memmap)
        np.testing.assert_array_equal(arrays["image"], expected.image)
        np.testing.assert_array_equal(arrays["label"], expected.label)
        np.testing.assert_array_equal(arrays["presence"], class_presence(expected.label, 2))
        assert record["cache"]["shape"] == expected.image.shape == (12, 96, 80)
        assert record["cache"]["spacing"] == pytest.approx((2.0, 0.5, 0.5))


def test_presence_marks_classes_per_slice():
    _, label = organ_phantom()
    presence = class_presence(label, 2)
    assert presence.shape == (12, 2)
    assert presence[:, 0].tolist() == [2 <= z <= 9 for z in range(12)]
    assert presence[:, 1].tolist() == [z >= 4 for z in range(12)]


def test_fresh_cache_is_reused_and_changed_case_rebuilt(tmp_path, datasets):
    pairs = make_cases(tmp_path / "src", count=2)
    name = datasets.register(pairs)
    cache = SliceCache(tmp_path / "cache", PreprocessSettings())
    first = _mtimes(cache.build(name, progress=False))
    assert _mtimes(cache.build(name, progress=False)) == first  # nothing changed: nothing rewritten

    image, label = organ_phantom(seed=0)
    label[label == 2] = 0  # edit case0's label on disk
    write_image(pairs[0][1], label)
    records = cache.build(name, progress=False)
    again = _mtimes(records)
    assert again["case1_img"] == first["case1_img"]
    assert again["case0_img"] != first["case0_img"]
    assert not load_cached_slices(records[0]["cache"])["presence"][:, 1].any()


def test_settings_change_rebuilds_everything(tmp_path, datasets):
    pairs = make_cases(tmp_path / "src", count=1)
    name = datasets.register(pairs)
    default = SliceCache(tmp_path / "cache", PreprocessSettings()).build(name, progress=False)
    before = np.array(load_cached_slices(default[0]["cache"])["image"])
    narrow = PreprocessSettings(intensity=IntensitySettings(ct_window=(0.0, 100.0)))
    rebuilt = SliceCache(tmp_path / "cache", narrow).build(name, progress=False)
    after = load_cached_slices(rebuilt[0]["cache"])["image"]
    assert not np.array_equal(before, after)
    manifest = json.loads((tmp_path / "cache" / name / "manifest.json").read_text())
    assert manifest["settings"]["preprocess"]["intensity"]["ct_window"] == [0.0, 100.0]


def test_interrupted_build_resumes(tmp_path, datasets):
    pairs = make_cases(tmp_path / "src", count=2)
    image, _ = organ_phantom(seed=1)
    write_image(pairs[1][1], np.full(image.shape, 7, dtype=np.uint8))  # label id 7 is not a class
    name = datasets.register(pairs)
    cache = SliceCache(tmp_path / "cache", PreprocessSettings())
    with pytest.raises(InputError, match="label values \\[7\\]"):
        cache.build(name, progress=False)
    manifest = json.loads((tmp_path / "cache" / name / "manifest.json").read_text())
    assert list(manifest["cases"]) == ["case0_img"]  # the finished case was checkpointed
    assert not (tmp_path / "cache" / name / "case1_img" / "image.npy").exists()  # nothing half-written
    done = os.stat(tmp_path / "cache" / name / "case0_img" / "image.npy").st_mtime_ns

    _, label = organ_phantom(seed=1)
    write_image(pairs[1][1], label)
    records = cache.build(name, progress=False)
    assert _mtimes(records)["case0_img"] == done
    assert len(records) == 2


def test_removed_case_is_dropped(tmp_path, datasets):
    pairs = make_cases(tmp_path / "src", count=2)
    listed = list(pairs)
    name = datasets.register(lambda: listed)
    cache = SliceCache(tmp_path / "cache", PreprocessSettings())
    cache.build(name, progress=False)
    listed.pop()
    assert [r["case_id"] for r in cache.build(name, progress=False)] == ["case0_img"]
    assert not (tmp_path / "cache" / name / "case1_img").exists()


def test_duplicate_case_ids_are_an_error(tmp_path, datasets):
    a = make_cases(tmp_path / "a", count=1)
    b = make_cases(tmp_path / "b", count=1)
    name = datasets.register(a + b)
    with pytest.raises(InputError, match="case id 'case0_img' also used"):
        SliceCache(tmp_path / "cache", PreprocessSettings()).build(name, progress=False)
