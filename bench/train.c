/* bench/train.c: training speed on the real MNIST for the benchmark
 * workloads, through the public API only:
 *   W1  784-100-10, sigmoid hidden, fused softmax-NLL, SGD lr 0.5, batch 32
 *   W2  784-512-512-10 ReLU, fused softmax-NLL, SGD momentum 0.9, lr 0.05,
 *       batch 128
 *   W4  conv 32@5x5 pad 2, ReLU, max-pool 2; conv 64@5x5 pad 2, ReLU,
 *       max-pool 2; dense 3136-1024 ReLU; dense 1024-10; fused softmax-NLL;
 *       SGD momentum 0.9, lr 0.05 (constant, as W2), batch 64, no dropout
 * (the graphs 'mlp', 'deep' and 'cnn' of tapegrad-mnist, built the same
 * way from the same seed; W2 and W4 as --schedule none, W4 as --dropout 0).
 * For each workload and thread count it prints seconds per
 * epoch (median of the epochs after the first), steps per second, the test
 * accuracy and the peak resident memory (getrusage ru_maxrss). Each
 * configuration runs in a child process of its own, so each peak is that
 * configuration's alone.
 *
 * Usage: bench/train [--data DIR] [--workload W1|W2|W4|all] [--threads 1,2]
 *                    [--epochs N] [--seed N] [--limit N] [--losses K]
 *        bench/train --save-init DIR --workload W   initial parameters as
 *            DIR/layer<i>.weight.npy, DIR/layer<i>.bias.npy ([in,out], [out])
 *            and for W4 DIR/conv<i>.weight.npy, DIR/conv<i>.bias.npy
 *            ([K,C,R,S], PyTorch's layout, and [K])
 *        bench/train --dump-order FILE --workload W --epochs N [--limit N]
 *            the batcher's sample order, int32 [N epochs, 60000], as .npy
 * --limit N trains on the first N training images only (each epoch a
 * shuffle of those N; the test set stays whole): a short run to check that
 * a comparison works end to end, not a benchmark figure. --losses K prints
 * the loss of the first K steps as "loss STEP VALUE" lines, for
 * bench/compare_pytorch.py --check-steps.
 * Each result is also printed as one line
 *   result W T sec_per_epoch=S steps_per_s=R maxrss_kb=K test_acc=A
 *          cpu_per_epoch=C epochs=s1,s2,...
 * (C: the median's CPU seconds, user + system over all threads: beside S,
 * it shows how much a busy machine took from the run)
 * for scripts (bench/compare_pytorch.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tapegrad.h"

enum { MAX_LAYERS = 3, MAX_CONV = 2, MAX_EPOCHS = 100, EVAL_BATCH = 1000 };

typedef struct {
  const char *name;
  int default_epochs;
  /* 5x5 convolutions, padding 2, each followed by ReLU and a 2x2 max-pool,
   * before the dense layers; n_conv 0 for the MLPs */
  int n_conv;
  int64_t conv_out[MAX_CONV];
  int n_layers;
  int64_t sizes[MAX_LAYERS + 1];
  tg_activation hidden;
  long batch;
  double lr, momentum;
} workload;

static const workload workloads[] = {
    {"W1", 6, 0, {0}, 2, {784, 100, 10}, TG_ACT_SIGMOID, 32, 0.5, 0.0},
    {"W2", 4, 0, {0}, 3, {784, 512, 512, 10}, TG_ACT_RELU, 128, 0.05, 0.9},
    /* 28 -> pool 14 -> pool 7: 64 x 7 x 7 = 3136 inputs to the dense part */
    {"W4", 2, 2, {32, 64}, 2, {3136, 1024, 10}, TG_ACT_RELU, 64, 0.05, 0.9},
};
enum { N_WORKLOADS = sizeof workloads / sizeof workloads[0] };

