"""The one-line mutants of tests/mutation/mutation_pass.py: (id, file, old, new, tests).

Chosen by hand over the core numerics and data path: each changes one operator, constant,
condition or call the way a plausible bug would. ``tests`` is the smallest subset that guards
the file (the full file's tests, not the whole suite)."""

from mutation_pass import Mutant

LOSS = "funcnet/nn/functional/loss.py"
NORM = "funcnet/nn/modules/normalization.py"
OPT = "funcnet/optim/transforms.py"
DL = "funcnet/utils/data/dataloader.py"
T_LOSS = ("tests/test_losses.py",)
T_NORM = ("tests/test_normalization.py", "tests/test_mutation_survivors.py")
T_OPT = ("tests/test_optim_trajectories.py", "tests/test_optim_features.py", "tests/test_mutation_survivors.py")
T_DL = ("tests/test_data_loader.py", "tests/test_mutation_survivors.py")

MUTANTS = [
    # ---- losses
    Mutant("loss-reduce-mean-sum", LOSS, "    return jnp.mean(loss)\n", "    return jnp.sum(loss)\n", T_LOSS),
    Mutant("loss-ignored-not-ignored", LOSS, "    ignored = target == ignore_index\n",
           "    ignored = target == -12345\n", T_LOSS),
    Mutant("loss-invalid-upper", LOSS, "(target >= n_classes))", "(target > n_classes))", T_LOSS),
    Mutant("loss-weight-index", LOSS, "weight.astype(logp.dtype)[index]", "weight.astype(logp.dtype)[0]", T_LOSS),
    Mutant("loss-nll-mean-count", LOSS, "    return jnp.sum(terms) / jnp.sum(w_y)",
           "    return jnp.mean(terms)", T_LOSS),
    Mutant("loss-soft-smoothing", LOSS, "target * (1 - label_smoothing) + label_smoothing / n_classes",
           "target * (1 - label_smoothing) + label_smoothing", T_LOSS),
    Mutant("loss-soft-mean", LOSS, "return -jnp.sum(prod) / (prod.size // n_classes)",
           "return -jnp.sum(prod) / prod.size", T_LOSS),
    Mutant("loss-smooth-mix", LOSS, "nll = (1 - label_smoothing) * nll + smooth * (label_smoothing / n_classes)",
           "nll = nll + smooth * (label_smoothing / n_classes)", T_LOSS),
    Mutant("loss-bce-clamp", LOSS, "_BCE_EPSILON = 1e-12", "_BCE_EPSILON = 1e-6", T_LOSS),
    Mutant("loss-bce-logits-grad", LOSS, "    return g * (jax.nn.sigmoid(x) - t), g * -x",
           "    return g * (jax.nn.sigmoid(x) - t), g * x", T_LOSS),
    Mutant("loss-pos-weight-grad-t", LOSS, "    grad_t = jax.nn.log_sigmoid(-x) - log_sig * pw",
           "    grad_t = jax.nn.log_sigmoid(-x) - log_sig", T_LOSS),
    Mutant("loss-weighted-mean", LOSS, "        return jnp.sum(loss) / jnp.sum(weight)",
           "        return jnp.mean(loss)", T_LOSS),
    Mutant("loss-smoothl1-branch", LOSS, "jnp.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta)",
           "jnp.where(z <= beta, 0.5 * z * z / beta, z - beta)", T_LOSS),
    Mutant("loss-huber-delta", LOSS, "delta * (z - 0.5 * delta)", "(z - 0.5 * delta)", T_LOSS),
    Mutant("loss-kl-batchmean", LOSS, "        return jnp.sum(loss) / batch", "        return jnp.mean(loss)", T_LOSS),
    Mutant("loss-abs-grad", LOSS, "    return d * jnp.sign(d)", "    return jnp.abs(d)", T_LOSS),
    # ---- normalization modules
    Mutant("norm-ln-bias-none", NORM, """        bias = self.bias if "bias" in self._parameters else None
        return F.layer_norm""", """        bias = None
        return F.layer_norm""", T_NORM),
    Mutant("norm-ln-eps", NORM, "F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)",
           "F.layer_norm(x, self.normalized_shape, weight, bias, 1e-5)", T_NORM),
    Mutant("norm-gn-groups", NORM, "F.group_norm(x, self.num_groups, weight, bias, self.eps)",
           "F.group_norm(x, 1, weight, bias, self.eps)", T_NORM),
    Mutant("norm-gn-divisible", NORM, "        if num_channels % num_groups != 0:", "        if False:", T_NORM),
    Mutant("norm-in-use-input-stats", NORM, "        use_input_stats = self.training or not self.track_running_stats",
           "        use_input_stats = not self.track_running_stats", T_NORM),
    Mutant("norm-in-momentum-none", NORM, "momentum = 0.0 if self.momentum is None else self.momentum",
           "momentum = 0.1 if self.momentum is None else self.momentum", T_NORM),
    Mutant("norm-in-running-mean", NORM, "jnp.mean(mean, 0), jnp.mean(var, 0),",
           "jnp.mean(mean, 0), jnp.mean(var, 0) * 1.01,", T_NORM),
    Mutant("norm-in-count", NORM, "                    math.prod(x.shape[2:]), momentum,",
           "                    math.prod(x.shape[2:]) + 1, momentum,", T_NORM),
    Mutant("norm-in-affine-weight", NORM, "                y = y * weight.astype(y.dtype).reshape(bshape)",
           "                y = y", T_NORM),
    Mutant("norm-in-unbatched", NORM, "        unbatched = x.ndim == s + 1\n", "        unbatched = False\n", T_NORM),
    Mutant("norm-in-one-element", NORM, "            if math.prod(x.shape[2:]) == 1:", "            if False:", T_NORM),
    # ---- optimiser transforms
    Mutant("opt-momentum-first", OPT, "            return jnp.where(first, g, new)", "            return new", T_OPT),
    Mutant("opt-momentum-dampening", OPT, "_c(1.0 - dampening, g) * g", "g", T_OPT),
    Mutant("opt-nesterov", OPT, "            out = _tmap(lambda g, b: g + _c(mu, g) * b, updates, trace)",
           "            out = trace", T_OPT),
    Mutant("opt-adam-bc1", OPT, "        bc1 = one_minus_pow(beta1, t)\n        bc2_sqrt",
           "        bc1 = 1.0\n        bc2_sqrt", T_OPT),
    Mutant("opt-adam-eps", OPT, "(m / (jnp.sqrt(v) / _c(bc2_sqrt, v) + _c(eps, v))) / _c(bc1, m)",
           "(m / (jnp.sqrt(v / _c(bc2_sqrt, v) + _c(eps, v)))) / _c(bc1, m)", T_OPT),
    Mutant("opt-amsgrad", OPT, "            second = nu_max", "            second = nu", T_OPT),
    Mutant("opt-adamax-eps", OPT, "jnp.abs(g) + _c(eps, g)", "jnp.abs(g)", T_OPT),
    Mutant("opt-nadam-decay", OPT, "        mu_t = beta1 * (1.0 - 0.5 * pow_beta(0.96, t * momentum_decay))",
           "        mu_t = beta1 * (1.0 - 0.5 * pow_beta(0.96, t))", T_OPT),
    Mutant("opt-nadam-next", OPT, "pow_beta(0.96, (t + 1.0) * momentum_decay))",
           "pow_beta(0.96, t * momentum_decay))", T_OPT),
    Mutant("opt-radam-threshold", OPT, "        use_rect = rho_t > 5.0", "        use_rect = rho_t > 4.0", T_OPT),
    Mutant("opt-adagrad-decay", OPT, "state.count.astype(jnp.result_type(float)) * lr_decay)",
           "(state.count + 1).astype(jnp.result_type(float)) * lr_decay)", T_OPT),
    Mutant("opt-adagrad-init", OPT, "jnp.full_like(p, initial_accumulator_value)", "jnp.zeros_like(p)", T_OPT),
    Mutant("opt-maximize", OPT, "    return optax.scale(-1.0)", "    return optax.scale(1.0)", T_OPT),
    # ---- DataLoader
    Mutant("dl-len-drop-last", DL, "return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)",
           "return math.ceil(n / self.batch_size)", T_DL),
    Mutant("dl-plan-drop-last", DL, """            nb = len(order) // bs if bsamp.drop_last else -(-len(order) // bs)
            return nb""", """            nb = -(-len(order) // bs)
            return nb""", T_DL),
    Mutant("dl-iter-drop-last", DL, """            nb = len(order) // bs if bsamp.drop_last else -(-len(order) // bs)
            indices_of""", """            nb = len(order) // bs
            indices_of""", T_DL),
    Mutant("dl-hot-slice", DL, "                    batch = fetch(order[b * bs : b * bs + bs])",
           "                    batch = fetch(order[b * bs : b * bs + bs - 1])", T_DL),
    Mutant("dl-pos", DL, """                    self._pos = b + 1
                    yield batch
                self._finish(epoch)""", """                    self._pos = b
                    yield batch
                self._finish(epoch)""", T_DL),
    Mutant("dl-finish-epoch", DL, "            self._epoch, self._pos, self._started = epoch + 1, 0, False",
           "            self._epoch, self._pos, self._started = epoch, 0, False", T_DL),
    Mutant("dl-early-leave-epoch", DL, """            self._epoch += 1
            self._pos = 0
        self._started = True""", """            self._pos = 0
        self._started = True""", T_DL),
    Mutant("dl-set-epoch-check", DL, "        if not isinstance(epoch, (int, np.integer)) or epoch < 0:",
           "        if not isinstance(epoch, (int, np.integer)):", T_DL),
    Mutant("dl-shuffle-sampler-exclusive", DL, "        if sampler is not None and shuffle:", "        if False:",
           T_DL),
]


def _interleaved(mutants):
    """One mutant per file in turn, so that a partial run covers every file."""
    by_file = {}
    for m in mutants:
        by_file.setdefault(m.file, []).append(m)
    out, queues = [], list(by_file.values())
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


MUTANTS = _interleaved(MUTANTS)
