#!/usr/bin/env python3
"""llama.cpp (through llama-cpp-python) on the same GGUF with the same thread
count, for the language-model benchmark's comparison: prompt-processing and
generation tokens per second, best of three, measured like
`cargo bench -p focusforge-llm --bench generate` measures them.

usage: bench-llamacpp.py MODEL.gguf THREADS"""

import sys
import time

from llama_cpp import Llama

path, threads = sys.argv[1], int(sys.argv[2])
llm = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=4096, verbose=False)

titles = open(__file__.replace("bench-llamacpp.py", "bench-titles.txt")).read().split("\n")
long_prompt = "Summarise the following notes. " + (". ".join(t for t in titles if t)) * 2
messages = [{"role": "user", "content": long_prompt}]

pp, tg = [], []
for _ in range(3):
    llm.reset()
    start = time.perf_counter()
    out = llm.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0)
    prompt_time = time.perf_counter() - start
    n_prompt = out["usage"]["prompt_tokens"]
    pp.append(n_prompt / prompt_time)
    llm.reset()
    start = time.perf_counter()
    out = llm.create_chat_completion(messages=messages, max_tokens=128, temperature=0.0)
    total = time.perf_counter() - start
    n_gen = out["usage"]["completion_tokens"]
    tg.append(n_gen / max(total - prompt_time, 1e-6))
print(f"llama.cpp prompt processing: {max(pp):.0f} tokens/s (best of 3)")
print(f"llama.cpp generation, free: {max(tg):.1f} tokens/s (best of 3)")