typedef struct {
  int nconv, n;
  tg_conv *conv[MAX_CONV];
  tg_dense *layer[MAX_LAYERS];
  tg_activation hidden;
} model;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the whole process (all threads), user + system. */
static double cpu_now(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
         (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* As tapegrad-mnist's model_init: one generator seeded with seed makes
 * every layer in order, convolutions first (He normal); the output layer
 * has no activation (Xavier). */
static int model_init(model *m, const workload *w, uint64_t seed) {
  tg_rng rng;
  tg_rng_seed(&rng, seed);
  for (int i = 0; i < w->n_conv; i++) {
    tg_conv_spec sp = {.in = i ? w->conv_out[i - 1] : 1, .out = w->conv_out[i],
                       .kh = 5, .kw = 5, .pad_h = 2, .pad_w = 2};
    if (!(m->conv[i] = tg_conv_new(&sp, TG_F32, &rng))) return -1;
    m->nconv = i + 1;
  }
  m->n = w->n_layers;
  m->hidden = w->hidden;
  for (int i = 0; i < m->n; i++) {
    tg_activation act = i + 1 < m->n ? w->hidden : TG_ACT_NONE;
    m->layer[i] = tg_dense_new(w->sizes[i], w->sizes[i + 1], TG_F32, act, &rng);
    if (!m->layer[i]) return -1;
  }
  return 0;
}

static void model_free(model *m) {
  for (int i = 0; i < m->n; i++) tg_dense_free(m->layer[i]);
  for (int i = 0; i < m->nconv; i++) tg_conv_free(m->conv[i]);
}

static tg_tensor *logits(tg_tape *t, const model *m, tg_tensor *x) {
  tg_tensor *h = x;
  if (m->nconv) { /* the batcher's [B,784] rows as [B,1,28,28] images (a view) */
    int64_t rows = tg_tensor_dim(x, 0);
    h = tg_reshape(t, h, TG_SHAPE(rows, 1, 28, 28));
    for (int i = 0; i < m->nconv; i++)
      h = tg_max_pool2d(t, tg_relu(t, tg_conv_forward(t, m->conv[i], h)), 2, 2, 2, 2, 0, 0);
    if (!h) return NULL;
    /* NCHW order, as PyTorch's flatten(1) */
    h = tg_reshape(t, h, TG_SHAPE(rows, -1));
  }
  /* hidden layers fused with their activation: one op each */
  for (int i = 0; i < m->n; i++)
    h = i + 1 < m->n ? tg_dense_act(t, m->layer[i], h, m->hidden)
                     : tg_dense_forward(t, m->layer[i], h);
  return h;
}

static double evaluate(tg_tape *t, const model *m, tg_batcher *b) {
  tg_tensor *x, *y;
  int64_t correct = 0, rows = 0;
  bool was = tg_tape_set_grad(t, false);
  tg_batcher_rewind(b);
  while (tg_batcher_next(b, &x, &y) == 1) {
    tg_tensor *z = logits(t, m, x);
    if (!z) break;
    int64_t n = tg_tensor_dim(y, 0);
    correct += (int64_t)llround(tg_accuracy(z, y) * (double)n);
    rows += n;
    tg_tape_clear(t);
  }
  tg_tape_set_grad(t, was);
  return rows ? (double)correct / (double)rows : 0;
}

/* The training and test sets; with limit > 0 the first limit training
 * images only (copies, so every tensor is freed the same way). */
static int load(const char *dir, long limit, tg_tensor **tx, tg_tensor **ty,
                tg_tensor **vx, tg_tensor **vy) {
  if (tg_mnist_load(dir, "train", tx, ty) || tg_mnist_load(dir, "t10k", vx, vy)) {
    fprintf(stderr, "%s\n(give the MNIST folder with --data DIR)\n", tg_last_error());
    return -1;
  }
  if (limit > 0 && limit < tg_tensor_dim(*tx, 0)) {
    tg_tensor *x = tg_tensor_from(TG_F32, TG_SHAPE(limit, tg_tensor_dim(*tx, 1)),
                                  tg_tensor_data(*tx));
    tg_tensor *y = tg_tensor_from(TG_I32, TG_SHAPE(limit), tg_tensor_data(*ty));
    tg_tensor_free(*tx);
    tg_tensor_free(*ty);
    *tx = x, *ty = y;
    if (!x || !y) {
      fprintf(stderr, "%s\n", tg_last_error());
      return -1;
    }
  }
  return 0;
}

/* Trains one configuration and prints its result line. */
static int run(const workload *w, int threads, int epochs, uint64_t seed,
               const char *data, long limit, long losses) {
  if (tg_set_num_threads(threads)) return -1;
  tg_tensor *tx = NULL, *ty = NULL, *vx = NULL, *vy = NULL;
  int rc = -1;
  model m = {0};
  tg_tensor *params[2 * (MAX_CONV + MAX_LAYERS)];
  int np = 0;
  tg_optim *opt = NULL;
  tg_tape *t = NULL;
  tg_batcher *b = NULL, *vb = NULL;
  if (load(data, limit, &tx, &ty, &vx, &vy)) goto out;
  t = tg_tape_new();
  b = tg_batcher_new(tx, ty, w->batch, seed + 1);
  vb = tg_batcher_new(vx, vy, EVAL_BATCH, 0);
  double secs[MAX_EPOCHS], cpu[MAX_EPOCHS];
  int64_t steps = 0;
  if (!t || !b || !vb || model_init(&m, w, seed)) goto out;
  for (int i = 0; i < m.nconv; i++) np += tg_conv_params(m.conv[i], params + np);
  for (int i = 0; i < m.n; i++) np += tg_dense_params(m.layer[i], params + np);
  tg_sgd_config cfg = TG_SGD_DEFAULTS;
  cfg.lr = w->lr;
  cfg.momentum = w->momentum;
  if (!(opt = tg_sgd_new(params, np, &cfg))) goto out;
  for (int e = 0; e < epochs; e++) {
    tg_batcher_shuffle(b);
    tg_tensor *x, *y;
    int more;
    double t0 = now(), c0 = cpu_now();
    steps = 0;
    while ((more = tg_batcher_next(b, &x, &y)) == 1) {
      tg_tensor *loss = tg_softmax_nll(t, logits(t, &m, x), y);
      if (!loss) goto out;
      if (e == 0 && steps < losses)
        printf("loss %ld %.9g\n", (long)steps, (double)tg_tensor_f32(loss)[0]);
      if (tg_backward(t, loss) || tg_optim_step(opt) || tg_optim_zero_grad(opt))
        goto out;
      tg_tape_clear(t);
      steps++;
    }
    if (more < 0) goto out;
    secs[e] = now() - t0;
    cpu[e] = cpu_now() - c0;
  }
  double acc = evaluate(t, &m, vb);
  double sorted[MAX_EPOCHS];
  int k = epochs > 1 ? epochs - 1 : 1;
  memcpy(sorted, epochs > 1 ? secs + 1 : secs, (size_t)k * sizeof *sorted);
  qsort(sorted, (size_t)k, sizeof *sorted, cmp_double);
  double med = k % 2 ? sorted[k / 2] : (sorted[k / 2 - 1] + sorted[k / 2]) / 2;
  memcpy(sorted, epochs > 1 ? cpu + 1 : cpu, (size_t)k * sizeof *sorted);
  qsort(sorted, (size_t)k, sizeof *sorted, cmp_double);
  double cmed = k % 2 ? sorted[k / 2] : (sorted[k / 2 - 1] + sorted[k / 2]) / 2;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("result %s %d sec_per_epoch=%.4f steps_per_s=%.1f maxrss_kb=%ld "
         "test_acc=%.4f cpu_per_epoch=%.4f epochs=", w->name, threads, med,
         (double)steps / med, ru.ru_maxrss, 100 * acc, cmed);
  for (int e = 0; e < epochs; e++) printf("%s%.4f", e ? "," : "", secs[e]);
  printf("\n");
  fflush(stdout);
  rc = 0;
out:
  if (rc) fprintf(stderr, "%s\n", tg_last_error());
  tg_optim_free(opt);
  model_free(&m);
  tg_batcher_free(b);
  tg_batcher_free(vb);
  tg_tape_free(t);
  tg_tensor_free(tx);
  tg_tensor_free(ty);
  tg_tensor_free(vx);
  tg_tensor_free(vy);
  return rc;
}

static int save_init(const workload *w, uint64_t seed, const char *dir) {
  model m = {0};
  int rc = model_init(&m, w, seed);
  char path[4096];
  for (int i = 0; !rc && i < m.nconv; i++) {
    snprintf(path, sizeof path, "%s/conv%d.weight.npy", dir, i);
    rc = tg_npy_save(path, tg_conv_weight(m.conv[i]));
    snprintf(path, sizeof path, "%s/conv%d.bias.npy", dir, i);
    if (!rc) rc = tg_npy_save(path, tg_conv_bias(m.conv[i]));
  }
  for (int i = 0; !rc && i < m.n; i++) {
    snprintf(path, sizeof path, "%s/layer%d.weight.npy", dir, i);
    rc = tg_npy_save(path, tg_dense_weight(m.layer[i]));
    snprintf(path, sizeof path, "%s/layer%d.bias.npy", dir, i);
    if (!rc) rc = tg_npy_save(path, tg_dense_bias(m.layer[i]));
  }
  if (rc) fprintf(stderr, "%s\n", tg_last_error());
  model_free(&m);
  return rc;
}

/* The batcher's order, read back through images whose one column is the
 * row's index (exact in float32 below 2^24). */
static int dump_order(const workload *w, uint64_t seed, int epochs,
                      const char *data, long limit, const char *path) {
  tg_tensor *tx = NULL, *ty = NULL, *vx = NULL, *vy = NULL, *idx = NULL, *order = NULL;
  tg_batcher *b = NULL;
  int rc = -1;
  if (load(data, limit, &tx, &ty, &vx, &vy)) goto out;
  int64_t n = tg_tensor_dim(tx, 0);
  idx = tg_zeros(TG_F32, TG_SHAPE(n, 1));
  order = tg_zeros(TG_I32, TG_SHAPE(epochs, n));
  b = idx ? tg_batcher_new(idx, ty, w->batch, seed + 1) : NULL;
  if (!b || !order) goto out;
  for (int64_t i = 0; i < n; i++) tg_tensor_f32(idx)[i] = (float)i;
  int32_t *o = tg_tensor_i32(order);
  for (int e = 0; e < epochs; e++) {
    tg_batcher_shuffle(b);
    tg_tensor *x, *y;
    int64_t pos = 0;
    while (tg_batcher_next(b, &x, &y) == 1)
      for (int64_t r = 0; r < tg_tensor_dim(x, 0); r++)
        o[e * n + pos++] = (int32_t)tg_tensor_f32(x)[r];
  }
  rc = tg_npy_save(path, order);
out:
  if (rc) fprintf(stderr, "%s\n", tg_last_error());
  tg_batcher_free(b);
  tg_tensor_free(idx);
  tg_tensor_free(order);
  tg_tensor_free(tx);
  tg_tensor_free(ty);
  tg_tensor_free(vx);
  tg_tensor_free(vy);
  return rc;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench/train [--data DIR] [--workload W1|W2|W4|all] [--threads 1,2]\n"
          "                   [--epochs N] [--seed N] [--limit N] [--losses K]\n"
          "       bench/train --save-init DIR --workload W1|W2|W4\n"
          "       bench/train --dump-order FILE.npy --workload W1|W2|W4 --epochs N\n"
          "                   [--limit N]\n"
          "  --limit N   train on the first N training images only (a quick check)\n"
          "  --losses K  print the loss of the first K steps\n");
}

int main(int argc, char **argv) {
  const char *data = "data/mnist", *which = "all", *threads = "1,2";
  const char *init_dir = NULL, *order_path = NULL;
  int epochs = 0;
  long limit = 0, losses = 0;
  uint64_t seed = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    }
    if (!v) {
      usage(stderr);
      return 2;
    }
    i++;
    if (!strcmp(a, "--data")) data = v;
    else if (!strcmp(a, "--workload")) which = v;
    else if (!strcmp(a, "--threads")) threads = v;
    else if (!strcmp(a, "--epochs")) epochs = atoi(v);
    else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--limit")) limit = atol(v);
    else if (!strcmp(a, "--losses")) losses = atol(v);
    else if (!strcmp(a, "--save-init")) init_dir = v;
    else if (!strcmp(a, "--dump-order")) order_path = v;
    else {
      usage(stderr);
      return 2;
    }
  }
  if (epochs < 0 || epochs > MAX_EPOCHS) {
    fprintf(stderr, "bench/train: --epochs must be in [1, %d]\n", MAX_EPOCHS);
    return 2;
  }
  if (limit < 0 || losses < 0) {
    fprintf(stderr, "bench/train: --limit and --losses must be >= 0\n");
    return 2;
  }
  const workload *sel[N_WORKLOADS];
  int nsel = 0;
  for (int k = 0; k < N_WORKLOADS; k++)
    if (!strcmp(which, "all") || !strcmp(which, workloads[k].name))
      sel[nsel++] = &workloads[k];
  if (!nsel) {
    fprintf(stderr, "bench/train: unknown workload '%s'\n", which);
    return 2;
  }
  if (init_dir || order_path) {
    if (nsel != 1) {
      fprintf(stderr, "bench/train: name one workload\n");
      return 2;
    }
    if (init_dir) return save_init(sel[0], seed, init_dir) ? 1 : 0;
    return dump_order(sel[0], seed, epochs ? epochs : 1, data, limit, order_path) ? 1 : 0;
  }

  int tlist[16], nt = 0;
  for (const char *p = threads; *p && nt < 16;) {
    tlist[nt] = atoi(p);
    if (tlist[nt] < 1) {
      fprintf(stderr, "bench/train: bad --threads '%s'\n", threads);
      return 2;
    }
    nt++;
    p = strchr(p, ',');
    if (!p) break;
    p++;
  }

  char rows[N_WORKLOADS * 16][256];
  int nrows = 0, status = 0;
  for (int k = 0; k < nsel; k++)
    for (int j = 0; j < nt; j++) {
      const workload *w = sel[k];
      int ep = epochs ? epochs : w->default_epochs;
      int fd[2];
      fflush(stdout);
      if (pipe(fd)) return 1;
      pid_t pid = fork();
      if (pid < 0) return 1;
      if (pid == 0) { /* a fresh process per configuration */
        close(fd[0]);
        dup2(fd[1], STDOUT_FILENO);
        _exit(run(w, tlist[j], ep, seed, data, limit, losses) ? 1 : 0);
      }
      close(fd[1]);
      char line[4096];
      FILE *f = fdopen(fd[0], "r");
      double sec = 0, sps = 0, acc = 0;
      long rss = 0;
      int got = 0;
      while (f && fgets(line, sizeof line, f)) {
        fputs(line, stdout);
        const char *s = strstr(line, "sec_per_epoch=");
        if (s && sscanf(s, "sec_per_epoch=%lf steps_per_s=%lf maxrss_kb=%ld test_acc=%lf",
                        &sec, &sps, &rss, &acc) == 4)
          got = 1;
      }
      if (f) fclose(f);
      int ws;
      waitpid(pid, &ws, 0);
      if (!got || !WIFEXITED(ws) || WEXITSTATUS(ws)) {
        status = 1;
        continue;
      }
      snprintf(rows[nrows++], sizeof rows[0],
               "%-8s %7d %12.3f %10.0f %11.1f %9.2f\n", w->name, tlist[j], sec,
               sps, (double)rss / 1024, acc);
    }
  printf("\n%-8s %7s %12s %10s %11s %9s\n", "workload", "threads", "s/epoch",
         "steps/s", "peak MiB", "test %");
  for (int i = 0; i < nrows; i++) fputs(rows[i], stdout);
  return status;
}
