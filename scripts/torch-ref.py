#!/usr/bin/env python3
"""scripts/torch-ref.py [-o FILE]: writes tests/ref/torch_ops.txt, PyTorch's
forward values and gradients for every tapegrad op on a few fixed inputs.

tests/test_torch_ref reads that file and checks tapegrad against it, so the
test suite itself never needs PyTorch: run this script again (and commit the
file) only when an entry is added or changed.

Everything is float64. The inputs are fixed: multiples of 1/32 (exact in
binary, short in decimal) drawn from a generator seeded with each entry's
name, so the same script writes the same file. Every float value is written
with %.17g, which reads back exactly.

For each entry the script records the op id, its arguments, its inputs, a
fixed upstream gradient G shaped like the output, the output and, for each
float input x, d(sum(out * G))/dx. The file format is described in the
comment block at the top of the file (FORMAT below).

Runs under the first Python that has torch: this one, else /usr/bin/python3
(where Debian's python3-torch installs), else python3 or python on PATH.
Exit status 0 on success, 1 when no Python here has torch, 2 for bad usage.
"""
import math
import os
import random
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyreexec  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    pyreexec.reexec_with(["torch"], __file__, ["python3-torch"])

torch.set_default_dtype(torch.float64)

FORMAT = """\
# The inputs, outputs and gradients of tapegrad's ops as PyTorch computes
# them, in float64. Written by scripts/torch-ref.py, read by
# tests/test_torch_ref.c; do not edit by hand, run the script again.
#
# Line-oriented, fields separated by spaces. '#' lines and blank lines are
# ignored. The first line is "tapegrad-torch-ref 1 torch VERSION float64".
# Then one block per entry:
#
#   entry OP LABEL          starts an entry: OP is the op id (the tapegrad
#                           function without its tg_ prefix, except add_bcast
#                           and mul_bcast: tg_add and tg_mul broadcasting);
#                           LABEL names the entry in messages
#   arg NAME N V1 .. VN     a numeric argument of N values (N may be 0);
#                           integers, flags (0/1) and doubles (%.17g)
#   in DTYPE NDIM D1 .. DNDIM V1 .. VNUMEL
#                           an input, in the op's argument order; DTYPE f64
#                           or i32; NDIM 0 is a 0-d tensor with one value
#   in none                 an optional input left out (NULL)
#   gout NDIM DIMS.. VALUES..   the upstream gradient G (float64)
#   out NDIM DIMS.. VALUES..    the op's output (float64)
#   grad NDIM DIMS.. VALUES..   d sum(out * G) / d input, one line per input
#   grad none                   in the order of the in lines; none for an
#                               int32 or left-out input
#   after K NDIM DIMS.. VALUES..
#                           input K (counting the in lines from 0) as the
#                           call left it: an input the op updates in place
#                           (batch norm's running statistics), which gets
#                           no gradient
#   end                     ends the entry
#
# Values are row-major. The args of each op are named as in tapegrad's
# prototypes (tg_linear's act: 0 none, 1 sigmoid, 2 relu, 3 tanh).
"""

# --- inputs

Q = 32  # inputs are multiples of 1/Q


class Gen:
    """Fixed inputs for one entry, from a generator seeded by its name."""

    def __init__(self, name):
        self.r = random.Random(zlib.crc32(name.encode()))

    def vals(self, n, lo=-2.0, hi=2.0, keep=None):
        """n distinct multiples of 1/Q in [lo, hi] that pass keep: distinct,
        so a reduction's maximum, minimum or a comparison has no ties."""
        pool = [k / Q for k in range(math.ceil(lo * Q), math.floor(hi * Q) + 1)]
        if keep:
            pool = [v for v in pool if keep(v)]
        if len(pool) < n:
            raise ValueError("too few distinct values in [%g, %g]" % (lo, hi))
        return self.r.sample(pool, n)

    def t(self, shape, lo=-2.0, hi=2.0, keep=None):
        n = math.prod(shape)
        return torch.tensor(self.vals(n, lo, hi, keep)).reshape(shape)

    def ints(self, shape, hi):
        n = math.prod(shape)
        return torch.tensor([self.r.randrange(hi) for _ in range(n)],
                            dtype=torch.int32).reshape(shape)

    def probs(self, rows, cols, total=16):
        """Rows of cols positive multiples of 1/total summing to 1."""
        out = []
        for _ in range(rows):
            cuts = sorted(self.r.sample(range(1, total), cols - 1))
            parts = [b - a for a, b in zip([0] + cuts, cuts + [total])]
            out.extend(p / total for p in parts)
        return torch.tensor(out).reshape(rows, cols)

    def gout(self, shape):
        """The upstream gradient: nonzero multiples of 1/8 in [-2, 2]."""
        n = math.prod(shape)
        v = [self.r.choice([k / 8 for k in range(-16, 17) if k]) for _ in range(n)]
        return torch.tensor(v).reshape(shape)


