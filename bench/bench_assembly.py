"""Assembly time of a text-shaped cache (N=4096, 17 x 1024, rows scattered): `new` (this writer) or `old`.

`old` loads a previous writer.py saved with: git show 25de13e:probe/features/writer.py > /tmp/pl/old_writer.py
"""

import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

which = sys.argv[1]
if which == "old":
    spec = importlib.util.spec_from_file_location("old_writer", "/tmp/pl/old_writer.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
else:
    import probe.features.writer as m
N, S, D, B = 4096, 17, 1024, 256
key = {"model": {"name": "m"}, "modality": "text", "pools": ["mean"], "layers": list(range(S)), "dataset": {"rows": N}}
root = Path(tempfile.mkdtemp())
w = m.PartialWriter(root / "x.h5", key=key, num_rows=N)
w.begin()
order = np.random.default_rng(0).permutation(N)  # text batches are length-sorted: rows scattered
x = np.random.default_rng(1).normal(size=(B, S, D)).astype(np.float32)
t0 = time.perf_counter()
for s in range(0, N, B):
    w.write_batch(order[s : s + B].tolist(), {"mean": x}, layers=list(range(S)))
t1 = time.perf_counter()
w.assemble(
    ids=[str(i) for i in range(N)],
    image_sha256=[""] * N,
    caption_sha256=[""] * N,
    layers=list(range(S)),
    pools=["mean"],
    provenance={},
)
t2 = time.perf_counter()
mb = N * S * D * 4 / 1e6
print(
    f"{which}: {mb:.0f} MB; batch writes {t1 - t0:.2f} s ({mb / (t1 - t0):.0f} MB/s), "
    f"assembly {t2 - t1:.2f} s ({mb / (t2 - t1):.0f} MB/s)"
)
