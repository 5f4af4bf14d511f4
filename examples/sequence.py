"""Is this sequence sorted? A variable-length sequence classifier with funcnet's LSTM or Transformer.

The data is generated here: sequences of digits 0-9 of length 4-16, half of them
sorted, the other half sorted and then spoiled by one swap of two neighbouring,
different digits (so the model must compare neighbours, not count digits).
Padding is handled as in torch: the LSTM gets ``lengths`` (funcnet's masked
``pack_padded_sequence``), the Transformer gets ``src_key_padding_mask``.

    python examples/sequence.py                       # bidirectional LSTM
    python examples/sequence.py --model transformer   # 2-layer TransformerEncoder, scan over layers

Trains with optax in well under a minute on 2 CPU cores and prints the final accuracy.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

# the checkout this script lives in, not an installed copy
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import funcnet.nn as nn  # noqa: E402

VOCAB, MIN_LEN, MAX_LEN = 10, 4, 16


def make_batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``tokens [n, MAX_LEN]`` (0-padded), ``lengths [n]``, ``labels [n]`` (1 = sorted)."""
    tokens = np.zeros((n, MAX_LEN), np.int32)
    lengths = rng.integers(MIN_LEN, MAX_LEN + 1, n)
    labels = rng.integers(0, 2, n)
    for i in range(n):
        while True:
            seq = np.sort(rng.integers(0, VOCAB, lengths[i]))
            if labels[i] == 1:
                break
            spots = np.flatnonzero(seq[:-1] != seq[1:])
            if len(spots):
                j = rng.choice(spots)
                seq[j], seq[j + 1] = seq[j + 1], seq[j]
                break
        tokens[i, : lengths[i]] = seq
    return tokens, lengths.astype(np.int32), labels.astype(np.int32)


class LSTMClassifier(nn.Module):
    """One-hot digits → bidirectional LSTM (masked by lengths) → last states of both directions → logits."""

    def __init__(self, hidden: int = 48):
        super().__init__()
        self.rnn = nn.LSTM(VOCAB, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 2)

    def forward(self, tokens, lengths):
        x = jax.nn.one_hot(tokens, VOCAB)
        _, (h_n, _) = self.rnn(x, lengths=lengths)          # h_n [2, N, H]: forward, backward
        return self.head(jnp.concatenate([h_n[0], h_n[1]], axis=-1))


def sinusoidal_positions(length: int, dim: int) -> jnp.ndarray:
    pos = np.arange(length)[:, None]
    freq = np.exp(-math.log(10000.0) * np.arange(0, dim, 2) / dim)
    table = np.zeros((length, dim), np.float32)
    table[:, 0::2], table[:, 1::2] = np.sin(pos * freq), np.cos(pos * freq)
    return jnp.asarray(table)


class TransformerClassifier(nn.Module):
    """Digits → Linear embedding + sinusoidal positions → TransformerEncoder → masked mean → logits."""

    def __init__(self, d_model: int = 64, layers: int = 2):
        super().__init__()
        self.embed = nn.Linear(VOCAB, d_model)
        layer = nn.TransformerEncoderLayer(d_model, 4, 128, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, scan_layers=True)
        self.head = nn.Linear(d_model, 2)
        self.d_model = d_model

    def forward(self, tokens, lengths):
        valid = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]       # [N, T]
        x = self.embed(jax.nn.one_hot(tokens, VOCAB)) + sinusoidal_positions(tokens.shape[1], self.d_model)
        x = self.encoder(x, src_key_padding_mask=~valid)                       # True = padding, as torch
        pooled = jnp.sum(x * valid[..., None], axis=1) / lengths[:, None]
        return self.head(pooled)


def main() -> None:
    parser = argparse.ArgumentParser(description="Is the sequence sorted? (funcnet LSTM / Transformer)")
    parser.add_argument("--model", choices=["lstm", "transformer"], default="lstm")
    parser.add_argument("--steps", type=int, default=None, help="default: 800 (lstm), 1500 (transformer)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None, help="default: 3e-3 (lstm), 1e-3 (transformer)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    lstm = args.model == "lstm"
    args.steps = args.steps or (800 if lstm else 1500)
    args.lr = args.lr or (3e-3 if lstm else 1e-3)

    rng = np.random.default_rng(args.seed)
    model = LSTMClassifier() if lstm else TransformerClassifier()
    params = model.init(jax.random.key(args.seed)).params
    optimizer = optax.adam(args.lr)
    opt_state = optimizer.init(params)

    def loss_fn(params, tokens, lengths, labels):
        logits = model.apply(params, tokens, lengths)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def train_step(params, opt_state, tokens, lengths, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens, lengths, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def accuracy(params, tokens, lengths, labels):
        return jnp.mean(jnp.argmax(model.apply(params, tokens, lengths), -1) == labels)

    test = make_batch(np.random.default_rng(args.seed + 1), 2000)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        params, opt_state, loss = train_step(params, opt_state, *make_batch(rng, args.batch_size))
        if step % 200 == 0 or step == 1:
            acc = float(accuracy(params, *test))
            print(f"step {step:4d}  loss {float(loss):.4f}  test accuracy {acc:.3f}")
    elapsed = time.perf_counter() - start
    print(f"final test accuracy ({args.model}, {args.steps} steps, {elapsed:.1f} s): "
          f"{float(accuracy(params, *test)):.4f}")


if __name__ == "__main__":
    main()
