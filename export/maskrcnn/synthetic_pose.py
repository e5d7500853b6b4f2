"""Synthetic person-keypoint data (COCO format) for training and evaluating Keypoint R-CNN offline.

No real person-keypoint dataset is reachable without a network, so this draws
one, deterministically from a seed. Each image holds 1-4 articulated figures on
the COCO 17-keypoint skeleton, over a textured background:

* a figure is a front-facing body (the person's left on the image's right when
  upright) with random limb angles, size, lean and rotation (within +-25 deg):
  legs and arms as thick lines, torso as a filled quadrilateral, a round head
  with eyes, nose and ears. Keypoints are the joint centres, the facial points
  and the ears;
* a stick figure has no other cue for handedness, so left limbs are drawn in a
  darker shade of the figure's colour and right limbs in a lighter one (a
  figure lit from its right). The cue is not mirror-symmetric: train on this
  data without flips (``--flips none``);
* figures overlap (the later one in front); a keypoint covered by a figure in
  front is labelled visibility 1 (occluded), an uncovered one 2 (visible), and
  one outside the image 0 with x = y = 0, as COCO does;
* the segmentation is the figure's visible silhouette (COCO polygons), the box
  its bounding box, ``area`` its pixel count: the same files train Mask R-CNN.

Layout written under ``root``::

    train/<id>.png  train.json     COCO person keypoints (category "person" with
    val/<id>.png    val.json       "keypoints" names and the COCO "skeleton")

Image i of a split depends only on (seed, split, i): the split is fixed and a
larger dataset extends a smaller one.
"""

from __future__ import annotations

import argparse
import json
import math
from itertools import pairwise
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segrt.errors import InputError
from segrt.export.maskrcnn.coco import _polygons
from segrt.io.files import atomic_path
from segrt.io.images import write_png
from segrt.rcnn.keypoints import COCO_KEYPOINT_NAMES, COCO_SKELETON

K = len(COCO_KEYPOINT_NAMES)
KP = {name: i for i, name in enumerate(COCO_KEYPOINT_NAMES)}
_SPLITS = {"train": 0, "val": 1}
_SHIFT = 4  # OpenCV sub-pixel drawing: coordinates in 1/16 px


