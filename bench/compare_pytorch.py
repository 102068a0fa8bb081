#!/usr/bin/env python3
"""bench/compare_pytorch.py: tapegrad against PyTorch (CPU) on the
training workloads, side by side in one run:

  W1  784-100-10, sigmoid hidden, softmax-NLL, SGD lr 0.5, batch 32
  W2  784-512-512-10 ReLU, softmax-NLL, SGD momentum 0.9, lr 0.05, batch 128
  W4  conv 32@5x5 pad 2, ReLU, max-pool 2; conv 64@5x5 pad 2, ReLU,
      max-pool 2; dense 3136-1024 ReLU; dense 1024-10; softmax-NLL; SGD
      momentum 0.9, lr 0.05 (constant, as W2), batch 64, no dropout
      (tapegrad-mnist --graph cnn --dropout 0 --schedule none); PyTorch's
      side is torch.nn.functional's conv2d, relu, max_pool2d, flatten (NCHW
      order) and addmm

Both sides train from the SAME initial weights (bench/train --save-init) on
the SAME sample order (bench/train --dump-order, the batcher's shuffles)
with the same hyper-parameters, on 1 and 2 threads. tapegrad's side is
bench/train, run from here. Prints seconds per epoch (median of the epochs
after the first), the ratio tapegrad/PyTorch, both test accuracies and both
peak resident memories; the last line is

  ratios: W1@1=R W1@2=R W2@1=R W2@2=R W4@1=R W4@2=R

Usage: bench/compare_pytorch.py --train BUILD/bench/train [--data DIR]
           [--workloads W1,W2,W4] [--epochs-w1 N] [--epochs-w2 N]
           [--epochs-w4 N] [--threads 1,2] [--repeat N] [--limit N]
           [--check-steps K]
With --repeat N each pair of runs (tapegrad, then PyTorch) is made N times
and the medians over the runs count. --limit N trains both sides on the
first N training images only (the test set stays whole): a quick check that
the comparison runs, whose times and accuracies are not benchmark figures.
--check-steps K checks instead that both sides compute the same thing: each
workload trains K steps on one thread from the same weights and batches,
and the losses of every step are compared (the first step's, forward alone
from equal weights, must agree to 1e-5 relative; the later ones include K-1
updates, and drift apart only by rounding).
PyTorch runs each configuration in a process of its own (for its peak
memory). On more than one thread it runs under both OMP_WAIT_POLICY=PASSIVE
and ACTIVE and the faster counts (--torch-wait passive|active to run one)."""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

WORKLOADS = {
    "W1": dict(sizes=[784, 100, 10], act="sigmoid", batch=32, lr=0.5, momentum=0.0),
    "W2": dict(sizes=[784, 512, 512, 10], act="relu", batch=128, lr=0.05, momentum=0.9),
    "W4": dict(conv=2, sizes=[3136, 1024, 10], act="relu", batch=64, lr=0.05, momentum=0.9),
}
FIRST_STEP_RTOL = 1e-5


def find_torch_python():
    """An interpreter that can import torch: the system one first."""
    cands = ["/usr/bin/python3", sys.executable, shutil.which("python3")]
    for c in cands:
        if not c or not os.path.exists(c):
            continue
        r = subprocess.run([c, "-c", "import torch, numpy"], capture_output=True)
        if r.returncode == 0:
            return c
    return None


