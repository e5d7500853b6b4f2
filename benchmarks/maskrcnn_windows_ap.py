"""Mask R-CNN: COCO AP through sliding windows smaller than the image vs the whole image, held-out half.

    segrt data dsb2018 data/dsb2018 --coco
    segrt train maskrcnn ...   (or the demo recipe: export/maskrcnn_demo.py)
    python benchmarks/maskrcnn_windows_ap.py --checkpoint runs/maskrcnn.pt --workdir runs

The held-out image (512 x 256) fits a 512 x 256 graph whole; the windows are 256 x 256 and
192 x 192 graphs of the same weights (overlap 64). Two export settings:

* ``demo``: the checkpoint's own per-image budgets (300 RPN proposals, 100 detections).
  Each window gets its own budget, so windows see more proposals per pixel than the whole image;
* ``uncapped``: no proposal cap and 1000 detections, for graphs of every size, so that the
  comparison measures the windowing alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = [(512, 256), (256, 256), (192, 192)]


def export_graphs(checkpoint: Path, workdir: Path) -> dict[str, dict[tuple[int, int], Path]]:
    from segrt.export.api import export_maskrcnn
    from segrt.export.checkpoint import load_checkpoint

    graphs: dict[str, dict[tuple[int, int], Path]] = {"demo": {}, "uncapped": {}}
    for setting in graphs:
        ckpt = load_checkpoint(checkpoint)
        if setting == "uncapped":
            ckpt["config"].update(rpn_pre_nms_top_n_test=50000, rpn_post_nms_top_n_test=50000)
        for hw in SIZES:
            path = workdir / f"maskrcnn_{hw[0]}x{hw[1]}_{setting}.onnx"
            if not path.exists():
                export_maskrcnn(ckpt, path, input_hw=hw, max_detections=1000 if setting == "uncapped" else None)
            graphs[setting][hw] = path
    return graphs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=Path("runs/maskrcnn.pt"))
    p.add_argument("--coco", type=Path, default=Path("data/dsb2018/coco"))
    p.add_argument("--workdir", type=Path, default=Path("runs"))
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--out", type=Path, default=Path("runs/maskrcnn_windows_ap.json"))
    args = p.parse_args()
    import segrt
    from segrt.io.files import atomic_path
    from segrt.rcnn.coco import evaluate

    report = {}
    for setting, paths in export_graphs(args.checkpoint, args.workdir).items():
        rows = {}
        for hw, path in paths.items():
            predictor = segrt.load(path, threads=2)
            whole = hw == SIZES[0]
            run = predictor.predict
            predictor.predict = lambda img, run=run, whole=whole: run(
                img, tiles=not whole, overlap=args.overlap, progress=False
            )
            m = evaluate(predictor, args.coco / "val.json", args.coco / "val")
            rows["whole image" if whole else f"windows {hw[0]}x{hw[1]}"] = {
                k: round(m[k], 4) for k in ("bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50")
            }
        base = rows["whole image"]
        for name, r in rows.items():
            r["segm_AP_minus_whole"] = round(r["segm_AP"] - base["segm_AP"], 4)
            r["bbox_AP_minus_whole"] = round(r["bbox_AP"] - base["bbox_AP"], 4)
            print(
                f"{setting:9s} {name:16s} "
                + "  ".join(f"{k} {v:+.4f}" if "minus" in k else f"{k} {v:.4f}" for k, v in r.items()),
                flush=True,
            )
        report[setting] = rows
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
