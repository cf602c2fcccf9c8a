#!/usr/bin/env python3
"""llama.cpp (through llama-cpp-python) on the same GGUF with the same thread
count, for the language-model benchmark's comparison: generation tokens per
second after the same ~850-token chat prompt as
`cargo bench -p focusforge-llm --bench generate`, 128 greedy tokens, best of
three. With --batch it also times the prompt as one batch (prompt-processing
speed); some CPU builds of llama.cpp crash on multi-token batches, so the
default feeds the prompt a token at a time.

usage: bench-llamacpp.py MODEL.gguf THREADS [--batch]"""

import os
import sys
import time

from llama_cpp import Llama

path, threads = sys.argv[1], int(sys.argv[2])
batch = "--batch" in sys.argv
llm = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=2048, verbose=False)

here = os.path.dirname(os.path.abspath(__file__))
titles = [t for t in open(os.path.join(here, "bench-titles.txt")).read().split("\n") if t]
long_prompt = "Summarise the following notes. " + ". ".join(titles) * 2
text = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    f"<|im_start|>user\n{long_prompt}<|im_end|>\n<|im_start|>assistant\n"
)
tokens = llm.tokenize(text.encode(), add_bos=False, special=True)

pp, tg = [], []
for _ in range(3):
    llm.reset()
    start = time.perf_counter()
    if batch:
        llm.eval(tokens)
    else:
        for t in tokens:
            llm.eval([t])
    pp.append(len(tokens) / (time.perf_counter() - start))
    start = time.perf_counter()
    n = 0
    for _ in range(128):
        token = llm.sample(top_k=1, temp=0.0)
        if token == llm.token_eos():
            break
        llm.eval([token])
        n += 1
    tg.append(n / (time.perf_counter() - start))
mode = "one batch" if batch else "a token at a time"
print(f"llama.cpp prompt processing ({mode}): {max(pp):.0f} tokens/s over {len(tokens)} tokens (best of 3)")
print(f"llama.cpp generation, free: {max(tg):.1f} tokens/s (best of 3)")