def read_idx(path):
    import numpy as np
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        import gzip
        with gzip.open(path + ".gz", "rb") as f:
            raw = f.read()
    else:
        with open(path, "rb") as f:
            raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def torch_worker(args):
    """One PyTorch configuration; prints a JSON result line."""
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    w = WORKLOADS[args.workload]
    d = args.data
    # As tg_mnist_load: bytes / 255 in float32.
    tx = torch.from_numpy(read_idx(f"{d}/train-images-idx3-ubyte").reshape(-1, 784).astype(np.float32) / np.float32(255))
    ty = torch.from_numpy(read_idx(f"{d}/train-labels-idx1-ubyte").astype(np.int64))
    vx = torch.from_numpy(read_idx(f"{d}/t10k-images-idx3-ubyte").reshape(-1, 784).astype(np.float32) / np.float32(255))
    vy = torch.from_numpy(read_idx(f"{d}/t10k-labels-idx1-ubyte").astype(np.int64))
    order = torch.from_numpy(np.load(args.order).astype(np.int64))
    params = []
    nconv = w.get("conv", 0)
    for i in range(nconv):  # [K,C,R,S] and [K], as torch's conv2d takes them
        W = torch.from_numpy(np.load(f"{args.init}/conv{i}.weight.npy")).clone().requires_grad_(True)
        b = torch.from_numpy(np.load(f"{args.init}/conv{i}.bias.npy")).clone().requires_grad_(True)
        params += [W, b]
    for i in range(len(w["sizes"]) - 1):
        W = torch.from_numpy(np.load(f"{args.init}/layer{i}.weight.npy")).clone().requires_grad_(True)
        b = torch.from_numpy(np.load(f"{args.init}/layer{i}.bias.npy")).clone().requires_grad_(True)
        params += [W, b]
    act = torch.sigmoid if w["act"] == "sigmoid" else torch.relu
    F = torch.nn.functional
    conv, dense = params[:2 * nconv], params[2 * nconv:]
    nl = len(dense) // 2

    def forward(x):
        h = x
        if nconv:
            h = h.view(-1, 1, 28, 28)
            for i in range(nconv):
                h = F.max_pool2d(F.relu(F.conv2d(h, conv[2 * i], conv[2 * i + 1], padding=2)), 2)
            h = torch.flatten(h, 1)  # NCHW order, as tapegrad's reshape
        for i in range(nl):
            h = torch.addmm(dense[2 * i + 1], h, dense[2 * i])  # x W + b, W is [in,out]
            if i + 1 < nl:
                h = act(h)
        return h

    opt = torch.optim.SGD(params, lr=w["lr"], momentum=w["momentum"])
    # the order covers the images trained on: all of them, or --limit's first N
    B, n = w["batch"], order.shape[1]
    secs, losses = [], []
    for e in range(args.epochs):
        perm = order[e]
        t0 = time.perf_counter()
        for s in range(0, n, B):
            idx = perm[s:s + B]
            x, y = tx[idx], ty[idx]  # the batcher's copy, as tapegrad makes it
            loss = torch.nn.functional.cross_entropy(forward(x), y)
            if e == 0 and len(losses) < args.losses:
                losses.append(float(loss))
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
        secs.append(time.perf_counter() - t0)
    with torch.no_grad():
        correct = 0
        for s in range(0, vx.shape[0], 1000):
            correct += int((forward(vx[s:s + 1000]).argmax(1) == vy[s:s + 1000]).sum())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(dict(secs=secs, acc=100.0 * correct / vx.shape[0], maxrss_kb=rss,
                          torch=torch.__version__, losses=losses)))


