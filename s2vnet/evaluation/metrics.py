"""Segmentation metrics on 3D masks: Dice, HD95 (medpy definition) and NSD (DeepMind definition).

Conventions: masks are numpy arrays ``(z, y, x)`` read as bool (non-zero = object); ``spacing`` is
the voxel size in mm in the same ``(z, y, x)`` order (SimpleITK's ``GetSpacing()`` is ``(x, y, z)``:
reverse it). Label volumes hold ``c + 1`` for class ``c`` and 0 for background.

Definitions
-----------
* :func:`dice`: ``2 |P & G| / (|P| + |G|)``.
* :func:`hd95`: what ``medpy.metric.binary.hd95(pred, gt, voxelspacing=spacing)`` (medpy 0.5.2)
  returns, as the BTCV (TransUNet-style) and WORD evaluation scripts call it. A mask's surface is
  the set of its voxels removed by one binary erosion with the 6-neighbourhood (scipy's default
  ``border_value=0``, so object voxels on the volume border are surface); each surface voxel gets
  the distance in mm (exact Euclidean distance transform with ``sampling=spacing``) to the nearest
  surface voxel of the other mask; HD95 is ``np.percentile`` (linear interpolation) at 95 of both
  directions' distances pooled together.
* :func:`nsd`: DeepMind ``surface_distance``'s ``compute_surface_dice_at_tolerance`` applied to
  ``compute_surface_distances`` (the AMOS definition). The surface is made of surfels: each 2x2x2
  cell of voxels whose eight corners are neither all inside nor all outside carries a piece of
  marching-cubes-like surface through the midpoints of its cut edges, with an area in mm^2. The
  distance from a cell to the other surface is the Euclidean distance (mm) between cell positions
  to the nearest mixed cell of the other mask. NSD is the area of both surfaces lying within
  ``tolerance_mm`` of the other surface (``<=``) over the total area of both surfaces.

  The area table (256 cell configurations -> area) is built here from the cube's geometry, see
  :func:`surfel_area_table`: the cut-edge midpoints are chained into closed polygons face by face
  (on a face whose inside corners are diagonal, the segments cut off the face's inside corners
  when the cell has at most four inside corners, else its outside corners); each polygon is
  split into triangles, a non-planar one by its largest-area split (isotropic voxels); a
  triangle's area under anisotropic spacing is the norm of its area vector scaled by
  ``(s_y s_x, s_z s_x, s_z s_y)``. This reproduces DeepMind's table for all 256 configurations
  (checked in ``tests/test_metrics.py`` for several anisotropic spacings).

Empty masks
-----------
* ``dice``: both empty -> ``empty_value`` (default 1.0); one empty -> 0.0. (medpy's ``dc`` gives
  NaN for both empty.)
* ``hd95``: both empty -> 0.0; exactly one empty -> ``empty_penalty`` (default 50, WORD's value).
  (medpy raises ``RuntimeError``; WORD's script returns Dice 0 and HD95 50 whenever either mask,
  or both, is empty.)
* ``nsd``: both empty -> ``empty_value`` (default 1.0); one empty -> 0.0. (DeepMind gives NaN,
  0/0, for both empty; for one empty it gives 0.0 on numpy < 2 and raises ``AttributeError`` on
  numpy 2, where ``np.Inf`` is gone.)

Speed
-----
Everything is computed inside the union bounding box of the two masks grown by one voxel (zero
padded where that leaves the volume), which gives exactly the numbers of the uncropped computation:
outside the box both masks are background, scipy's erosion already treats the outside of the
array as background, and every surface voxel (or mixed cell) lies inside the box, so the exact
distance transforms agree on them. Measured on this project's 2-core CPU (Python 3.11, numpy 2.4,
scipy 1.17) for a 512 x 512 x 200 pair of liver-sized smooth blobs (about 1.2 M voxels each, Dice
0.81, union box 92 x 205 x 245) with spacing (2.5, 0.8, 0.8): ``dice`` 0.01 s, ``hd95`` 0.7 s,
``nsd`` 0.65 s, ``per_class_metrics`` for that one class 1.5 s. On the same pair medpy's ``hd95``
(no cropping) takes 22 s and DeepMind's ``compute_surface_distances`` + surface Dice 1.1 s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

Spacing = tuple[float, float, float]

__all__ = [
    "dice",
    "hd95",
    "nsd",
    "per_class_metrics",
    "surfel_area_table",
    "class_boxes",
    "check_labels",
    "union_box",
    "crop_padded",
]


# --------------------------------------------------------------------------------------------
# input checks and cropping
# --------------------------------------------------------------------------------------------


def _as_mask(array: np.ndarray) -> np.ndarray:
    """A bool view/copy of a 3D array ``(z, y, x)`` (non-zero = object)."""
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"expected a 3D (z, y, x) mask, got shape {array.shape}")
    return array if array.dtype == bool else array != 0


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _as_mask(pred), _as_mask(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt differ in shape: {pred.shape} vs {gt.shape}")
    return pred, gt


def _check_spacing(spacing: Sequence[float]) -> Spacing:
    """``spacing`` as three positive finite floats (mm, ``(z, y, x)``)."""
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must be three positive (z, y, x) sizes in mm, got {spacing!r}")
    return values  # type: ignore[return-value]


def union_box(*masks: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The bounding box of the union of bool masks ``(z, y, x)`` (all of one shape); None if all are empty."""
    union = masks[0] if len(masks) == 1 else np.logical_or.reduce(masks)
    box = []
    for axis in range(union.ndim):
        others = tuple(a for a in range(union.ndim) if a != axis)
        hits = np.flatnonzero(np.any(union, axis=others))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)  # type: ignore[return-value]


