"""Dataset registration: the public ``register_volume_dataset`` and the builtin/demo datasets."""
from s2vnet.data.datasets.builtin import register_all_builtin
from s2vnet.data.datasets.demo import register_demo_datasets
from s2vnet.data.datasets.register import label_map_for, read_dataset_json, register_volume_dataset

__all__ = ["register_volume_dataset", "read_dataset_json", "label_map_for", "register_all_builtin",
           "register_demo_datasets"]