def away(x0, d=0.125):
    """keep= for values at least d from x0 (an activation's kink)."""
    return lambda v: abs(v - x0) >= d


# --- entries: (op, label, inputs, args, fn); fn(inputs, args) -> output,
# where inputs are torch tensors (float ones require grad) or None.

ENTRIES = []


def entry(op, label, make, args, fn, buffers=()):
    """buffers: the indices of inputs the op updates in place; they get no
    gradient, and their values after the call are recorded."""
    g = Gen(op + "/" + label)
    ENTRIES.append((op, label, make(g), args, fn, g, tuple(buffers)))


ACTS = {0: lambda y: y, 1: torch.sigmoid, 2: torch.relu, 3: torch.tanh}
ACT_NAMES = {0: "none", 1: "sigmoid", 2: "relu", 3: "tanh"}


def linear(i, a):
    y = i[0] @ i[1]
    if i[2] is not None:
        y = y + i[2]
    return ACTS[a["act"][0]](y)


def todays_ops():
    # products
    for m, k, n in ((2, 3, 4), (1, 5, 2), (4, 1, 3)):
        entry("matmul", "%dx%d.%dx%d" % (m, k, k, n),
              lambda g, m=m, k=k, n=n: [g.t((m, k)), g.t((k, n))], {},
              lambda i, a: i[0] @ i[1])
    for act in (0, 1, 2, 3):
        for bias in (True, False):
            # relu: a pre-activation away from 0 needs checking, so relu
            # entries use inputs drawn until none is near the kink
            def make(g, bias=bias, act=act):
                while True:
                    x, w = g.t((3, 4), -1, 1), g.t((4, 2), -1, 1)
                    b = g.t((2,), -1, 1) if bias else None
                    pre = x @ w + (b if bias else 0)
                    if act != 2 or pre.abs().min() >= 0.05:
                        return [x, w, b]
            entry("linear", "%s%s" % (ACT_NAMES[act], "_bias" if bias else ""),
                  make, {"act": [act]}, linear)
    entry("linear", "relu_bias_1x3.3x5", lambda g: [
        g.t((1, 3), 0.25, 1), g.t((3, 5), 0.25, 1), g.t((5,), 0.25, 1)],
        {"act": [2]}, linear)
    # elementwise
    entry("add", "2x3+2x3", lambda g: [g.t((2, 3)), g.t((2, 3))], {},
          lambda i, a: i[0] + i[1])
    entry("add", "5+5", lambda g: [g.t((5,)), g.t((5,))], {},
          lambda i, a: i[0] + i[1])
    entry("add", "2x3+3", lambda g: [g.t((2, 3)), g.t((3,))], {},
          lambda i, a: i[0] + i[1])
    entry("add", "4x2+2", lambda g: [g.t((4, 2)), g.t((2,))], {},
          lambda i, a: i[0] + i[1])
    entry("mul", "2x3*2x3", lambda g: [g.t((2, 3)), g.t((2, 3))], {},
          lambda i, a: i[0] * i[1])
    entry("mul", "2x2x2*2x2x2", lambda g: [g.t((2, 2, 2)), g.t((2, 2, 2))], {},
          lambda i, a: i[0] * i[1])
    unary = [
        ("neg", lambda x: -x, {}),
        ("sigmoid", torch.sigmoid, {}),
        ("relu", torch.relu, {"keep": away(0)}),
        ("tanh", torch.tanh, {}),
        ("exp", torch.exp, {}),
        ("log", torch.log, {"lo": 0.125, "hi": 3}),
    ]
    for op, fn, dom in unary:
        for shape in ((5,), (2, 3)):
            entry(op, "x".join(map(str, shape)),
                  lambda g, shape=shape, dom=dom: [g.t(shape, **dom)], {},
                  lambda i, a, fn=fn: fn(i[0]))
    for c in (2.5, -0.75):
        entry("scale", "2x3_c%g" % c, lambda g: [g.t((2, 3))], {"c": [c]},
              lambda i, a: a["c"][0] * i[0])
    # softmax and reductions
    for shape in ((2, 3), (4,), (2, 2, 3)):
        entry("softmax", "x".join(map(str, shape)),
              lambda g, shape=shape: [g.t(shape)], {},
              lambda i, a: torch.softmax(i[0], -1))
    for shape in ((2, 3), (5,), (2, 2, 2)):
        label = "x".join(map(str, shape))
        entry("sum", label, lambda g, shape=shape: [g.t(shape)], {},
              lambda i, a: i[0].sum())
        entry("mean", label, lambda g, shape=shape: [g.t(shape)], {},
              lambda i, a: i[0].mean())
    for shape, axis in (((2, 3), 0), ((2, 3), 1), ((2, 3, 2), -2), ((4,), 0)):
        entry("sum_axis", "%s_axis%d" % ("x".join(map(str, shape)), axis),
              lambda g, shape=shape: [g.t(shape)], {"axis": [axis]},
              lambda i, a: i[0].sum(dim=a["axis"][0]))
    for n, c in ((3, 4), (1, 2), (5, 3)):
        entry("pick", "%dx%d" % (n, c), lambda g, n=n, c=c: [
            g.t((n, c)), g.ints((n,), c)], {},
            lambda i, a: torch.gather(i[0], 1, i[1].long()[:, None])[:, 0])
    # losses
    for n, c in ((3, 4), (1, 5), (4, 2)):
        entry("softmax_nll", "class_%dx%d" % (n, c), lambda g, n=n, c=c: [
            g.t((n, c)), g.ints((n,), c)], {},
            lambda i, a: F.cross_entropy(i[0], i[1].long()))
        entry("softmax_nll", "prob_%dx%d" % (n, c), lambda g, n=n, c=c: [
            g.t((n, c)), g.probs(n, c)], {},
            lambda i, a: F.cross_entropy(i[0], i[1]))
    entry("softmax_nll", "unnormalised_2x3", lambda g: [
        g.t((2, 3)), g.t((2, 3), 0.125, 1)], {},
        lambda i, a: F.cross_entropy(i[0], i[1]))
    for n, c in ((3, 4), (1, 5), (4, 1)):
        entry("sigmoid_bce", "%dx%d" % (n, c), lambda g, n=n, c=c: [
            g.t((n, c), -3, 3), g.t((n, c), 0, 1)], {},
            lambda i, a: F.binary_cross_entropy_with_logits(
                i[0], i[1], reduction="sum") / i[0].shape[0])
        entry("quadratic", "%dx%d" % (n, c), lambda g, n=n, c=c: [
            g.t((n, c)), g.t((n, c))], {},
            lambda i, a: 0.5 * ((i[0] - i[1]) ** 2).sum() / i[0].shape[0])


