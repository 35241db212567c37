"""S2VNet's data pipeline: volume IO, preprocessing, dataset catalog, slice cache, training mapper.

Importing it registers the builtin datasets (BTCV, WORD, AMOS) and the demo datasets lazily.
"""

from s2vnet.data.build import build_volume_train_loader
from s2vnet.data.dataset_mapper import VolumeDatasetMapper
from s2vnet.data.datasets import read_dataset_json, register_volume_dataset
from s2vnet.data.datasets.builtin import register_all_builtin
from s2vnet.data.datasets.demo import register_demo_datasets
from s2vnet.data.preprocess import PreparedVolume, PreprocessSettings, prepare_loaded, prepare_volume
from s2vnet.data.slice_cache import SliceCache, cached_dataset_dicts
from s2vnet.data.volume_io import Geometry, Volume, read_label, read_volume, write_volume

__all__ = [
    "build_volume_train_loader",
    "VolumeDatasetMapper",
    "register_volume_dataset",
    "read_dataset_json",
    "PreparedVolume",
    "PreprocessSettings",
    "prepare_loaded",
    "prepare_volume",
    "SliceCache",
    "cached_dataset_dicts",
    "Geometry",
    "Volume",
    "read_volume",
    "read_label",
    "write_volume",
]


def _register_once() -> None:
    from detectron2.data import DatasetCatalog

    if "btcv_train" not in DatasetCatalog.list():
        register_all_builtin()
    if "demo_ct_train" not in DatasetCatalog.list():
        register_demo_datasets()


_register_once()
