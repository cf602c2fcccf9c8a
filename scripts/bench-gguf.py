#!/usr/bin/env python3
"""Another model's answers to the chain bench's task-breakdown requests, made
with llama.cpp (through llama-cpp-python) for `FOCUSFORGE_BENCH_ANSWERS`.

PROMPTS.jsonl comes from `FOCUSFORGE_BENCH_PROMPTS=FILE cargo bench -p
focusforge-chain --bench chains`: one {"title", "messages", "schema"} a line.
Each request is answered greedily (at most 400 tokens) under the grammar that
llama-cpp-python makes from its JSON Schema, with the chat template stored in
the GGUF; ANSWERS.jsonl gets one {"title", "answer", "ms"} a line.

llama-cpp-python quietly falls back to plain JSON when it cannot turn a
schema into a grammar, so the schema is converted here first: if that fails,
its "pattern" keys are dropped (and the summary says so) and, if it still
fails, the request goes out without a schema. A GGUF with no chat template
of its own gets llama-cpp-python's built-in format for its architecture
(Gemma's turns for gemma*, which drop the system role); where there is no
system role, or the template rejects it, the system message is merged into
the first user message, as Gemma 3's own template does.

usage: bench-gguf.py MODEL.gguf PROMPTS.jsonl ANSWERS.jsonl [threads]"""

import collections
import json
import os
import statistics
import sys
import time

from llama_cpp import Llama
from llama_cpp.llama_grammar import json_schema_to_gbnf


def strip_patterns(node):
    if isinstance(node, dict):
        return {k: strip_patterns(v) for k, v in node.items() if k != "pattern"}
    if isinstance(node, list):
        return [strip_patterns(v) for v in node]
    return node


def usable(schema):
    try:
        json_schema_to_gbnf(json.dumps(schema))
        return None
    except Exception as e:
        return f"{type(e).__name__}: {e}"


def brief(err):
    return err.splitlines()[0].split(" at index")[0][:120]


def merge_system(messages):
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{system}\n\n{m['content']}" if system else m["content"]
            break
    return rest


def main():
    model, prompts, answers = sys.argv[1:4]
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    llm = Llama(model_path=model, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    notes, times, valid = collections.Counter(), [], 0
    merge = False
    if "tokenizer.chat_template" not in llm.metadata:
        arch = llm.metadata.get("general.architecture", "")
        if arch.startswith("gemma"):
            llm.chat_format, llm.chat_handler, merge = "gemma", None, True
        notes[f"no chat template in the GGUF; chat format {llm.chat_format!r}"
                  + (", system message merged into the first user message" if merge else "")] += 1
    requests = [json.loads(line) for line in open(prompts) if line.strip()]
    with open(answers, "w") as out:
        for req in requests:
            schema = req["schema"]
            err = usable(schema)
            if err:
                notes[f"schema rejected by the grammar converter ({brief(err)}); pattern keys removed"] += 1
                schema = strip_patterns(schema)
                err = usable(schema)
                if err:
                    notes[f"schema without patterns still rejected ({brief(err)}); plain JSON grammar"] += 1
            fmt = {"type": "json_object"} if err else {"type": "json_object", "schema": schema}
            messages = merge_system(req["messages"]) if merge else req["messages"]
            args = dict(response_format=fmt, temperature=0, max_tokens=400)
            start = time.perf_counter()
            try:
                result = llm.create_chat_completion(messages=messages, **args)
            except Exception as e:
                if not any(m["role"] == "system" for m in messages):
                    raise
                notes[f"system role rejected ({brief(str(e))}); merged into the first user message"] += 1
                start = time.perf_counter()
                result = llm.create_chat_completion(messages=merge_system(messages), **args)
            ms = (time.perf_counter() - start) * 1e3
            answer = result["choices"][0]["message"]["content"] or ""
            try:
                json.loads(answer)
                valid += 1
            except ValueError:
                pass
            times.append(ms)
            out.write(json.dumps({"title": req["title"], "answer": answer, "ms": ms}) + "\n")
            out.flush()
    print(f"model: {os.path.basename(model)} ({threads} threads)")
    print(f"answers: {len(times)}, median {statistics.median(times) if times else float('nan'):.0f} ms, "
          f"valid JSON: {valid}/{len(times)}")
    for note, n in sorted(notes.items()):
        print(f"note: {note}" + (f" [{n} requests]" if n > 1 else ""))


if __name__ == "__main__":
    main()
