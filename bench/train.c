/* bench/train.c: training speed on the real MNIST for the two benchmark
 * workloads, through the public API only:
 *   W1  784-100-10, sigmoid hidden, fused softmax-NLL, SGD lr 0.5, batch 32
 *   W2  784-512-512-10 ReLU, fused softmax-NLL, SGD momentum 0.9, lr 0.05,
 *       batch 128
 * (the graphs 'mlp' and 'deep' of tapegrad-mnist, built the same way from
 * the same seed). For each workload and thread count it prints seconds per
 * epoch (median of the epochs after the first), steps per second, the test
 * accuracy and the peak resident memory (getrusage ru_maxrss). Each
 * configuration runs in a child process of its own, so each peak is that
 * configuration's alone.
 *
 * Usage: bench/train [--data DIR] [--workload W1|W2|all] [--threads 1,2]
 *                    [--epochs N] [--seed N]
 *        bench/train --save-init DIR --workload W   initial parameters as
 *            DIR/layer<i>.weight.npy, DIR/layer<i>.bias.npy ([in,out], [out])
 *        bench/train --dump-order FILE --workload W --epochs N
 *            the batcher's sample order, int32 [N epochs, 60000], as .npy
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

enum { MAX_LAYERS = 3, MAX_EPOCHS = 100, EVAL_BATCH = 1000 };

typedef struct {
  const char *name;
  int n_layers;
  int64_t sizes[MAX_LAYERS + 1];
  tg_activation hidden;
  long batch;
  double lr, momentum;
} workload;

static const workload workloads[] = {
    {"W1", 2, {784, 100, 10}, TG_ACT_SIGMOID, 32, 0.5, 0.0},
    {"W2", 3, {784, 512, 512, 10}, TG_ACT_RELU, 128, 0.05, 0.9},
};

typedef struct {
  int n;
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
 * every layer in order; the output layer has no activation (Xavier). */
static int model_init(model *m, const workload *w, uint64_t seed) {
  tg_rng rng;
  tg_rng_seed(&rng, seed);
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
}

static tg_tensor *logits(tg_tape *t, const model *m, tg_tensor *x) {
  tg_tensor *h = x;
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

static int load(const char *dir, tg_tensor **tx, tg_tensor **ty,
                tg_tensor **vx, tg_tensor **vy) {
  if (tg_mnist_load(dir, "train", tx, ty) || tg_mnist_load(dir, "t10k", vx, vy)) {
    fprintf(stderr, "%s\n(give the MNIST folder with --data DIR)\n", tg_last_error());
    return -1;
  }
  return 0;
}

/* Trains one configuration and prints its result line. */
static int run(const workload *w, int threads, int epochs, uint64_t seed,
               const char *data) {
  if (tg_set_num_threads(threads)) return -1;
  tg_tensor *tx = NULL, *ty = NULL, *vx = NULL, *vy = NULL;
  if (load(data, &tx, &ty, &vx, &vy)) return -1;
  model m = {0};
  tg_tensor *params[2 * MAX_LAYERS];
  int np = 0, rc = -1;
  tg_optim *opt = NULL;
  tg_tape *t = tg_tape_new();
  tg_batcher *b = tg_batcher_new(tx, ty, w->batch, seed + 1);
  tg_batcher *vb = tg_batcher_new(vx, vy, EVAL_BATCH, 0);
  double secs[MAX_EPOCHS], cpu[MAX_EPOCHS];
  int64_t steps = 0;
  if (!t || !b || !vb || model_init(&m, w, seed)) goto out;
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
      if (!loss || tg_backward(t, loss) || tg_optim_step(opt) ||
          tg_optim_zero_grad(opt))
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
  for (int i = 0; !rc && i < m.n; i++) {
    char path[4096];
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
                      const char *data, const char *path) {
  tg_tensor *tx = NULL, *ty = NULL, *vx = NULL, *vy = NULL;
  if (load(data, &tx, &ty, &vx, &vy)) return -1;
  int64_t n = tg_tensor_dim(tx, 0);
  tg_tensor *idx = tg_zeros(TG_F32, TG_SHAPE(n, 1));
  tg_tensor *order = tg_zeros(TG_I32, TG_SHAPE(epochs, n));
  tg_batcher *b = idx ? tg_batcher_new(idx, ty, w->batch, seed + 1) : NULL;
  int rc = -1;
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
          "usage: bench/train [--data DIR] [--workload W1|W2|all] [--threads 1,2]\n"
          "                   [--epochs N] [--seed N]\n"
          "       bench/train --save-init DIR --workload W1|W2\n"
          "       bench/train --dump-order FILE.npy --workload W1|W2 --epochs N\n");
}

int main(int argc, char **argv) {
  const char *data = "data/mnist", *which = "all", *threads = "1,2";
  const char *init_dir = NULL, *order_path = NULL;
  int epochs = 0;
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
  const workload *sel[2];
  int nsel = 0;
  for (int k = 0; k < 2; k++)
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
    return dump_order(sel[0], seed, epochs ? epochs : 1, data, order_path) ? 1 : 0;
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

  char rows[32][256];
  int nrows = 0, status = 0;
  for (int k = 0; k < nsel; k++)
    for (int j = 0; j < nt; j++) {
      const workload *w = sel[k];
      int ep = epochs ? epochs : (w == &workloads[0] ? 6 : 4);
      int fd[2];
      fflush(stdout);
      if (pipe(fd)) return 1;
      pid_t pid = fork();
      if (pid < 0) return 1;
      if (pid == 0) { /* a fresh process per configuration */
        close(fd[0]);
        dup2(fd[1], STDOUT_FILENO);
        _exit(run(w, tlist[j], ep, seed, data) ? 1 : 0);
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
