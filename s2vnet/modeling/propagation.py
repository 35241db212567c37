"""Slice-to-volume propagation state (Eq. 5-6) and recurrent centroid aggregation (Eq. 10-11).

Whole-volume inference and training both drive the same single-slice step: the state below goes in,
predictions and a new state come out. The state is per slot (see :mod:`s2vnet.modeling.interaction`):
a slot either carries a centroid propagated from the previous slice (``active``) or starts from its
learned embedding.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from s2vnet.modeling.interaction import ClickMemory


@dataclass
class PropagationState:
    """What one slice hands to the next.

    Attributes:
        centroids: ``(N, D)`` initial centroid of each slot for the next slice (used where ``active``).
        active: ``(N,)`` bool, slots that carry a propagated centroid.
        history: ``(N, D)`` aggregation memory ``H`` per slot (Eq. 10), valid where ``history_valid``.
        history_valid: ``(N,)`` bool.
        click_class: ``(N,)`` int64, the class a slot was click-initialised for (-1: none); kept while
            the slot propagates, so training can force its match.
        clicks: Eq. 8 accumulators of the clicks seen so far.
        click_order: ``(N,)`` int64, when the slot's click came (a running count; -1: none): training forces
            the newest click slot of a class onto that class's target.
    """

    centroids: torch.Tensor
    active: torch.Tensor
    history: torch.Tensor
    history_valid: torch.Tensor
    click_class: torch.Tensor
    clicks: ClickMemory = field(default_factory=ClickMemory)
    click_order: torch.Tensor | None = None

    @classmethod
    def empty(cls, num_slots: int, dim: int, device: torch.device | str = "cpu") -> PropagationState:
        """The state before the first slice: nothing propagated, no history, no clicks."""
        zeros = torch.zeros(num_slots, dim, device=device)
        none = torch.zeros(num_slots, dtype=torch.bool, device=device)
        minus_one = torch.full((num_slots,), -1, dtype=torch.long, device=device)
        return cls(zeros, none, zeros.clone(), none.clone(), minus_one, click_order=minus_one.clone())


class RecurrentAggregator(nn.Module):
    """Eq. 10-11: fold each slot's new centroid into its history, and let next initialisations read it.

    ``write``: ``H_t = FFN(SelfAttn([H_{t-1}; C_t]))``, self-attention over the two-token sequence
    (history, new centroid) of each slot, then an FFN from the concatenated ``2D`` back to ``D``.
    ``read``: ``C_next = C_t + CrossAttn(C_t, H_{t-1})``, every centroid attending over the history of
    all slots that have one.
    """

    def __init__(self, dim: int, nheads: int, dim_feedforward: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, nheads, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(2 * dim, dim_feedforward), nn.ReLU(inplace=True), nn.Linear(dim_feedforward, dim)
        )
        self.write_norm = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, nheads, batch_first=True)
        self.read_norm = nn.LayerNorm(dim)
        self.empty = nn.Parameter(torch.zeros(dim))  # H before the first slice

    def write(self, history: torch.Tensor, valid: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
        """``history``, ``centroids`` ``(N, D)``, ``valid`` ``(N,)`` -> new history ``(N, D)``."""
        h = torch.where(valid[:, None], history, self.empty.expand_as(history))
        tokens = torch.stack([h, centroids], dim=1)  # (N, 2, D)
        tokens = tokens + self.self_attn(tokens, tokens, tokens, need_weights=False)[0]
        return self.write_norm(self.ffn(tokens.flatten(1)))

    def read(self, centroids: torch.Tensor, history: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``centroids (N, D)`` + cross-attention over the valid history -> ``(N, D)`` (unchanged without history).

        Invalid history slots are masked out of the attention instead of being indexed away, so the step
        never waits for the device to say how many there are (no host synchronisation per slice).
        """
        any_valid = valid.any()
        ignore = ~valid & any_valid  # with no valid slot, attend to all (finite) and discard the result below
        attended = self.cross_attn(
            centroids[None], history[None], history[None], key_padding_mask=ignore[None], need_weights=False
        )[0][0]
        return torch.where(any_valid, self.read_norm(centroids + attended), centroids)


def next_state(
    state: PropagationState,
    centroids: torch.Tensor,
    keep: torch.Tensor,
    click_class: torch.Tensor,
    aggregator: RecurrentAggregator | None,
) -> PropagationState:
    """The state after a slice: slots in ``keep`` pass their refined centroid on (Eq. 6), the others reset.

    Args:
        state: the state the slice was decoded with.
        centroids: ``(N, D)`` refined centroids of the slice.
        keep: ``(N,)`` bool; training: slots matched to a foreground target; inference: slots not
            classified as background.
        click_class: ``(N,)`` click class of each slot as used on this slice.
        aggregator: recurrent aggregation, or None when switched off.
    """
    init = centroids
    history, history_valid = state.history, state.history_valid
    if aggregator is not None:
        init, history = aggregate(aggregator, state, centroids, keep)
        history_valid = keep
    zeros = torch.zeros_like(init)
    order = state.click_order if state.click_order is not None else torch.full_like(click_class, -1)
    return replace(
        state,
        centroids=torch.where(keep[:, None], init, zeros),
        active=keep.clone(),
        history=torch.where(keep[:, None], history, zeros),
        history_valid=history_valid.clone() & keep,
        click_class=torch.where(keep, click_class, torch.full_like(click_class, -1)),
        click_order=torch.where(keep, order, torch.full_like(order, -1)),
    )


def aggregate(
    aggregator: RecurrentAggregator, state: PropagationState, centroids: torch.Tensor, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 11's next initialisation and Eq. 10's new history ``(N, D)`` each; only the rows in ``keep`` are used.

    Both are per slot (a slot's read attends over all histories, its write sees only its own), so inference on
    the CPU computes the kept rows alone and leaves the others zero; the rows' count costs no device sync there.
    Training and other devices compute every row (no data-dependent shapes).
    """
    dtype = centroids.dtype  # the state keeps it under an autocast too
    if aggregator.training or keep.device.type != "cpu":
        read = aggregator.read(centroids, state.history, state.history_valid)  # reads H_{t-1} (Eq. 11)
        return read.to(dtype), aggregator.write(state.history, state.history_valid, centroids).to(dtype)  # H_t
    init, history = torch.zeros_like(centroids), torch.zeros_like(centroids)
    rows = keep.nonzero()[:, 0]
    if len(rows):
        init[rows] = aggregator.read(centroids[rows], state.history, state.history_valid).to(dtype)
        history[rows] = aggregator.write(state.history[rows], state.history_valid[rows], centroids[rows]).to(dtype)
    return init, history