def crop_padded(array: np.ndarray, box: Sequence[slice], margin: int) -> np.ndarray:
    """``array[box]`` grown by ``margin`` voxels on every side, zeros where that leaves ``array``.

    Args:
        array: ``(z, y, x)``.
        box: three slices with explicit, in-range ``start`` and ``stop``.
        margin: voxels added on each side.

    Returns:
        ``(box_z + 2 margin, box_y + 2 margin, box_x + 2 margin)``, of ``array``'s dtype; element
        ``[i, j, k]`` is ``array[box_z.start - margin + i, ...]`` or 0 outside ``array``.
    """
    lo = [s.start - margin for s in box]
    hi = [s.stop + margin for s in box]
    out = np.zeros([b - a for a, b in zip(lo, hi)], dtype=array.dtype)
    src = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(lo, hi, array.shape))
    dst = tuple(slice(s.start - a, s.stop - a) for s, a in zip(src, lo))
    out[dst] = array[src]
    return out


# --------------------------------------------------------------------------------------------
# Dice
# --------------------------------------------------------------------------------------------


def dice(pred: np.ndarray, gt: np.ndarray, empty_value: float = 1.0) -> float:
    """Dice similarity coefficient of two masks.

    Args:
        pred, gt: ``(z, y, x)`` masks (non-zero = object), same shape.
        empty_value: returned when both masks are empty (medpy's ``dc`` returns NaN there).

    Returns:
        ``2 |pred & gt| / (|pred| + |gt|)`` in [0, 1]; 0.0 when exactly one mask is empty.
    """
    pred, gt = _check_pair(pred, gt)
    total = np.count_nonzero(pred) + np.count_nonzero(gt)
    if total == 0:
        return float(empty_value)
    return float(2.0 * np.count_nonzero(pred & gt) / total)


def mean_label_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Agreement of two label maps: mean Dice over the foreground labels present in either (1.0 if neither has any).

    Args:
        a, b: ``(z, y, x)`` integer label maps of the same shape, 0 = background.
    """
    scores = [dice(a == k, b == k) for k in np.union1d(np.unique(a), np.unique(b)) if k != 0]
    return float(np.mean(scores)) if scores else 1.0


# --------------------------------------------------------------------------------------------
# HD95 (medpy)
# --------------------------------------------------------------------------------------------


def voxel_surface(mask: np.ndarray) -> np.ndarray:
    """medpy's surface: object voxels removed by one erosion with the 6-neighbourhood.

    Args:
        mask: bool ``(z, y, x)``.

    Returns:
        bool ``(z, y, x)``; voxels on the array border count as surface (scipy ``border_value=0``).
    """
    structure = ndimage.generate_binary_structure(3, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, iterations=1)


def directed_surface_distances(source: np.ndarray, target: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Distances (mm) from each surface voxel of ``source`` to the nearest surface voxel of ``target``.

    No cropping: the uncropped reference path of :func:`hd95` (which crops first).

    Args:
        source, target: bool ``(z, y, x)``, both non-empty.
        spacing: ``(z, y, x)`` in mm.

    Returns:
        float64 ``(n,)``, one entry per surface voxel of ``source`` in C order.
    """
    to_target = ndimage.distance_transform_edt(~voxel_surface(target), sampling=spacing)
    return to_target[voxel_surface(source)]


