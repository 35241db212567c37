"""Every configuration key S2VNet adds, with one comment each.

``add_s2vnet_config(cfg)`` extends a Detectron2 ``CfgNode`` (``detectron2.config.get_cfg()``) with
``INPUT.VOLUME.*`` (data), ``MODEL.S2VNET.*`` (the model), ``MODEL.PIXEL_DECODER.*``,
``MODEL.SWIN_TIMM.*`` (the timm Swin backbone), ``TEST.S2VNET.*`` (inference and evaluation), ``SERVE.*``
(the browser viewer, ``s2vnet-serve``) and two ``SOLVER`` keys. Keys already in Detectron2's
defaults (``DATASETS.*``, ``DATALOADER.*``, ``MODEL.RESNETS.*``, ``SOLVER.*``, ``SEED``) keep their meaning.
"""

from __future__ import annotations

import math
from pathlib import Path

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
    # Inference only: resize every slice in-plane to CROP_SIZE (instead of TARGET_SPACING) and the labels back to
    # the input grid (paper, 4.1: a 512 x 512 input for all datasets). Training slices keep their grid.
    vol.TEST_RESIZE = False
    # Folder of the preprocessed, memory-mapped slice cache (one sub-folder per dataset).
    vol.CACHE_DIR = ".cache/s2vnet_slices"


def _add_limits(vol: CN) -> None:
    # Largest voxel count a scan's header may declare, checked before any voxel is read (2**29 = a
    # 512 x 512 x 2048 CT); a bigger scan is refused with a message naming this key.
    vol.MAX_VOXELS = 2**29
    # Largest working grid (slices x resampled rows x columns) after in-plane resampling to TARGET_SPACING,
    # checked before it is allocated (a few-byte header with 400 mm voxels would otherwise ask for gigabytes).
    vol.MAX_RESAMPLED_VOXELS = 2**29
    # Plausible voxel size in mm, (min, max), for every axis; scans and array inputs outside it are refused
    # (0, negative, 1e-3 mm or 400 mm voxels come from broken headers and give empty or absurd grids).
    vol.SPACING_RANGE = (0.01, 100.0)


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
    # Intensity jitter shared by a clip, (min, max) contrast factor about grey 128; (1, 1) = off (paper: off).
    vol.CONTRAST_RANGE = (1.0, 1.0)
    # Intensity jitter shared by a clip, (min, max) brightness shift in [0, 255] units; (0, 0) = off (paper: off).
    vol.BRIGHTNESS_RANGE = (0.0, 0.0)


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
    # Error-driven click training (not in the paper; 0 = off): the probability that a clip with interactive
    # classes first runs the model without gradient for a random number of rounds (0..ERROR_MAX_ROUNDS), each
    # followed by one click per interactive class at the model's largest error (positive on a miss, negative on
    # an extra); the loss is then computed with all clicks.
    clicks.ERROR_PROB = 0.0
    # Largest number of error-driven rounds per clip (drawn uniformly in 0..ERROR_MAX_ROUNDS).
    clicks.ERROR_MAX_ROUNDS = 3