def median_after_first(secs):
    xs = sorted(secs[1:] if len(secs) > 1 else secs)
    k = len(xs)
    return xs[k // 2] if k % 2 else (xs[k // 2 - 1] + xs[k // 2]) / 2


def parse_result(line):
    parts = line.split()
    kv = dict(p.split("=", 1) for p in parts[3:])
    return dict(sec=float(kv["sec_per_epoch"]), acc=float(kv["test_acc"]),
                maxrss_kb=int(kv["maxrss_kb"]), secs=[float(x) for x in kv["epochs"].split(",")])


def run_pair(args, py, train, data, wl, t, epochs, init, order, limit=0, losses=0):
    """tapegrad, then PyTorch (under each wait policy tried), back to back."""
    out = subprocess.run([train, "--workload", wl, "--threads", str(t), "--data", data,
                          "--epochs", str(epochs), "--limit", str(limit), "--losses", str(losses)],
                         check=True, capture_output=True, text=True).stdout
    tg = parse_result(next(l for l in out.splitlines() if l.startswith("result ")))
    tg["losses"] = [float(l.split()[2]) for l in out.splitlines() if l.startswith("loss ")]
    policies = ["PASSIVE", "ACTIVE"] if args.torch_wait == "best" else [args.torch_wait.upper()]
    if t == 1:
        policies = policies[:1]  # nothing waits on one thread
    pt = None
    for pol in policies:
        env = dict(os.environ, OMP_NUM_THREADS=str(t), OMP_WAIT_POLICY=pol)
        out = subprocess.run([py, os.path.abspath(__file__), "--worker", "--workload", wl,
                              "--epochs", str(epochs), "--init", init, "--order", order,
                              "--data", data, "--threads-one", str(t), "--losses", str(losses)],
                             check=True, capture_output=True, text=True, env=env).stdout
        r = json.loads(out.strip().splitlines()[-1])
        r["sec"] = median_after_first(r["secs"])
        r["policy"] = pol
        if pt is None or r["sec"] < pt["sec"]:
            pt = r
    return tg, pt


def check_losses(wl, tg, pt):
    """Prints how far apart the two sides' losses are; True when the first
    step's agree to FIRST_STEP_RTOL."""
    a, b = tg["losses"], pt["losses"]
    if not a or len(a) != len(b):
        print(f"{wl}: losses missing (tapegrad {len(a)}, pytorch {len(b)})")
        return False
    rel = [abs(x - y) / max(abs(y), 1e-30) for x, y in zip(a, b)]
    ok = rel[0] <= FIRST_STEP_RTOL
    print(f"{wl}: step 0 loss tapegrad {a[0]:.9g} pytorch {b[0]:.9g} rel {rel[0]:.2e} "
          f"({'ok' if ok else 'FAIL'}, tolerance {FIRST_STEP_RTOL:g}); over {len(a)} steps "
          f"max rel {max(rel):.2e}, last step {a[-1]:.7g} vs {b[-1]:.7g}; "
          f"test % after them {tg['acc']:.2f} vs {pt['acc']:.2f}", flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", default="bench/train", help="the bench/train program")
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--epochs-w1", type=int, default=5)
    ap.add_argument("--epochs-w2", type=int, default=3)
    ap.add_argument("--epochs-w4", type=int, default=2)
    ap.add_argument("--workloads", default="W1,W2,W4", help="comma-separated, of W1, W2, W4")
    ap.add_argument("--limit", type=int, default=0,
                    help="train on the first N training images only (a quick check, not a figure)")
    ap.add_argument("--check-steps", dest="check_steps", type=int, default=0,
                    help="compare the losses of the first K steps instead of timing")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--torch-wait", default="best", choices=["best", "passive", "active"])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workload", help=argparse.SUPPRESS)
    ap.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--init", help=argparse.SUPPRESS)
    ap.add_argument("--order", help=argparse.SUPPRESS)
    ap.add_argument("--threads-one", dest="threads_one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--losses", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.threads = args.threads_one
        return torch_worker(args)

    py = find_torch_python()
    if not py:
        print("compare_pytorch: no Python with PyTorch and NumPy found; install them with\n"
              "  apt-get install python3-torch\n(Debian's PyTorch, for /usr/bin/python3)", file=sys.stderr)
        return 1
    train = os.path.abspath(args.train)
    if not os.access(train, os.X_OK):
        print(f"compare_pytorch: {args.train} not found; build it with 'make bench'", file=sys.stderr)
        return 1
    data = os.path.abspath(args.data)
    threads = [int(t) for t in args.threads.split(",")]
    epochs = {"W1": args.epochs_w1, "W2": args.epochs_w2, "W4": args.epochs_w4}
    wls = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in wls if w not in WORKLOADS]
    if bad or not wls:
        print(f"compare_pytorch: unknown workload in --workloads '{args.workloads}'"
              f" (choose among {','.join(WORKLOADS)})", file=sys.stderr)
        return 2
    if args.limit < 0 or args.check_steps < 0:
        print("compare_pytorch: --limit and --check-steps must be >= 0", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="tg-compare-")
    results = {}
    try:
        for wl in wls:
            init = os.path.join(tmp, wl)
            os.mkdir(init)
            order = os.path.join(tmp, wl + "-order.npy")
            limit, ep = args.limit, epochs[wl]
            if args.check_steps:  # K steps of one epoch: K batches of images
                limit, ep = args.check_steps * WORKLOADS[wl]["batch"], 1
            subprocess.run([train, "--save-init", init, "--workload", wl], check=True)
            subprocess.run([train, "--dump-order", order, "--workload", wl, "--data", data,
                            "--epochs", str(ep), "--limit", str(limit)], check=True)
            if args.check_steps:
                tg, pt = run_pair(args, py, train, data, wl, 1, 1, init, order, limit,
                                  args.check_steps)
                results[wl] = check_losses(wl, tg, pt)
                continue
            for t in threads:
                runs = [run_pair(args, py, train, data, wl, t, ep, init, order, limit)
                        for _ in range(args.repeat)]
                tg = dict(runs[0][0], sec=statistics.median(r[0]["sec"] for r in runs),
                          maxrss_kb=statistics.median(r[0]["maxrss_kb"] for r in runs))
                pt = dict(runs[0][1], sec=statistics.median(r[1]["sec"] for r in runs),
                          maxrss_kb=statistics.median(r[1]["maxrss_kb"] for r in runs))
                results[(wl, t)] = (tg, pt)
                print(f"{wl}@{t}: tapegrad {tg['sec']:.3f} s/epoch  pytorch {pt['sec']:.3f} s/epoch"
                      f" (runs: tapegrad {' '.join('%.3f' % r[0]['sec'] for r in runs)};"
                      f" pytorch {' '.join('%.3f/%s' % (r[1]['sec'], r[1]['policy']) for r in runs)})",
                      flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if args.check_steps:
        return 0 if all(results.values()) else 1
    if args.limit:
        print(f"\n--limit {args.limit}: trained on the first {args.limit} images only; "
              f"not benchmark figures")
    torch_ver = next(iter(results.values()))[1]["torch"]
    print(f"\nPyTorch {torch_ver} ({py}); seconds per epoch are medians of the epochs after the "
          f"first; PyTorch's multi-thread figures are its faster OMP_WAIT_POLICY")
    print(f"{'workload':<9}{'threads':>7}{'tapegrad s':>12}{'pytorch s':>11}{'ratio':>7}"
          f"{'tg test %':>11}{'pt test %':>11}{'tg MiB':>8}{'pt MiB':>8}")
    for (wl, t), (tg, pt) in results.items():
        print(f"{wl:<9}{t:>7}{tg['sec']:>12.3f}{pt['sec']:>11.3f}{tg['sec'] / pt['sec']:>7.2f}"
              f"{tg['acc']:>11.2f}{pt['acc']:>11.2f}{tg['maxrss_kb'] / 1024:>8.0f}{pt['maxrss_kb'] / 1024:>8.0f}")
    print("ratios: " + " ".join(f"{wl}@{t}={tg['sec'] / pt['sec']:.2f}"
                                for (wl, t), (tg, pt) in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
