"""Whole-volume inference: features once per volume, then cheap decoder sweeps (automatic and interactive).

The backbone and pixel decoder see each slice once, in batches (:meth:`VolumeInference.encode`); the
result is kept for the volume. A *sweep* runs the light k-means decoder slice by slice, carrying the
propagation state. Automatic segmentation is one sweep from the first slice to the last (paper,
"Testing"). An interactive round is a forward and a backward sweep in which the round's clicks
initialise centroids on their slices; per class, a slice takes the sweeps that have already passed
one of that class's clicks, so clicks propagate both ways from where they were made. Rounds are
fused per class by maximum (Eq. 9) or, optionally, by letting a clicked class's newest round win.

Scores are kept at the decoder's mask resolution (1/4 of the padded slice), ``(K, Z, h, w)``, and only
turned into full-resolution labels at the end, so memory stays small for large volumes.

Memory: besides the network's activations for one batch of ``SLICE_BATCH_SIZE`` slices (and one slice in
the decoder), a volume costs its feature cache plus its scores, both linear in the number of slices Z. With
H', W' the slice size padded to a multiple of 32, per slice::

    cache  = MASK_DIM * (H'/4 * W'/4) + CONVS_DIM * (H'/8 * W'/8 + H'/16 * W'/16 + H'/32 * W'/32)  values
    scores = K * (H'/4 * W'/4) float32 values (times two during an interactive round)

at 2 bytes per value on GPU (float16) and 4 on the CPU, unless TEST.S2VNET.FEATURE_DTYPE says otherwise (the Swin-B
configs cache float16 on the CPU too). Swin-B configs (256, 256) at 512 x 512: 5.57 M values = 11.1 MB per slice in
float16, 2.2 GB for 200 slices; the demo config (64, 64): 1.39 M values = 5.6 MB per slice in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from s2vnet.data.clicks import Click, click_tensors
from s2vnet.inference.click_prior import ClickEdits, ClickPrior, seed_agreement
from s2vnet.modeling.interaction import ClickMemory
from s2vnet.modeling.meta_arch import S2VNet, SliceFeatures

ProgressFn = Callable[[str, int, int], None]
"""Called as ``report(stage, done, total)`` after each step of a long call (for a UI's progress bar)."""


def _steps(items: Sequence, desc: str, unit: str, show: bool, report: ProgressFn | None):
    """Iterate ``items`` with a tqdm bar (when ``show``) and a ``report(desc, done, total)`` after each."""
    items = list(items)
    for done, item in enumerate(tqdm(items, desc=desc, unit=unit, disable=not show), start=1):
        yield item
        if report is not None:
            report(desc, done, len(items))


@dataclass
class VolumeFeatures:
    """Cached encoder output of a volume: ``mask_features (Z, D, h, w)`` and three ``(Z, C, h_l, w_l)`` maps."""

    mask_features: torch.Tensor
    multi_scale: list[torch.Tensor]
    image_hw: tuple[int, int]  # the unpadded slice size (Y, X)
    padded_hw: tuple[int, int]
    image: np.ndarray | None = None  # the encoded uint8 volume (Z, Y, X), for click edits

    def __len__(self) -> int:
        return self.mask_features.shape[0]

    def slice(self, z: int, dtype: torch.dtype) -> SliceFeatures:
        """Features of slice ``z`` (batch of one) in the decoder's dtype."""
        return SliceFeatures(
            self.mask_features[z : z + 1].to(dtype), [f[z : z + 1].to(dtype) for f in self.multi_scale]
        )


def _fuse_max(fused: torch.Tensor, new: torch.Tensor, clicked: Sequence[int], reached: torch.Tensor) -> torch.Tensor:
    return torch.maximum(fused, new)


def _fuse_latest(fused: torch.Tensor, new: torch.Tensor, clicked: Sequence[int], reached: torch.Tensor) -> torch.Tensor:
    take = torch.zeros_like(reached)
    take[list(clicked)] = reached[list(clicked)]
    return torch.where(take[:, :, None, None], new, fused)


# TEST.S2VNET.ROUND_FUSION -> fn(fused (K, Z, h, w), round scores (K, Z, h, w), clicked classes, reached (K, Z) bool)
# -> fused; ``reached`` marks the slices where the round has a prediction for the class.
ROUND_FUSIONS: dict[str, Callable] = {"max": _fuse_max, "latest": _fuse_latest}

# TEST.S2VNET.ROUND_SCORES: what a refinement round predicts for a clicked class (see VolumeInference.sweep).
ROUND_SCORES = ("click", "all")

# TEST.S2VNET.ENCODE_DTYPE / DECODE_DTYPE -> autocast dtype of the encoder / the decoder step (None: no autocast).
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "float32": None,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
ENCODE_DTYPES = AUTOCAST_DTYPES  # the earlier name

# TEST.S2VNET.FEATURE_DTYPE -> dtype of the feature cache (None: float16 on a GPU, float32 on the CPU).
FEATURE_DTYPES: dict[str, torch.dtype | None] = {
    "auto": None,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}

# TEST.S2VNET.NEGATIVE_ROUNDS: whether a round's decoding is fused for a class that got only negative clicks in it
# ("fuse", paper) or not ("skip"; the clicks still enter the Eq. 8 memory and the click edits).
NEGATIVE_ROUNDS = ("fuse", "skip")


@dataclass
class InteractionState:
    """Everything an interactive session accumulates: fused scores and Eq. 8 click memory."""

    fused: torch.Tensor
    memory: ClickMemory = field(default_factory=ClickMemory)
    rounds: int = 0
    edits: ClickEdits | None = None  # click edits so far (TEST.S2VNET.CLICK_PRIOR), applied when labels are made


class VolumeInference:
    """Drives a trained :class:`S2VNet` over whole volumes."""

    def __init__(
        self,
        model: S2VNet,
        slice_batch_size: int = 16,
        round_fusion: str = "max",
        feature_dtype: torch.dtype | None = None,
        progress: bool = False,
        budget_mb: float = 0.0,
        round_scores: str = "click",
        click_prior: ClickPrior | None = None,
        negative_rounds: str = "fuse",
        encode_dtype: str = "float32",
        channels_last: bool = False,
        compile_encoder: bool = False,
        decode_dtype: str = "float32",
    ) -> None:
        """
        Args:
            model: the network (put in eval mode here).
            slice_batch_size: slices per backbone/pixel-decoder batch (the cap when ``budget_mb`` is set).
            budget_mb: if > 0, encode as many slices per batch as fit this activation budget
                (:func:`activation_mb_per_slice`), between 1 and ``slice_batch_size``.
            round_fusion: key of :data:`ROUND_FUSIONS`.
            round_scores: one of :data:`ROUND_SCORES`: "click" (paper Eq. 9: a round contributes the prediction of
                its click-initialised centroids) or "all" (the round's whole decoding, every centroid).
            click_prior: turns each round's clicks into edits that override the fused scores where labels are made
                (:mod:`s2vnet.inference.click_prior`); None: clicks act only through the decoder (paper).
            negative_rounds: one of :data:`NEGATIVE_ROUNDS`.
            feature_dtype: dtype of the cached features (default: float16 on GPU, float32 on CPU).
            progress: show tqdm bars over slices.
            encode_dtype: key of :data:`ENCODE_DTYPES`, the encoder's autocast dtype (features are cached in
                ``feature_dtype`` whatever it is).
            channels_last: run the encoder on channels-last tensors (the model's weights are converted here).
            compile_encoder: wrap the encoder in ``torch.compile``.
            decode_dtype: key of :data:`AUTOCAST_DTYPES`, the autocast dtype of the sequential decoder step (the
                k-means assignment and update, the scores and the propagated state stay float32).
        """
        if round_fusion not in ROUND_FUSIONS:
            raise ValueError(f"unknown round fusion '{round_fusion}'; known: {', '.join(ROUND_FUSIONS)}")
        self.model = model.eval()
        self.slice_batch_size = max(1, int(slice_batch_size))
        self.fuse = ROUND_FUSIONS[round_fusion]
        if round_scores not in ROUND_SCORES:
            raise ValueError(f"unknown round scores '{round_scores}'; known: {', '.join(ROUND_SCORES)}")
        self.round_scores = round_scores
        self.click_prior = click_prior or ClickPrior()
        if negative_rounds not in NEGATIVE_ROUNDS:
            raise ValueError(f"unknown negative rounds '{negative_rounds}'; known: {', '.join(NEGATIVE_ROUNDS)}")
        self.negative_rounds = negative_rounds
        on_gpu = model.device.type == "cuda"
        self.feature_dtype = feature_dtype or (torch.float16 if on_gpu else torch.float32)
        self.progress = progress
        self.budget_mb = float(budget_mb)
        self.encode_dtype = _autocast_dtype("encode", encode_dtype)
        self.decode_dtype = _autocast_dtype("decode", decode_dtype)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            model.backbone.to(memory_format=torch.channels_last)
            model.pixel_decoder.to(memory_format=torch.channels_last)
        self._compiled = torch.compile(model.encode) if compile_encoder else None

    @classmethod
    def from_cfg(cls, model: S2VNet, cfg, progress: bool = False) -> VolumeInference:
        """Engine from TEST.S2VNET (SLICE_BATCH_SIZE, ROUND_FUSION, ENCODE_BUDGET_MB, ROUND_SCORES, CLICK_PRIOR*,
        NEGATIVE_ROUNDS, ENCODE_DTYPE, DECODE_DTYPE, CHANNELS_LAST, COMPILE, FEATURE_DTYPE)."""
        test = cfg.TEST.S2VNET
        return cls(
            model,
            test.SLICE_BATCH_SIZE,
            test.ROUND_FUSION,
            progress=progress,
            budget_mb=test.ENCODE_BUDGET_MB,
            round_scores=test.ROUND_SCORES,
            click_prior=ClickPrior.from_cfg(cfg),
            negative_rounds=test.NEGATIVE_ROUNDS,
            encode_dtype=test.ENCODE_DTYPE,
            channels_last=test.CHANNELS_LAST,
            compile_encoder=test.COMPILE,
            feature_dtype=_feature_dtype(test.FEATURE_DTYPE),
            decode_dtype=test.DECODE_DTYPE,
        )

    def batch_size(self, slice_hw: tuple[int, int]) -> int:
        """Slices per encode batch: the fixed size, or what fits the budget for slices of ``slice_hw``."""
        if self.budget_mb <= 0:
            return self.slice_batch_size
        per_slice = activation_mb_per_slice(self.model, slice_hw)
        return int(max(1, min(self.slice_batch_size, self.budget_mb // max(per_slice, 1e-6))))

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @torch.no_grad()
    def encode(self, image: np.ndarray, report: ProgressFn | None = None) -> VolumeFeatures:
        """Backbone + pixel decoder over a uint8 volume ``(Z, Y, X)``, in batches of :meth:`batch_size`."""
        volume = torch.from_numpy(np.ascontiguousarray(image))
        masks, levels = [], []
        size = self.batch_size(tuple(image.shape[1:]))
        for start in _steps(range(0, volume.shape[0], size), "encode slices", "batch", self.progress, report):
            mask_features, multi_scale = self._encode_batch(volume[start : start + size][:, None])
            masks.append(mask_features.to(self.feature_dtype))
            levels.append([f.to(self.feature_dtype) for f in multi_scale])
        multi = [torch.cat([lv[i] for lv in levels]) for i in range(len(levels[0]))]
        padded = self.model.padded_hw(masks[0])
        return VolumeFeatures(torch.cat(masks), multi, tuple(image.shape[1:]), padded, image)

    def _encode_batch(self, chunk: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """uint8 slices ``(B, 1, Y, X)`` -> ``mask_features (B, D, h, w)`` and the multi-scale maps, with the
        encoder's autocast dtype, memory format and compilation."""
        images = self.model.preprocess(chunk)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with _autocast(self.model.device.type, self.encode_dtype):
            mask_features, multi_scale = (self._compiled or self.model.encode)(images)
        return mask_features.contiguous(), [f.contiguous() for f in multi_scale]

    def _decoder_dtype(self) -> torch.dtype:
        return next(self.model.decoder.parameters()).dtype

    @torch.no_grad()
    def sweep(
        self,
        features: VolumeFeatures,
        order: Sequence[int],
        clicks: dict[int, dict] | None = None,
        memory: ClickMemory | None = None,
        desc: str = "decode",
        report: ProgressFn | None = None,
        click_only: bool = False,
        on_first: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
    ) -> tuple[torch.Tensor, ClickMemory, torch.Tensor]:
        """Decode slices in ``order`` carrying the state.

        Args:
            clicks: ``{z: {"coords" (n, 2) (y, x), "classes" (n,), "positive" (n,)}}`` injected on slice z.
            memory: Eq. 8 accumulators from earlier rounds.
            click_only: score only the click-initialised centroids (:meth:`S2VNet.click_scores`) instead of all.
                On the CPU the sweep then stops once it has passed its last clicked slice and no click slot is
                alive (a slot the propagation dropped never comes back, so every later slice would score 0 and be
                unreached); on a GPU that test would be a host-device sync per slice, so the sweep runs to the end.
            on_first: called as ``on_first(scores, reached)`` once the first slice of ``order`` is decoded (the
                tensors returned at the end, filled on that slice only so far).

        Returns:
            ``(scores (K, Z, h, w), click memory, reached (K, Z) bool)``; ``reached`` says where a class has a
            prediction (every visited slice, or with ``click_only`` the slices a click slot of the class reached).
        """
        h, w = features.mask_features.shape[-2:]
        device = features.mask_features.device
        scores = torch.zeros(self.num_classes, len(features), h, w, device=device)  # unvisited: 0
        reached = torch.zeros(self.num_classes, len(features), dtype=torch.bool, device=device)
        state = self.model.initial_state()
        if memory is not None:
            state.clicks = memory
        dtype = self._decoder_dtype()
        order = list(order)
        clicked = [i for i, z in enumerate(order) if z in (clicks or {})]
        last_click = clicked[-1] if clicked else -1
        stop_early = click_only and device.type == "cpu"
        # One autocast context for the whole sweep: its cache casts each weight to DECODE_DTYPE once, not per slice.
        with _autocast(device.type, self.decode_dtype):
            for i, z in enumerate(_steps(order, desc, "slice", self.progress, report)):
                here = (clicks or {}).get(z)
                outputs, state = self.model.step(features.slice(z, dtype), state, here, features.padded_hw)
                with _autocast_off(device.type, self.decode_dtype):  # scores (and on_first) in float32
                    if click_only:
                        scores[:, z], reached[:, z] = self.model.click_scores(outputs)
                        if stop_early and i >= last_click and not bool((state.click_class >= 0).any()):
                            break  # no click slot left to follow
                    else:
                        scores[:, z], reached[:, z] = self.model.class_scores(outputs), True
                    if i == 0 and on_first is not None:
                        on_first(scores, reached)
        return scores, state.clicks, reached

    def automatic(self, features: VolumeFeatures, report: ProgressFn | None = None) -> torch.Tensor:
        """Scores ``(K, Z, h, w)`` of automatic segmentation, first slice to last."""
        return self.sweep(features, range(len(features)), desc="automatic", report=report)[0]

    def start(self, features: VolumeFeatures, report: ProgressFn | None = None) -> InteractionState:
        """An interaction that begins from the automatic result (round 0)."""
        return InteractionState(self.automatic(features, report))

    def interactive_round(
        self,
        features: VolumeFeatures,
        state: InteractionState,
        clicks: Sequence[Click],
        report: ProgressFn | None = None,
        preview: Callable[[int, np.ndarray], None] | None = None,
    ) -> InteractionState:
        """One refinement round with ``clicks`` (``working`` frame) on any classes, fused into ``state``.

        The decoder runs forward from the first clicked slice to the end and backward from the last clicked
        slice to the start: the only slices a click's propagation can reach. Per clicked class, slices before
        its first click take the backward sweep, slices after its last click the forward sweep, and slices
        in between the larger of the two. Classes without a click this round keep their scores, and so do classes
        with only negative clicks when ``negative_rounds`` is "skip" (under max fusion such a round could only add
        the class the user has just rejected).

        Args:
            preview: when every click of the round lies on one slice z, called as ``preview(z, labels (Y, X))``
                with that slice's final labels (click edits included) as soon as its first decoder step is done,
                before the sweeps go on over the rest of the volume. Both sweeps start on z from the same state
                and clicks, so that one step gives z's round result exactly. Not called for other rounds.
        """
        if not clicks:
            return state
        by_slice = group_clicks(clicks, features.mask_features.device)
        lo_all, hi_all = min(c.slice_index for c in clicks), max(c.slice_index for c in clicks)
        only = self.round_scores == "click"
        clicked = sorted({c.class_index for c in clicks if c.positive or self.negative_rounds == "fuse"})
        edits = self.click_prior.update(state.edits, features, clicks, self.model.mask_stride)

        def show_first(scores: torch.Tensor, reached: torch.Tensor) -> None:
            fused = self._fuse_round(features, state, clicks, clicked, edits, (scores, reached), (scores, reached))
            preview(lo_all, self.slice_labels(fused, lo_all, features.image_hw, features.padded_hw, edits))

        on_first = show_first if preview is not None and lo_all == hi_all else None
        forward, memory, reach_f = self.sweep(
            features, range(lo_all, len(features)), by_slice, state.memory, "clicks forward", report, only, on_first
        )
        backward, _, reach_b = self.sweep(
            features, range(hi_all, -1, -1), by_slice, state.memory, "clicks backward", report, only
        )
        fused = self._fuse_round(features, state, clicks, clicked, edits, (forward, reach_f), (backward, reach_b))
        return InteractionState(fused, memory, state.rounds + 1, edits)

    def _fuse_round(
        self,
        features: VolumeFeatures,
        state: InteractionState,
        clicks: Sequence[Click],
        clicked: Sequence[int],
        edits: ClickEdits | None,
        forward: tuple[torch.Tensor, torch.Tensor],
        backward: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """The round's sweeps ``(scores (K, Z, h, w), reached (K, Z))`` combined per clicked class (see
        :meth:`interactive_round`), checked against the click regions and fused into ``state.fused``."""
        (scores_f, reach_f), (scores_b, reach_b) = forward, backward
        clicked = list(clicked)
        round_scores = state.fused.clone()
        reached = torch.zeros_like(reach_f)
        for k in clicked:
            zs = [c.slice_index for c in clicks if c.class_index == k]
            lo, hi = min(zs), max(zs)
            round_scores[k, :lo], reached[k, :lo] = scores_b[k, :lo], reach_b[k, :lo]
            round_scores[k, hi + 1 :], reached[k, hi + 1 :] = scores_f[k, hi + 1 :], reach_f[k, hi + 1 :]
            round_scores[k, lo : hi + 1] = torch.maximum(scores_f[k, lo : hi + 1], scores_b[k, lo : hi + 1])
            reached[k, lo : hi + 1] = reach_f[k, lo : hi + 1] | reach_b[k, lo : hi + 1]
        for k in self._disagreeing(features, round_scores, state.edits, edits):
            round_scores[k], reached[k] = state.fused[k], False
            clicked.remove(k)
        return self.fuse(state.fused, round_scores, clicked, reached)

    def _disagreeing(
        self, features: VolumeFeatures, round_scores: torch.Tensor, before: ClickEdits | None, edits: ClickEdits | None
    ) -> set[int]:
        """Classes whose round decoding overlaps none of this round's positive click regions by the prior's
        ``agreement`` IoU on the clicked slice (none when that is 0 or there are no click edits)."""
        if edits is None or self.click_prior.agreement <= 0:
            return set()
        best: dict[int, float] = {}
        new = edits.seeds[len(before.seeds) if before is not None else 0 :]  # this round's seeds
        for seed in (s for s in new if s.positive):
            z = seed.centre[0]
            full, _ = self.model.post_process(round_scores[:, z], features.padded_hw, features.image_hw)
            mask = (full[seed.class_index] >= self.model.foreground_threshold).cpu().numpy()
            best[seed.class_index] = max(best.get(seed.class_index, 0.0), seed_agreement(seed, mask))
        return {k for k, iou in best.items() if iou < self.click_prior.agreement}

    def labels(
        self,
        scores: torch.Tensor,
        image_hw: tuple[int, int],
        padded_hw: tuple[int, int],
        edits: ClickEdits | None = None,
        slices: Sequence[int] | None = None,
        base: np.ndarray | None = None,
    ) -> np.ndarray:
        """Fused scores ``(K, Z, h, w)`` (and a session's click edits) -> uint8 labels ``(Z, Y, X)``.

        0 = background, c + 1 = class c. With ``slices`` (and ``base``, earlier labels ``(Z, Y, X)``), only those
        slices are labelled and the others are copied from ``base`` (zeros without it).
        """
        shape = (scores.shape[1],) + tuple(image_hw)
        out = base.copy() if base is not None else np.zeros(shape, dtype=np.uint8)
        if out.shape != shape:
            raise ValueError(f"base labels {out.shape} do not match the scores' volume {shape}")
        for z in range(scores.shape[1]) if slices is None else slices:
            out[z] = self.slice_labels(scores, z, image_hw, padded_hw, edits)
        return out

    def slice_labels(
        self,
        scores: torch.Tensor,
        z: int,
        image_hw: tuple[int, int],
        padded_hw: tuple[int, int],
        edits: ClickEdits | None = None,
    ) -> np.ndarray:
        """Slice ``z`` of fused scores ``(K, Z, h, w)`` (with click edits) -> uint8 labels ``(Y, X)``."""
        full = self.model.upsample_scores(scores[:, z], padded_hw, image_hw)
        if edits is not None and edits.seeds:
            full = edits.apply(full, z)
        return self.model.labels_from_scores(full).cpu().numpy()

    def state_labels(
        self,
        state: InteractionState,
        features: VolumeFeatures,
        since: tuple[InteractionState, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Labels ``(Z, Y, X)`` of an interaction state: its fused scores with its click edits.

        ``since=(other state, its labels)`` relabels only :meth:`changed_slices` between the two states (any two
        states of the same volume: the next round, or an earlier one after an undo) and copies the rest.
        """
        if since is None:
            return self.labels(state.fused, features.image_hw, features.padded_hw, state.edits)
        other, other_labels = since
        changed = self.changed_slices(other, state)
        return self.labels(state.fused, features.image_hw, features.padded_hw, state.edits, changed, other_labels)

    @staticmethod
    def changed_slices(a: InteractionState, b: InteractionState) -> np.ndarray:
        """Working slices whose labels can differ between two states of one volume (sorted ``(n,)`` int).

        A slice can change where any class's fused score differs, or where a click edit that only one of the two
        states holds reaches (its box's slices).
        """
        changed = (a.fused != b.fused).flatten(2).any(dim=2).any(dim=0).cpu().numpy()
        seeds_a = a.edits.seeds if a.edits is not None else ()
        seeds_b = b.edits.seeds if b.edits is not None else ()
        ids_a, ids_b = {id(s) for s in seeds_a}, {id(s) for s in seeds_b}
        for seed in [s for s in seeds_a if id(s) not in ids_b] + [s for s in seeds_b if id(s) not in ids_a]:
            changed[seed.box[0]] = True
        return np.flatnonzero(changed)

    def probabilities(
        self,
        scores: torch.Tensor,
        image_hw: tuple[int, int],
        padded_hw: tuple[int, int],
        edits: ClickEdits | None = None,
    ) -> np.ndarray:
        """Fused scores (and click edits) -> float32 per-class probabilities ``(K, Z, Y, X)``."""
        full = F.interpolate(scores.float().transpose(0, 1), size=padded_hw, mode="bilinear", align_corners=False)
        full = full.transpose(0, 1)[..., : image_hw[0], : image_hw[1]]
        if edits is not None and edits.seeds:
            full = torch.stack([edits.apply(full[:, z], z) for z in range(full.shape[1])], dim=1)
        return full.cpu().numpy()


def _autocast_dtype(what: str, name: str) -> torch.dtype | None:
    """TEST.S2VNET.ENCODE_DTYPE / DECODE_DTYPE -> its autocast dtype, or a ValueError naming the known ones."""
    if name not in AUTOCAST_DTYPES:
        raise ValueError(f"unknown {what} dtype '{name}'; known: {', '.join(AUTOCAST_DTYPES)}")
    return AUTOCAST_DTYPES[name]


def _autocast(device_type: str, dtype: torch.dtype | None):
    """An autocast context for ``dtype``; for None (float32) no context of its own, so a caller's autocast applies."""
    return torch.autocast(device_type, dtype=dtype) if dtype is not None else nullcontext()


def _autocast_off(device_type: str, dtype: torch.dtype | None):
    """Inside an :func:`_autocast` for ``dtype``: a context that runs in float32 again (nothing for None)."""
    return torch.autocast(device_type, enabled=False) if dtype is not None else nullcontext()


def _feature_dtype(name: str) -> torch.dtype | None:
    if name not in FEATURE_DTYPES:
        raise ValueError(f"unknown feature dtype '{name}'; known: {', '.join(FEATURE_DTYPES)}")
    return FEATURE_DTYPES[name]


@torch.no_grad()
def activation_mb_per_slice(model: S2VNet, slice_hw: tuple[int, int]) -> float:
    """Upper bound of the encoder's activation memory for one slice, in MB.

    Encodes one blank slice and adds up the outputs of every leaf module of the backbone and pixel decoder
    (in inference they are not all alive at once, so this over-estimates: a safe budget).
    """
    total = [0]

    def count(_module, _inputs, output) -> None:
        for t in output if isinstance(output, (tuple, list)) else [output]:
            if torch.is_tensor(t):
                total[0] += t.numel() * t.element_size()

    leaves = [m for part in (model.backbone, model.pixel_decoder) for m in part.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        model.encode(model.preprocess(torch.zeros((1, 1) + tuple(slice_hw), dtype=torch.uint8)))
    finally:
        for h in handles:
            h.remove()
    return total[0] / 2**20


def group_clicks(clicks: Sequence[Click], device: torch.device | str) -> dict[int, dict]:
    """``working``-frame clicks by slice: ``{z: click_tensors(clicks on z)}``, the step's input."""
    grouped: dict[int, list[Click]] = {}
    for click in clicks:
        grouped.setdefault(click.slice_index, []).append(click)
    return {z: click_tensors(cs, device) for z, cs in grouped.items()}
