#!/usr/bin/env python3
"""Re-quantise a GGUF file with llama.cpp's own quantiser, for speed benchmarks of other block types.

    ~/.cache/agent/llama-venv/bin/python scripts/requantize.py IN.gguf OUT_DIR Q4_K_M Q5_K_M Q6_K Q8_0

Runs `llama_model_quantize` from the llama-cpp-python that scripts/setup.sh installs (the same
llama.cpp the model-speed bench compares against) and writes OUT_DIR/<stem>.<TYPE>.gguf per type.
Re-quantising an already quantised file (`allow_requantize`) loses accuracy on top of the source's,
so the outputs are for measuring speed, not quality. llama.cpp chooses the block type per tensor: a
"Q4_K_M" file of a model whose rows are not a multiple of 256 (SmolLM2-135M: 576) is mostly Q5_0/Q8_0.
"""

import ctypes
import os
import sys


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    source, out_dir, types = sys.argv[1], sys.argv[2], sys.argv[3:]
    try:
        import llama_cpp
    except ImportError:
        print("requantize: llama_cpp is not importable; run this with ~/.cache/agent/llama-venv/bin/python "
              "(scripts/setup.sh installs it)", file=sys.stderr)
        return 1
    if not os.path.isfile(source):
        print(f"requantize: no such file: {source}", file=sys.stderr)
        return 1
    unknown = [t for t in types if not hasattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{t}")]
    if unknown:
        known = sorted(n.removeprefix("LLAMA_FTYPE_MOSTLY_") for n in dir(llama_cpp)
                       if n.startswith("LLAMA_FTYPE_MOSTLY_"))
        print(f"requantize: unknown type(s) {unknown}; known: {' '.join(known)}", file=sys.stderr)
        return 1
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.basename(source).split(".")[0]
    for t in types:
        out = os.path.join(out_dir, f"{stem}.{t}.gguf")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{t}")
        params.allow_requantize = True
        params.nthread = os.cpu_count() or 1
        # Written beside the target and renamed, so a failed run never leaves a partial file there.
        partial = out + ".part"
        rc = llama_cpp.llama_model_quantize(source.encode(), partial.encode(), ctypes.byref(params))
        if rc != 0:
            if os.path.exists(partial):
                os.remove(partial)
            print(f"requantize: llama_model_quantize failed for {t} (code {rc})", file=sys.stderr)
            return 1
        os.replace(partial, out)
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