def _add_model(s2v: CN) -> None:
    # Number of foreground classes K (background is implicit); must match the training dataset.
    s2v.NUM_CLASSES = 13
    # Names of the K classes, in class-index order (for outputs; checked against the dataset by train_net.py).
    s2v.CLASS_NAMES = []
    # Centroid slots per class (paper: 20); the decoder runs NUM_CLASSES * CENTROIDS_PER_CLASS queries.
    s2v.CENTROIDS_PER_CLASS = 20
    # Width of centroids, pixel embeddings and attention.
    s2v.HIDDEN_DIM = 256
    # Attention heads in the decoder's self-attention and the aggregation attentions.
    s2v.NHEADS = 8
    # Hidden width of the decoder FFNs.
    s2v.DIM_FEEDFORWARD = 2048
    # Decoder layers; they cycle over the pixel decoder's three multi-scale levels (Mask2Former: 9).
    s2v.DEC_LAYERS = 9
    # Dropout in the decoder layers.
    s2v.DROPOUT = 0.0
    # Name in TRANSFORMER_DECODER_REGISTRY of the per-slice decoder.
    s2v.TRANSFORMER_DECODER_NAME = "KMeansTransformerDecoder"
    # Slice-to-volume propagation (Eq. 5-6); False decodes every slice from the learned centroids (Table 4 row 1).
    s2v.PROPAGATION = True
    # Recurrent centroid aggregation (Eq. 10-11).
    s2v.AGGREGATION = True
    # Click-initialised centroids (Eq. 7); False ignores clicks (automatic-only model).
    s2v.INTERACTION = True
    # Adaptive pixel-feature sampling across clicks/rounds (Eq. 8); False keeps only the latest click's feature.
    s2v.ADAPTIVE_SAMPLING = True
    # Weight beta of earlier clicks' features in Eq. 8 (paper: 0.8).
    s2v.BETA = 0.8
    # Which centroid slot a click initialises: "per_click" (paper, 3.3: the n-th click of class k takes the
    # class's slot n mod CENTROIDS_PER_CLASS) or "shared" (every click of class k re-initialises its first slot).
    s2v.CLICK_SLOTS = "per_click"
    # Eq. 8 accumulator fed to the click FFN: "none" (paper: the raw weighted sum, growing with the number of
    # clicks) or "weights" (divided by the sum of its weights: a weighted mean, the same scale for any count).
    s2v.CLICK_FEATURE_NORM = "none"
    # Class score of a click-initialised centroid: "head" (paper: the class head's score c_k decides, Eq. 9) or
    # "clicked" (the user named the class: on the clicked slice the centroid is its class; where it propagates,
    # it is its class or nothing, all foreground probability going to the clicked class).
    s2v.CLICK_CLASS_SCORE = "head"
    # Per-class score of a pixel from the centroids: "sum" (paper: Mask2Former's semantic inference, the sum over
    # centroids of class x mask probability) or "max" (the best single centroid). A pixel is the arg-max class
    # when that class's score reaches FOREGROUND_THRESHOLD, else background.
    s2v.SEMANTIC_INFERENCE = "sum"
    # Inference: a pixel is foreground when its best class score (Eq. 9 fusion) reaches this value.
    s2v.FOREGROUND_THRESHOLD = 0.5
    # Loss weight of the classification cross-entropy.
    s2v.CLASS_WEIGHT = 2.0
    # Loss weight of the sigmoid BCE mask loss.
    s2v.MASK_WEIGHT = 5.0
    # Loss weight of the Dice mask loss.
    s2v.DICE_WEIGHT = 5.0
    # Cross-entropy weight of the "no object" class.
    s2v.NO_OBJECT_WEIGHT = 0.1
    # Weight of the mask losses on the k-means cross-attention logits (relative to the mask-head losses).
    s2v.KMEANS_LOGIT_WEIGHT = 1.0
    # Supervise every decoder layer (deep supervision), not only the last.
    s2v.DEEP_SUPERVISION = True
    # Points sampled per mask for the mask losses and the matcher (Mask2Former: 112 * 112).
    s2v.TRAIN_NUM_POINTS = 12544
    # Oversampling ratio of the uncertainty-based point sampling.
    s2v.OVERSAMPLE_RATIO = 3.0
    # Fraction of points taken from the most uncertain locations.
    s2v.IMPORTANCE_SAMPLE_RATIO = 0.75
    # Multi-process training: DistributedDataParallel's find_unused_parameters. True is needed whenever an
    # iteration can leave parameters without a gradient (the click FFNs get none on a clip without clicks);
    # False saves a graph traversal per iteration for models where every parameter is always used.
    s2v.FIND_UNUSED_PARAMETERS = True


def _add_pixel_decoder(pix: CN) -> None:
    # Name in PIXEL_DECODER_REGISTRY: "MSDeformAttnPixelDecoder" (paper) or "LightFPNPixelDecoder" (CPU configs).
    pix.NAME = "MSDeformAttnPixelDecoder"
    # Backbone features the pixel decoder reads, highest resolution first.
    pix.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    # Features refined by the deformable-attention encoder (the three coarsest).
    pix.DEFORMABLE_IN_FEATURES = ["res3", "res4", "res5"]
    # Channel width inside the pixel decoder.
    pix.CONVS_DIM = 256
    # Channels of the 1/4-scale mask features.
    pix.MASK_DIM = 256
    # Normalisation of the pixel decoder's convolutions ("GN", "BN", "" ...).
    pix.NORM = "GN"
    # Deformable-attention encoder layers.
    pix.TRANSFORMER_ENC_LAYERS = 6
    # Heads of the deformable attention.
    pix.NHEADS = 8
    # Sampling points per head and level in the deformable attention.
    pix.N_POINTS = 4
    # Hidden width of the encoder FFN.
    pix.DIM_FEEDFORWARD = 1024
    # Stride of the mask features (4 = 1/4 of the input).
    pix.COMMON_STRIDE = 4


