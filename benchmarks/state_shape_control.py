"""Control for the batch-512 step gap: the raw JAX step with funcnet's state shapes.

First XLA's compute alone: the raw and the funcnet step, 100 steps inside one ``fori_loop``.
Then one call per step: raw JAX+optax; the same step carrying a PRNG key and a step counter
through each call; the same step with nested-dict parameters (as ``state_dict`` names require);
and funcnet, interleaved at batch 512, 31 rounds of 100 steps (median µs and median per-round
ratio to raw JAX).

    python -m benchmarks.state_shape_control
"""

import statistics

import jax
import jax.numpy as jnp

import benchmarks.train_step as B
from benchmarks.timing import interleaved, median_ratios


def raw_with_key_and_step(x, y):
    opt, step = B.raw_step_fn()

    def step_with_state(params, opt_state, key, count, x, y):
        params, opt_state, loss = step(params, opt_state, x, y)
        return params, opt_state, key, count + 1, loss

    fn = jax.jit(step_with_state, donate_argnums=(0, 1, 2, 3))
    params = B.raw_params()
    state = [params, opt.init(params), jax.random.key(0), jnp.zeros((), jnp.int32)]

    def run(steps):
        p, o, k, n = state
        for _ in range(steps):
            p, o, k, n, loss = fn(p, o, k, n, x, y)
        loss.block_until_ready()
        state[:] = [p, o, k, n]

    return run


def raw_with_dict_params(x, y):
    opt, step = B.raw_step_fn()

    def step_on_dict(params, opt_state, x, y):
        layers = [(params[f"fc{i}"]["weight"], params[f"fc{i}"]["bias"]) for i in range(1, 4)]
        layers, opt_state, loss = step(layers, opt_state, x, y)
        return {f"fc{i + 1}": {"weight": w, "bias": b} for i, (w, b) in enumerate(layers)}, opt_state, loss

    fn = jax.jit(step_on_dict, donate_argnums=(0, 1))
    layers = B.raw_params()
    params = {f"fc{i + 1}": {"weight": w, "bias": b} for i, (w, b) in enumerate(layers)}
    return B.optax_runner(fn, params, opt.init(layers), x, y)


def compute_only(batch_size: int = 512, steps: int = 100, rounds: int = 21) -> dict[str, float]:
    """µs per step of the raw and the funcnet step run ``steps`` times inside one ``fori_loop``:
    XLA's compute alone, with no dispatch, donation or host transfer per step."""
    import funcnet
    import funcnet.nn as nn
    from funcnet.train import TrainState
    from funcnet.train.step import train_step_fn

    x, y = (jax.device_put(a) for a in B.batch(batch_size))
    opt, raw_step = B.raw_step_fn()
    params = B.raw_params()

    @jax.jit
    def raw_loop(p, o):
        return jax.lax.fori_loop(0, steps, lambda i, c: raw_step(c[0], c[1], x, y), (p, o, jnp.zeros(())))[2]

    model, optimizer = B.seed_net(), funcnet.optim.SGD(lr=B.LR)
    step = train_step_fn(model, nn.CrossEntropyLoss(), optimizer)
    state = TrainState.create(model, optimizer, jax.random.key(0))

    @jax.jit
    def funcnet_loop(s):
        def body(i, carry):
            s, m = step(carry[0], (x, y))
            return s, carry[1] + m.loss_sum + m.counts.sum()
        return jax.lax.fori_loop(0, steps, body, (s, jnp.zeros(())))[1]

    runs = {"raw JAX+optax": lambda: raw_loop(params, opt.init(params)).block_until_ready(),
            "funcnet": lambda: funcnet_loop(state).block_until_ready()}
    for run in runs.values():
        run()
    return {name: statistics.median(v) for name, v in interleaved(runs, rounds, 1e6 / steps).items()}


def main() -> None:
    print("batch 512, compute only (100 steps inside one fori_loop, median of 21)")
    for name, t in compute_only().items():
        print(f"{name:18s} {t:8.1f} µs/step")
    print("\nbatch 512, one jitted call per step (31 interleaved rounds of 100 steps; paired ratio)")
    B.SYSTEMS = {"raw JAX+optax": B.raw_jax, "raw + key/step": raw_with_key_and_step,
                 "raw dict params": raw_with_dict_params, "funcnet": B.funcnet_step}
    samples = B.step_samples(512, 31, 100)
    ratios = median_ratios(samples, "raw JAX+optax")
    for name, v in samples.items():
        print(f"{name:18s} {statistics.median(v):8.1f} µs/step {ratios[name]:6.3f}")


if __name__ == "__main__":
    main()
