"""Embedding throughput: a naive per-image baseline vs the production pipeline.

Usage::

    python benchmarks/embed_throughput.py --images ../shared/datasets/hm/images --limit 2000

Both are measured in one run on the same N images:

(a) naive: per image, PIL open + the backbone's torchvision transforms + the eager
    model at batch size 1;
(b) pipeline: ``recommendations.embedding.embed_images`` end to end (read from
    storage, validate, decode, preprocess, model, upsert into PostgreSQL), on a
    private embedded PostgreSQL.

Prints a table, writes ``docs/benchmarks/embedding.md`` and ends with
``RESULT naive_ips=... pipeline_ips=... ratio=... peak_rss_mb=...``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from _common import DOCS, isolated_django, machine, markdown_table, peak_rss_mb, stop_isolated, write_section

EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def image_files(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise SystemExit(f"no images found under {folder}")
    return files[:limit]


def naive(files: list[Path], backbone_name: str) -> float:
    """Images per second of the obvious loop: one image at a time, eager model."""
    import torch
    from PIL import Image

    from recommendations.ml.backbones import load_backbone

    backbone = load_backbone(backbone_name)
    model = backbone.model.eval()
    with torch.no_grad():
        model(backbone.transform(Image.new("RGB", (224, 224))).unsqueeze(0))  # warm-up
        started = time.perf_counter()
        for path in files:
            with Image.open(path) as im:
                x = backbone.transform(im.convert("RGB")).unsqueeze(0)
            model(x)
    return len(files) / (time.perf_counter() - started)


def _ingest(files: list[Path]) -> list[int]:
    """Create one product + image row per file (an upload; not timed)."""
    from django.conf import settings

    from catalog.models import Product, ProductImage
    from catalog.services import sha256_of
    from recommendations.models import ImageState
    from recommendations.sync import sync_products

    media = Path(settings.MEDIA_ROOT) / "bench"
    media.mkdir(parents=True, exist_ok=True)
    products = Product.objects.bulk_create(
        [Product(sku=f"BENCH-{i:06d}", title=p.stem, stock=1) for i, p in enumerate(files)]
    )
    images = []
    for product, path in zip(products, files, strict=True):
        shutil.copyfile(path, media / path.name)
        images.append(
            ProductImage(
                product=product, file=f"bench/{path.name}", is_primary=True, sha256=sha256_of(path.read_bytes())
            )
        )
    ProductImage.objects.bulk_create(images)
    sync_products([p.pk for p in products], embed=False)  # visrec's image states (bulk writes send no signals)
    return list(ImageState.objects.filter(product__in=products).order_by("pk").values_list("pk", flat=True))


def pipeline(files: list[Path], ids: list[int] | None = None, force: bool = False) -> tuple[float, dict]:
    """Images per second of the production path, from stored files to pgvector rows."""
    from recommendations import embedding
    from recommendations.models import ImageEmbedding

    ids = ids or _ingest(files)
    embedding.get_embedder()  # a worker keeps its model loaded
    embedding.current_embedding_model()
    started = time.perf_counter()
    report = embedding.embed_images(ids, force=force)
    seconds = time.perf_counter() - started
    stored = ImageEmbedding.objects.count()
    assert stored == report.embedded + report.reused, (stored, report)
    counts = {"embedded": report.embedded, "reused": report.reused, "failed": report.failed, "ids": ids}
    return len(files) / seconds, counts


def pipeline_with_torch(files: list[Path], ids: list[int]) -> float:
    """The same pipeline with eager torch instead of ONNX Runtime (re-embeds the same rows)."""
    from django.conf import settings
    from django.test import override_settings

    with override_settings(VISREC={**settings.VISREC, "RUNTIME": "torch"}):
        return pipeline(files, ids, force=True)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="folder of images (searched recursively)")
    parser.add_argument("--limit", type=int, default=2000, help="number of images N")
    parser.add_argument("--out", type=Path, default=DOCS / "embedding.md")
    parser.add_argument("--compare-torch", action="store_true", help="also run the pipeline on eager torch")
    args = parser.parse_args()

    files = image_files(args.images, args.limit)
    data_dir = isolated_django("embed")
    try:
        from recommendations.conf import visrec_settings

        backbone = visrec_settings.BACKBONE
        naive_ips = naive(files, backbone)
        pipeline_ips, counts = pipeline(files)
        ids = counts.pop("ids")
        torch_ips = pipeline_with_torch(files, ids) if args.compare_torch else None
    finally:
        stop_isolated(data_dir)
    ratio = pipeline_ips / naive_ips
    rss = peak_rss_mb()
    rows = [
        ["naive (PIL + transforms + eager model, batch 1)", len(files), f"{naive_ips:.1f}", "1.00"],
        [
            "visrec pipeline (storage → validate → decode → model → PostgreSQL)",
            len(files),
            f"{pipeline_ips:.1f}",
            f"{ratio:.2f}",
        ],
    ]
    if torch_ips is not None:
        rows.append(
            [
                "same pipeline on eager torch (channels_last, batched)",
                len(files),
                f"{torch_ips:.1f}",
                f"{torch_ips / naive_ips:.2f}",
            ]
        )
    table = markdown_table(["path", "images", "images/s", "ratio"], rows)
    print(table)
    body = (
        f"## Throughput ({backbone})\n\nMachine: {machine()}. Images: {len(files)} from `{args.images.name}`; "
        f"pipeline counts: {counts}. Peak RSS {rss} MB.\nCommand: `python benchmarks/embed_throughput.py "
        f"--images {args.images} --limit {args.limit}`\n\n{table}\n"
    )
    write_section(args.out, "throughput", "Embedding benchmarks", body)
    print(f"RESULT naive_ips={naive_ips:.2f} pipeline_ips={pipeline_ips:.2f} ratio={ratio:.2f} peak_rss_mb={rss}")


if __name__ == "__main__":
    main()