def _add_swin(swin: CN) -> None:
    # timm model name of the Swin backbone (Swin-B, window 12, as Mask2Former's Swin-B).
    swin.NAME = "swin_base_patch4_window12_384"
    # Local path of pretrained Swin weights (.pth/.pt/.safetensors, timm or Microsoft key layout; sources in
    # s2vnet/pretrained.py); nothing is downloaded. "scratch" = random initialisation on purpose. "" = none given.
    # The backbone reads no file for either; train_net.py refuses to train a Swin backbone from "" (unless
    # MODEL.WEIGHTS is set). Inference needs no file (the checkpoint brings every weight).
    swin.PRETRAINED = ""
    # Stochastic depth rate.
    swin.DROP_PATH_RATE = 0.3
    # Stages returned, named res2..res5 (strides 4, 8, 16, 32).
    swin.OUT_FEATURES = ["res2", "res3", "res4", "res5"]


def _add_test(test: CN) -> None:
    # Slices encoded (backbone + pixel decoder) per batch at inference; features are cached per volume.
    test.SLICE_BATCH_SIZE = 16
    # If > 0: size encode batches by this activation budget in MB instead (at most SLICE_BATCH_SIZE slices).
    test.ENCODE_BUDGET_MB = 0
    # Autocast dtype of the encoder (backbone + pixel decoder) at inference: "float32" (none), "bfloat16" (CPUs with
    # AVX-512 BF16 / AMX, and GPUs) or "float16" (GPUs). The cached features, k-means and the sequential state stay
    # in FEATURE dtype (float32 on the CPU). tools/profile_encoder.py measures speed and agreement.
    test.ENCODE_DTYPE = "float32"
    # Autocast dtype of the sequential decoder step at inference: "float32" (none), "bfloat16" or "float16" (GPUs).
    # Its linear layers (self-attention, FFN, heads, aggregation) run in it; the k-means assignment and update
    # (Eq. 2-3), the class/mask scores and the propagated state stay float32. tools/profile_decoder.py measures it.
    test.DECODE_DTYPE = "float32"
    # dtype of the per-volume feature cache: "auto" (float16 on a GPU, float32 on the CPU), "float32", "float16" or
    # "bfloat16" (half the memory; each slice is cast back to the decoder's dtype when it is decoded).
    test.FEATURE_DTYPE = "auto"
    # Run the encoder on channels-last (NHWC) tensors at inference.
    test.CHANNELS_LAST = False
    # Wrap the encoder in torch.compile at inference: the first batch of each shape pays the compilation (minutes for
    # Swin-B on a CPU; seconds once torch's inductor cache on disk holds it). README "Performance" has the figures.
    test.COMPILE = False
    # Evaluation mode of --eval-only: "automatic", "interactive" or "both".
    test.MODE = "both"
    # Rounds of simulated clicks (one click per class per round) of the "paper" protocol (paper: up to 15).
    test.ROUNDS = 15
    # Click protocols of interactive evaluation, each run from the automatic result and reported apart
    # (s2vnet/evaluation/protocols.py): "paper" (ROUNDS rounds, NoC@85/90) and "cvpr25" (CVPR 2025 challenge:
    # 5 steps, DSC_AUC / NSD_AUC, final DSC / NSD). A list; in YAML or on the command line write ['cvpr25'].
    test.PROTOCOL = ["paper", "cvpr25"]
    # NoC@85 / NoC@90 are capped at this many clicks when the DSC target is never reached (paper: 20).
    test.NOC_CAP = 20
    # Normalised surface Dice tolerance in mm: one value for all classes, or one per class.
    test.NSD_TOLERANCE_MM = [2.0]
    # HD95 in mm scored when a class is missing in exactly one of prediction and ground truth (WORD: 50).
    test.EMPTY_HD95 = 50.0
    # How refinement rounds combine per class: "max" (paper Eq. 9) or "latest" (on the slices the round reached, the
    # newest round of a clicked class wins, so a correction can also remove).
    test.ROUND_FUSION = "max"
    # What a refinement round predicts for a clicked class: "click" (paper Eq. 9: M_k^r x c_k^r of the centroids
    # its clicks initialised, followed through the volume) or "all" (the round's whole decoding, every centroid).
    test.ROUND_SCORES = "click"
    # A class with only negative clicks in a round: "fuse" (paper) fuses the round's decoding of it like any other;
    # "skip" keeps its fused scores (under max fusion such a round can only add the class the user has just
    # rejected). The clicks still enter the Eq. 8 click memory and the click edits.
    test.NEGATIVE_ROUNDS = "fuse"
    # Beyond the paper: click edits (s2vnet/inference/click_prior.py). "none" (paper): clicks act only through the
    # decoder. "feature": a click's label holds in its region of the pixel-decoder embedding, whatever the decoder
    # answers: a positive click gives the region to its class, a negative click takes its class out of it.
    test.CLICK_PRIOR = "none"
    # "feature" region: voxels whose (upsampled) embedding has at least this cosine similarity with the clicked
    # voxel's ...
    test.CLICK_PRIOR_SIMILARITY = 0.8
    # ... within this many working-grid pixels in-plane ...
    test.CLICK_PRIOR_RADIUS = 12
    # ... and this many slices above and below the click ...
    test.CLICK_PRIOR_SLICES = 2
    # ... whose uint8 intensity (after the CT window / MRI normalisation) is within this of the clicked voxel's
    # (0: no intensity test), 6-connected to the click. Per class, the nearest click decides inside the regions.
    test.CLICK_PRIOR_INTENSITY = 0
    # With click edits: a round's decoding of a class is fused only if, on the clicked slice and inside the click's
    # box, it overlaps one of the round's positive click regions of that class by at least this IoU (0: always
    # fused). Guards against a click centroid that segments something else than the clicked structure.
    test.CLICK_PRIOR_AGREEMENT = 0.0
    # Seed of the click simulation's tie-breaking during evaluation.
    test.CLICK_SEED = 0
    # Write each evaluated case's predictions as NIfTI on the input grid into OUTPUT_DIR.
    test.SAVE_PREDICTIONS = True


