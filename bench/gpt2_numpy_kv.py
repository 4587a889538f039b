"""GPT-2 in NumPy with a KV cache: the peer a Python user would pick, for `host-tools bench`.

picoGPT's loop (bench/picogpt_numpy.py) recomputes every position at every step; this one
runs the prompt once, keeps each layer's keys and values, and then computes one position per
token, in f32, greedy. Run single-threaded on a checkpoint folder (config.json +
model.safetensors):

    OPENBLAS_NUM_THREADS=1 python3 bench/gpt2_numpy_kv.py MODEL_DIR --tokens 1,2,3 -n 21

It prints the generated ids, the prompt's time and the mean milliseconds per generated
token after the first.
"""
import argparse
import json
import time

import numpy as np
from safetensors.numpy import load_file


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.float32(np.sqrt(2 / np.pi)) * (x + np.float32(0.044715) * x**3)))


def layer_norm(x, g, b, eps):
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.var(x, axis=-1, keepdims=True)
    return g * (x - mean) / np.sqrt(var + eps) + b


def softmax(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


class Gpt2:
    def __init__(self, model_dir):
        self.cfg = json.load(open(f"{model_dir}/config.json"))
        self.cfg.setdefault("layer_norm_epsilon", 1e-5)
        self.p = {k.removeprefix("transformer."): np.ascontiguousarray(v.astype(np.float32))
                  for k, v in load_file(f"{model_dir}/model.safetensors").items()}
        self.cache = [None] * self.cfg["n_layer"]  # per layer: (k, v), [n_head, T, head]

    def block(self, x, i):  # [n, n_embd] -> [n, n_embd], appending to layer i's cache
        w = lambda name: self.p[f"h.{i}.{name}"]
        eps, n_head = self.cfg["layer_norm_epsilon"], self.cfg["n_head"]
        n, d = x.shape
        hs = d // n_head
        h = layer_norm(x, w("ln_1.weight"), w("ln_1.bias"), eps)
        qkv = h @ w("attn.c_attn.weight") + w("attn.c_attn.bias")  # [n, 3*n_embd]
        q, k, v = (t.reshape(n, n_head, hs).transpose(1, 0, 2) for t in np.split(qkv, 3, axis=-1))
        if self.cache[i] is not None:
            k = np.concatenate([self.cache[i][0], k], axis=1)
            v = np.concatenate([self.cache[i][1], v], axis=1)
        self.cache[i] = (k, v)
        t = k.shape[1]
        scores = q @ k.transpose(0, 2, 1) / np.float32(np.sqrt(hs))  # [n_head, n, t]
        mask = np.triu(np.full((n, t), -1e10, dtype=np.float32), k=t - n + 1)
        att = (softmax(scores + mask) @ v).transpose(1, 0, 2).reshape(n, d)
        x = x + att @ w("attn.c_proj.weight") + w("attn.c_proj.bias")
        h = layer_norm(x, w("ln_2.weight"), w("ln_2.bias"), eps)
        h = gelu(h @ w("mlp.c_fc.weight") + w("mlp.c_fc.bias"))
        return x + h @ w("mlp.c_proj.weight") + w("mlp.c_proj.bias")

    def step(self, ids, start):  # logits of the last of `ids` at positions start..
        p = self.p
        x = p["wte.weight"][ids] + p["wpe.weight"][start:start + len(ids)]
        for i in range(self.cfg["n_layer"]):
            x = self.block(x, i)
        x = layer_norm(x[-1:], p["ln_f.weight"], p["ln_f.bias"], self.cfg["layer_norm_epsilon"])
        return (x @ p["wte.weight"].T)[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("-n", type=int, default=21)
    args = ap.parse_args()
    model = Gpt2(args.model_dir)
    ids = [int(t) for t in args.tokens.split(",")]
    out, times, start, feed = [], [], 0, ids
    for _ in range(args.n):
        t0 = time.perf_counter()
        nxt = int(np.argmax(model.step(feed, start)))
        times.append(time.perf_counter() - t0)
        start += len(feed)
        feed = [nxt]
        out.append(nxt)
    print("generated:", ",".join(map(str, out)))
    print(f"prompt_ms: {1e3 * times[0]:.2f}")
    after_first = times[1:] or times
    print(f"ms_per_token: {1e3 * sum(after_first) / len(after_first):.2f}")


if __name__ == "__main__":
    main()
