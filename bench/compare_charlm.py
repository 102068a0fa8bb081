#!/usr/bin/env python3
"""bench/compare_charlm.py: tapegrad-charlm's transformer against the same
model in PyTorch (CPU), step for step.

tapegrad's side is bench/charlm_ref (make bench): it builds the model of
examples/charlm.h from a seed and writes its initial weights, the batches it
trains on, its first step's loss and gradients, and its loss at every step
(safetensors files). This script builds the same model in PyTorch, loads
those weights, feeds the same batches with the same AdamW (decoupled weight
decay), warmup-then-cosine schedule and clipping by the global norm, and
checks the three bars:

  1. float32: the first step's loss within 1e-5 relative, and every element
     of every parameter's gradient within 1e-4 of that tensor's largest
     magnitude; float64: both within 1e-10;
  2. the loss over the first 200 steps (float32) within 1% at every step;
  3. with --time: milliseconds per step on 1 and 2 threads for both, and
     the ratio tapegrad/PyTorch, last line "ratios: LM@1=R LM@2=R".

With --long it instead trains both sides for --steps K of one configuration
(by default tapegrad-charlm's on the Brown corpus: 4 layers, 4 heads,
width 128, context 128, batch 32, vocab 128, tied, warmup 100, 2000 steps)
from the same initial weights on the same batches, and evaluates the
validation loss on both at step 0, every --eval-every steps and the last:
on the windows tapegrad-charlm evaluates on (--eval-batches batches of
--batch windows of --val, drawn from its fixed validation stream; the mean
of the batches' mean losses). bench/charlm_ref writes the offsets of the
windows rather than the batches (K*B int32), and the script cuts the same
windows from the same texts. tapegrad runs first (a line per evaluation as
it goes), then PyTorch, with a row per evaluation
  step | tapegrad val | PyTorch val | difference (relative)
then both final validation losses in nats per character, both training
times (the steps alone: forward, backward, clip, update; no evaluation) and
tokens/s. Both run on --threads threads (default 2); PyTorch with
torch.set_num_threads and OMP_WAIT_POLICY=PASSIVE (--torch-wait: the faster
policy in compare_pytorch.py's runs). Every line is flushed, so it can run
in the background with its output sent to a file. Its bar: the validation
losses within --long-tol (1e-2) relative at every evaluation.

Usage: bench/compare_charlm.py --ref BUILD/bench/charlm_ref [--layers N]
    [--heads N] [--width N] [--context N] [--batch N] [--vocab N]
    [--untied] [--steps K] [--text FILE] [--time] [--time-steps N]
  or   bench/compare_charlm.py --ref BUILD/bench/charlm_ref --long
    [the model and training options] [--val FILE] [--eval-every N]
    [--eval-batches N] [--threads N] [--torch-wait passive|active|unset]
    [--long-tol X]
Exit status 0 when bars 1 and 2 hold (with --long: its bar), 1 otherwise.
Runs under the
interpreter that has PyTorch and NumPy (through scripts/pyreexec.py, it
starts itself again under one when this one lacks them)."""
import argparse
import atexit
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time


def read_safetensors(path):
    import numpy as np
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    types = {"F32": np.float32, "F64": np.float64, "I32": np.int32}
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[name] = np.frombuffer(raw[base + b:base + e], dtype=types[v["dtype"]]).reshape(v["shape"])
    return out


def lr_at(step, lr_max, warmup, total, lr_min):
    """tg_lr_warmup_cosine."""
    if step > total:
        return lr_min
    if warmup > 0 and step <= warmup:
        return lr_max * step / warmup
    frac = (step - warmup) / (total - warmup)
    return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * frac)) / 2