def _add_solver(solver: CN) -> None:
    # Optimizer: "ADAMW" (paper) or "SGD".
    solver.OPTIMIZER = "ADAMW"
    # Learning-rate multiplier of the backbone's parameters (paper: 0.1).
    solver.BACKBONE_MULTIPLIER = 0.1


def _add_serve(serve: CN) -> None:
    # Largest upload (NIfTI / NRRD / zipped DICOM) the browser viewer accepts, in MB.
    serve.MAX_UPLOAD_MB = 1024.0
    # Largest total uncompressed size of a zipped DICOM upload, in MB (decompression-bomb guard).
    serve.MAX_UNZIPPED_MB = 4096.0
    # Most members a zipped DICOM upload may hold.
    serve.MAX_ZIP_MEMBERS = 10000
    # Largest uncompressed/compressed size ratio of any zip member over 1 MB (decompression-bomb guard).
    serve.MAX_ZIP_RATIO = 200.0
    # Open scans held at once (each keeps its cached features in memory); more are refused until one closes or expires.
    serve.MAX_SESSIONS = 4
    # A session unused for this many minutes is closed and its uploaded files deleted.
    serve.SESSION_TTL_MIN = 60.0
    # Folder for uploaded scans (one private sub-folder per session); "" = the system's temporary folder.
    serve.WORK_DIR = ""
    # Largest decompressed size of a .nii.gz upload, in MB (decompression-bomb guard; a 512 x 512 x 1000 int16
    # CT is 500 MB); checked while streaming through the gzip data, before the scan is read.
    serve.MAX_UNPACKED_MB = 1024.0
    # Most slices (along the working slice axis) a scan opened in the viewer may have: every slice is encoded
    # while the model is held, so this bounds how long one request keeps other sessions' steps waiting.
    serve.MAX_SLICES = 1024


def add_s2vnet_config(cfg: CN) -> None:
    """Add S2VNet's keys to a Detectron2 config in place.

    Args:
        cfg: a config from ``detectron2.config.get_cfg()``.
    """
    vol = cfg.INPUT.VOLUME = CN()
    _add_volume_io(vol)
    _add_limits(vol)
    _add_sampling(vol)
    _add_clicks(vol)
    cfg.MODEL.S2VNET = CN()
    _add_model(cfg.MODEL.S2VNET)
    cfg.MODEL.PIXEL_DECODER = CN()
    _add_pixel_decoder(cfg.MODEL.PIXEL_DECODER)
    cfg.MODEL.SWIN_TIMM = CN()
    _add_swin(cfg.MODEL.SWIN_TIMM)
    _add_solver(cfg.SOLVER)
    cfg.TEST.S2VNET = CN()
    _add_test(cfg.TEST.S2VNET)
    cfg.SERVE = CN()
    _add_serve(cfg.SERVE)