# --- ops being added (tests/test_torch_ref.c: the TG_REF_ALGEBRA block)

def axes_of(a, x):
    ax = [int(v) for v in a["axes"]]
    return tuple(ax) if ax else tuple(range(x.dim()))


def algebra_ops():
    # unary
    unary = [
        ("sqrt", torch.sqrt, {"lo": 0.125, "hi": 3}, {}),
        ("abs", torch.abs, {"keep": away(0)}, {}),
        ("square", torch.square, {}, {}),
        ("pow_scalar", lambda x, a: torch.pow(x, a["p"][0]),
         {"lo": 0.125, "hi": 3}, {"p": [2.5]}),
        ("pow_scalar", lambda x, a: torch.pow(x, a["p"][0]),
         {}, {"p": [3.0]}),
        ("log1p", torch.log1p, {"lo": -0.75, "hi": 3}, {}),
        ("softplus", F.softplus, {"lo": -4, "hi": 4}, {}),
        ("gelu", F.gelu, {"lo": -3, "hi": 3}, {}),
        ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"),
         {"lo": -3, "hi": 3}, {}),
        ("silu", F.silu, {"lo": -3, "hi": 3}, {}),
        ("leaky_relu", lambda x, a: F.leaky_relu(x, a["slope"][0]),
         {"keep": away(0)}, {"slope": [0.125]}),
        ("clamp", lambda x, a: torch.clamp(x, a["lo"][0], a["hi"][0]),
         {"keep": lambda v: away(-0.5)(v) and away(0.75)(v)},
         {"lo": [-0.5], "hi": [0.75]}),
        ("add_scalar", lambda x, a: x + a["c"][0], {}, {"c": [-1.25]}),
    ]
    for op, fn, dom, args in unary:
        for shape in ((5,), (2, 3), ()):
            label = "x".join(map(str, shape)) or "0d"
            if args:
                label += "_" + "_".join("%s%g" % (k, v[0]) for k, v in args.items())
                call = lambda i, a, fn=fn: fn(i[0], a)
            else:
                call = lambda i, a, fn=fn: fn(i[0])
            entry(op, label, lambda g, shape=shape, dom=dom: [g.t(shape, **dom)],
                  args, call)
    # binary, broadcast
    shapes = [((2, 3), (2, 3)), ((2, 3), (3,)), ((2, 1), (1, 3)),
              ((3,), (2, 3)), ((2, 3), ()), ((), (2, 2)), ((2, 1, 3), (2, 1))]
    binary = [
        ("add_bcast", lambda x, y: x + y, {}, {}),
        ("sub", lambda x, y: x - y, {}, {}),
        ("mul_bcast", lambda x, y: x * y, {}, {}),
        ("div", lambda x, y: x / y, {}, {"keep": away(0, 0.25)}),
        ("pow", torch.pow, {"lo": 0.125, "hi": 2}, {}),
        ("maximum", torch.maximum, None, None),
        ("minimum", torch.minimum, None, None),
    ]
    for op, fn, dom_a, dom_b in binary:
        for sa, sb in shapes:
            label = "%s_%s" % ("x".join(map(str, sa)) or "0d",
                               "x".join(map(str, sb)) or "0d")
            if dom_a is None:
                # no ties: both operands from one set of distinct values
                def make(g, sa=sa, sb=sb):
                    na, nb = math.prod(sa), math.prod(sb)
                    v = g.vals(na + nb)
                    return [torch.tensor(v[:na]).reshape(sa),
                            torch.tensor(v[na:]).reshape(sb)]
            else:
                def make(g, sa=sa, sb=sb, dom_a=dom_a, dom_b=dom_b):
                    return [g.t(sa, **dom_a), g.t(sb, **dom_b)]
            entry(op, label, make, {}, lambda i, a, fn=fn: fn(i[0], i[1]))
    for sm, sa, sb in (((2, 3), (2, 3), (2, 3)), ((2, 3), (3,), (2, 1)),
                       ((4,), (4,), ())):
        def make(g, sm=sm, sa=sa, sb=sb):
            n = math.prod(sm)
            mask = torch.tensor([(k * 5 + 1) % 3 != 0 for k in range(n)],
                                dtype=torch.int32).reshape(sm)
            return [mask, g.t(sa), g.t(sb)]
        entry("where", "%s_%s_%s" % tuple("x".join(map(str, s)) or "0d"
                                          for s in (sm, sa, sb)),
              make, {}, lambda i, a: torch.where(i[0].bool(), i[1], i[2]))
    # reductions
    reduce_cases = [((2, 3), [1], 0), ((2, 3), [0], 1), ((2, 3, 4), [0, 2], 0),
                    ((2, 3, 4), [-1], 1), ((2, 3), [], 0), ((2, 3), [], 1)]
    reductions = [
        ("sum_axes", lambda x, d, k: x.sum(dim=d, keepdim=k)),
        ("mean_axes", lambda x, d, k: x.mean(dim=d, keepdim=k)),
        ("max_axes", lambda x, d, k: torch.amax(x, dim=d, keepdim=k)),
        ("min_axes", lambda x, d, k: torch.amin(x, dim=d, keepdim=k)),
        ("logsumexp", lambda x, d, k: torch.logsumexp(x, dim=d, keepdim=k)),
    ]
    for op, fn in reductions:
        for shape, axes, keep in reduce_cases:
            label = "%s_axes%s%s" % ("x".join(map(str, shape)),
                                     ",".join(map(str, axes)) or "all",
                                     "_keep" if keep else "")
            entry(op, label, lambda g, shape=shape: [g.t(shape)],
                  {"axes": axes, "keepdim": [keep]},
                  lambda i, a, fn=fn: fn(i[0], axes_of(a, i[0]),
                                         bool(a["keepdim"][0])))
    for shape, axes, corr, keep in (((2, 3), [1], 1, 0), ((2, 3), [0], 0, 1),
                                    ((2, 3, 4), [0, 2], 1, 0),
                                    ((2, 3), [], 0, 0), ((3, 4), [-1], 1, 1)):
        label = "%s_axes%s_c%d%s" % ("x".join(map(str, shape)),
                                     ",".join(map(str, axes)) or "all", corr,
                                     "_keep" if keep else "")
        entry("var", label, lambda g, shape=shape: [g.t(shape)],
              {"axes": axes, "correction": [corr], "keepdim": [keep]},
              lambda i, a: torch.var(i[0], dim=axes_of(a, i[0]),
                                     correction=int(a["correction"][0]),
                                     keepdim=bool(a["keepdim"][0])))
    for op, fn in (("softmax_axis", torch.softmax),
                   ("log_softmax", torch.log_softmax)):
        for shape, axis in (((2, 3), 0), ((2, 3), -1), ((2, 3, 2), 1), ((4,), 0)):
            entry(op, "%s_axis%d" % ("x".join(map(str, shape)), axis),
                  lambda g, shape=shape: [g.t(shape)], {"axis": [axis]},
                  lambda i, a, fn=fn: fn(i[0], int(a["axis"][0])))
    # shape
    for shape, new in (((2, 3), [3, 2]), ((2, 3, 2), [4, 3]), ((6,), [1, 2, 3])):
        entry("reshape", "%s_to_%s" % ("x".join(map(str, shape)),
                                       "x".join(map(str, new))),
              lambda g, shape=shape: [g.t(shape)], {"shape": new},
              lambda i, a: i[0].reshape([int(v) for v in a["shape"]]))
    for shape, perm in (((2, 3), [1, 0]), ((2, 3, 4), [2, 0, 1]),
                        ((2, 1, 3, 2), [3, 1, 0, 2])):
        entry("permute", "%s_%s" % ("x".join(map(str, shape)),
                                    "".join(map(str, perm))),
              lambda g, shape=shape: [g.t(shape)], {"perm": perm},
              lambda i, a: i[0].permute([int(v) for v in a["perm"]]))
    for shape, d0, d1 in (((2, 3), 0, 1), ((2, 3, 4), 0, 2), ((2, 3, 4), -1, 1)):
        entry("transpose", "%s_%d_%d" % ("x".join(map(str, shape)), d0, d1),
              lambda g, shape=shape: [g.t(shape)], {"d0": [d0], "d1": [d1]},
              lambda i, a: i[0].transpose(int(a["d0"][0]), int(a["d1"][0])))
    for shape, axis, start, stop, step in (((4, 3), 0, 1, 3, 1),
                                           ((2, 5), 1, 0, 5, 2),
                                           ((2, 3, 4), -1, 1, 4, 2)):
        def sl(i, a):
            ax = int(a["axis"][0]) % i[0].dim()
            idx = [slice(None)] * i[0].dim()
            idx[ax] = slice(int(a["start"][0]), int(a["stop"][0]),
                            int(a["step"][0]))
            return i[0][tuple(idx)]
        entry("slice", "%s_axis%d_%d:%d:%d" % ("x".join(map(str, shape)), axis,
                                              start, stop, step),
              lambda g, shape=shape: [g.t(shape)],
              {"axis": [axis], "start": [start], "stop": [stop], "step": [step]},
              sl)
    for shapes_, axis in ((((2, 3), (1, 3)), 0), (((2, 1), (2, 3), (2, 2)), 1),
                          (((2, 2, 1), (2, 2, 2)), -1)):
        entry("concat", "%s_axis%d" % ("+".join("x".join(map(str, s))
                                                for s in shapes_), axis),
              lambda g, shapes_=shapes_: [g.t(s) for s in shapes_],
              {"axis": [axis]},
              lambda i, a: torch.cat(i, int(a["axis"][0])))
    for shape, n, axis in (((2, 3), 2, 0), ((3,), 3, 1), ((2, 2), 2, -1)):
        entry("stack", "%dx%s_axis%d" % (n, "x".join(map(str, shape)), axis),
              lambda g, shape=shape, n=n: [g.t(shape) for _ in range(n)],
              {"axis": [axis]},
              lambda i, a: torch.stack(i, int(a["axis"][0])))
    for shape, before, after, value in (((2, 3), [1, 0], [0, 2], 0.0),
                                        ((3,), [2], [1], -1.5),
                                        ((2, 2, 2), [0, 1, 1], [1, 0, 2], 0.5)):
        def pad(i, a):
            p = []
            for b, e in zip(reversed(a["before"]), reversed(a["after"])):
                p += [int(b), int(e)]
            return F.pad(i[0], p, value=a["value"][0])
        entry("pad", "%s_%s_%s" % ("x".join(map(str, shape)),
                                   "".join(map(str, before)),
                                   "".join(map(str, after))),
              lambda g, shape=shape: [g.t(shape)],
              {"before": before, "after": after, "value": [value]}, pad)
    for shape, axis, ishape in (((3, 4), 1, (3, 2)), ((3, 4), 0, (2, 4)),
                                ((2, 3, 2), -2, (2, 4, 2))):
        def make(g, shape=shape, axis=axis, ishape=ishape):
            return [g.t(shape), g.ints(ishape, shape[axis])]
        entry("gather", "%s_axis%d_%s" % ("x".join(map(str, shape)), axis,
                                          "x".join(map(str, ishape))),
              make, {"axis": [axis]},
              lambda i, a: torch.gather(i[0], int(a["axis"][0]), i[1].long()))
    # model
    for sa, sb, ta, tb in (((2, 3), (3, 4), 0, 0), ((3, 2), (3, 4), 1, 0),
                           ((2, 3), (4, 3), 0, 1), ((3, 2), (4, 3), 1, 1),
                           ((2, 2, 3), (2, 3, 2), 0, 0),
                           ((2, 2, 3), (3, 4), 0, 0),
                           ((2, 1, 2, 3), (3, 2, 3), 0, 1)):
        def mm(i, a):
            x, y = i
            if a["ta"][0]:
                x = x.transpose(-1, -2)
            if a["tb"][0]:
                y = y.transpose(-1, -2)
            return torch.matmul(x, y)
        entry("matmul_ex", "%s_%s%s%s" % ("x".join(map(str, sa)),
                                          "x".join(map(str, sb)),
                                          "_ta" if ta else "", "_tb" if tb else ""),
              lambda g, sa=sa, sb=sb: [g.t(sa, -1, 1), g.t(sb, -1, 1)],
              {"ta": [ta], "tb": [tb]}, mm)
    for v, d, ishape in ((5, 3, (4,)), (4, 2, (2, 3)), (3, 4, (1,))):
        entry("embedding", "%dx%d_%s" % (v, d, "x".join(map(str, ishape))),
              lambda g, v=v, d=d, ishape=ishape: [g.t((v, d)), g.ints(ishape, v)],
              {}, lambda i, a: F.embedding(i[1].long(), i[0]))
    for shape, w, b in (((2, 4), True, True), ((3, 5), False, False),
                        ((2, 2, 3), True, True), ((2, 3), True, False)):
        d = shape[-1]
        entry("layer_norm", "%s%s%s" % ("x".join(map(str, shape)),
                                        "_w" if w else "", "_b" if b else ""),
              lambda g, shape=shape, w=w, b=b, d=d: [
                  g.t(shape), g.t((d,), 0.5, 1.5) if w else None,
                  g.t((d,), -1, 1) if b else None],
              {"eps": [1e-5]},
              lambda i, a: F.layer_norm(i[0], (i[0].shape[-1],), i[1], i[2],
                                        a["eps"][0]))


