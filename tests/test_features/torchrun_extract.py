"""Extract features of local model folders over one dataset into one cache folder, as each process of a
`torchrun` job (or a single process) does; used by tests/test_torchrun.py.

    python -m torch.distributed.run --nproc-per-node 2 tests/torchrun_extract.py CACHE MANIFEST BATCH MODEL...

Each process prints one JSON line: its RANK/WORLD_SIZE (as torchrun set them) and, per model, the
rows it extracted and the complete cache's path (null when another rank still had rows to write, so
that rank assembles the file).
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from probe.features.extract import extract_features  # noqa: E402


def main() -> None:
    cache, manifest, batch, *models = sys.argv[1:]
    results = []
    for model in models:
        result = extract_features(
            model=model, dataset=manifest, cache_dir=cache, batch_size=int(batch), num_workers=0, device="cpu"
        )
        results.append(
            {"model": model, "rows": result.rows_extracted, "path": None if result.path is None else str(result.path)}
        )
    print(
        json.dumps({"rank": os.environ.get("RANK"), "world": os.environ.get("WORLD_SIZE"), "results": results}),
        flush=True,
    )


if __name__ == "__main__":
    main()
