"""Drawing slices with coloured class overlays and clicks (PNG output for people to look at)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from s2vnet.data.clicks import Click  # noqa: E402

# tab20 without its two greys, which vanish on CT: vivid colours first, their light twins after.
_PALETTE = [plt.get_cmap("tab20")(i)[:3] for i in list(range(0, 20, 2)) + list(range(1, 20, 2)) if i not in (14, 15)]


def class_colors(num_classes: int) -> np.ndarray:
    """RGB in [0, 1], ``(K, 3)``, distinct per class (18 fixed colours, then an hsv ramp)."""
    if num_classes <= len(_PALETTE):
        return np.array(_PALETTE[:num_classes])
    cmap = plt.get_cmap("hsv", num_classes)
    return np.array([cmap(i)[:3] for i in range(num_classes)])


def overlay(image: np.ndarray, label: np.ndarray, colors: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Grey uint8 ``(H, W)`` + label ``(H, W)`` (0 = bg, c + 1 = class c, 255 = ignore) -> RGB float ``(H, W, 3)``."""
    rgb = np.repeat(image[..., None].astype(np.float32) / 255.0, 3, axis=2)
    for c, color in enumerate(colors):
        mask = label == c + 1
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * color
    rgb[label == 255] = rgb[label == 255] * 0.5 + np.array([0.0, 0.0, 0.3])
    return rgb


def draw_clicks(ax, coords: np.ndarray, classes: np.ndarray, positive: np.ndarray, colors: np.ndarray) -> None:
    """Mark clicks on an axis: filled circle = positive, cross = negative, colour = class."""
    for (y, x), c, pos in zip(coords, classes, positive):
        color = colors[int(c)]
        if pos:
            ax.plot(x, y, "o", ms=7, mfc=color, mec="white", mew=1.5)
        else:
            ax.plot(x, y, "X", ms=8, mfc=color, mec="black", mew=1.0)


def _finish(fig, path: str, labels: Sequence[np.ndarray], class_names: Sequence[str], title: str) -> None:
    """Legend of the classes present in ``labels``, title, and the PNG written to ``path``."""
    colors = class_colors(len(class_names))
    present = sorted({int(v) - 1 for lab in labels for v in np.unique(lab) if 0 < v <= len(class_names)})
    handles = [Patch(color=colors[c], label=class_names[c]) for c in present]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def save_panel(path: str, panels: Sequence[dict], class_names: Sequence[str], title: str) -> None:
    """Write one PNG with a row of slices.

    Args:
        path: output PNG.
        panels: dicts with ``image`` uint8 (H, W), ``label`` (H, W), ``title`` and optionally
            ``clicks`` = (coords (N, 2) as (y, x), classes (N,), positive (N,)).
        class_names: names in class-index order (legend).
        title: figure title.
    """
    colors = class_colors(len(class_names))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        ax.imshow(overlay(panel["image"], panel["label"], colors), interpolation="nearest")
        if panel.get("clicks") is not None:
            draw_clicks(ax, *panel["clicks"], colors)
        ax.set_title(panel["title"], fontsize=9)
        ax.axis("off")
    _finish(fig, path, [p["label"] for p in panels], class_names, title)


def save_montage(
    path: str,
    image: np.ndarray,
    columns: Sequence[tuple[str, np.ndarray, Sequence[Click]]],
    class_names: Sequence[str],
    title: str,
    num_slices: int = 4,
) -> None:
    """Rows of slices, one column per label volume (e.g. ground truth | automatic | after clicks).

    Args:
        image: uint8 ``(Z, Y, X)``.
        columns: ``[(name, labels (Z, Y, X), clicks), ...]``; each column's clicks (``working`` or ``zyx``
            frame, i.e. on ``image``'s grid; may be empty) are drawn on the slices they lie on.
        num_slices: rows, at evenly spaced slices holding foreground in the first column.
    """
    colors = class_colors(len(class_names))
    zs = np.flatnonzero(columns[0][1].any(axis=(1, 2))) if columns[0][1].any() else np.arange(image.shape[0])
    rows = np.unique(zs[np.linspace(0, len(zs) - 1, min(num_slices, len(zs))).round().astype(int)])
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(3.2 * len(columns), 3.2 * len(rows)), squeeze=False)
    for j, (name, labels, clicks) in enumerate(columns):
        _check_on_grid(clicks)
        for i, z in enumerate(rows):
            ax = axes[i, j]
            ax.imshow(overlay(image[z], labels[z], colors), interpolation="nearest")
            here = [c for c in clicks if c.slice_index == z]
            if here:
                draw_clicks(
                    ax,
                    np.array([c.position[1:] for c in here]),
                    np.array([c.class_index for c in here]),
                    np.array([c.positive for c in here]),
                    colors,
                )
            ax.set_title(f"{name}, z = {z}", fontsize=8)
            ax.axis("off")
    _finish(fig, path, [lab for _, lab, _ in columns], class_names, title)


def _check_on_grid(clicks: Sequence[Click]) -> None:
    """Montage clicks must be in a frame of the drawn array's grid."""
    for click in clicks:
        if click.frame not in ("working", "zyx"):
            raise ValueError(f"montage clicks must be in the 'working' or 'zyx' frame, got '{click.frame}'")