class Model:
    """examples/charlm.h in PyTorch, on raw parameters laid out as
    tapegrad's ([in, out] weights used as x @ W)."""

    def __init__(self, weights, a, dtype):
        import torch
        self.a = a
        self.p = {k: torch.tensor(v.copy(), dtype=dtype, requires_grad=True) for k, v in weights.items()}
        self.dtype = dtype

    def params(self):
        return list(self.p.values())

    def loss(self, tokens, targets):
        import torch
        import torch.nn.functional as F
        a, p = self.a, self.p
        B, T = tokens.shape
        C, H = a.width, a.heads
        D = C // H
        x = p["wte"][tokens] + p["wpe"][:T]
        x = x.reshape(B * T, C)
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        neg = torch.tensor(-1e9, dtype=self.dtype)
        for i in range(a.layers):
            g = lambda n: p[f"h.{i}.{n}"]
            h = F.layer_norm(x, (C,), g("ln1.weight"), g("ln1.bias"), 1e-5)
            qkv = h @ g("attn.qkv.weight") + g("attn.qkv.bias")
            q, k, v = (qkv[:, j * C:(j + 1) * C].reshape(B, T, H, D).permute(0, 2, 1, 3)
                       for j in range(3))
            att = (q @ k.transpose(-1, -2)) * (1 / math.sqrt(D))
            att = torch.where(mask, att, neg).softmax(-1)
            y = (att @ v).permute(0, 2, 1, 3).reshape(B * T, C)
            x = x + (y @ g("attn.proj.weight") + g("attn.proj.bias"))
            h = F.layer_norm(x, (C,), g("ln2.weight"), g("ln2.bias"), 1e-5)
            f = F.gelu(h @ g("mlp.fc.weight") + g("mlp.fc.bias"))
            x = x + (f @ g("mlp.proj.weight") + g("mlp.proj.bias"))
        x = F.layer_norm(x, (C,), p["lnf.weight"], p["lnf.bias"], 1e-5)
        logits = x @ p["wte"].t() if "head" not in p else x @ p["head"]
        return F.cross_entropy(logits, targets)


def run_ref(a, dtype, steps, threads=None, extra=(), echo=None):
    """Runs bench/charlm_ref into a fresh directory; echo, when given, gets
    each line of its output as it comes."""
    out = tempfile.mkdtemp(prefix="charlm-cmp-")
    atexit.register(shutil.rmtree, out, True)
    cmd = [a.ref, "--out", out, "--dtype", dtype, "--layers", str(a.layers), "--heads", str(a.heads),
           "--width", str(a.width), "--context", str(a.context), "--batch", str(a.batch),
           "--vocab", str(a.vocab), "--steps", str(steps), "--lr", str(a.lr),
           "--warmup", str(a.warmup), "--weight-decay", str(a.weight_decay), "--clip", str(a.clip),
           "--seed", str(a.seed)]
    if a.untied:
        cmd.append("--untied")
    if a.text:
        cmd += ["--text", a.text]
    if threads:
        cmd += ["--threads", str(threads)]
    cmd += list(extra)
    if echo is None:
        subprocess.run(cmd, check=True)
        return out
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1) as p:
        for line in p.stdout:
            echo(line.rstrip("\n"))
    if p.returncode:
        raise subprocess.CalledProcessError(p.returncode, cmd)
    return out


def compare_step1(a, dtype_name, tol):
    import torch
    out = run_ref(a, dtype_name, 1)
    dtype = torch.float64 if dtype_name == "f64" else torch.float32
    m = Model(read_safetensors(f"{out}/init.safetensors"), a, dtype)
    b = read_safetensors(f"{out}/batches.safetensors")
    ref = read_safetensors(f"{out}/step1.safetensors")
    loss = m.loss(torch.tensor(b["tokens"][0].astype("int64")), torch.tensor(b["targets"][0].astype("int64")))
    loss.backward()
    lt, lp = float(ref["loss"][0]), float(loss)
    ok = abs(lt - lp) <= tol * abs(lp)
    print(f"{dtype_name}: step 1 loss tapegrad {lt:.10g} PyTorch {lp:.10g} (rel {abs(lt - lp) / abs(lp):.2e}, bar {tol:g})")
    worst_name, worst = None, 0.0
    for name, t in m.p.items():
        g = t.grad.numpy()
        scale = max(float(abs(g).max()), 1e-30)
        err = float(abs(ref["grad." + name] - g).max()) / scale
        if err > worst:
            worst_name, worst = name, err
    gtol = 1e-4 if dtype_name == "f32" else 1e-10
    print(f"{dtype_name}: worst gradient difference {worst:.2e} of the tensor's largest magnitude"
          f" (at {worst_name}; bar {gtol:g})")
    return ok and worst <= gtol


