#!/usr/bin/env python3
"""Turn a llama-architecture GGUF file into a Hugging Face model folder (config.json, tokenizer.json,
tokenizer_config.json, model.safetensors in float16).

Why: `agent --model DIR` loads safetensors folders through a different mistral.rs pipeline than GGUF
files, and this machine cannot reach the model hub. scripts/setup.sh makes such a folder from the
default SmolLM2 GGUF so tests/real_model.rs can run that pipeline (and in-situ quantisation) for real.
The weights are the GGUF's, dequantised: the folder's model answers like the GGUF's, not like the
original float checkpoint.

    gguf-to-hf-folder.py MODEL.gguf OUT_DIR

Needs numpy, gguf, safetensors and tokenizers (PyPI). Writes OUT_DIR.part first and renames it, so an
interrupted run leaves no half-made folder behind.
"""

import json
import os
import shutil
import sys

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType
from gguf.quants import dequantize
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, AddedToken


def field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def unpermute(w, n_head):
    # llama.cpp's converter interleaves the two rotary halves of each head of q/k (its `permute`);
    # Hugging Face's Llama keeps them as two halves. This undoes it.
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main(src, out):
    reader = GGUFReader(src)
    arch = field(reader, "general.architecture")
    if arch != "llama":
        sys.exit(f"{src}: architecture {arch!r}; only llama is supported")
    n_head = field(reader, "llama.attention.head_count")
    n_kv = field(reader, "llama.attention.head_count_kv", n_head)
    hidden = field(reader, "llama.embedding_length")
    tokens = field(reader, "tokenizer.ggml.tokens")
    if field(reader, "tokenizer.ggml.model") != "gpt2":
        sys.exit(f"{src}: tokenizer {field(reader, 'tokenizer.ggml.model')!r}; only gpt2 (byte-level BPE) is supported")

    names = {
        "token_embd": "model.embed_tokens",
        "output_norm": "model.norm",
        "output": "lm_head",
        "attn_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    tensors = {}
    for t in reader.tensors:
        parts = t.name.split(".")
        if parts[0] == "blk":
            layer, kind = parts[1], parts[2]
            name = f"model.layers.{layer}.{names[kind]}.weight"
        else:
            kind = parts[0]
            name = f"{names[kind]}.weight"
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)])
        if kind == "attn_q":
            w = unpermute(w, n_head)
        elif kind == "attn_k":
            w = unpermute(w, n_kv)
        tensors[name] = np.ascontiguousarray(w.astype(np.float16))
    tied = "lm_head.weight" not in tensors

    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": field(reader, "llama.feed_forward_length"),
        "num_hidden_layers": field(reader, "llama.block_count"),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": hidden // n_head,
        "rms_norm_eps": field(reader, "llama.attention.layer_norm_rms_epsilon"),
        "rope_theta": field(reader, "llama.rope.freq_base", 10000.0),
        "max_position_embeddings": field(reader, "llama.context_length"),
        "vocab_size": len(tokens),
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "bos_token_id": field(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": field(reader, "tokenizer.ggml.eos_token_id"),
        "torch_dtype": "float16",
    }

    merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges")]
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    # SmolLM2's pre-tokenizer ("smollm" in llama.cpp): digits one by one, then GPT-2's byte level.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    types = field(reader, "tokenizer.ggml.token_type")
    control = [AddedToken(tokens[i], special=True, normalized=False) for i, ty in enumerate(types) if ty == 3]
    tokenizer.add_special_tokens(control)

    def token(key):
        i = field(reader, key)
        return None if i is None else tokens[i]

    tokenizer_config = {
        "bos_token": token("tokenizer.ggml.bos_token_id"),
        "eos_token": token("tokenizer.ggml.eos_token_id"),
        "unk_token": token("tokenizer.ggml.unknown_token_id"),
        "pad_token": token("tokenizer.ggml.padding_token_id"),
        "add_bos_token": bool(field(reader, "tokenizer.ggml.add_bos_token", False)),
        "chat_template": field(reader, "tokenizer.chat_template"),
        "model_max_length": config["max_position_embeddings"],
        "tokenizer_class": "GPT2Tokenizer",
    }

    part = out.rstrip("/") + ".part"
    shutil.rmtree(part, ignore_errors=True)
    os.makedirs(part)
    save_file(tensors, os.path.join(part, "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save(os.path.join(part, "tokenizer.json"))
    for name, value in [("config.json", config), ("tokenizer_config.json", tokenizer_config)]:
        with open(os.path.join(part, name), "w") as f:
            json.dump(value, f, indent=2)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(part, out)
    print(f"{out}: {len(tensors)} tensors, vocab {len(tokens)}, tied embeddings: {tied}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
