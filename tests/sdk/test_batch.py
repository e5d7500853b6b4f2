"""segrt.batch on a local Ray: results equal local predict/eval byte for byte; killed workers, interrupted
drivers and bad images leave a complete, exactly-once manifest. One Ray instance (2 CPUs) for the module."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segrt.io.images import write_png

ray = pytest.importorskip("ray", reason="segrt.batch needs Ray Data: pip install 'segrt[ray]'")

from segrt import load  # noqa: E402
from segrt.batch import (  # noqa: E402
    coco_items,
    list_images,
    records,
    run_batch,
)
from segrt.batch.worker import CrashOnce  # noqa: E402
from segrt.cli import main  # noqa: E402
from segrt.predictor import predict_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
N_IMAGES = 24


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray for the whole module: 2 CPUs, as on the CI machine (runs reuse the connection)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """N_IMAGES grey uint16 images of different sizes in two sub-folders (keys like ``a/im3``)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    for i in range(N_IMAGES):
        h, w = 40 + 3 * i, 90 - 2 * i
        image = rng.integers(0, 600, (h, w)).astype(np.uint16)
        image[h // 4 : h // 2, w // 4 : w // 2] += 3000  # a bright object, so instances are found
        write_png(root / ("a" if i % 2 else "b") / f"im{i}.png", image)
    return root


def unet_reference(model: Path, images: Path, out: Path) -> Path:
    """What local `segrt predict` writes for every image under ``images`` (mirroring sub-folders)."""
    predictor = load(model, threads=1)
    for path in sorted(images.rglob("*.png")):
        key = path.relative_to(images).with_suffix("")
        predict_file(predictor, path, out / key.parent, key.name)
    return out


@pytest.fixture(scope="module")
def reference(tiny_unet: tuple[Any, Path], image_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unet_reference(tiny_unet[1], image_tree, tmp_path_factory.mktemp("reference"))


def result_files(out: Path) -> dict[str, bytes]:
    """Result files under ``out`` (not the batch state, manifest or merged results), by relative path."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and records.STATE_DIR not in p.parts and p.name not in (records.MANIFEST, records.MERGED_RESULTS)
    }


def assert_exactly_once(out: Path, n: int) -> list[dict[str, Any]]:
    """The manifest lists n distinct images, all ok, no temporary file is left, each has its record."""
    rows = records.read_manifest(out)
    assert len(rows) == n and len({r["image"] for r in rows}) == n
    assert all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]
    assert not [p for p in out.rglob("*.partial")]
    assert all(records.read_record(out, r["image"])["status"] == "ok" for r in rows)
    return rows


def test_cli_predict_on_ray_equals_local_byte_for_byte(
    tiny_unet: tuple[Any, Path], image_tree: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    # default sizing: 2 actors of 0.75 CPU on 2 CPUs (two 1-CPU actors would starve Ray Data's own task)
    code = main(["predict", str(tiny_unet[1]), f"{image_tree}/**/*.png", "--out", str(out), "--ray", "--actors", "2"])
    assert code == 0
    produced, expected = result_files(out), result_files(reference)
    assert produced.keys() == expected.keys() and len(expected) == 3 * N_IMAGES
    assert all(produced[k] == expected[k] for k in expected), [k for k in expected if produced[k] != expected[k]]
    rows = assert_exactly_once(out, N_IMAGES)
    assert all(r["objects"] >= 1 and 0 < r["model_ms"] <= r["total_ms"] for r in rows)


def test_killed_worker_leaves_no_torn_missing_or_duplicate_result(
    tiny_unet: tuple[Any, Path], image_tree: Path, reference: Path, tmp_path: Path
) -> None:
    out, marker = tmp_path / "out", tmp_path / "crashed"
    summary = run_batch(
        tiny_unet[1],
        list_images([f"{image_tree}/**/*.png"]),
        out,
        actors=2,
        cpus_per_actor=0.5,
        crash_once=CrashOnce(str(marker), after=3),
        progress=False,
    )
    assert marker.exists()  # an actor process really died mid-commit, and Ray restarted it and retried its task
    assert summary.processed == N_IMAGES and summary.errors == 0
    assert_exactly_once(out, N_IMAGES)
    assert result_files(out) == result_files(reference)


def test_interrupted_driver_rerun_completes_only_the_missing_images(
    tiny_unet: tuple[Any, Path], image_tree: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    items = list_images([f"{image_tree}/**/*.png"])

    def sigint_after_first_batch(finished: int) -> None:
        signal.raise_signal(signal.SIGINT)  # what Ctrl-C does to the driver

    with pytest.raises(KeyboardInterrupt):
        run_batch(
            tiny_unet[1],
            items,
            out,
            actors=1,
            cpus_per_actor=1,
            batch_size=2,
            on_batch=sigint_after_first_batch,
            progress=False,
        )
    before = {i.key: records.read_record(out, i.key) for i in items}
    done = {k for k, r in before.items() if r is not None and r["status"] == "ok"}
    assert 0 < len(done) < N_IMAGES
    summary = run_batch(tiny_unet[1], items, out, actors=1, cpus_per_actor=1, progress=False)
    # (a task in flight at the interrupt may still have committed its image: skipped >= len(done))
    assert summary.skipped >= len(done) and summary.processed == N_IMAGES - summary.skipped > 0
    assert all(records.read_record(out, k) == before[k] for k in done)  # finished images were not redone
    assert_exactly_once(out, N_IMAGES)
    assert result_files(out) == result_files(reference)


def test_bad_images_are_recorded_and_the_rest_succeed(
    tiny_unet: tuple[Any, Path], image_tree: Path, tmp_path: Path
) -> None:
    images = tmp_path / "mixed"
    for p in sorted((image_tree / "a").glob("*.png"))[:4]:
        (images / p.name).parent.mkdir(parents=True, exist_ok=True)
        (images / p.name).write_bytes(p.read_bytes())
    (images / "corrupt.png").write_bytes((image_tree / "a" / "im1.png").read_bytes()[:60])  # truncated PNG
    write_png(images / "huge.png", np.zeros((200, 300), np.uint8))  # 60000 pixels > max_pixels below
    write_png(images / "rgb.png", np.zeros((50, 60, 3), np.uint8))  # 3 channels for a 1-channel model
    out = tmp_path / "out"
    summary = run_batch(
        tiny_unet[1], list_images([images]), out, actors=1, cpus_per_actor=1, max_pixels=50_000, progress=False
    )
    rows = {r["image"]: r for r in records.read_manifest(out)}
    assert summary.images == len(rows) == 7 and summary.errors == 3 and summary.ok == 4
    assert rows["corrupt"]["error"].startswith("InputError: corrupt.png is not a readable image")
    assert rows["huge"]["error"].startswith("InputError: image of 200 x 300")
    assert "--max-pixels" in rows["huge"]["error"]
    assert rows["rgb"]["error"].startswith("InputError: image has 3 channel(s) but the model takes 1")
    assert not list(out.glob("huge_*")) and not list(out.glob("corrupt_*"))
    # a rerun retries only the failed images (a fixed file would now succeed)
    again = run_batch(
        tiny_unet[1], list_images([images]), out, actors=1, cpus_per_actor=1, max_pixels=50_000, progress=False
    )
    assert again.skipped == 4 and again.processed == 3 and again.errors == 3


def test_actor_sizing_follows_the_cluster() -> None:
    from segrt.batch.run import actor_resources
    from segrt.errors import InputError

    assert actor_resources(ray, 1, None, 0.0) == (1.5, 0.0) and actor_resources(ray, 2, None, 0.0) == (0.75, 0.0)
    with pytest.raises(InputError, match="more than the cluster's 2 CPUs"):
        actor_resources(ray, 3, 1.0, 0.0)
    with pytest.raises(InputError, match="the Ray cluster has 0 GPUs"):
        actor_resources(ray, 1, None, 1.0)


def test_rerun_with_another_model_is_refused(
    tiny_unet: tuple[Any, Path], tiny_maskrcnn: Path, image_tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    items = list_images([f"{image_tree}/a/im1.png"])
    run_batch(tiny_unet[1], items, out, actors=1, cpus_per_actor=1, progress=False)
    from segrt.errors import InputError

    with pytest.raises(InputError, match="another batch job"):
        run_batch(tiny_maskrcnn, items, out, actors=1, cpus_per_actor=1, progress=False)


def test_cli_eval_unet_on_ray_gives_the_local_report(
    tiny_unet: tuple[Any, Path], tiny_split: Path, tmp_path: Path
) -> None:
    local = load(tiny_unet[1]).evaluate(tiny_split)
    code = main(
        [
            "eval",
            str(tiny_unet[1]),
            str(tiny_split),
            "--out",
            str(tmp_path / "out"),
            "--ray",
            "--json",
            str(tmp_path / "report.json"),
        ]
    )
    assert code == 0
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(local))


@pytest.fixture(scope="module")
def coco_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-image COCO instances file (two square objects each), with its image folder beside it."""
    root = tmp_path_factory.mktemp("coco")
    rng = np.random.default_rng(5)
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for i in range(6):
        image = rng.integers(0, 255, (90 + 4 * i, 120, 3), dtype=np.uint8)
        write_png(root / "val" / f"cells{i}.png", image)
        images.append({"id": 10 + i, "file_name": f"cells{i}.png", "height": image.shape[0], "width": 120})
        anns += [
            {
                "id": len(anns) + k + 1,
                "image_id": 10 + i,
                "category_id": 1,
                "bbox": [x, 10, 30, 30],
                "area": 900,
                "iscrowd": 0,
                "segmentation": [[x, 10, x + 30, 10, x + 30, 40, x, 40]],
            }
            for k, x in enumerate((10, 60))
        ]
    (root / "val.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "nucleus"}]})
    )
    return root / "val.json"


def test_maskrcnn_predict_and_eval_on_ray_equal_local(tiny_maskrcnn: Path, coco_set: Path, tmp_path: Path) -> None:
    pytest.importorskip("pycocotools", reason="needs pycocotools (pip install -e '.[eval]')")
    predictor = load(tiny_maskrcnn, threads=1)
    reference = tmp_path / "reference"
    for item in coco_items(coco_set):
        predict_file(predictor, item.path, reference, item.key)
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(tiny_maskrcnn),
                str(coco_set),
                "--out",
                str(out),
                "--ray",
                "--actors",
                "2",
                "--cpus-per-actor",
                "0.5",
            ]
        )
        == 0
    )
    assert result_files(out) == result_files(reference)
    merged = json.loads((out / records.MERGED_RESULTS).read_text())
    per_image = [
        {**r, "image_id": 10 + i, "image": f"cells{i}"}
        for i in range(6)
        for r in json.loads((reference / f"cells{i}.json").read_text())["instances"]
    ]
    assert merged == per_image
    local = predictor.evaluate(coco_set)
    assert (
        main(
            [
                "eval",
                str(tiny_maskrcnn),
                str(coco_set),
                "--out",
                str(tmp_path / "eval"),
                "--ray",
                "--json",
                str(tmp_path / "report.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(local))


def test_without_the_extra_ray_is_named_and_the_local_path_unchanged(
    tiny_unet: tuple[Any, Path], image_tree: Path, tmp_path: Path
) -> None:
    """With ray not importable: `--ray` names the extra; plain predict works and never imports ray."""
    blocked = (
        "import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'ray': raise ImportError('ray is blocked')\n"
        "sys.meta_path.insert(0, Block())\nfrom segrt.cli import main\ncode = main(sys.argv[1:])\n"
        "assert 'ray' not in sys.modules\nsys.exit(code)\n"
    )
    image = str(image_tree / "a" / "im1.png")
    run = [sys.executable, "-c", blocked, "predict", str(tiny_unet[1]), image, "--out", str(tmp_path)]
    out = subprocess.run(run + ["--ray"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "pip install 'segrt[ray]'" in out.stderr, out.stderr
    out = subprocess.run(run, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and (tmp_path / "im1_classes.png").is_file(), out.stderr
