#!/usr/bin/env python3
"""Writes the promptfoo side of docs/benchmarks.md: promptfooconfig.yaml with N cases of three
assertions each (contains, icontains, regex), concurrency 16, against the loopback server.

    python3 promptfoo-suite.py OUT_DIR [CASES] [PORT]
"""
import os
import sys

out = sys.argv[1]
cases = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
port = int(sys.argv[3]) if len(sys.argv) > 3 else 18181
os.makedirs(out, exist_ok=True)
lines = [
    "prompts:",
    "  - 'What is {{n}}?'",
    "providers:",
    "  - id: openai:chat:bench",
    "    config:",
    f"      apiBaseUrl: http://127.0.0.1:{port}/v1",
    "      temperature: 0",
    "      max_tokens: 16",
    "evaluateOptions:",
    "  maxConcurrency: 16",
    "tests:",
]
for i in range(cases):
    lines += [
        f"  - description: case {i}",
        f"    vars: {{n: {i}}}",
        "    assert:",
        "      - type: contains",
        f"        value: '{i}'",
        "      - type: icontains",
        "        value: answer",
        "      - type: regex",
        "        value: '^Answer: \\d+'",
    ]
with open(os.path.join(out, "promptfooconfig.yaml"), "w") as f:
    f.write("\n".join(lines) + "\n")