def get_s2vnet_cfg() -> CN:
    """A fresh Detectron2 config with S2VNet's keys added."""
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_s2vnet_config(cfg)
    return cfg


def setup_cfg(config_file: str = "", opts: list[str] | None = None) -> CN:
    """S2VNet config from an optional YAML file and ``KEY VALUE`` overrides (frozen, checked by :func:`check_cfg`).

    The file and its ``_BASE_`` chain are read with ``yaml.safe_load`` only (never Detectron2's fallback to
    ``yaml.unsafe_load``, which runs code a file asks for).

    Raises:
        InputError: one line naming the file: missing, not YAML, not a mapping, a missing or looping ``_BASE_``,
            a base config used alone (no classes and no datasets), unknown keys or bad values.
    """
    from s2vnet.errors import InputError

    cfg = get_s2vnet_cfg()
    if config_file:
        _check_yaml_chain(Path(config_file))
        _merge(lambda f: cfg.merge_from_file(f, allow_unsafe=False), config_file, config_file)
    _merge(cfg.merge_from_list, list(opts or []), "command-line overrides")
    if config_file and not cfg.MODEL.S2VNET.CLASS_NAMES and not cfg.DATASETS.TRAIN and not cfg.DATASETS.TEST:
        raise InputError(
            config_file,
            "names no classes (MODEL.S2VNET.CLASS_NAMES) and no datasets: it is a base "
            "config; use a config whose _BASE_ names it (e.g. configs/btcv/s2vnet_swinb.yaml)",
        )
    check_cfg(cfg, config_file or "command-line overrides")
    cfg.freeze()
    return cfg


def _merge(merge, what, source: str) -> None:
    """Run one yacs merge, turning its bad-key / bad-value errors into a one-line InputError."""
    from s2vnet.errors import InputError

    try:
        merge(what)
    except (KeyError, ValueError, AssertionError, TypeError, AttributeError) as err:  # how yacs reports bad keys/values
        raise InputError(source, f"invalid config: {str(err).strip().splitlines()[0]}") from None


