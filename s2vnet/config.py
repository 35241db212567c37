"""Every configuration key S2VNet reads, with one comment each.

``add_s2vnet_config(cfg)`` extends a Detectron2 ``CfgNode`` (``detectron2.config.get_cfg()``).
Keys already in Detectron2's defaults (``DATASETS.*``, ``DATALOADER.*``, ``SEED``) keep their meaning.
"""
from __future__ import annotations

from detectron2.config import CfgNode as CN


def _add_volume_io(vol: CN) -> None:
    # Axis convention after loading: array (z, y, x); "LPS" reorients every volume (exact axis
    # permutations/flips only) so that +x = patient left, +y = posterior, +z = superior; "" keeps the stored order.
    vol.ORIENTATION = "LPS"
    # CT intensity window in HU, clipped then rescaled to [0, 255] (paper, supplement A).
    vol.CT_WINDOW = (-175.0, 250.0)
    # MRI clipping percentiles per volume, then rescaled to [0, 255] (paper, supplement A).
    vol.MRI_PERCENTILES = (0.5, 99.5)
    # Resample every slice in-plane to TARGET_SPACING before caching/inference (off in the paper configs).
    vol.RESAMPLE_IN_PLANE = False
    # In-plane target spacing in mm, (y, x) order; read only when RESAMPLE_IN_PLANE is True.
    vol.TARGET_SPACING = (1.0, 1.0)
    # Folder of the preprocessed, memory-mapped slice cache (one sub-folder per dataset).
    vol.CACHE_DIR = ".cache/s2vnet_slices"


def _add_sampling(vol: CN) -> None:
    # Number of slices the mapper samples from one volume for one training clip (paper: 3).
    vol.NUM_SLICES = 3
    # Inclusive (min, max) distance in slices between consecutive sampled slices.
    vol.SLICE_GAP = (1, 3)
    # Probability that a clip is anchored on a slice containing foreground (else any slice).
    vol.FOREGROUND_PROB = 0.8
    # Reverse the decoding order of a clip with probability 0.5, so propagation is learned both ways.
    vol.RANDOM_DIRECTION = True
    # Large-scale jitter: (min, max) random scale of the crop size (paper: 0.5-1.75).
    vol.LSJ_SCALE = (0.5, 1.75)
    # Fixed crop (height, width) in pixels after LSJ (paper: 512 x 512); smaller slices are padded.
    vol.CROP_SIZE = (512, 512)
    # Probability of one horizontal flip shared by all slices of a clip (paper: random flip).
    vol.FLIP_PROB = 0.5
    # Image value used to pad outside the slice after normalisation (0 = the window's lower end).
    vol.PAD_VALUE = 0


def _add_clicks(vol: CN) -> None:
    clicks = vol.CLICKS = CN()
    # Probability that a class present in a clip is trained interactively, from simulated clicks (paper: 0.5).
    clicks.INTERACTIVE_PROB = 0.5
    # The first positive click is drawn among object pixels whose distance to the border is at least
    # this fraction of the object's largest distance ("near the interior").
    clicks.INTERIOR_FRACTION = 0.5
    # Largest number of extra clicks per interactive class, beyond the first (each drawn 0..MAX).
    clicks.MAX_EXTRA = 2
    # Probability that an extra click is negative (outside the object) rather than positive.
    clicks.NEGATIVE_PROB = 0.5
    # Negative clicks are drawn outside the object within this many pixels of it.
    clicks.NEGATIVE_BAND = 10


def add_s2vnet_config(cfg: CN) -> None:
    """Add S2VNet's keys (``INPUT.VOLUME.*``) to a Detectron2 config in place.

    Args:
        cfg: a config from ``detectron2.config.get_cfg()``.
    """
    vol = cfg.INPUT.VOLUME = CN()
    _add_volume_io(vol)
    _add_sampling(vol)
    _add_clicks(vol)


def get_s2vnet_cfg() -> CN:
    """A fresh Detectron2 config with S2VNet's keys added."""
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_s2vnet_config(cfg)
    return cfg


def setup_cfg(config_file: str = "", opts: list[str] | None = None) -> CN:
    """S2VNet config from an optional YAML file and ``KEY VALUE`` overrides (frozen).

    Raises:
        InputError: the config file does not exist, or it or an override names an unknown key or a bad value.
    """
    from pathlib import Path

    from s2vnet.errors import InputError

    cfg = get_s2vnet_cfg()
    if config_file and not Path(config_file).is_file():
        raise InputError(config_file, "no such config file")
    if config_file:
        _merge(cfg.merge_from_file, config_file, config_file)
    _merge(cfg.merge_from_list, list(opts or []), "command-line overrides")
    cfg.freeze()
    return cfg


def _merge(merge, what, source: str) -> None:
    """Run one yacs merge, turning its bad-key / bad-value errors into a one-line InputError."""
    from s2vnet.errors import InputError

    try:
        merge(what)
    except (KeyError, ValueError, AssertionError, TypeError) as err:  # how yacs reports bad keys/values
        raise InputError(source, f"invalid config: {str(err).strip()}") from None