def compare_losses(a):
    import torch
    out = run_ref(a, "f32", a.steps)
    m = Model(read_safetensors(f"{out}/init.safetensors"), a, torch.float32)
    b = read_safetensors(f"{out}/batches.safetensors")
    ref = read_safetensors(f"{out}/run.safetensors")["loss"]
    opt = torch.optim.AdamW(m.params(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=a.weight_decay)
    worst, at = 0.0, 0
    for s in range(1, a.steps + 1):
        for gr in opt.param_groups:
            gr["lr"] = lr_at(s, a.lr, min(a.warmup, a.steps), a.steps, a.lr / 10)
        loss = m.loss(torch.tensor(b["tokens"][s - 1].astype("int64")),
                      torch.tensor(b["targets"][s - 1].astype("int64")))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.params(), a.clip)
        opt.step()
        rel = abs(float(ref[s - 1]) - float(loss)) / abs(float(loss))
        if rel > worst:
            worst, at = rel, s
    print(f"f32: loss over {a.steps} steps: worst relative difference {worst:.2e} at step {at}"
          f" (bar 1e-2); last step tapegrad {float(ref[-1]):.4f} PyTorch {float(loss):.4f}")
    return worst <= 1e-2


def time_both(a, threads):
    import statistics
    import torch
    out = run_ref(a, "f32", a.time_steps, threads)
    tg = statistics.median(read_safetensors(f"{out}/run.safetensors")["seconds"][2:])
    torch.set_num_threads(threads)
    m = Model(read_safetensors(f"{out}/init.safetensors"), a, torch.float32)
    b = read_safetensors(f"{out}/batches.safetensors")
    opt = torch.optim.AdamW(m.params(), lr=a.lr, weight_decay=a.weight_decay)
    secs = []
    for s in range(a.time_steps):
        x = torch.tensor(b["tokens"][s].astype("int64"))
        y = torch.tensor(b["targets"][s].astype("int64"))
        t0 = time.perf_counter()
        loss = m.loss(x, y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.params(), a.clip)
        opt.step()
        secs.append(time.perf_counter() - t0)
    pt = statistics.median(secs[2:])
    print(f"time per step on {threads} thread(s): tapegrad {1e3 * tg:.2f} ms, PyTorch {1e3 * pt:.2f} ms,"
          f" ratio {tg / pt:.2f}")
    return tg / pt


def say(*args):
    print(*args, flush=True)