# --- convolutions and pooling (tests/test_torch_ref.c: the REF_CONV_OPS
# block). conv2d's args: stride, padding, dilation (each height, width) and
# groups, as tg_conv2d takes them.

def conv_ops():
    def conv(i, a):
        return F.conv2d(i[0], i[1], i[2],
                        stride=tuple(int(v) for v in a["stride"]),
                        padding=tuple(int(v) for v in a["padding"]),
                        dilation=tuple(int(v) for v in a["dilation"]),
                        groups=int(a["groups"][0]))

    def add(n, c, h, w, k, r, s_, bias, st, pad, dil, g):
        label = "%dx%dx%dx%d_w%dx%dx%dx%d%s_s%d%d_p%d%d_d%d%d_g%d" % (
            n, c, h, w, k, c // g, r, s_, "_b" if bias else "",
            st[0], st[1], pad[0], pad[1], dil[0], dil[1], g)
        # x in [-8, 8]: enough distinct multiples of 1/32 for the larger
        # images; every product and sum stays exact in float64
        entry("conv2d", label, lambda gen: [
            gen.t((n, c, h, w), -8, 8), gen.t((k, c // g, r, s_)),
            gen.t((k,)) if bias else None],
            {"stride": list(st), "padding": list(pad),
             "dilation": list(dil), "groups": [g]}, conv)

    # every combination of stride 1/2, padding 0/1/2, dilation 1/2 and
    # groups 1/2, on odd and even sizes, N = 1 and 2, square and
    # non-square kernels, with and without a bias
    i = 0
    for st in (1, 2):
        for pad in (0, 1, 2):
            for dil in (1, 2):
                for g in (1, 2):
                    n = 1 + i % 2
                    h = 5 + (i // 2) % 2
                    w = 6 - (i // 2) % 2
                    r, s_ = ((3, 3), (3, 2), (2, 3))[i % 3]
                    add(n, 2 * g, h, w, 2 * g, r, s_, i % 3 != 1,
                        (st, st), (pad, pad), (dil, dil), g)
                    i += 1
    # the arguments apart in height and width
    add(2, 2, 7, 5, 2, 2, 3, True, (2, 1), (2, 0), (1, 1), 1)
    add(2, 4, 6, 5, 2, 3, 2, True, (2, 2), (1, 1), (2, 1), 2)
    add(1, 3, 5, 4, 3, 3, 3, False, (1, 2), (0, 1), (1, 2), 3)
    # 1x1: stride 1 unpadded (no columns), and strided
    add(2, 4, 3, 3, 6, 1, 1, True, (1, 1), (0, 0), (1, 1), 2)
    add(1, 3, 2, 5, 2, 1, 1, False, (1, 1), (0, 0), (1, 1), 1)
    add(1, 2, 5, 5, 3, 1, 1, True, (2, 2), (0, 0), (1, 1), 1)
    # a kernel larger than the image, inside the padding
    add(1, 1, 2, 3, 2, 3, 3, True, (1, 1), (2, 2), (1, 1), 1)
# --- pooling and batch normalisation (tests/test_torch_ref.c: the
# REF_POOLNORM_OPS block)

POOLS = [  # shape, kernel, stride, padding
    ((2, 3, 5, 5), (2, 2), (2, 2), (0, 0)),
    ((1, 2, 6, 6), (3, 3), (1, 1), (1, 1)),
    ((2, 1, 7, 5), (3, 2), (2, 1), (1, 0)),
    ((1, 2, 4, 4), (2, 2), (1, 1), (0, 0)),
    ((1, 1, 5, 6), (3, 3), (2, 2), (1, 1)),
    ((2, 2, 4, 3), (2, 3), (1, 2), (1, 1)),
]


def pool_args(k, s, p):
    return {"kh": [k[0]], "kw": [k[1]], "stride_h": [s[0]],
            "stride_w": [s[1]], "pad_h": [p[0]], "pad_w": [p[1]]}


def pool_call(fn):
    return lambda i, a: fn(i[0], (a["kh"][0], a["kw"][0]),
                           (a["stride_h"][0], a["stride_w"][0]),
                           (a["pad_h"][0], a["pad_w"][0]))


def poolnorm_ops():
    for shape, k, s, p in POOLS:
        label = "%s_k%dx%d_s%dx%d_p%dx%d" % (("x".join(map(str, shape)),) +
                                             k + s + p)
        for op, fn in (("max_pool2d", F.max_pool2d),
                       ("avg_pool2d", F.avg_pool2d)):
            entry(op, label, lambda g, shape=shape: [g.t(shape, -4, 4)],
                  pool_args(k, s, p), pool_call(fn))
    # ties: the gradient goes to the first maximum in row-major order
    entry("max_pool2d", "ties_1x1x4x4_k3x3_s1x1_p1x1", lambda g: [
        torch.tensor([0.5, 0.5, 0.25, 0.5, 0.25, 0.5, 0.5, 0.0,
                      0.5, 0.25, 0.5, 0.5, 0.0, 0.5, 0.25, 0.5]
                     ).reshape(1, 1, 4, 4)],
        pool_args((3, 3), (1, 1), (1, 1)), pool_call(F.max_pool2d))
    for shape in ((2, 3, 4, 4), (1, 2, 3, 5), (3, 1, 1, 1)):
        entry("global_avg_pool2d", "x".join(map(str, shape)),
              lambda g, shape=shape: [g.t(shape)], {},
              lambda i, a: F.adaptive_avg_pool2d(i[0], 1).flatten(1))
    # batch norm: x, gamma, beta, running_mean, running_var; the running
    # statistics are updated in training and recorded after the call
    for shape, training, affine, momentum, eps in (
            ((2, 3, 4, 4), 1, True, 0.1, 1e-5),
            ((4, 3), 1, True, 0.1, 1e-5),
            ((1, 2, 3, 3), 1, False, 0.1, 1e-5),
            ((2, 2, 3, 3), 1, True, 0.3, 1e-3),
            ((2, 3), 1, True, 1.0, 1e-5),
            ((2, 3, 2, 2), 0, True, 0.1, 1e-5),
            ((3, 4), 0, False, 0.1, 1e-5),
            ((1, 2, 1, 1), 0, True, 0.1, 1e-5)):
        c = shape[1]
        label = "%s_%s%s_m%g_eps%g" % ("x".join(map(str, shape)),
                                       "train" if training else "eval",
                                       "_affine" if affine else "", momentum,
                                       eps)
        entry("batch_norm", label,
              lambda g, shape=shape, c=c, affine=affine: [
                  g.t(shape), g.t((c,), 0.5, 1.5) if affine else None,
                  g.t((c,), -1, 1) if affine else None,
                  g.t((c,), -0.5, 0.5), g.t((c,), 0.5, 2)],
              {"training": [training], "momentum": [momentum], "eps": [eps]},
              lambda i, a: F.batch_norm(i[0], i[3], i[4], i[1], i[2],
                                        bool(a["training"][0]),
                                        a["momentum"][0], a["eps"][0]),
              buffers=(3, 4))


# --- output

def fmt(v, dtype):
    if dtype == "i32":
        return "%d" % v
    return "%.17g" % v


def tensor_line(tag, x, dtype="f64"):
    shape = list(x.shape)
    vals = x.detach().reshape(-1).tolist()
    return " ".join([tag] + ([dtype] if tag == "in" else []) +
                    [str(len(shape))] + [str(s) for s in shape] +
                    [fmt(v, dtype) for v in vals])


def run_entry(op, label, inputs, args, fn, g, buffers):
    leaves, lines = [], ["entry %s %s" % (op, label)]
    for name, vals in args.items():
        lines.append(" ".join(["arg", name, str(len(vals))] +
                              [("%d" % v) if isinstance(v, int) else "%.17g" % v
                               for v in vals]))
    for x in inputs:
        if x is None:
            lines.append("in none")
            leaves.append(None)
        elif x.dtype == torch.int32:
            lines.append(tensor_line("in", x, "i32"))
            leaves.append(x)
        else:
            assert x.dtype == torch.float64
            lines.append(tensor_line("in", x))
            if len(leaves) in buffers:
                leaves.append(x.clone())
            else:
                leaves.append(x.clone().requires_grad_(True))
    out = fn(leaves, args)
    assert out.dtype == torch.float64, (op, label, out.dtype)
    gout = g.gout(tuple(out.shape))
    wrt = [x for x in leaves if x is not None and x.requires_grad]
    grads = torch.autograd.grad((out * gout).sum(), wrt, allow_unused=True)
    grads = iter(grads)
    lines.append(tensor_line("gout", gout))
    lines.append(tensor_line("out", out))
    for x in leaves:
        gr = next(grads) if x is not None and x.requires_grad else None
        lines.append("grad none" if gr is None else tensor_line("grad", gr))
    for k in buffers:
        lines.append(tensor_line("after", leaves[k]).replace(
            "after", "after %d" % k, 1))
    lines.append("end")
    return lines


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, os.pardir, "tests", "ref", "torch_ops.txt")
    if len(argv) == 2 and argv[0] == "-o":
        path = argv[1]
    elif argv:
        sys.stderr.write("usage: torch-ref.py [-o FILE]\n")
        return 2
    todays_ops()
    algebra_ops()
    conv_ops()
    poolnorm_ops()
    labels = set()
    for op, label, *_ in ENTRIES:
        assert (op, label) not in labels, (op, label)
        labels.add((op, label))
    lines = ["tapegrad-torch-ref 1 torch %s float64" % torch.__version__,
             FORMAT.rstrip("\n"), ""]
    for e in ENTRIES:
        lines += run_entry(*e)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    counts = {}
    for op, *_ in ENTRIES:
        counts[op] = counts.get(op, 0) + 1
    print("%s: %d entries, %d op ids, %d bytes (torch %s)" % (
        os.path.normpath(path), len(ENTRIES), len(counts),
        os.path.getsize(path), torch.__version__))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
