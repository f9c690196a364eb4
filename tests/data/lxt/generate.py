"""Generate the lxt reference heatmaps of tests/test_lxt_reference.py.

Run in a separate environment with PyTorch and lxt (the authors' AttnLRP / CP-LRP code):

    python3 -m venv /tmp/venv-lxt && . /tmp/venv-lxt/bin/activate
    pip install torch==2.13.0 numpy && pip install lxt==2.1 --no-deps
    python tests/data/lxt/generate.py

lxt.explicit needs only torch. Each model is a tiny pre-LN transformer encoder on token
vectors ``(batch, tokens, dim)``: LayerNorm -> multi-head self-attention (Linear q, k, v, o
with biases) -> residual add -> LayerNorm -> Linear -> GELU -> Linear -> residual add ->
mean over tokens -> Linear head (GELU: the tanh approximation written out in both,
since TensorFlow's float64 GELU differs from torch's by 5e-9). The rules are lxt's explicit
functions, composed as lxt's model files compose them:

* AttnLRP: ``linear_epsilon`` on every Linear, ``matmul`` (epsilon + uniform rule) on
  ``Q K^T`` and ``A V``, ``softmax``, ``layer_norm`` (std detached), ``add2`` on the
  residuals, ``mean`` on the token pooling, ``rules.identity`` on GELU.
* CP-LRP: the same, except that the attention weights are detached (constant) and ``A V`` is
  ``rules.epsilon_lrp`` with ``A`` constant (no relevance reaches Q and K). The LayerNorms have
  no beta (lxt's LayerNorm includes beta in its denominator, the LN rule of keras-isnet does
  not; without beta the two are the same rule).

All stabilisers are 1e-12 except lxt's fixed 1e-6 in ``layer_norm`` (which keras-isnet's
AttnLRP LayerNorm rule uses too). Everything is float64. The explained output is the largest
logit, seeded with its value. Stored per model (``<name>.npz``): the weights (torch layout
converted to Keras: Linear weights transposed, attention projections as EinsumDense kernels
``(dim, heads, key_dim)`` and ``(heads, key_dim, dim)``), the input, the logits and the heatmap.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from lxt.explicit import functional as lf
from lxt.explicit import rules as lr

EPS = 1e-12
HERE = pathlib.Path(__file__).parent
torch.set_default_dtype(torch.float64)


def make_weights(rng, dim, heads, key_dim, hidden, classes, beta: bool):
    def w(*shape, scale=0.5):
        return rng.normal(size=shape) * scale

    p = {}
    for name in ("ln1", "ln2"):
        p[f"{name}_gamma"] = rng.uniform(0.5, 1.5, dim)
        p[f"{name}_beta"] = w(dim, scale=0.1) if beta else np.zeros(dim)
    for name in ("q", "k", "v"):
        p[f"{name}_kernel"] = w(dim, heads, key_dim)
        p[f"{name}_bias"] = w(heads, key_dim, scale=0.1)
    p["o_kernel"] = w(heads, key_dim, dim)
    p["o_bias"] = w(dim, scale=0.1)
    p["fc1_kernel"], p["fc1_bias"] = w(dim, hidden), w(hidden, scale=0.1)
    p["fc2_kernel"], p["fc2_bias"] = w(hidden, dim), w(dim, scale=0.1)
    p["head_kernel"], p["head_bias"] = w(dim, classes), w(classes, scale=0.1)
    return p


def gelu(v):
    """The tanh GELU written out (the Keras test writes the same formula)."""
    return 0.5 * v * (1.0 + torch.tanh(0.7978845608028654 * (v + 0.044715 * v**3)))


def linear(x, kernel, bias):
    """lxt's epsilon rule on ``x @ kernel + bias`` (kernel in Keras layout, flattened)."""
    k = torch.as_tensor(kernel.reshape(kernel.shape[0], -1) if kernel.ndim == 3 else kernel)
    return lf.linear_epsilon(x, k.T.contiguous(), torch.as_tensor(bias.reshape(-1)), EPS)


def forward(p, x, heads, key_dim, variant):
    t = {k: torch.as_tensor(v) for k, v in p.items()}
    batch, tokens, dim = x.shape

    def ln(v, name):
        return lf.layer_norm(v, t[f"{name}_gamma"], t[f"{name}_beta"], 1e-5)

    h = ln(x, "ln1")

    def project(name):
        y = linear(h, p[f"{name}_kernel"], p[f"{name}_bias"])
        return y.reshape(batch, tokens, heads, key_dim).transpose(1, 2)  # (B, H, T, K)

    q, k, v = project("q"), project("k"), project("v")
    q = lf.mul2(q, 1.0 / np.sqrt(key_dim))  # a constant factor: all relevance to q
    if variant == "cp_lrp":
        q, k = q.detach(), k.detach()
    scores = lf.matmul(q, k.transpose(-1, -2), False, EPS)
    attention = lf.softmax(scores, -1)
    if variant == "cp_lrp":
        attention = attention.detach()
        context = lr.epsilon_lrp(torch.matmul, EPS, attention, v)
    else:
        context = lf.matmul(attention, v, False, EPS)
    context = context.transpose(1, 2).reshape(batch, tokens, heads * key_dim)
    o = lf.linear_epsilon(
        context,
        torch.as_tensor(p["o_kernel"].reshape(heads * key_dim, dim)).T.contiguous(),
        t["o_bias"],
        EPS,
    )
    x2 = lf.add2(x, o, False, EPS)
    m = linear(ln(x2, "ln2"), p["fc1_kernel"], p["fc1_bias"])
    m = lr.identity(gelu, m)
    m = linear(m, p["fc2_kernel"], p["fc2_bias"])
    x3 = lf.add2(x2, m, False, EPS)
    pooled = lf.mean(x3, 1, False, EPS)
    return linear(pooled, p["head_kernel"], p["head_bias"])


def generate(name, variant, seed, batch=3, tokens=4, dim=6, heads=2, key_dim=3, hidden=8):
    rng = np.random.default_rng(seed)
    p = make_weights(rng, dim, heads, key_dim, hidden, 3, beta=variant == "attn_lrp")
    x = torch.tensor(rng.normal(size=(batch, tokens, dim)), requires_grad=True)
    logits = forward(p, x, heads, key_dim, variant)
    top = logits.argmax(1)
    seed_relevance = torch.zeros_like(logits)
    seed_relevance[torch.arange(batch), top] = logits[torch.arange(batch), top]
    logits.backward(seed_relevance.detach())
    np.savez(
        HERE / f"{name}.npz",
        input=x.detach().numpy(),
        logits=logits.detach().numpy(),
        heatmap=x.grad.numpy(),
        heads=heads,
        key_dim=key_dim,
        **p,
    )
    print(name, "seed", float(seed_relevance.sum().detach()), "heatmap", float(x.grad.sum()))


if __name__ == "__main__":
    generate("attn_lrp_block", "attn_lrp", seed=0)
    generate("cp_lrp_block", "cp_lrp", seed=1)
