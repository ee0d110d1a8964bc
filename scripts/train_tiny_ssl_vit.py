"""Train `tiny-ssl-vit`: a small ViT, MAE objective, on OpenMoji renders only (never their captions).

Reproduce the checkpoint in data/tiny-ssl-vit/ (about 17 min on one CPU core):

    python scripts/train_tiny_ssl_vit.py --out data/tiny-ssl-vit --steps 1000 --seed 0

It renders the full de-duplicated `openmoji` set at 160 px into --work-dir, trains on random resized crops
(128 px) with flips, saves the encoder as a ViTModel + ViTImageProcessor folder (checked to reproduce the
trained encoder's hidden states), writes train_log.json and loss.png, and, unless --no-sanity, records the
leave-one-out kNN (k=10) category accuracy of CLS features on the first 1024 rows for the trained model and
its random control (`random_init_vit`, same config, seed 0).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image

from probe.datasets.openmoji import DATASET_VERSION, build_openmoji
from probe.ssl import MaeSpec, export_encoder, random_init_vit, train_mae
from probe.ssl.sanity import knn_by_layer

RENDER_SIZE = 160
SPEC = MaeSpec(batch_size=64)
SANITY_ROWS = 1024


def read_manifest(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_images(manifest: Path) -> torch.Tensor:
    """All images of a manifest as [N, 3, H, W] uint8."""
    rows = read_manifest(manifest)
    arrays = [np.asarray(Image.open(manifest.parent / r["image"]).convert("RGB")) for r in rows]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def save_loss_plot(losses: list[float], path: Path) -> None:
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
    ax.set_ylabel("MAE loss (normalised pixels, masked patches)")
    ax.set_title("tiny-ssl-vit training")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sanity_check(out: Path, work_dir: Path, *, seed: int) -> dict:
    """kNN category accuracy per layer on the first 1024 rows at 224 px, trained vs random control."""
    manifest = build_openmoji(work_dir / "openmoji-224")
    rows = read_manifest(manifest)[:SANITY_ROWS]
    paths = [manifest.parent / r["image"] for r in rows]
    labels = [r["category"] for r in rows]
    from transformers import ViTModel

    trained = knn_by_layer(out, ViTModel.from_pretrained(out), paths, labels, k=10)
    control = knn_by_layer(out, random_init_vit(out, seed=seed), paths, labels, k=10)
    majority = max(labels.count(c) for c in set(labels)) / len(labels)
    return {
        "rows": len(rows),
        "k": 10,
        "label": "category",
        "majority_class_rate": round(majority, 4),
        "trained_by_layer": [round(a, 4) for a in trained],
        "random_control_by_layer": [round(a, 4) for a in control],
        "feature": "CLS token of each hidden state (0 = embeddings), before the final norm",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/tiny-ssl-vit"))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where to render OpenMoji (default: a temp dir)")
    parser.add_argument("--no-sanity", action="store_true", help="skip the kNN check")
    parser.add_argument("--sanity-only", action="store_true", help="only (re)compute the kNN check of --out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="tiny-ssl-vit-"))
    log_path = args.out / "train_log.json"

    if not args.sanity_only:
        manifest = build_openmoji(work_dir / f"openmoji-{RENDER_SIZE}", size=RENDER_SIZE)
        images = load_images(manifest)
        print(f"training on {images.shape[0]} OpenMoji renders {tuple(images.shape[1:])}, {args.steps} steps", flush=True)

        def report(step: int, loss: float) -> None:
            if step % 25 == 0 or step == args.steps - 1:
                print(f"step {step:5d}  loss {loss:.4f}", flush=True)

        result = train_mae(images, spec=SPEC, steps=args.steps, seed=args.seed, on_step=report)
        export_encoder(result.model, args.out, spec=SPEC, seed=args.seed)
        save_loss_plot(result.losses, args.out / "loss.png")
        tail = result.losses[-50:]
        record = {
            "model": "tiny-ssl-vit",
            "objective": "MAE (ViTMAEForPreTraining), encoder exported as ViTModel; pooler untrained and unused",
            "seed": args.seed,
            "steps": args.steps,
            "spec": asdict(SPEC),
            "data": {
                "dataset": DATASET_VERSION,
                "images": int(images.shape[0]),
                "render_size": RENDER_SIZE,
                "captions_used": False,
                "augmentation": "random resized crop (area 0.35-1, ratio 3/4-4/3) to 128 px, horizontal flip",
            },
            "wall_s": round(result.wall_s, 1),
            "threads": args.threads,
            "first_loss": round(result.losses[0], 5),
            "final_loss_mean_last_50": round(sum(tail) / len(tail), 5),
            "losses": [round(x, 5) for x in result.losses],
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()},
        }
        log_path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(f"saved {args.out}: loss {record['first_loss']} -> {record['final_loss_mean_last_50']} in {record['wall_s']} s")

    if not args.no_sanity:
        record = json.loads(log_path.read_text(encoding="utf-8"))
        record["sanity_knn"] = sanity_check(args.out, work_dir, seed=args.seed)
        log_path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(json.dumps(record["sanity_knn"], indent=1))


if __name__ == "__main__":
    main()
