"""Segmentation metrics: pixel error, IoU, adapted Rand error, ISBI 2012 warping error.

numpy + OpenCV only (no scipy / scikit-image at run time), so ``segrt eval`` works
with the runtime install. Conventions used throughout:

* A *mask* is a 2-D ``bool[H, W]`` (or integer, nonzero = foreground) array.
  Float arrays are refused: threshold probabilities first (or use
  :func:`threshold_sweep`).
* *Instance labels* are ``int[H, W]``, 0 = background, every object its own id.
* Outside the image is background (the warping pads with background, as the
  ISBI 2012 Fiji script did).
* Connectivity: foreground is **4-connected** and background **8-connected** by
  default, everywhere in this module (connected components, simple points).
  This is the pair the ISBI 2012 evaluation used (Fiji ``WarpingError.simple2D(patch, 4)``,
  with cells as foreground), and it suits cell masks: a 1-pixel *diagonal* line of
  background still separates two cells, so U-Net borders between touching
  cells count as separations. ``connectivity=8`` selects the dual pair
  (8-connected foreground, 4-connected background). Foreground and background
  connectivity must differ (4/8 or 8/4): with 4/4 or 8/8 the Jordan curve
  theorem fails on the square grid and "simple point" is not well defined.

References: Jain et al., "Boundary learning by optimization with topological
constraints", CVPR 2010 (warping error); Arganda-Carreras et al., "Crowdsourcing
the creation of image segmentation algorithms for connectomics", Front.
Neuroanat. 2015 (ISBI 2012 challenge, adapted Rand error); Bertrand &
Malandain, Pattern Recognit. Lett. 15 (1994) 169-175 (topological numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from segrt.errors import InputError

__all__ = [
    "DEFAULT_THRESHOLDS",
    "adapted_rand",
    "adapted_rand_error",
    "connected_components",
    "iou",
    "is_simple_lut",
    "pixel_error",
    "threshold_sweep",
    "warping_error",
]

#: 10 thresholds, like the ISBI 2012 evaluation (which reported the best over its thresholds).
DEFAULT_THRESHOLDS: NDArray[np.float64] = np.round(np.linspace(0.05, 0.95, 10), 10)

# Priority levels used to order the warping flips when a priority map is given.
_PRIORITY_LEVELS = 64


# --------------------------------------------------------------------------- input checks


def _as_2d(name: str, a: ArrayLike) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D array [H, W], got shape {arr.shape}",
            "pass one single-channel image (squeeze or select the channel first)",
        )
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape})", "pass an image with at least one pixel")
    return arr


def _as_mask(name: str, a: ArrayLike) -> NDArray[np.bool_]:
    arr = _as_2d(name, a)
    if arr.dtype == np.bool_:
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        return arr != 0
    raise InputError(
        f"{name} has dtype {arr.dtype}; a mask must be bool or integer (nonzero = foreground)",
        "threshold probabilities first (e.g. prob > 0.5), or use threshold_sweep(prob, truth)",
    )


def _as_labels(name: str, a: ArrayLike) -> np.ndarray:
    arr = _as_2d(name, a)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(
            f"{name} has dtype {arr.dtype}; label images must be integer",
            "pass integer instance labels (0 = background), e.g. from connected_components(mask)",
        )
    return arr


def _same_shape(a: np.ndarray, b: np.ndarray, what: str = "pred and truth") -> None:
    if a.shape != b.shape:
        raise InputError(
            f"{what} have different shapes: {a.shape} vs {b.shape}",
            "compare arrays of the same size (crop or resize the prediction to the label image)",
        )


def _check_connectivity(connectivity: int) -> int:
    if connectivity not in (4, 8):
        raise InputError(
            f"connectivity must be 4 or 8, got {connectivity!r}", "use 4 (the default, ISBI 2012 convention) or 8"
        )
    return int(connectivity)


# --------------------------------------------------------------------------- pixel metrics


def pixel_error(pred: ArrayLike, truth: ArrayLike) -> float:
    """Fraction of pixels whose foreground/background label differs.

    Args:
        pred: ``bool|int[H, W]`` predicted mask (nonzero = foreground).
        truth: ``bool|int[H, W]`` true mask, same shape.

    Returns:
        ``mean(pred != truth)`` in [0, 1]. This is the plain mislabelled-pixel
        fraction, *not* the ISBI 2012 "pixel error" (which was 1 - the maximal
        F-score of pixel similarity).
    """
    p, t = _as_mask("pred", pred), _as_mask("truth", truth)
    _same_shape(p, t)
    return float(np.count_nonzero(p != t)) / p.size


def iou(pred: ArrayLike, truth: ArrayLike, cls: int = 1) -> float:
    """Intersection over union of class ``cls``: the PhC-U373 / DIC-HeLa (ISBI 2015) metric.

    Args:
        pred: ``bool|int[H, W]`` predicted *class* map (not instance labels).
        truth: ``bool|int[H, W]`` true class map, same shape.
        cls: the class scored; for bool masks 1 (= True) is the foreground.

    Returns:
        ``|pred == cls & truth == cls| / |pred == cls | truth == cls|`` in [0, 1].
        When the union is empty (the class is absent from both) the result is
        1.0: the prediction agrees with the truth that there is nothing there.
    """
    p, t = _as_labels("pred", pred), _as_labels("truth", truth)
    _same_shape(p, t)
    pc, tc = p == cls, t == cls
    union = np.count_nonzero(pc | tc)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(pc & tc)) / union


# --------------------------------------------------------------------------- Rand


def adapted_rand(
    pred_labels: ArrayLike, truth_labels: ArrayLike, ignore_labels: Sequence[int] = (0,)
) -> tuple[float, float, float]:
    """Adapted Rand error with its precision and recall (the ISBI 2012 / SNEMI3D Rand error).

    Same error as ``skimage.metrics.adapted_rand_error(truth, pred)``: with
    ``n_ij`` the contingency table of truth label i vs predicted label j over the
    pixels whose *truth* label is not in ``ignore_labels``, ``s_i``/``t_j`` its
    row/column sums, ``N`` the number of counted pixels,

        P = sum n_ij^2 - N      (ordered pixel pairs together in both)
        A = sum t_j^2  - N      (pairs together in the prediction)
        B = sum s_i^2  - N      (pairs together in the truth)
        precision = P / A,  recall = P / B,  error = 1 - 2P / (A + B).

    Precision/recall follow their *documented* meaning; scikit-image's code
    returns them the other way round (scikit-image issue #6485), so
    ``(err, prec, rec) == skimage(...)[0], skimage(...)[2], skimage(...)[1]``.
    Where scikit-image divides 0 by 0 (no pair of counted pixels shares a label
    in the prediction or in the truth, e.g. an all-background truth) the ratio
    is defined as 1.0 (nothing to get wrong), so the error is 0.0 instead of nan.
    Predicted label 0 is an ordinary segment: predicted background inside two
    true objects joins them. Ignored truth pixels make false-positive objects
    on the truth background invisible here: pair with pixel error / IoU.

    Args:
        pred_labels: ``int[H, W]`` predicted instance labels.
        truth_labels: ``int[H, W]`` true instance labels, same shape.
        ignore_labels: truth labels whose pixels are not counted (default: background 0).

    Returns:
        ``(error, precision, recall)``, each in [0, 1].
    """
    p, t = _as_labels("pred_labels", pred_labels), _as_labels("truth_labels", truth_labels)
    _same_shape(p, t, "pred_labels and truth_labels")
    t, p = t.ravel(), p.ravel()
    if len(ignore_labels):
        keep = ~np.isin(t, np.asarray(list(ignore_labels)))
        t, p = t[keep], p[keep]
    n = t.size
    if n == 0:
        return 0.0, 1.0, 1.0
    _, ti = np.unique(t, return_inverse=True)
    _, pi = np.unique(p, return_inverse=True)
    ti, pi = ti.ravel().astype(np.int64), pi.ravel().astype(np.int64)
    n_p = int(pi.max()) + 1
    joint_index = ti * n_p + pi
    if (int(ti.max()) + 1) * n_p <= 4 * n:  # dense table is small: bincount beats sorting
        n_ij = np.bincount(joint_index)
    else:
        n_ij = np.unique(joint_index, return_counts=True)[1]
    s_i, t_j = np.bincount(ti), np.bincount(pi)
    # int64 sums are exact (pixel counts squared stay far below 2**63).
    pairs_both = int(n_ij @ n_ij) - n
    pairs_pred = int(t_j @ t_j) - n
    pairs_truth = int(s_i @ s_i) - n
    precision = pairs_both / pairs_pred if pairs_pred else 1.0
    recall = pairs_both / pairs_truth if pairs_truth else 1.0
    denom = pairs_pred + pairs_truth
    error = 1.0 - 2.0 * pairs_both / denom if denom else 0.0
    return float(error), float(precision), float(recall)


def adapted_rand_error(pred_labels: ArrayLike, truth_labels: ArrayLike, ignore_labels: Sequence[int] = (0,)) -> float:
    """Adapted Rand error only; see :func:`adapted_rand` for the definition. In [0, 1]."""
    return adapted_rand(pred_labels, truth_labels, ignore_labels)[0]


def connected_components(mask: ArrayLike, connectivity: int = 4) -> NDArray[np.int32]:
    """Instance labels of a mask's connected components.

    Args:
        mask: ``bool|int[H, W]``, nonzero = foreground.
        connectivity: 4 (default, matches the warping error's foreground) or 8.

    Returns:
        ``int32[H, W]``: 0 on background, 1..K on the K components (OpenCV order).
    """
    m = _as_mask("mask", mask)
    _check_connectivity(connectivity)
    _, labels = cv2.connectedComponents(m.astype(np.uint8), connectivity=connectivity, ltype=cv2.CV_32S)
    return np.asarray(labels, dtype=np.int32)  # already int32 (CV_32S): no copy


# --------------------------------------------------------------------------- simple points

# Bit k of a 3x3 code is the pixel at (dy, dx) = divmod(k, 3) - 1 (row-major, centre = bit 4).
_RING = [(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)]
_N4 = ((-1, 0), (1, 0), (0, -1), (0, 1))
_N8 = _N4 + ((-1, -1), (-1, 1), (1, -1), (1, 1))


def _count_components(
    cells: set[tuple[int, int]], steps: tuple[tuple[int, int], ...], must_touch_centre_4: bool
) -> int:
    """Components of ``cells`` (inside the 3x3 ring) under ``steps`` adjacency.

    With ``must_touch_centre_4`` only components containing a 4-neighbour of the
    centre are counted (Bertrand & Malandain's geodesic neighbourhood for the
    4-connected side).
    """
    seen: set[tuple[int, int]] = set()
    count = 0
    for start in cells:
        if start in seen:
            continue
        stack, comp = [start], []
        seen.add(start)
        while stack:
            r, c = stack.pop()
            comp.append((r, c))
            for dr, dc in steps:
                q = (r + dr, c + dc)
                if q in cells and q not in seen:
                    seen.add(q)
                    stack.append(q)
        if not must_touch_centre_4 or any(abs(r - 1) + abs(c - 1) == 1 for r, c in comp):
            count += 1
    return count


def _build_simple_lut(fg_connectivity: int) -> NDArray[np.bool_]:
    """``bool[512]``: is the centre of this 3x3 code a simple point?

    A pixel is simple (flipping it changes no topology: number of foreground
    components, of background components, and their adjacency) iff it has
    exactly one foreground topological number and one background topological
    number (Bertrand & Malandain 1994): for the 8-connected side, the number of
    8-components of that side in the 8-neighbourhood; for the 4-connected side,
    the number of 4-components of it in the 8-neighbourhood that contain a
    4-neighbour of the centre. The centre's own value does not matter, so the
    same table serves adding and removing a pixel.
    """
    fg_steps, bg_steps = (_N4, _N8) if fg_connectivity == 4 else (_N8, _N4)
    lut = np.zeros(512, dtype=bool)
    for code in range(512):
        fg = {(r, c) for r, c in _RING if code >> (3 * r + c) & 1}
        bg = set(_RING) - fg
        t_fg = _count_components(fg, fg_steps, must_touch_centre_4=fg_connectivity == 4)
        t_bg = _count_components(bg, bg_steps, must_touch_centre_4=fg_connectivity == 8)
        lut[code] = t_fg == 1 and t_bg == 1
    lut.setflags(write=False)
    return lut


_SIMPLE_LUTS: dict[int, NDArray[np.bool_]] = {}


def is_simple_lut(connectivity: int = 4) -> NDArray[np.bool_]:
    """The 512-entry simple-point table for foreground ``connectivity`` (4 or 8), built once.

    Index: ``sum(mask[r + dy, c + dx] << ((dy + 1) * 3 + dx + 1))`` over the 3x3
    window of pixel (r, c); the value is True iff flipping (r, c) preserves topology.
    """
    _check_connectivity(connectivity)
    if connectivity not in _SIMPLE_LUTS:
        _SIMPLE_LUTS[connectivity] = _build_simple_lut(connectivity)
    return _SIMPLE_LUTS[connectivity]


# --------------------------------------------------------------------------- warping error


def warping_error(
    pred: ArrayLike, truth: ArrayLike, *, priority: ArrayLike | None = None, connectivity: int = 4
) -> tuple[float, NDArray[np.bool_]]:
    """ISBI 2012 warping error (Jain et al. 2010): pixel error after a topology-preserving warp.

    The true mask L* is warped towards the prediction L by flipping only
    *simple* pixels (whose flip changes no topology; see :func:`is_simple_lut`)
    where L* and L disagree, until no disagreeing simple pixel is left. The
    error is the fraction of pixels where the warped L* still differs from L:
    boundary shifts cost nothing, topological mistakes (splits, merges, holes,
    missing or extra objects) cost the pixels that could not be flipped — a
    split at least one pixel, a merge the whole separating line.

    Order (the warp's end state depends on it, as in the original): the ISBI
    Fiji script visits the disagreeing pixels one at a time, most confident
    prediction first (largest ``|prob - threshold|``), and sweeps until nothing
    changes. Here ``priority`` (e.g. ``|prob - threshold|``) is quantized to 64
    levels over its range, and each round flips, all at once, the simple
    disagreeing pixels of the highest level present that win a 3x3 tie-break
    on their 2x2 sub-lattice colour ``(r % 2, c % 2)`` (a colour differs between
    any two neighbours). Two pixels flipped in one round are therefore never
    neighbours, neither changes the other's 3x3 window, and the round equals a
    sequence of simple flips: topology is preserved. After each round only the
    windows that changed are re-tested. Without ``priority`` all pixels share
    one level and the order is the sub-lattice tie-break alone. Like the
    original, this stops when no disagreeing pixel is simple, and it is
    deterministic; it may reach a different (equally valid) warp than Fiji's
    exact per-pixel sort when several exist.

    Args:
        pred: ``bool|int[H, W]`` predicted mask L (nonzero = foreground).
        truth: ``bool|int[H, W]`` true mask L*, same shape.
        priority: optional ``float[H, W]``, larger = flip earlier (``|prob - threshold|``).
        connectivity: foreground connectivity, 4 (default; background 8) or 8 (background 4).

    Returns:
        ``(error, warped)``: error in [0, 1] (mismatched pixels / H*W) and the
        warped truth ``bool[H, W]`` (same topology as ``truth``).
    """
    p, t = _as_mask("pred", pred), _as_mask("truth", truth)
    _same_shape(p, t)
    lut = is_simple_lut(connectivity)
    h, w = t.shape
    wp = w + 2
    # Pad with background: pixels outside are fixed, so every border flip is
    # judged with the image lying in an infinite background plane.
    cur = np.zeros((h + 2, wp), np.uint8)
    cur[1:-1, 1:-1] = t
    cur = cur.ravel()
    target = np.zeros((h + 2, wp), np.uint8)
    target[1:-1, 1:-1] = p
    target = target.ravel()

    rows, cols = np.divmod(np.arange(cur.size, dtype=np.int64), wp)
    tie_all = (3 - 2 * (rows % 2) - (cols % 2)).astype(np.int8)  # 0..3, differs between neighbours
    level_all = np.zeros(cur.size, np.int32)
    if priority is not None:
        pr = _as_2d("priority", priority).astype(np.float64, copy=False)
        _same_shape(pr, t, "priority and truth")
        if not np.all(np.isfinite(pr)):
            raise InputError("priority contains NaN or inf", "pass finite values, e.g. abs(prob - threshold)")
        lo, hi = float(pr.min()), float(pr.max())
        if hi > lo:
            span = hi - lo
            if np.isfinite(span):  # hi > lo gives span > 0 (IEEE gradual underflow)
                ratio = (pr - lo) / span
            else:  # the range overflows float64: halve everything first
                ratio = (pr * 0.5 - lo * 0.5) / (hi * 0.5 - lo * 0.5)
            level = np.floor(ratio * _PRIORITY_LEVELS).clip(0, _PRIORITY_LEVELS - 1)
            level_all.reshape(h + 2, wp)[1:-1, 1:-1] = level

    offsets = np.array([(dy * wp + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], dtype=np.int64)
    ring = offsets[offsets != 0]

    def simple_at(idx: np.ndarray) -> np.ndarray:
        code = np.zeros(idx.size, np.intp)
        for bit, off in enumerate(offsets):
            code |= cur[idx + off].astype(np.intp) << bit
        return lut[code]

    disagree = cur != target  # never true on the padding (both 0 there)
    in_simple = np.zeros(cur.size, bool)  # simple disagreeing pixels, kept up to date
    owner = np.zeros(cur.size, np.int64)  # scratch for deduplicating index arrays
    tie_img = np.full(cur.size, -1, np.int8)  # tie key of this round's contenders, -1 elsewhere

    def unique(idx: np.ndarray) -> np.ndarray:
        """Drop repeated pixels without sorting (one slot wins per pixel)."""
        slot = np.arange(idx.size)
        owner[idx] = slot
        return idx[owner[idx] == slot]

    # One bucket of simple pixels per priority level; entries go stale when a pixel stops
    # being simple and are dropped when their bucket is next visited.
    n_levels = int(level_all.max()) + 1
    buckets: list[np.ndarray] = [np.empty(0, np.int64)] * n_levels

    def add(idx: np.ndarray) -> int:
        """Put newly simple pixels in their buckets; return the highest level touched."""
        lv = level_all[idx]
        for v in np.unique(lv) if n_levels > 1 else (0,):
            buckets[v] = np.concatenate([buckets[v], idx[lv == v] if n_levels > 1 else idx])
        return int(lv.max())

    cand = np.flatnonzero(disagree)
    simple = cand[simple_at(cand)]
    in_simple[simple] = True
    top = add(simple) if simple.size else -1
    while top >= 0:
        # Contenders: the simple disagreeing pixels at the highest priority level present.
        idx = buckets[top]
        idx = unique(idx[in_simple[idx]])
        buckets[top] = idx
        if idx.size == 0:
            top -= 1
            continue
        tie = tie_all[idx]
        tie_img[idx] = tie
        wins = np.ones(idx.size, bool)
        for off in ring:
            wins &= tie_img[idx + off] < tie
        tie_img[idx] = -1
        flip = idx[wins]  # never empty: some contender has the top tie key
        cur[flip] ^= 1
        disagree[flip] = False
        # Only pixels whose 3x3 window changed can change status.
        touched = unique((flip[:, None] + offsets).ravel())
        was = in_simple[touched]
        now = disagree[touched]
        now[now] = simple_at(touched[now])
        in_simple[touched] = now
        new = touched[now & ~was]
        if new.size:
            top = max(top, add(new))

    warped = cur.reshape(h + 2, wp)[1:-1, 1:-1].astype(bool)
    return float(np.count_nonzero(warped != p)) / p.size, warped


# --------------------------------------------------------------------------- threshold sweep


def threshold_sweep(
    prob: ArrayLike,
    truth: ArrayLike,
    thresholds: Sequence[float] | NDArray[np.floating] = DEFAULT_THRESHOLDS,
    *,
    connectivity: int = 4,
) -> dict[str, Any]:
    """All metrics of a foreground probability map at several thresholds, and the best of each.

    The prediction at threshold ``th`` is ``prob > th``. We score *cell
    foreground* masks (ISBI 2012 scored membrane/boundary maps); per threshold:

    * ``pixel_error``: :func:`pixel_error` of the mask vs the true foreground.
    * ``iou``: foreground :func:`iou`.
    * ``rand_error``: :func:`adapted_rand_error` of the mask's connected
      components (``connectivity``) vs the true instance labels, true
      background ignored.
    * ``warping_error``: :func:`warping_error` of the mask vs the true foreground
      (true instances that touch without a background gap are one region there),
      flips ordered by ``|prob - th|``.

    ``best`` holds the minimum of each error and the maximum IoU over thresholds
    (the ISBI evaluation reported the best over its thresholds), each with the
    threshold that reached it (the first one on ties).

    Args:
        prob: ``float[H, W]`` foreground probability in [0, 1].
        truth: ``int[H, W]`` true instance labels (0 = background), or a
            ``bool[H, W]`` mask whose connected components become the instances.
        thresholds: values in [0, 1]; default 10 evenly spaced from 0.05 to 0.95.
        connectivity: foreground connectivity for components and warping (4 or 8).

    Returns:
        JSON-serializable dict: ``thresholds``, ``pixel_error``, ``iou``,
        ``rand_error``, ``warping_error`` (lists of floats, one per threshold) and
        ``best``: ``{metric: {"value": float, "threshold": float}}``.
    """
    pr = _as_2d("prob", prob)
    if not np.issubdtype(pr.dtype, np.floating):
        raise InputError(
            f"prob has dtype {pr.dtype}; expected float probabilities in [0, 1]",
            "pass the predictor's foreground probability map (float32)",
        )
    if not np.all(np.isfinite(pr)):
        raise InputError("prob contains NaN or inf", "check the model output; probabilities must be finite")
    tr = _as_2d("truth", truth)
    _same_shape(pr, tr, "prob and truth")
    _check_connectivity(connectivity)
    truth_labels = connected_components(tr, connectivity) if tr.dtype == np.bool_ else _as_labels("truth", tr)
    truth_mask = truth_labels != 0
    ths = np.asarray(thresholds, dtype=np.float64).ravel()
    if ths.size == 0 or not np.all((ths >= 0) & (ths <= 1)):
        raise InputError(
            f"thresholds must be a non-empty list of values in [0, 1], got {thresholds!r}",
            "use e.g. numpy.linspace(0.05, 0.95, 10)",
        )

    out: dict[str, Any] = {
        "thresholds": [float(x) for x in ths],
        "pixel_error": [],
        "iou": [],
        "rand_error": [],
        "warping_error": [],
    }
    for th in ths:
        mask = pr > th
        out["pixel_error"].append(pixel_error(mask, truth_mask))
        out["iou"].append(iou(mask, truth_mask))
        out["rand_error"].append(adapted_rand_error(connected_components(mask, connectivity), truth_labels))
        out["warping_error"].append(
            warping_error(mask, truth_mask, priority=np.abs(pr - th), connectivity=connectivity)[0]
        )
    best: dict[str, dict[str, float]] = {}
    for name in ("pixel_error", "rand_error", "warping_error", "iou"):
        values = np.asarray(out[name])
        i = int(np.argmax(values) if name == "iou" else np.argmin(values))
        best[name] = {"value": float(values[i]), "threshold": float(ths[i])}
    out["best"] = best
    return out