def hd95_distances(pred: np.ndarray, gt: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Both directions' surface distances (mm), ``pred -> gt`` then ``gt -> pred`` (no cropping).

    Args:
        pred, gt: bool ``(z, y, x)``, both non-empty.
        spacing: ``(z, y, x)`` in mm.

    Returns:
        float64 ``(n_pred_surface + n_gt_surface,)``.
    """
    return np.concatenate(
        (directed_surface_distances(pred, gt, spacing), directed_surface_distances(gt, pred, spacing))
    )


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], empty_penalty: float = 50.0) -> float:
    """95th percentile Hausdorff distance in mm, medpy's ``hd95`` definition (see module docstring).

    Args:
        pred, gt: ``(z, y, x)`` masks (non-zero = object), same shape.
        spacing: voxel size in mm, ``(z, y, x)``.
        empty_penalty: returned when exactly one mask is empty (WORD's script uses 50).

    Returns:
        HD95 in mm; 0.0 when both masks are empty.
    """
    pred, gt = _check_pair(pred, gt)
    spacing = _check_spacing(spacing)
    has_pred, has_gt = bool(pred.any()), bool(gt.any())
    if not (has_pred or has_gt):
        return 0.0
    if not (has_pred and has_gt):
        return float(empty_penalty)
    box = union_box(pred, gt)
    distances = hd95_distances(crop_padded(pred, box, 1), crop_padded(gt, box, 1), spacing)
    return float(np.percentile(distances, 95))


# --------------------------------------------------------------------------------------------
# NSD (DeepMind surface-distance)
# --------------------------------------------------------------------------------------------
# A 2x2x2 cell's corner k = 4a + 2b + c sits at offset (a, b, c) (z, y, x) and contributes bit
# 2 ** (7 - k) to the cell's code (DeepMind's neighbourhood kernel).


def _corner(k: int) -> tuple[int, int, int]:
    return (k >> 2) & 1, (k >> 1) & 1, k & 1


def _faces() -> list[tuple[int, int, int, int]]:
    """The six cube faces as corner indices in cyclic order."""
    faces = []
    for axis in range(3):
        u, v = (a for a in range(3) if a != axis)
        for side in (0, 1):
            ring = []
            for du, dv in ((0, 0), (0, 1), (1, 1), (1, 0)):
                offset = [0, 0, 0]
                offset[axis], offset[u], offset[v] = side, du, dv
                ring.append(4 * offset[0] + 2 * offset[1] + offset[2])
            faces.append(tuple(ring))
    return faces


def _polygons(code: int) -> list[list[tuple[int, int]]]:
    """The closed surface polygons of one cell configuration, as cycles of cut edges ``(k1, k2)``."""
    inside = [bool(code >> (7 - k) & 1) for k in range(8)]
    cut_off = sum(inside) <= 4  # the kind whose corners are separated on ambiguous faces
    links: dict[tuple[int, int], list[tuple[int, int]]] = {}

    def link(e1: tuple[int, int], e2: tuple[int, int]) -> None:
        links.setdefault(e1, []).append(e2)
        links.setdefault(e2, []).append(e1)

    for ring in _faces():
        edges = [tuple(sorted((ring[i], ring[(i + 1) % 4]))) for i in range(4)]
        cut = [e for e in edges if inside[e[0]] != inside[e[1]]]
        if len(cut) == 2:
            link(*cut)
        elif len(cut) == 4:  # diagonal corners of one kind: cut each `cut_off` corner off
            for i in range(4):
                if inside[ring[i]] == cut_off:
                    link(edges[i - 1], edges[i])
    polygons, seen = [], set()
    for start in links:
        if start in seen:
            continue
        cycle, previous, current = [start], None, start
        seen.add(start)
        while True:
            following = next(e for e in links[current] if e != previous)
            if following == start:
                break
            cycle.append(following)
            seen.add(following)
            previous, current = current, following
        polygons.append(cycle)
    return polygons


def _triangulations(n: int) -> list[tuple[tuple[int, int, int], ...]]:
    """All triangulations of a polygon with vertices ``0..n-1`` in cyclic order."""

    def split(i: int, j: int) -> list[tuple[tuple[int, int, int], ...]]:
        if j - i < 2:
            return [()]
        return [left + right + ((i, k, j),) for k in range(i + 1, j) for left in split(i, k) for right in split(k, j)]

    return split(0, n - 1)


def _area_vectors(points: np.ndarray, triangles: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """Area vectors ``(t, 3)`` (half cross products, voxel units) of triangles over ``points (n, 3)``."""
    tri = np.asarray(triangles, dtype=int).reshape(-1, 3)
    return 0.5 * np.cross(points[tri[:, 1]] - points[tri[:, 0]], points[tri[:, 2]] - points[tri[:, 0]])


def surfel_area_vectors() -> list[np.ndarray]:
    """Per cell code (0..255), the area vectors ``(t, 3)`` (voxel units, ``(z, y, x)``) of its triangles.

    Each polygon from :func:`_polygons` is split into the triangulation of largest isotropic area
    (the first such in enumeration order; ties are mirror images with equal anisotropic areas).
    """
    vectors = []
    for code in range(256):
        per_code = [np.zeros((0, 3))]
        for cycle in _polygons(code):
            points = np.array([[(p + q) / 2 for p, q in zip(_corner(e[0]), _corner(e[1]))] for e in cycle])
            options = [_area_vectors(points, t) for t in _triangulations(len(cycle))]
            areas = [np.linalg.norm(v, axis=1).sum() for v in options]
            per_code.append(options[int(np.argmax(np.round(areas, 12)))])
        vectors.append(np.concatenate(per_code))
    return vectors


def surfel_area_table(spacing: Sequence[float]) -> np.ndarray:
    """Surface area (mm^2) of each 2x2x2 cell configuration.

    Args:
        spacing: voxel size in mm, ``(z, y, x)``.

    Returns:
        float64 ``(256,)`` indexed by the cell code (corner ``(a, b, c)`` sets bit ``7 - (4a + 2b + c)``).
    """
    sz, sy, sx = _check_spacing(spacing)
    scale = np.array([sy * sx, sz * sx, sz * sy])  # how a triangle's area vector scales per axis
    return np.array([np.linalg.norm(v * scale, axis=1).sum() for v in surfel_area_vectors()])


def cell_codes(mask: np.ndarray) -> np.ndarray:
    """Codes of all 2x2x2 cells of a mask whose outer layer is background.

    Args:
        mask: bool ``(Z, Y, X)``, False on its outer one-voxel layer.

    Returns:
        uint8 ``(Z - 1, Y - 1, X - 1)``; cell ``(i, j, k)`` has corners ``mask[i:i+2, j:j+2, k:k+2]``.
    """
    shape = tuple(n - 1 for n in mask.shape)
    codes = np.zeros(shape, dtype=np.uint8)
    for k in range(8):
        a, b, c = _corner(k)
        corner = mask[a : a + shape[0], b : b + shape[1], c : c + shape[2]]
        codes |= corner.astype(np.uint8) << np.uint8(7 - k)
    return codes


def surfel_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: Spacing, table: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """DeepMind's ``compute_surface_distances`` (unsorted) on masks with a background outer layer.

    Args:
        pred, gt: bool ``(Z, Y, X)``, both non-empty, False on their outer one-voxel layer.
        spacing: ``(z, y, x)`` in mm.
        table: :func:`surfel_area_table` for ``spacing``.

    Returns:
        ``(d_pred_to_gt, area_pred, d_gt_to_pred, area_gt)``: float64 ``(n_pred,)``, ``(n_pred,)``,
        ``(n_gt,)``, ``(n_gt,)`` per mixed cell in C order (distances in mm, areas in mm^2).
    """
    codes_pred, codes_gt = cell_codes(pred), cell_codes(gt)
    mixed_pred = (codes_pred != 0) & (codes_pred != 255)
    mixed_gt = (codes_gt != 0) & (codes_gt != 255)
    d_pred_to_gt = ndimage.distance_transform_edt(~mixed_gt, sampling=spacing)[mixed_pred]
    d_gt_to_pred = ndimage.distance_transform_edt(~mixed_pred, sampling=spacing)[mixed_gt]
    return d_pred_to_gt, table[codes_pred[mixed_pred]], d_gt_to_pred, table[codes_gt[mixed_gt]]


def _nsd(
    pred: np.ndarray, gt: np.ndarray, spacing: Spacing, tolerance_mm: float, empty_value: float, table: np.ndarray
) -> float:
    has_pred, has_gt = bool(pred.any()), bool(gt.any())
    if not (has_pred or has_gt):
        return float(empty_value)
    if not (has_pred and has_gt):
        return 0.0
    box = union_box(pred, gt)
    d_pg, a_p, d_gp, a_g = surfel_distances(crop_padded(pred, box, 1), crop_padded(gt, box, 1), spacing, table)
    within = a_p[d_pg <= tolerance_mm].sum() + a_g[d_gp <= tolerance_mm].sum()
    return float(within / (a_p.sum() + a_g.sum()))


def nsd(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], tolerance_mm: float, empty_value: float = 1.0
) -> float:
    """Normalised surface Dice at ``tolerance_mm``, DeepMind's definition (see module docstring).

    Args:
        pred, gt: ``(z, y, x)`` masks (non-zero = object), same shape.
        spacing: voxel size in mm, ``(z, y, x)``.
        tolerance_mm: surface elements at distance ``<= tolerance_mm`` from the other surface count.
        empty_value: returned when both masks are empty (DeepMind returns NaN there).

    Returns:
        NSD in [0, 1]; 0.0 when exactly one mask is empty.
    """
    pred, gt = _check_pair(pred, gt)
    spacing = _check_spacing(spacing)
    return _nsd(pred, gt, spacing, float(tolerance_mm), empty_value, surfel_area_table(spacing))


# --------------------------------------------------------------------------------------------
# per class
# --------------------------------------------------------------------------------------------


def class_boxes(
    pred_labels: np.ndarray, gt_labels: np.ndarray, num_classes: int
) -> list[tuple[slice, slice, slice] | None]:
    """Per class ``c`` (label ``c + 1``), the bounding box of the label in either volume; None if absent.

    Args:
        pred_labels, gt_labels: integer ``(z, y, x)`` label volumes of one shape.
        num_classes: K; labels above K are ignored.

    Returns:
        K entries of three slices (or None).
    """
    boxes_pred = ndimage.find_objects(pred_labels, max_label=num_classes)
    boxes_gt = ndimage.find_objects(gt_labels, max_label=num_classes)
    out = []
    for bp, bg in zip(boxes_pred, boxes_gt):
        if bp is None or bg is None:
            out.append(bp if bg is None else bg)
        else:
            out.append(tuple(slice(min(p.start, g.start), max(p.stop, g.stop)) for p, g in zip(bp, bg)))
    return out


def check_labels(pred_labels: np.ndarray, gt_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two integer ``(z, y, x)`` label volumes of one shape (bool ones as int64); ValueError otherwise."""
    pred_labels, gt_labels = np.asarray(pred_labels), np.asarray(gt_labels)
    for name, array in (("pred_labels", pred_labels), ("gt_labels", gt_labels)):
        if array.ndim != 3 or not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
            raise ValueError(f"{name} must be an integer (z, y, x) label volume, got {array.dtype} {array.shape}")
    if pred_labels.shape != gt_labels.shape:
        raise ValueError(f"pred_labels and gt_labels differ in shape: {pred_labels.shape} vs {gt_labels.shape}")
    return pred_labels.astype(np.int64, copy=False) if pred_labels.dtype == bool else pred_labels, (
        gt_labels.astype(np.int64, copy=False) if gt_labels.dtype == bool else gt_labels
    )


def per_class_metrics(
    pred_labels: np.ndarray,
    gt_labels: np.ndarray,
    spacing: Sequence[float],
    num_classes: int,
    tolerance_mm: Sequence[float] | float,
    empty_penalty: float = 50.0,
) -> list[dict]:
    """Dice, HD95 and NSD of every class of two label volumes.

    Args:
        pred_labels, gt_labels: integer ``(z, y, x)`` label volumes, value ``c + 1`` = class ``c``.
        spacing: voxel size in mm, ``(z, y, x)``.
        num_classes: K; classes ``0..K-1`` (labels ``1..K``) are evaluated.
        tolerance_mm: NSD tolerance, one for all classes or one per class (length K).
        empty_penalty: HD95 when exactly one of the class's masks is empty.

    Returns:
        K dicts ``{"class", "dice", "hd95", "nsd", "gt_voxels", "pred_voxels"}`` in class order, with
        the empty-mask policies of :func:`dice` (both empty: 1.0), :func:`hd95` and :func:`nsd`
        (both empty: 1.0).
    """
    pred_labels, gt_labels = check_labels(pred_labels, gt_labels)
    spacing = _check_spacing(spacing)
    tolerances = (
        [float(tolerance_mm)] * num_classes if np.ndim(tolerance_mm) == 0 else [float(t) for t in tolerance_mm]  # type: ignore[union-attr]
    )
    if len(tolerances) != num_classes:
        raise ValueError(f"tolerance_mm has {len(tolerances)} entries for {num_classes} classes")
    table = surfel_area_table(spacing)
    empty = np.zeros((1, 1, 1), dtype=bool)
    results = []
    for c, box in enumerate(class_boxes(pred_labels, gt_labels, num_classes)):
        pred = pred_labels[box] == c + 1 if box is not None else empty
        gt = gt_labels[box] == c + 1 if box is not None else empty
        results.append(
            {
                "class": c,
                "dice": dice(pred, gt),
                "hd95": hd95(pred, gt, spacing, empty_penalty=empty_penalty),
                "nsd": _nsd(pred, gt, spacing, tolerances[c], 1.0, table),
                "gt_voxels": int(np.count_nonzero(gt)),
                "pred_voxels": int(np.count_nonzero(pred)),
            }
        )
    return results
