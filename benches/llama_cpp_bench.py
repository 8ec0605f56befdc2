"""Side-by-side reference for `promptdeck bench local`: llama.cpp (through llama-cpp-python) on
the same GGUF, same prompt text, same thread count, greedy, EOS ignored.

    python3 -m pip install llama-cpp-python numpy      # builds llama.cpp from source
    python3 benches/llama_cpp_bench.py MODEL.gguf --threads 2 --prompt-tokens 128 --tokens 64 \
        --out llama-cpp.json
    promptdeck bench local --prompt-tokens 128 --tokens 64 --threads 2 --reference llama-cpp.json

llama.cpp's AMX weight buffers are turned off (`use_extra_bufts = false`): on machines that report
AMX without enabling it (the virtual machines these numbers come from) they crash the process.
That is also the configuration promptdeck's greedy reference vectors were produced with.
Flash attention is on, as in llama-server's default.
"""
import argparse
import json
import time

import llama_cpp
import numpy as np
from llama_cpp import Llama

STORY = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle. "


def no_extra_buffers():
    params = _default_model_params()
    params.use_extra_bufts = False
    return params


_default_model_params = llama_cpp.llama_model_default_params
llama_cpp.llama_model_default_params = no_extra_buffers
llama_cpp.llama.llama_cpp.llama_model_default_params = no_extra_buffers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=2, help="the first run warms up; the best of the rest is reported")
    ap.add_argument("--out")
    args = ap.parse_args()

    started = time.perf_counter()
    llm = Llama(model_path=args.model, n_ctx=4096, n_batch=512, n_threads=args.threads,
                n_threads_batch=args.threads, flash_attn=True, verbose=False)
    load_ms = (time.perf_counter() - started) * 1000
    text = STORY * (args.prompt_tokens // 8 + 1)
    prompt = llm.tokenize(text.encode(), add_bos=False, special=True)[: args.prompt_tokens]
    best = None
    for _ in range(max(args.runs, 2)):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
        tok = int(np.argmax(logits))
        t1 = time.perf_counter()
        for _ in range(args.tokens - 1):
            llm.eval([tok])
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
            tok = int(np.argmax(logits))
        t2 = time.perf_counter()
        run = {
            "prefill_tok_s": len(prompt) / (t1 - t0),
            "decode_tok_s": (args.tokens - 1) / (t2 - t1) if args.tokens > 1 else 0.0,
            "time_to_first_token_ms": (t1 - t0) * 1000,
        }
        best = run if best is None else best
        best = {k: max(best[k], run[k]) if k != "time_to_first_token_ms" else min(best[k], run[k]) for k in run}
    result = {
        "engine": f"llama.cpp {llama_cpp.__version__} (llama-cpp-python), flash attention, no AMX buffers",
        "model": args.model,
        "threads": args.threads,
        "prompt_tokens": len(prompt),
        "tokens": args.tokens,
        "load_ms": load_ms,
        **best,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
