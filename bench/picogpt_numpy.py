"""picoGPT-style GPT-2 in NumPy, for the speed comparison in `host-tools bench`.

Like picoGPT's gpt2.py it recomputes the whole sequence at every step (no KV cache), greedy.
Run single-threaded, on a checkpoint folder (config.json + model.safetensors):

    OPENBLAS_NUM_THREADS=1 python3 bench/picogpt_numpy.py MODEL_DIR --tokens 1,2,3 -n 21

It prints the generated ids and the mean milliseconds per generated token.
"""
import argparse
import json
import time

import numpy as np
from safetensors.numpy import load_file


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def softmax(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def layer_norm(x, g, b, eps):
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.var(x, axis=-1, keepdims=True)
    return g * (x - mean) / np.sqrt(var + eps) + b


def attention(q, k, v, mask):  # [n_q, d], [n_k, d], [n_k, d] -> [n_q, d]
    return softmax(q @ k.T / np.sqrt(q.shape[-1]) + mask) @ v


def block(x, p, i, n_head, eps):  # [n_seq, n_embd] -> [n_seq, n_embd]
    w = lambda name: p[f"h.{i}.{name}"]
    h = layer_norm(x, w("ln_1.weight"), w("ln_1.bias"), eps)
    qkv = h @ w("attn.c_attn.weight") + w("attn.c_attn.bias")  # -> [n_seq, 3*n_embd]
    heads = [np.split(t, n_head, axis=-1) for t in np.split(qkv, 3, axis=-1)]
    mask = (1 - np.tri(x.shape[0], dtype=x.dtype)) * -1e10
    out = np.hstack([attention(q, k, v, mask) for q, k, v in zip(*heads)])
    x = x + out @ w("attn.c_proj.weight") + w("attn.c_proj.bias")
    h = layer_norm(x, w("ln_2.weight"), w("ln_2.bias"), eps)
    h = gelu(h @ w("mlp.c_fc.weight") + w("mlp.c_fc.bias"))  # -> [n_seq, 4*n_embd]
    return x + h @ w("mlp.c_proj.weight") + w("mlp.c_proj.bias")


def gpt2(ids, p, cfg):  # [n_seq] -> [n_seq, n_vocab]
    x = p["wte.weight"][ids] + p["wpe.weight"][range(len(ids))]
    for i in range(cfg["n_layer"]):
        x = block(x, p, i, cfg["n_head"], cfg["layer_norm_epsilon"])
    x = layer_norm(x, p["ln_f.weight"], p["ln_f.bias"], cfg["layer_norm_epsilon"])
    return x @ p["wte.weight"].T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("-n", type=int, default=21)
    args = ap.parse_args()
    cfg = json.load(open(f"{args.model_dir}/config.json"))
    cfg.setdefault("layer_norm_epsilon", 1e-5)
    p = {k.removeprefix("transformer."): v.astype(np.float32)
         for k, v in load_file(f"{args.model_dir}/model.safetensors").items()}
    ids = [int(t) for t in args.tokens.split(",")]
    out, times = [], []
    for _ in range(args.n):
        t0 = time.perf_counter()
        nxt = int(np.argmax(gpt2(ids, p, cfg)[-1]))
        times.append(time.perf_counter() - t0)
        ids.append(nxt)
        out.append(nxt)
    print("generated:", ",".join(map(str, out)))
    after_first = times[1:] or times
    print(f"ms_per_token: {1e3 * sum(after_first) / len(after_first):.2f}")


if __name__ == "__main__":
    main()