def _load_yaml_mapping(path: Path) -> dict:
    """One config file's top level, read with ``yaml.safe_load``; InputError naming the file otherwise."""
    import yaml

    from s2vnet.errors import InputError

    if not path.is_file():
        raise InputError(path, "no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot be read as a text file ({err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).strip().splitlines()[0]
        raise InputError(path, f"is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict) or not data:
        kind = "an empty file" if data is None else f"a YAML {type(data).__name__}"
        raise InputError(path, f"is {kind}; a config file is a mapping of config keys (KEY: value)")
    return data


def _check_yaml_chain(path: Path, seen: tuple[Path, ...] = ()) -> None:
    """Every file of a ``_BASE_`` chain exists, is safe YAML holding a mapping, and the chain does not loop.

    ``_BASE_`` is resolved as Detectron2 resolves it: ``~`` expanded, relative paths against the file's folder.
    """
    from s2vnet.errors import InputError

    base = _load_yaml_mapping(path).get("_BASE_")
    if base is None:
        return
    if not isinstance(base, str) or not base:
        raise InputError(path, f"_BASE_ must name a config file, got {base!r}")
    base_path = Path(base).expanduser()
    base_path = base_path if base_path.is_absolute() else path.parent / base_path
    if not base_path.is_file():
        raise InputError(path, f"its _BASE_ '{base}' does not exist ({base_path})")
    if base_path.resolve() in seen + (path.resolve(),):
        raise InputError(path, f"its _BASE_ '{base}' leads back to a file already in the chain")
    _check_yaml_chain(base_path, seen + (path.resolve(),))


# ---------------------------------------------------------------------------------------------- checks


def _pair(values) -> tuple[float, float] | None:
    """``values`` as two finite floats, or None."""
    try:
        low, high = (float(v) for v in values)
    except (TypeError, ValueError):
        return None
    return (low, high) if math.isfinite(low) and math.isfinite(high) else None


def _ct_window(cfg: CN) -> str | None:
    pair = _pair(cfg.INPUT.VOLUME.CT_WINDOW)
    if pair is None or pair[0] >= pair[1]:
        return (
            f"INPUT.VOLUME.CT_WINDOW {tuple(cfg.INPUT.VOLUME.CT_WINDOW)} must be (low, high) HU with low < high "
            "(a reversed window blanks every image)"
        )
    return None


def _mri_percentiles(cfg: CN) -> str | None:
    pair = _pair(cfg.INPUT.VOLUME.MRI_PERCENTILES)
    if pair is None or not 0 <= pair[0] < pair[1] <= 100:
        return f"INPUT.VOLUME.MRI_PERCENTILES {tuple(cfg.INPUT.VOLUME.MRI_PERCENTILES)} must be 0 <= low < high <= 100"
    return None


def _spacing_range(cfg: CN) -> str | None:
    pair = _pair(cfg.INPUT.VOLUME.SPACING_RANGE)
    if pair is None or not 0 < pair[0] < pair[1]:
        spacing = tuple(cfg.INPUT.VOLUME.SPACING_RANGE)
        return f"INPUT.VOLUME.SPACING_RANGE {spacing} must be (min, max) mm with 0 < min < max"
    return None


def _target_spacing(cfg: CN) -> str | None:
    vol = cfg.INPUT.VOLUME
    target, bounds = _pair(vol.TARGET_SPACING), _pair(vol.SPACING_RANGE) or (0.0, math.inf)
    if target is None or not all(bounds[0] <= t <= bounds[1] and t > 0 for t in target):
        return (
            f"INPUT.VOLUME.TARGET_SPACING {tuple(vol.TARGET_SPACING)} must be two voxel sizes (y, x) in mm "
            f"within INPUT.VOLUME.SPACING_RANGE {tuple(vol.SPACING_RANGE)}"
        )
    return None


def _size_limits(cfg: CN) -> str | None:
    vol, serve = cfg.INPUT.VOLUME, cfg.SERVE
    for key, value in [
        ("INPUT.VOLUME.MAX_VOXELS", vol.MAX_VOXELS),
        ("INPUT.VOLUME.MAX_RESAMPLED_VOXELS", vol.MAX_RESAMPLED_VOXELS),
        ("SERVE.MAX_SLICES", serve.MAX_SLICES),
        ("SERVE.MAX_UNPACKED_MB", serve.MAX_UNPACKED_MB),
    ]:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            return f"{key} {value!r} must be a positive number"
    return None


def _model_device(cfg: CN) -> str | None:
    return device_problem(cfg.MODEL.DEVICE, check_available=False)


# Checks of a merged config, each called as ``check(cfg) -> problem or None``; the problem names the key.
CONFIG_CHECKS = (_ct_window, _mri_percentiles, _spacing_range, _target_spacing, _size_limits, _model_device)


def check_cfg(cfg: CN, source: str = "config") -> None:
    """Run :data:`CONFIG_CHECKS` on a merged config.

    Raises:
        InputError: naming ``source`` (the config file) and the first problem found.
    """
    from s2vnet.errors import InputError

    for check in CONFIG_CHECKS:
        problem = check(cfg)
        if problem:
            raise InputError(source, problem)


# ---------------------------------------------------------------------------------------------- devices


def _cuda_has(index: int | None) -> bool:
    import torch

    return torch.cuda.is_available() and (index is None or index < torch.cuda.device_count())


def _mps_has(index: int | None) -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()) and not index


# Device types S2VNet runs on, each with ``has(index or None) -> bool`` telling whether this machine has it.
DEVICE_TYPES = {"cpu": lambda index: not index, "cuda": _cuda_has, "mps": _mps_has}


def device_problem(device: str, check_available: bool = True) -> str | None:
    """Why ``device`` ("cpu", "cuda", "cuda:1", "mps") cannot be used here, or None."""
    import torch

    try:
        parsed = torch.device(str(device))
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in DEVICE_TYPES:
        return f"unknown device '{device}'; use one of {', '.join(DEVICE_TYPES)} (cuda:N for the N-th GPU)"
    if check_available and not DEVICE_TYPES[parsed.type](parsed.index):
        return f"device '{device}' is not available on this machine (torch sees no such device); use --device cpu"
    return None


def resolve_device(device: str | None, source: str = "--device") -> str:
    """The device to run on: ``device`` when this machine has it, else an InputError; None = cuda when available.

    Raises:
        InputError: naming ``source``, for an unknown device type or one this machine lacks.
    """
    import torch

    from s2vnet.errors import InputError

    if device is None or device == "":
        return "cuda" if torch.cuda.is_available() else "cpu"
    problem = device_problem(device)
    if problem:
        raise InputError(source, problem)
    return str(device)
