"""The S2VNet meta-architecture: a 2D segmenter whose centroids travel from slice to slice.

Per slice: backbone -> pixel decoder (independent per slice, so run batched over many slices) ->
k-means transformer decoder (sequential: it starts from the previous slice's centroids).
``step`` is the single-slice inference step whole-volume inference drives; ``forward`` in training
decodes each three-slice clip in order and returns the loss dict.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from torch import nn

from s2vnet.modeling.criterion import SetCriterion
from s2vnet.modeling.error_clicks import largest_error_click, with_click
from s2vnet.modeling.interaction import CentroidBank
from s2vnet.modeling.pixel_decoder import build_pixel_decoder
from s2vnet.modeling.propagation import PropagationState, RecurrentAggregator, next_state
from s2vnet.modeling.semantic import CLICK_CLASS_SCORES, SEMANTIC_INFERENCE
from s2vnet.modeling.transformer_decoder import build_transformer_decoder

__all__ = ["S2VNet", "SliceFeatures"]


class SliceFeatures(tuple):
    """``(mask_features (B, D, H/4, W/4), [three (B, C, h, w) maps coarse to fine])`` of B slices."""

    def __new__(cls, mask_features: torch.Tensor, multi_scale: list[torch.Tensor]):
        return super().__new__(cls, (mask_features, multi_scale))

    def select(self, index: int) -> SliceFeatures:
        """The features of slice ``index`` alone (batch of one)."""
        return SliceFeatures(self[0][index : index + 1], [f[index : index + 1] for f in self[1]])


@META_ARCH_REGISTRY.register()
class S2VNet(nn.Module):
    """Universal (automatic + click-interactive) volume segmentation with centroid propagation."""

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        pixel_decoder: nn.Module,
        decoder: nn.Module,
        bank: CentroidBank,
        aggregator: RecurrentAggregator | None,
        criterion: SetCriterion | None,
        num_classes: int,
        pixel_mean: tuple[float, ...],
        pixel_std: tuple[float, ...],
        propagation: bool = True,
        interaction: bool = True,
        foreground_threshold: float = 0.5,
        mask_stride: int = 4,
        click_class_score: str = "head",
        semantic_inference: str = "sum",
    ) -> None:
        """
        Args:
            backbone / pixel_decoder / decoder: the slice encoder and the per-slice centroid decoder.
            bank: learned centroid slots and click initialisation.
            aggregator: recurrent centroid aggregation, None to switch it off.
            criterion: training losses (may be None for inference-only use).
            num_classes: K foreground classes.
            pixel_mean / pixel_std: normalisation of the [0, 255] input, one value per backbone channel.
            propagation: pass centroids between slices (Eq. 5-6); interaction: use clicks (Eq. 7).
            foreground_threshold: minimum fused class score for a pixel to be foreground.
            mask_stride: stride of the pixel decoder's mask features (``PIXEL_DECODER.COMMON_STRIDE``).
            click_class_score: "head" (paper) or "clicked" (``MODEL.S2VNET.CLICK_CLASS_SCORE``).
            semantic_inference: key of :data:`SEMANTIC_INFERENCE` (``MODEL.S2VNET.SEMANTIC_INFERENCE``).
        """
        super().__init__()
        self.backbone, self.pixel_decoder, self.decoder = backbone, pixel_decoder, decoder
        self.bank, self.aggregator, self.criterion = bank, aggregator, criterion
        self.num_classes = num_classes
        self.propagation, self.interaction = propagation, interaction
        self.foreground_threshold = foreground_threshold
        self.mask_stride = int(mask_stride)
        if click_class_score not in CLICK_CLASS_SCORES:
            raise ValueError(f"unknown CLICK_CLASS_SCORE '{click_class_score}'; known: {', '.join(CLICK_CLASS_SCORES)}")
        if semantic_inference not in SEMANTIC_INFERENCE:
            raise ValueError(
                f"unknown SEMANTIC_INFERENCE '{semantic_inference}'; known: {', '.join(SEMANTIC_INFERENCE)}"
            )
        self.click_probs = CLICK_CLASS_SCORES[click_class_score]
        self.combine = SEMANTIC_INFERENCE[semantic_inference]
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, cfg) -> dict:
        s2v = cfg.MODEL.S2VNET
        backbone = build_backbone(cfg)
        aggregator = RecurrentAggregator(s2v.HIDDEN_DIM, s2v.NHEADS, s2v.DIM_FEEDFORWARD) if s2v.AGGREGATION else None
        return {
            "backbone": backbone,
            "pixel_decoder": build_pixel_decoder(cfg, backbone.output_shape()),
            "decoder": build_transformer_decoder(cfg),
            "bank": CentroidBank(cfg),
            "aggregator": aggregator,
            "criterion": SetCriterion(cfg),
            "num_classes": s2v.NUM_CLASSES,
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "propagation": s2v.PROPAGATION,
            "interaction": s2v.INTERACTION,
            "foreground_threshold": s2v.FOREGROUND_THRESHOLD,
            "mask_stride": cfg.MODEL.PIXEL_DECODER.COMMON_STRIDE,
            "click_class_score": s2v.CLICK_CLASS_SCORE,
            "semantic_inference": s2v.SEMANTIC_INFERENCE,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def size_divisibility(self) -> int:
        return max(getattr(self.backbone, "size_divisibility", 0), 32)

    # ------------------------------------------------------------------ encoding (batched over slices)

    def preprocess(self, images: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """Slices ``(1, H, W)`` in [0, 255] (list or ``(B, 1, H, W)``) -> normalised ``(B, C, H', W')``.

        Grey values are repeated over the backbone's channels; H and W are zero-padded (the window's
        lower end) up to a multiple of :attr:`size_divisibility`.
        """
        x = torch.stack(list(images)) if isinstance(images, (list, tuple)) else images
        x = x.to(self.device, torch.float32)
        pad_h = -x.shape[-2] % self.size_divisibility
        pad_w = -x.shape[-1] % self.size_divisibility
        x = F.pad(x, (0, pad_w, 0, pad_h))
        x = x.expand(-1, self.pixel_mean.shape[0], -1, -1)
        return (x - self.pixel_mean) / self.pixel_std

    def encode(self, images: torch.Tensor) -> SliceFeatures:
        """Backbone + pixel decoder for a batch of preprocessed slices ``(B, C, H, W)``."""
        mask_features, multi_scale = self.pixel_decoder(self.backbone(images))
        return SliceFeatures(mask_features, list(multi_scale))

    # ------------------------------------------------------------------ the single-slice step

    def initial_state(self) -> PropagationState:
        """The propagation state before the first decoded slice."""
        return PropagationState.empty(self.bank.num_slots, self.bank.query_feat.embedding_dim, self.device)

    def decode_slice(
        self, features: SliceFeatures, state: PropagationState, clicks: dict | None, image_hw: tuple[int, int]
    ) -> tuple[dict, PropagationState]:
        """Decode one slice (batch of one) from ``state`` and this slice's clicks.

        Returns the decoder outputs (plus ``"click_class"`` (N,) and ``"clicked_here"`` (N,) bool, which slots are
        click-initialised and which on this slice) and ``state`` with this slice's click bookkeeping updated;
        call :func:`next_state` (or :meth:`step`) to move on.
        """
        mask_features, multi_scale = features
        queries = torch.where(state.active[:, None], state.centroids, self.bank.query_feat.weight)
        click_class, memory = state.click_class.clone(), state.clicks
        order = state.click_order.clone() if state.click_order is not None else torch.full_like(click_class, -1)
        here = torch.zeros_like(state.active)
        if self.interaction and clicks is not None and len(clicks["coords"]):
            placed, memory = self.bank.click_centroids(mask_features[0], clicks, image_hw, state.clicks)
            queries = queries.clone()
            base = sum(state.clicks.count.values())
            for i, c in enumerate(placed):
                queries[c.slot] = c.centroid  # Eq. 7: the click initialises a centroid of its class
                click_class[c.slot], order[c.slot], here[c.slot] = c.class_index, base + i, True
        outputs = self.decoder(multi_scale, mask_features, queries[None], self.bank.query_pos.weight[None])
        outputs.update(click_class=click_class, clicked_here=here)
        return outputs, replace(state, click_class=click_class, clicks=memory, click_order=order)

    def advance(self, state: PropagationState, outputs: dict, keep: torch.Tensor) -> PropagationState:
        """The state for the next slice, given which slots propagate (``keep`` ``(N,)`` bool)."""
        if not self.propagation:
            return replace(self.initial_state(), clicks=state.clicks)
        return next_state(state, outputs["centroids"][0], keep, state.click_class, self.aggregator)

    def step(
        self,
        features: SliceFeatures,
        state: PropagationState,
        clicks: dict | None = None,
        image_hw: tuple[int, int] | None = None,
    ) -> tuple[dict, PropagationState]:
        """Inference step ``(features, state) -> (predictions, new state)``.

        Centroids whose arg-max class is not background are passed on (paper, 3.2).
        """
        image_hw = image_hw or self.padded_hw(features[0])
        outputs, state = self.decode_slice(features, state, clicks, image_hw)
        keep = self.class_probabilities(outputs).argmax(-1) != self.num_classes
        return outputs, self.advance(state, outputs, keep)

    def class_probabilities(self, outputs: dict) -> torch.Tensor:
        """``(N, K+1)`` class probabilities of the slice's centroids, click-initialised ones per CLICK_CLASS_SCORE."""
        probs = outputs["pred_logits"][0].float().softmax(-1)
        if "click_class" not in outputs:
            return probs
        return self.click_probs(probs, outputs["click_class"], outputs["clicked_here"])

    def padded_hw(self, mask_features: torch.Tensor) -> tuple[int, int]:
        """The padded input size ``(H', W')`` of mask features ``(..., H'/stride, W'/stride)``."""
        return tuple(int(s) * self.mask_stride for s in mask_features.shape[-2:])

    def class_scores(self, outputs: dict) -> torch.Tensor:
        """Per-class scores ``(K, h, w)`` at mask resolution from class x mask probability (SEMANTIC_INFERENCE)."""
        probs = self.class_probabilities(outputs)[:, : self.num_classes]  # (N, K)
        masks = outputs["pred_masks"][0].float().sigmoid()  # (N, h, w)
        return self.combine(probs, masks)

    def click_scores(self, outputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The click-initialised centroids' own predictions (Eq. 9's ``M_k^r * c_k^r``) at mask resolution.

        Returns:
            ``(scores (K, h, w), reached (K,) bool)``: per class, the best click slot of that class (its class-k
            probability x its mask probability; 0 where the class has no live click slot) and whether it has one.
        """
        probs = self.class_probabilities(outputs)[:, : self.num_classes]  # (N, K)
        masks = outputs["pred_masks"][0].float().sigmoid()  # (N, h, w)
        own = outputs["click_class"][:, None] == torch.arange(self.num_classes, device=probs.device)[None]  # (N, K)
        scores = torch.einsum("nk,nhw->nkhw", probs * own, masks).amax(dim=0)
        return scores, own.any(dim=0)

    def post_process(
        self, scores: torch.Tensor, padded_hw: tuple[int, int], image_hw: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask-resolution scores ``(K, h, w)`` -> full-resolution scores ``(K, H, W)`` and labels ``(H, W)``.

        The one post-processing of every evaluation path (clip forward and whole-volume engine):
        :meth:`upsample_scores`, then :meth:`labels_from_scores`.
        """
        full = self.upsample_scores(scores, padded_hw, image_hw)
        return full, self.labels_from_scores(full)

    def upsample_scores(
        self, scores: torch.Tensor, padded_hw: tuple[int, int], image_hw: tuple[int, int]
    ) -> torch.Tensor:
        """Mask-resolution scores ``(K, h, w)`` -> ``(K, H, W)``: bilinear to the padded input, padding cropped."""
        full = F.interpolate(scores[None].float(), size=padded_hw, mode="bilinear", align_corners=False)[0]
        return full[:, : image_hw[0], : image_hw[1]]

    def labels_from_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """``(K, H, W)`` scores -> ``(H, W)`` labels, 0 = background, c + 1 = class c."""
        best, index = scores.max(dim=0)
        return torch.where(best >= self.foreground_threshold, index + 1, torch.zeros_like(index))

    # ------------------------------------------------------------------ training / clip inference

    def forward(self, batched_inputs: list[dict]):
        """Training: a loss dict over clips from ``VolumeDatasetMapper``. Eval: per-slice predictions.

        In eval mode each clip is decoded in order with its clicks and the inference propagation rule;
        the result per clip is a list of ``{"scores": (K, H, W), "labels": (H, W)}``.
        """
        images = [s["image"] for clip in batched_inputs for s in clip["slices"]]
        features = self.encode(self.preprocess(images))
        if self.training:
            return self._losses(batched_inputs, features)
        return [self._infer_clip(batched_inputs, features, b) for b in range(len(batched_inputs))]

    def _slice_index(self, batched_inputs: list[dict], b: int, t: int) -> int:
        return sum(len(c["slices"]) for c in batched_inputs[:b]) + t

    def _losses(self, batched_inputs: list[dict], features: SliceFeatures) -> dict[str, torch.Tensor]:
        totals: dict[str, torch.Tensor] = defaultdict(lambda: 0.0)
        count = 0
        for b, clip in enumerate(batched_inputs):
            clicks = self._error_driven_clicks(batched_inputs, features, b)
            state = self.initial_state()
            for t, piece in enumerate(clip["slices"]):
                hw = tuple(piece["image"].shape[-2:])
                outputs, state = self.decode_slice(
                    features.select(self._slice_index(batched_inputs, b, t)), state, clicks[t], hw
                )
                target = {
                    "labels": piece["instances"].gt_classes.to(self.device),
                    "masks": piece["instances"].gt_masks.to(self.device),
                }
                forced = forced_pairs(state.click_class, state.click_order, target["labels"])
                losses, indices = self.criterion(outputs, [target], forced=[forced])
                keep = torch.zeros_like(state.active)
                keep[indices[0][0].to(self.device)] = True  # Eq. 6: matched foreground centroids travel on
                state = self.advance(state, outputs, keep)
                for name, value in losses.items():
                    totals[name] = totals[name] + value
                count += 1
        return {name: value / count for name, value in totals.items()}

    def _error_driven_clicks(self, batched: list[dict], features: SliceFeatures, b: int) -> list[dict | None]:
        """The clip's clicks per slice after ``clip["error_rounds"]`` rounds of error-driven clicks.

        Each round decodes the clip without gradient, as inference does, with the clicks so far, and adds one
        click per interactive class at its largest error (:func:`largest_error_click`). Without error rounds
        (or interaction) the mapper's clicks are returned unchanged.
        """
        clip = batched[b]
        clicks = [piece.get("clicks") for piece in clip["slices"]]
        rounds = int(clip.get("error_rounds", 0))
        classes = [int(k) for k in clip.get("interactive_classes", torch.zeros(0)).tolist()]
        if not (self.interaction and rounds and classes):
            return clicks
        gt = [piece["sem_seg"].numpy() for piece in clip["slices"]]
        for _ in range(rounds):
            with torch.no_grad():
                pred = [labels.cpu().numpy() for labels in self._infer_clip(batched, features, b, clicks, "labels")]
            for k in classes:
                found = largest_error_click(pred, gt, k)
                if found is not None:
                    t, y, x, positive = found
                    clicks[t] = with_click(clicks[t], (y, x), k, positive)
        return clicks

    def _infer_clip(
        self,
        batched: list[dict],
        features: SliceFeatures,
        b: int,
        clicks: list[dict | None] | None = None,
        only: str | None = None,
    ) -> list:
        """Decode clip ``b`` in order with the inference propagation rule.

        Args:
            clicks: per slice, the clicks to inject (default: each slice's own ``"clicks"``).
            only: return just this key of each slice's result (``"labels"`` or ``"scores"``).

        Returns:
            Per slice ``{"scores": (K, H, W), "labels": (H, W)}`` (or the ``only`` value).
        """
        clip, state, results = batched[b], self.initial_state(), []
        for t, piece in enumerate(clip["slices"]):
            hw = tuple(piece["image"].shape[-2:])
            given = clicks[t] if clicks is not None else piece.get("clicks")
            outputs, state = self.step(features.select(self._slice_index(batched, b, t)), state, given, hw)
            scores, labels = self.post_process(self.class_scores(outputs), self.padded_hw(outputs["pred_masks"]), hw)
            result = {"scores": scores, "labels": labels}
            results.append(result[only] if only else result)
        return results


def forced_pairs(click_class: torch.Tensor, click_order: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(F, 2)`` (slot, target index) for the newest click-initialised slot of each clicked class.

    Target -1 where the class is absent on the slice. Older click slots of a class are left to the Hungarian
    search (one target cannot be forced onto two slots).
    """
    newest: dict[int, tuple[int, int]] = {}
    for slot, (k, order) in enumerate(zip(click_class.tolist(), click_order.tolist())):
        if k >= 0 and order >= newest.get(k, (-2, -1))[0]:
            newest[k] = (order, slot)
    pairs = []
    for k, (_, slot) in sorted(newest.items()):
        hits = torch.nonzero(labels == k).flatten()
        pairs.append((slot, int(hits[0]) if len(hits) else -1))
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