def long_run(a):
    """--long: both sides trained for a.steps, validation curves side by side."""
    import numpy as np
    say(f"long run: {a.layers} layers, {a.heads} heads, width {a.width}, context {a.context}, "
        f"batch {a.batch}, vocab {a.vocab}{'' if a.untied else ' (tied)'}; {a.steps} steps "
        f"(warmup {a.warmup}, lr {a.lr:g} to {a.lr / 10:g}), weight decay {a.weight_decay:g}, "
        f"clip {a.clip:g}, dropout 0; validation every {a.eval_every} steps on "
        f"{a.eval_batches}x{a.batch} windows of {a.val}; {a.threads} thread(s), "
        f"PyTorch OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")

    def tg_line(line):
        f = line.split()
        if len(f) == 4 and f[0] == "val":
            say(f"tapegrad: step {int(f[1]):6d}  val {float(f[2]):.6f}  ({float(f[3]):.1f} s of training)")
        else:
            say(line)
    out = run_ref(a, "f32", a.steps, a.threads,
                  ["--val", a.val, "--eval-every", str(a.eval_every),
                   "--eval-batches", str(a.eval_batches)], tg_line)
    import torch
    torch.set_num_threads(a.threads)
    offs = read_safetensors(f"{out}/offsets.safetensors")
    tv = read_safetensors(f"{out}/val.safetensors")
    run = read_safetensors(f"{out}/run.safetensors")
    tg_val = dict(zip((int(x) for x in tv["step"]), (float(x) for x in tv["loss"])))
    tg_secs = float(run["seconds"].sum())
    B, T = a.batch, a.context

    def text_of(path):  # as bench/charlm_ref reads it
        with open(path, "rb") as f:
            return np.frombuffer(f.read(), dtype=np.uint8).astype(np.int64) % a.vocab
    train, val = text_of(a.text), text_of(a.val)
    span = np.arange(T)

    def windows(text, o):
        idx = o.astype(np.int64)[:, None] + span
        return torch.from_numpy(text[idx]), torch.from_numpy(text[idx + 1].reshape(-1))
    val_batches = [windows(val, o) for o in offs["val"]]
    m = Model(read_safetensors(f"{out}/init.safetensors"), a, torch.float32)
    opt = torch.optim.AdamW(m.params(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=a.weight_decay)

    def evaluate():
        with torch.no_grad():
            return sum(float(m.loss(x, y)) for x, y in val_batches) / len(val_batches)
    say(f"{'step':>6} | {'tapegrad val':>12} | {'PyTorch val':>12} | difference (relative)")
    worst, pt_secs, train_worst = 0.0, 0.0, 0.0
    for s in range(0, a.steps + 1):
        if s > 0:
            x, y = windows(train, offs["train"][s - 1])
            t0 = time.perf_counter()
            for gr in opt.param_groups:
                gr["lr"] = lr_at(s, a.lr, a.warmup, a.steps, a.lr / 10)
            loss = m.loss(x, y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.params(), a.clip)
            opt.step()
            pt_secs += time.perf_counter() - t0
            lt = float(run["loss"][s - 1])
            train_worst = max(train_worst, abs(lt - float(loss)) / abs(float(loss)))
        if s % a.eval_every == 0 or s == a.steps:
            pv, tgv = evaluate(), tg_val[s]
            rel = abs(tgv - pv) / abs(pv)
            worst = max(worst, rel)
            say(f"{s:6d} | {tgv:12.6f} | {pv:12.6f} | {tgv - pv:+.2e} ({rel:.1e})")
    tokens = a.steps * B * T
    say(f"final validation loss after {a.steps} steps: tapegrad {tg_val[a.steps]:.4f}, "
        f"PyTorch {pv:.4f} nats per character")
    say(f"training time ({a.steps} steps, {tokens} tokens, {a.threads} thread(s), "
        f"no evaluation): tapegrad {tg_secs:.1f} s ({tokens / tg_secs:.0f} tokens/s), "
        f"PyTorch {pt_secs:.1f} s ({tokens / pt_secs:.0f} tokens/s), ratio {tg_secs / pt_secs:.2f}")
    say(f"worst relative difference: validation {worst:.2e} (bar {a.long_tol:g}), "
        f"training loss {train_worst:.2e}")
    return worst <= a.long_tol


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", required=True, help="bench/charlm_ref of a build")
    # defaults: (the step-for-step checks, --long)
    defaults = dict(layers=(2, 4), heads=(2, 4), width=(32, 128), context=(32, 128),
                    batch=(8, 32), vocab=(256, 128), steps=(200, 2000), warmup=(20, 100),
                    text=(None, "data/brown/train.txt"))
    ap.add_argument("--long", action="store_true",
                    help="train both for --steps and compare validation curves")
    for k in ("layers", "heads", "width", "context", "batch", "vocab", "steps", "warmup"):
        ap.add_argument("--" + k, type=int,
                        help="default %d (--long: %d)" % defaults[k])
    ap.add_argument("--untied", action="store_true")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--text", help="a text file (default: a built-in line; --long: data/brown/train.txt)")
    ap.add_argument("--val", default="data/brown/val.txt", help="--long: the validation text")
    ap.add_argument("--eval-every", type=int, default=200, help="--long")
    ap.add_argument("--eval-batches", type=int, default=20, help="--long (of --batch windows)")
    ap.add_argument("--threads", type=int, default=2, help="--long: both sides")
    ap.add_argument("--torch-wait", default="passive", choices=["passive", "active", "unset"],
                    help="--long: PyTorch's OMP_WAIT_POLICY")
    ap.add_argument("--long-tol", type=float, default=1e-2, help="--long: the bar")
    ap.add_argument("--time", action="store_true", help="also time a step on 1 and 2 threads")
    ap.add_argument("--time-steps", type=int, default=20)
    a = ap.parse_args()
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v[1] if a.long else v[0])
    a.warmup = min(a.warmup, a.steps)  # as bench/charlm_ref does
    if a.long and a.torch_wait != "unset":  # read when PyTorch loads its OpenMP
        os.environ["OMP_WAIT_POLICY"] = a.torch_wait.upper()
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("numpy") is None:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
        import pyreexec
        pyreexec.reexec_with(["torch", "numpy"], __file__, ["python3-torch", "python3-numpy"])
    if a.long:
        for f in (a.text, a.val):
            if not os.path.isfile(f):
                sys.exit(f"compare_charlm.py: {f}: no such file (give --text / --val)")
        if a.eval_every < 1 or a.eval_batches < 1 or a.threads < 1:
            sys.exit("compare_charlm.py: --eval-every, --eval-batches and --threads must be >= 1")
        ok = long_run(a)
        say("the bar was met" if ok else "the bar was missed")
        sys.exit(0 if ok else 1)
    ok = compare_step1(a, "f32", 1e-5)
    ok = compare_step1(a, "f64", 1e-10) and ok
    ok = compare_losses(a) and ok
    if a.time:
        r = {t: time_both(a, t) for t in (1, 2)}
        print("ratios: " + " ".join(f"LM@{t}={v:.2f}" for t, v in r.items()))
    print("all bars met" if ok else "a bar was missed")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
