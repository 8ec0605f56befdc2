#!/bin/sh
# Runs llama.cpp (benches/llama_cpp_bench.py) and `promptdeck bench local` back to back on the
# same model with the same settings, so both see the same machine load.
# Usage: benches/side_by_side.sh MODEL.gguf [THREADS] [PROMPT_TOKENS] [TOKENS] [PYTHON] [PROMPTDECK]
set -e
MODEL=$1
THREADS=${2:-2}
PROMPT=${3:-128}
TOKENS=${4:-64}
PYTHON=${5:-python3}
PROMPTDECK=${6:-promptdeck}
REF=$(mktemp)
"$PYTHON" "$(dirname "$0")/llama_cpp_bench.py" "$MODEL" --threads "$THREADS" \
    --prompt-tokens "$PROMPT" --tokens "$TOKENS" --out "$REF" > /dev/null
"$PROMPTDECK" bench local --model "$MODEL" --threads "$THREADS" --prompt-tokens "$PROMPT" \
    --tokens "$TOKENS" --reference "$REF"
rm -f "$REF"