def _rot(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _limb(start: np.ndarray, angle: float, length: float, side: float) -> np.ndarray:
    """End point of a limb hanging from ``start``: ``angle`` from straight down, outward positive."""
    return start + length * np.array([side * math.sin(angle), math.cos(angle)])


def random_pose(rng: np.random.Generator) -> np.ndarray:
    """Keypoints float [17, 2] of one figure in body units (height ~1), hip centre at 0, y down, left at +x."""
    p = np.zeros((K, 2))
    lean = _rot(math.radians(rng.uniform(-10, 10)))
    shoulder_c = lean @ np.array([0.0, -0.30])
    head_c = shoulder_c + lean @ np.array([0.0, -0.13])
    turn = rng.uniform(-0.015, 0.015)
    for side, name in ((1.0, "left"), (-1.0, "right")):
        p[KP[f"{name}_hip"]] = (side * 0.085, 0.0)
        p[KP[f"{name}_shoulder"]] = shoulder_c + lean @ np.array([side * 0.12, 0.0])
        p[KP[f"{name}_eye"]] = head_c + lean @ np.array([side * 0.03 + turn, -0.012])
        p[KP[f"{name}_ear"]] = head_c + lean @ np.array([side * 0.072, 0.004])
        upper = math.radians(rng.uniform(-15, 165))
        elbow = _limb(p[KP[f"{name}_shoulder"]], upper, 0.17, side)
        p[KP[f"{name}_elbow"]] = elbow
        p[KP[f"{name}_wrist"]] = _limb(elbow, upper + math.radians(rng.uniform(-30, 140)), 0.15, side)
        thigh = math.radians(rng.uniform(-12, 50))
        knee = _limb(p[KP[f"{name}_hip"]], thigh, 0.23, side)
        p[KP[f"{name}_knee"]] = knee
        p[KP[f"{name}_ankle"]] = _limb(knee, thigh + math.radians(rng.uniform(-60, 20)), 0.22, side)
    p[KP["nose"]] = head_c + lean @ np.array([turn, 0.018])
    return p


def _px(points: np.ndarray) -> list[tuple[int, int]]:
    """Continuous coordinates (pixel i spans [i, i+1)) -> OpenCV fixed-point pixel centres."""
    return [(int(round((x - 0.5) * 16)), int(round((y - 0.5) * 16))) for x, y in points]


def _shade(colour: np.ndarray, f: float) -> tuple[int, ...]:
    """f < 1 darkens, f > 1 blends towards white by f - 1."""
    c = colour * f if f <= 1 else colour + (255 - colour) * (f - 1)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def draw_figure(
    image: np.ndarray | None,
    mask: np.ndarray | None,
    kp: np.ndarray,
    height: float,
    colour: np.ndarray,
    skin: np.ndarray,
) -> None:
    """Draw one figure with keypoints ``kp`` [17, 2] (image pixels) onto ``image`` (RGB) and/or ``mask`` (0/1)."""
    pts = _px(kp)
    limb_w = max(int(round(0.07 * height)), 2)
    leg_w = max(int(round(0.085 * height)), 2)
    head_r = 0.075 * height
    shoulder_c = (kp[KP["left_shoulder"]] + kp[KP["right_shoulder"]]) / 2
    head_c = (kp[KP["left_ear"]] + kp[KP["right_ear"]]) / 2
    chains = [
        (("left_hip", "left_knee", "left_ankle"), leg_w, 0.55),
        (("right_hip", "right_knee", "right_ankle"), leg_w, 1.35),
        (("left_shoulder", "left_elbow", "left_wrist"), limb_w, 0.55),
        (("right_shoulder", "right_elbow", "right_wrist"), limb_w, 1.35),
    ]
    torso = np.array([pts[KP[n]] for n in ("left_shoulder", "right_shoulder", "right_hip", "left_hip")], np.int32)
    for target, aa in ((image, cv2.LINE_AA), (mask, cv2.LINE_8)):
        if target is None:
            continue
        paint = (lambda c: c) if target is image else (lambda c: 1)
        cv2.line(target, _px([shoulder_c])[0], _px([head_c])[0], paint(_shade(skin, 0.8)), limb_w, aa, _SHIFT)
        for names, width, shade in chains:
            for a, b in pairwise(names):
                cv2.line(target, pts[KP[a]], pts[KP[b]], paint(_shade(colour, shade)), width, aa, _SHIFT)
        cv2.fillPoly(target, [torso], paint(_shade(colour, 1.0)), aa, _SHIFT)
        cv2.polylines(target, [torso], True, paint(_shade(colour, 1.0)), limb_w, aa, _SHIFT)
        for ear in ("left_ear", "right_ear"):
            cv2.circle(target, pts[KP[ear]], int(0.022 * height * 16), paint(_shade(skin, 0.75)), -1, aa, _SHIFT)
        cv2.circle(target, _px([head_c])[0], int(head_r * 16), paint(_shade(skin, 1.0)), -1, aa, _SHIFT)
        if target is image:
            for eye in ("left_eye", "right_eye"):
                cv2.circle(target, pts[KP[eye]], max(int(0.014 * height * 16), 16), (20, 20, 30), -1, aa, _SHIFT)
            cv2.circle(target, pts[KP["nose"]], max(int(0.012 * height * 16), 12), _shade(skin, 0.5), -1, aa, _SHIFT)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """uint8 [size, size, 3] textured background: smooth colour noise at three scales plus faint clutter."""
    img = np.zeros((size, size, 3), np.float32)
    for cells, amp in ((3, 70.0), (12, 30.0), (48, 12.0)):
        noise = rng.normal(size=(cells, cells, 3)).astype(np.float32)
        img += amp * cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    grey = img.mean(axis=2, keepdims=True)
    img = 0.35 * img + 0.65 * grey + rng.uniform(70, 170)  # muted colours, so figures stand out
    for _ in range(int(rng.integers(2, 7))):  # clutter: thin lines and blobs
        c = tuple(float(v) for v in rng.uniform(60, 190, 3))
        p, q = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
        if rng.random() < 0.5:
            cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), c, int(rng.integers(1, 4)), cv2.LINE_AA)
        else:
            cv2.ellipse(
                img,
                (int(p[0]), int(p[1])),
                (int(rng.integers(4, size // 8)), int(rng.integers(4, size // 8))),
                float(rng.uniform(0, 180)),
                0,
                360,
                c,
                -1,
                cv2.LINE_AA,
            )
    return np.clip(img, 0, 255).astype(np.uint8)


def render_image(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One image (uint8 [size, size, 3]) and its COCO annotations (no ids yet), back figures first."""
    n = int(rng.integers(1, 5))
    lo, hi = {1: (0.55, 0.95), 2: (0.45, 0.8), 3: (0.38, 0.7), 4: (0.33, 0.6)}[n]
    figures: list[dict[str, Any]] = []
    for _ in range(n):
        for _attempt in range(25):
            height = rng.uniform(lo, hi) * size
            pose = random_pose(rng) @ _rot(math.radians(rng.uniform(-25, 25))).T
            kp = pose * height + np.array([rng.uniform(0.12, 0.88), rng.uniform(0.45, 0.72)]) * size
            colour = rng.uniform(40, 255, 3)
            colour[int(rng.integers(3))] = rng.uniform(0, 60)  # saturated: one channel low
            skin = rng.uniform([150, 100, 70], [250, 200, 160])
            canvas = np.zeros((size, size), np.uint8)
            draw_figure(None, canvas, kp, height, colour, skin)
            if canvas.sum() < 0.6 * _unclipped_area(kp, height, colour, skin, size):
                continue  # mostly out of frame
            full = canvas.astype(bool)
            # the new figure goes in front: each one behind must keep at least half of itself visible
            if any((f["visible"] & ~full).sum() < 0.5 * f["full"].sum() for f in figures):
                continue
            for f in figures:
                f["visible"] &= ~full
            figures.append(
                {"kp": kp, "height": height, "colour": colour, "skin": skin, "full": full, "visible": full.copy()}
            )
            break
    image = background(rng, size)
    anns = []
    for i, f in enumerate(figures):
        draw_figure(image, None, f["kp"], f["height"], f["colour"], f["skin"])
        in_front = np.zeros((size, size), bool)
        for g in figures[i + 1 :]:
            in_front |= g["full"]
        keypoints: list[float] = []
        for x, y in f["kp"]:
            if 0 <= x < size and 0 <= y < size:
                keypoints += [round(float(x), 2), round(float(y), 2), 1 if in_front[int(y), int(x)] else 2]
            else:
                keypoints += [0.0, 0.0, 0]  # COCO: not labelled
        ys, xs = np.nonzero(f["visible"])
        polys = _polygons(f["visible"].astype(np.uint8))
        if not len(xs) or not polys:
            continue
        anns.append(
            {
                "category_id": 1,
                "iscrowd": 0,
                "area": float(len(xs)),
                "bbox": [
                    float(xs.min()),
                    float(ys.min()),
                    float(xs.max() - xs.min() + 1),
                    float(ys.max() - ys.min() + 1),
                ],
                "segmentation": polys,
                "keypoints": keypoints,
                "num_keypoints": int(sum(v > 0 for v in keypoints[2::3])),
            }
        )
    noise = rng.normal(0, 4, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), anns


def _unclipped_area(kp: np.ndarray, height: float, colour: np.ndarray, skin: np.ndarray, size: int) -> float:
    """Pixel area of the figure on a canvas large enough to hold all of it."""
    pad = int(size)
    big = np.zeros((size + 2 * pad, size + 2 * pad), np.uint8)
    draw_figure(None, big, kp + pad, height, colour, skin)
    return float(big.sum())


def person_category() -> dict[str, Any]:
    """The COCO person-keypoints category (id 1)."""
    return {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(COCO_KEYPOINT_NAMES),
        "skeleton": [list(p) for p in COCO_SKELETON],
    }


def write_pose_dataset(
    root: str | Path, n_train: int = 400, n_val: int = 100, size: int = 256, seed: int = 0
) -> dict[str, Path]:
    """Write the synthetic person-keypoint dataset under ``root`` (layout in the module doc).

    Returns:
        {"train_json", "train_images", "val_json", "val_images"} paths.
    """
    if n_train < 1 or n_val < 1:
        raise InputError(
            f"need at least one image per split (got train {n_train}, val {n_val})", "pass --train and --val >= 1"
        )
    if size < 64 or size % 32:
        raise InputError(f"image size {size} is not a multiple of 32 >= 64", "use e.g. 256")
    root = Path(root)
    out: dict[str, Path] = {}
    for split, count in (("train", n_train), ("val", n_val)):
        images, anns = [], []
        for i in range(count):
            rng = np.random.default_rng([seed, _SPLITS[split], i])
            image, objects = render_image(rng, size)
            name = f"{i:06d}.png"
            write_png(root / split / name, image)
            images.append({"id": i + 1, "file_name": name, "height": size, "width": size})
            for a in objects:
                anns.append({"id": len(anns) + 1, "image_id": i + 1, **a})
        doc = {
            "info": {"description": f"segrt synthetic person keypoints (seed {seed}, {split})"},
            "images": images,
            "annotations": anns,
            "categories": [person_category()],
        }
        with atomic_path(root / f"{split}.json") as tmp:
            tmp.write_text(json.dumps(doc))
        out[f"{split}_json"], out[f"{split}_images"] = root / f"{split}.json", root / split
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``segrt data pose``."""
    parser.add_argument(
        "root", type=Path, nargs="?", default=Path("data/pose"), help="output folder (default: %(default)s)"
    )
    parser.add_argument("--train", type=int, default=400, help="training images (default: %(default)s)")
    parser.add_argument("--val", type=int, default=100, help="held-out images (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)


def data_command(args: argparse.Namespace) -> dict[str, Path]:
    """Run ``segrt data pose``."""
    paths = write_pose_dataset(args.root, args.train, args.val, args.size, args.seed)
    print(
        f"wrote {paths['train_json']} ({args.train} images) and {paths['val_json']} ({args.val} images): "
        f"synthetic figures, COCO person keypoints"
    )
    return paths


def register(cli) -> None:
    """``segrt data pose ROOT``: command provider hook for ``segrt.cli``."""
    parser = cli.add_sub(
        "data",
        "pose",
        data_command,
        help="synthetic person-keypoint data (COCO format)",
        description=__doc__.split("\n\n")[0],
    )
    add_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m segrt.export.maskrcnn.synthetic_pose", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    data_command(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
