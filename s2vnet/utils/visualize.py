"""Drawing slices with coloured class overlays and clicks (PNG output for people to look at)."""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402


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
    present = sorted({int(v) - 1 for p in panels for v in np.unique(p["label"]) if 0 < v <= len(class_names)})
    handles = [Patch(color=colors[c], label=class_names[c]) for c in present]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fig.savefig(path, dpi=80)
    plt.close(fig)
