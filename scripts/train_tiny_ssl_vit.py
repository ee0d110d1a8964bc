"""Train `tiny-ssl-vit`: a small ViT (128 px, patch 16, width 192, 6 layers) on OpenMoji renders only, never
their captions; or, with --dataset openmoji-names, `tiny-ssl-vit-text` on the emoji's names drawn as text.

Reproduce the checkpoints in data/tiny-ssl-vit/ and data/tiny-ssl-vit-text/ (about 19 min each on one shared
CPU core):

    python scripts/train_tiny_ssl_vit.py --out data/tiny-ssl-vit --objective contrastive --steps 600 --seed 0
    python scripts/train_tiny_ssl_vit.py --dataset openmoji-names --out data/tiny-ssl-vit-text \
        --objective contrastive --steps 600 --seed 0

It renders the full de-duplicated `openmoji` set (or `openmoji-names`: the same rows, each image its caption
drawn as text by probe.datasets.rendered) at 160 px into --work-dir, trains on random resized crops (128 px)
with flips (and colour jitter for the contrastive objective), saves the encoder as a ViTModel +
ViTImageProcessor folder (checked to reproduce the trained encoder's hidden states), writes train_log.json and
loss.png, and, unless --no-sanity, records the leave-one-out kNN (k=10) category and subcategory accuracy of
CLS and mean-pooled features on the first 1024 rows (the same dataset at 224 px) for the trained model and its
random control (`random_init_vit`, same config, seed 0). The images are the only input: no caption is ever a
target (for openmoji-names the caption is what the image shows, and the objective never reads it).

`--objective mae` trains the MAE instead (1000 steps, ~14 min); its record is in data/tiny-ssl-vit/mae-attempt/:
in that budget it learned no image content, which is why the shipped checkpoint is the contrastive one.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import transformers
from PIL import Image

from probe.datasets.manifest import BUILD_INFO_NAME, load_manifest
from probe.datasets.openmoji import DATASET_VERSION, build_openmoji
from probe.datasets.rendered import build_rendered
from probe.errors import write_atomic
from probe.ssl import (
    ContrastiveSpec,
    MaeSpec,
    export_mae_encoder,
    export_vit_encoder,
    random_init_vit,
    train_contrastive,
    train_mae,
)
from probe.ssl.loop import TrainResult, VitEncoderSpec
from probe.ssl.sanity import knn_by_layer

RENDER_SIZE = 160
SANITY_ROWS = 1024
CROPS = "random resized crop (area 0.35-1, ratio 3/4-4/3) to 128 px, horizontal flip"


@dataclass(frozen=True)
class Objective:
    """One way to train the encoder: its spec, trainer, exporter and what the record says about it."""

    spec: VitEncoderSpec
    train: Callable[..., TrainResult]
    export: Callable[[Any, Path, VitEncoderSpec, int], Path]
    steps: int
    description: str
    augmentation: str


OBJECTIVES = {
    "contrastive": Objective(
        spec=ContrastiveSpec(batch_size=64, learning_rate=5e-4),
        train=train_contrastive,
        export=lambda model, out, spec, seed: export_vit_encoder(model.encoder, out, spec=spec, seed=seed),
        steps=600,
        description="joint-embedding (SimCLR InfoNCE between two views, temperature 0.2) on the CLS token; "
        "encoder exported as ViTModel; pooler untrained and unused",
        augmentation=CROPS + ", colour jitter (brightness/contrast/saturation 0.4, grey 20%)",
    ),
    "mae": Objective(
        spec=MaeSpec(batch_size=64),
        train=train_mae,
        export=lambda model, out, spec, seed: export_mae_encoder(model, out, spec=spec, seed=seed),
        steps=1000,
        description="MAE (ViTMAEForPreTraining, mask 0.75, normalised-pixel loss), encoder exported as ViTModel; "
        "pooler untrained and unused",
        augmentation=CROPS,
    ),
}


@dataclass(frozen=True)
class TrainingSet:
    """The images one model is trained on: `build(work_dir, size)` renders them and returns the manifest;
    `record(manifest)` says what they are, for train_log.json."""

    model: str
    build: Callable[[Path, int], Path]
    record: Callable[[Path], dict]


def _openmoji(work_dir: Path, size: int) -> Path:
    return build_openmoji(work_dir / f"openmoji-{size}", size=size)


def _openmoji_names(work_dir: Path, size: int) -> Path:
    source = load_manifest(_openmoji(work_dir, size), name="openmoji")
    return build_rendered(source, root=work_dir / f"openmoji-names-{size}", size=size)


def _names_record(manifest: Path) -> dict:
    identity = json.loads((manifest.parent / BUILD_INFO_NAME).read_text(encoding="utf-8"))
    return {"dataset": "openmoji-names", "source": DATASET_VERSION, **{k: identity[k] for k in ("renderer", "fonts")}}


TRAINING_SETS = {
    "openmoji": TrainingSet(model="tiny-ssl-vit", build=_openmoji, record=lambda _m: {"dataset": DATASET_VERSION}),
    "openmoji-names": TrainingSet(model="tiny-ssl-vit-text", build=_openmoji_names, record=_names_record),
}


def read_manifest(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_images(manifest: Path) -> torch.Tensor:
    """All images of a manifest as [N, 3, H, W] uint8."""
    rows = read_manifest(manifest)
    arrays = [np.asarray(Image.open(manifest.parent / r["image"]).convert("RGB")) for r in rows]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def save_loss_plot(losses: list[float], path: Path, *, ylabel: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses, linewidth=0.6, alpha=0.5, label="step")
    window = 25
    if len(losses) >= window:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(range(window - 1, len(losses)), smooth, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sanity_check(out: Path, work_dir: Path, *, seed: int, training_set: TrainingSet) -> dict:
    """kNN accuracy per layer on the first 1024 rows of the training set at 224 px, trained vs random control,
    for the category and subcategory labels and for CLS and mean-of-patch-tokens features."""
    from transformers import ViTModel

    manifest = training_set.build(work_dir, 224)
    rows = read_manifest(manifest)[:SANITY_ROWS]
    paths = [manifest.parent / r["image"] for r in rows]
    models = {"trained": ViTModel.from_pretrained(out), "random_control": random_init_vit(out, seed=seed)}
    record: dict = {"rows": len(rows), "k": 10, "layers": "index 0 = embeddings; hidden states before the final norm"}
    for label in ("category", "subcategory"):
        labels = [r[label] for r in rows]
        record[f"{label}_majority_rate"] = round(max(labels.count(c) for c in set(labels)) / len(labels), 4)
        for pool in ("cls", "mean"):
            for name, model in models.items():
                accuracy = knn_by_layer(out, model, paths, labels, k=10, pool=pool)
                record[f"{label}_{pool}_{name}"] = [round(a, 4) for a in accuracy]
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/tiny-ssl-vit"))
    parser.add_argument(
        "--dataset",
        choices=sorted(TRAINING_SETS),
        default="openmoji",
        help="openmoji (emoji pictures: tiny-ssl-vit) or openmoji-names (their names as text: tiny-ssl-vit-text)",
    )
    parser.add_argument("--objective", choices=sorted(OBJECTIVES), default="contrastive")
    parser.add_argument("--steps", type=int, default=None, help="default: the objective's (contrastive 600, mae 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)"
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="where to render OpenMoji (default: a temp dir)")
    parser.add_argument("--no-sanity", action="store_true", help="skip the kNN check")
    parser.add_argument("--sanity-only", action="store_true", help="only (re)compute the kNN check of --out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="tiny-ssl-vit-"))
    log_path = args.out / "train_log.json"
    objective = OBJECTIVES[args.objective]
    training_set = TRAINING_SETS[args.dataset]
    steps = args.steps or objective.steps

    if not args.sanity_only:
        manifest = training_set.build(work_dir, RENDER_SIZE)
        images = load_images(manifest)
        print(
            f"training {training_set.model} on {images.shape[0]} {args.dataset} renders {tuple(images.shape[1:])}, "
            f"{steps} steps of {args.objective}",
            flush=True,
        )

        def report(step: int, loss: float) -> None:
            if step % 25 == 0 or step == steps - 1:
                print(f"step {step:5d}  loss {loss:.4f}", flush=True)

        result = objective.train(images, spec=objective.spec, steps=steps, seed=args.seed, on_step=report)
        objective.export(result.model, args.out, objective.spec, args.seed)
        save_loss_plot(
            result.losses,
            args.out / "loss.png",
            ylabel=f"{args.objective} loss",
            title=f"{training_set.model} training ({args.dataset})",
        )
        tail = result.losses[-50:]
        record = {
            "model": training_set.model,
            "objective": args.objective,
            "method": objective.description,
            "seed": args.seed,
            "steps": steps,
            "spec": asdict(objective.spec),
            "data": {
                **training_set.record(manifest),
                "images": int(images.shape[0]),
                "render_size": RENDER_SIZE,
                "captions_used": False,
                "augmentation": objective.augmentation,
            },
            "wall_s": round(result.wall_s, 1),
            "threads": args.threads,
            "first_loss": round(result.losses[0], 5),
            "final_loss_mean_last_50": round(sum(tail) / len(tail), 5),
            "losses": [round(x, 5) for x in result.losses],
            "versions": {
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "python": platform.python_version(),
            },
        }
        write_atomic(log_path, json.dumps(record, indent=1) + "\n")
        print(
            f"saved {args.out}: loss {record['first_loss']} -> {record['final_loss_mean_last_50']} "
            f"in {record['wall_s']} s"
        )

    if not args.no_sanity:
        record = json.loads(log_path.read_text(encoding="utf-8"))
        record["sanity_knn"] = sanity_check(args.out, work_dir, seed=args.seed, training_set=training_set)
        write_atomic(log_path, json.dumps(record, indent=1) + "\n")
        print(json.dumps(record["sanity_knn"], indent=1))


if __name__ == "__main__":
    main()
