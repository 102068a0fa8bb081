/* tests/dist_worker.c: one rank of the distributed API's tests, run under
 * mpirun by tests/mpi-dist.sh (and alone, as a one-process job). Each
 * scenario prints "ok: ..." or "FAIL: ..." lines and exits 0 only when
 * every check of this rank held. Public API only.
 *
 *   good               train fixed, train mpi and seeds in one job
 *   train [fixed|mpi]  k steps data-parallel vs a one-process run of the
 *                      same batches in this process: within 1e-6 relative;
 *                      prints the parameters' hash (equal run to run);
 *                      shards of unequal size and an empty one included;
 *                      steady-state exchanges allocate nothing
 *   seeds              ranks start from different seeds and steps: after
 *                      tg_dist_broadcast_optim all hold rank 0's state
 *   shapes             rank 1's model is wider: every rank gets TG_ESHAPE
 *   fail               rank 1 reports a failure: every rank gets its message
 *   mismatch           rank 1 calls another exchange: every rank fails
 *   silent             rank 1 stops talking: the others time out naming it
 *   exit               rank 1 exits without finalizing mid-training
 *   compare A B        (one process) the parameters of two tapegrad-mnist
 *                      checkpoints agree within 1e-6 relative
 *   compare-charlm A B (one process) the parameters of two tapegrad-charlm
 *                      checkpoints agree within 1e-6 relative, but for
 *                      the key third of each attention bias (see below) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tapegrad.h"

enum { N = 38, D = 20, H = 16, C = 4, B = 12, STEPS = 8 };

static int fails;
static int rank_;
#define CHECK(cond, ...)                                                    \
  do {                                                                      \
    if (cond) {                                                             \
      printf("ok: rank %d: ", rank_);                                       \
    } else {                                                                \
      printf("FAIL: rank %d: ", rank_);                                     \
      fails++;                                                              \
    }                                                                       \
    printf(__VA_ARGS__);                                                    \
    printf("\n");                                                           \
    fflush(stdout);                                                         \
  } while (0)

typedef struct {
  tg_dense *l1, *l2;
  tg_tensor *p[4];
  tg_optim *opt;
} net;

static int net_new(net *m, uint64_t seed, int hidden, bool adam) {
  tg_rng rng;
  tg_rng_seed(&rng, seed);
  m->l1 = tg_dense_new(D, hidden, TG_F32, TG_ACT_TANH, &rng);
  m->l2 = tg_dense_new(hidden, C, TG_F32, TG_ACT_NONE, &rng);
  if (!m->l1 || !m->l2) return -1;
  tg_dense_params(m->l1, m->p);
  tg_dense_params(m->l2, m->p + 2);
  if (adam) {
    tg_adam_config c = TG_ADAM_DEFAULTS;
    c.lr = 0.01;
    m->opt = tg_adam_new(m->p, 4, &c);
  } else {
    tg_sgd_config c = TG_SGD_DEFAULTS;
    c.lr = 0.1, c.momentum = 0.9;
    m->opt = tg_sgd_new(m->p, 4, &c);
  }
  return m->opt ? 0 : -1;
}

static void net_free(net *m) {
  tg_optim_free(m->opt);
  tg_dense_free(m->l1);
  tg_dense_free(m->l2);
}

static uint64_t net_hash(net *m) {
  uint64_t h = 0;
  for (int i = 0; i < 4; i++) {
    h = h * 31 + tg_tensor_hash(m->p[i]);
    tg_tensor *b1 = NULL, *b2 = NULL;
    tg_optim_state(m->opt, i, &b1, &b2);
    if (b1) h = h * 31 + tg_tensor_hash(b1);
    if (b2) h = h * 31 + tg_tensor_hash(b2);
  }
  return h * 31 + (uint64_t)tg_optim_steps(m->opt);
}

/* Forward and backward over rows [lo, hi) of the data; no rows: no grads. */
static int grads(tg_tape *t, net *m, tg_tensor *x, tg_tensor *y, int64_t lo,
                 int64_t hi) {
  if (hi <= lo) return 0;
  tg_tensor *xs = tg_rows(x, lo, hi), *ys = tg_rows(y, lo, hi);
  tg_tensor *h = tg_dense_act(t, m->l1, xs, TG_ACT_TANH);
  tg_tensor *loss = tg_softmax_nll(t, tg_dense_forward(t, m->l2, h), ys);
  int rc = loss ? tg_backward(t, loss) : -1;
  tg_tape_clear(t);
  tg_tensor_free(xs);
  tg_tensor_free(ys);
  return rc;
}

static void data(tg_tensor **x, tg_tensor **y) {
  tg_rng rng;
  tg_rng_seed(&rng, 5);
  *x = tg_zeros(TG_F32, TG_SHAPE(N, D));
  *y = tg_zeros(TG_I32, TG_SHAPE(N));
  tg_fill_normal(*x, &rng, 0, 1);
  for (int i = 0; i < N; i++) {
    const float *r = tg_tensor_f32(*x) + i * D;
    tg_tensor_i32(*y)[i] = (r[0] > 0) + 2 * (r[1] + r[2] > 0);
  }
}

static long allocs;
static void *cm(size_t n) { allocs++; return malloc(n); }
static void *cr(void *p, size_t n) { allocs++; return realloc(p, n); }
static void *cc(size_t a, size_t n) { allocs++; return calloc(a, n); }

static int train(tg_dist *d, bool mpi_reduce) {
  int P = tg_dist_size(d), r = tg_dist_rank(d);
  if (mpi_reduce && tg_dist_set_reduce(d, TG_DIST_REDUCE_MPI)) return -1;
  tg_tensor *x, *y;
  data(&x, &y);
  net m, ref;
  tg_tape *t = tg_tape_new();
  if (net_new(&m, 1, H, false) || net_new(&ref, 1, H, false)) return -1;
  if (tg_dist_broadcast_optim(d, m.opt)) {
    printf("FAIL: rank %d: %s\n", r, tg_last_error());
    return -1;
  }
  long steady_allocs = 0;
  for (int s = 0; s < STEPS; s++) {
    int64_t lo = (int64_t)(s % 4) * B, hi = lo + B < N ? lo + B : N;
    int64_t rows = hi - lo;
    /* this rank's shard: rows split as evenly as they go */
    int64_t a = lo + rows * r / P, b = lo + rows * (r + 1) / P;
    if (grads(t, &m, x, y, a, b)) return -1;
    if (s >= 2) {
      allocs = 0;
      tg_set_allocator(cm, cr, cc, free);
    }
    int rc = tg_dist_mean_grads(d, m.p, 4, b - a);
    if (s >= 2) {
      tg_set_allocator(malloc, realloc, calloc, free);
      steady_allocs += allocs;
    }
    if (rc) {
      printf("FAIL: rank %d: %s\n", r, tg_last_error());
      return -1;
    }
    if (tg_optim_step(m.opt) || tg_optim_zero_grad(m.opt)) return -1;
    /* the one-process run of the same batch */
    if (grads(t, &ref, x, y, lo, hi) || tg_optim_step(ref.opt) ||
        tg_optim_zero_grad(ref.opt))
      return -1;
  }
  /* per tensor, the largest difference against the largest value: the
   * sums of a split batch run in another order, so single elements that
   * cancel to near 0 differ by rounding far above their own size */
  double worst = 0;
  for (int i = 0; i < 4; i++) {
    double diff = 0, big = 0;
    for (int64_t k = 0; k < tg_tensor_numel(m.p[i]); k++) {
      double u = tg_get(m.p[i], k), v = tg_get(ref.p[i], k);
      if (!(fabs(u - v) <= diff)) diff = fabs(u - v);
      big = fmax(big, fabs(v));
    }
    if (!(diff / big <= worst)) worst = diff / big;
  }
  CHECK(worst <= 1e-6, "%d steps on %d ranks (%s): parameters within %.2g relative "
        "of one process", STEPS, P, mpi_reduce ? "MPI_Allreduce" : "fixed order", worst);
  CHECK(steady_allocs == 0, "steady-state tg_dist_mean_grads allocated %ld times",
        steady_allocs);
  /* every rank holds the same bits: the sum of each rank's hash halves */
  uint64_t h = net_hash(&m);
  double v[2] = {(double)(h >> 32), (double)(h & 0xffffffffu)};
  double mine[2] = {v[0], v[1]};
  if (tg_dist_sum(d, v, 2)) return -1;
  CHECK(v[0] == P * mine[0] && v[1] == P * mine[1] && tg_dist_barrier(d) == TG_OK,
        "every rank holds the same parameters");
  if (r == 0) printf("params: %016llx\n", (unsigned long long)h);
  net_free(&m);
  net_free(&ref);
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(y);
  return 0;
}

static int seeds(tg_dist *d) {
  int r = tg_dist_rank(d), P = tg_dist_size(d);
  tg_tensor *x, *y;
  data(&x, &y);
  net m;
  tg_tape *t = tg_tape_new();
  if (net_new(&m, 100 + (uint64_t)r, H, true)) return -1;
  /* a different number of local Adam steps per rank: moments and counts differ */
  for (int s = 0; s <= r; s++)
    if (grads(t, &m, x, y, 0, 10 + r) || tg_optim_step(m.opt) || tg_optim_zero_grad(m.opt))
      return -1;
  uint64_t before = net_hash(&m);
  double v[1] = {(double)(before & 0xffffffffu)}, mine = v[0];
  tg_dist_sum(d, v, 1);
  CHECK(P == 1 || v[0] != P * mine, "the ranks start apart");
  int rc = tg_dist_broadcast_optim(d, m.opt);
  CHECK(rc == TG_OK, "tg_dist_broadcast_optim: %s", rc ? tg_last_error() : "ok");
  uint64_t h = net_hash(&m);
  double w[2] = {(double)(h >> 32), (double)(h & 0xffffffffu)}, mw[2] = {w[0], w[1]};
  tg_dist_sum(d, w, 2);
  CHECK(w[0] == P * mw[0] && w[1] == P * mw[1] && tg_optim_steps(m.opt) == 1,
        "after the broadcast every rank holds rank 0's parameters, moments and "
        "step count (%lld)", (long long)tg_optim_steps(m.opt));
  net_free(&m);
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(y);
  return 0;
}

/* Every "layer..." tensor of checkpoint a against b's, per tensor the
 * largest difference over the largest value. */
/* The largest difference of x and y relative to y's largest value (NaN
 * when any element is NaN, or y is all zero), elements [skip0, skip1) left
 * out. */
static double rel_diff(const tg_tensor *x, const tg_tensor *y, int64_t skip0, int64_t skip1) {
  double diff = 0, big = 0;
  for (int64_t i = 0; i < tg_tensor_numel(x); i++) {
    if (i >= skip0 && i < skip1) continue;
    double u = tg_get(x, i), v = tg_get(y, i);
    if (!(fabs(u - v) <= diff)) diff = fabs(u - v);
    big = fmax(big, fabs(v));
  }
  return diff / big;
}

/* The larger, a NaN winning (so a NaN fails the check against 1e-6). */
static double fmax_nan(double a, double b) { return !(b <= a) ? b : a; }

/* Every tensor of a but "optim.*" and "history" against b's of that name.
 * The key third of "*.attn.qkv.bias" is left out: its gradient is exactly 0
 * (a key bias adds one constant to a query's scores, which softmax ignores),
 * so what it holds is rounding noise, which AdamW, dividing by the noise's
 * own size, turns into steps of up to lr whose sign the summation order
 * decides. */
static int compare_charlm(const char *a, const char *b) {
  tg_checkpoint *ca = tg_checkpoint_open(a), *cb = tg_checkpoint_open(b);
  if (!ca || !cb) {
    printf("FAIL: %s\n", tg_last_error());
    tg_checkpoint_close(ca);
    tg_checkpoint_close(cb);
    return 1;
  }
  double worst = 0;
  int n = 0;
  const char *at = "";
  for (int i = 0; i < tg_checkpoint_count(ca); i++) {
    const char *name = tg_checkpoint_name(ca, i);
    if (!strncmp(name, "optim.", 6) || !strcmp(name, "history")) continue;
    tg_tensor *x = tg_checkpoint_get(ca, name), *y = tg_checkpoint_get(cb, name);
    if (!x || !y || tg_tensor_numel(x) != tg_tensor_numel(y)) {
      printf("FAIL: %s: missing or of another shape in %s\n", name, b);
      tg_checkpoint_close(ca);
      tg_checkpoint_close(cb);
      return 1;
    }
    int64_t c = tg_tensor_numel(x) / 3, n0 = 0, n1 = 0;
    size_t len = strlen(name);
    if (len > 14 && !strcmp(name + len - 14, ".attn.qkv.bias")) n0 = c, n1 = 2 * c;
    double r = rel_diff(x, y, n0, n1);
    if (!(r <= worst)) worst = r, at = name;
    n++;
  }
  CHECK(n >= 1 && worst <= 1e-6, "%d parameters of %s within %.2g relative of %s%s%s%s",
        n, a, worst, b, *at ? " (the farthest: " : "", at, *at ? ")" : "");
  tg_checkpoint_close(ca);
  tg_checkpoint_close(cb);
  return fails;
}

static int compare(const char *a, const char *b) {
  tg_checkpoint *ca = tg_checkpoint_open(a), *cb = tg_checkpoint_open(b);
  if (!ca || !cb) {
    printf("FAIL: %s\n", tg_last_error());
    return 1;
  }
  double worst = 0;
  int n = 0;
  char name[32];
  for (int l = 0; l < 3; l++)
    for (int k = 0; k < 2; k++) {
      snprintf(name, sizeof name, "layer%d.%s", l, k ? "bias" : "weight");
      tg_tensor *x = tg_checkpoint_get(ca, name), *y = tg_checkpoint_get(cb, name);
      if (!x && !y) continue;
      if (!x || !y || tg_tensor_numel(x) != tg_tensor_numel(y)) {
        printf("FAIL: %s differs in shape\n", name);
        return 1;
      }
      worst = fmax_nan(worst, rel_diff(x, y, 0, 0));
      n++;
    }
  tg_checkpoint_close(ca);
  tg_checkpoint_close(cb);
  CHECK(n >= 4 && worst <= 1e-6, "%d parameters of %s within %.2g relative of %s",
        n, a, worst, b);
  return fails;
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "compare")) return compare(argv[2], argv[3]);
  if (argc == 4 && !strcmp(argv[1], "compare-charlm")) return compare_charlm(argv[2], argv[3]);
  tg_dist *d = tg_dist_init(&argc, &argv);
  if (!d) {
    printf("FAIL: tg_dist_init: %s\n", tg_last_error());
    return 1;
  }
  rank_ = tg_dist_rank(d);
  int P = tg_dist_size(d), r = rank_;
  const char *what = argc > 1 ? argv[1] : "train";
  if (!strcmp(what, "good")) {
    if (train(d, false) || train(d, true) || tg_dist_set_reduce(d, TG_DIST_REDUCE_FIXED) ||
        seeds(d))
      fails++;
  } else if (!strcmp(what, "train")) {
    if (train(d, argc > 2 && !strcmp(argv[2], "mpi"))) fails++;
  } else if (!strcmp(what, "seeds")) {
    if (seeds(d)) fails++;
  } else if (!strcmp(what, "shapes")) {
    net m;
    if (net_new(&m, 1, r == 1 ? H + 1 : H, false)) return 1;
    int rc = tg_dist_broadcast_optim(d, m.opt);
    CHECK(rc == TG_ESHAPE && strstr(tg_last_error(), "rank 1 of"),
          "a wider model on rank 1: %s", tg_last_error());
    net_free(&m);
  } else if (!strcmp(what, "fail")) {
    int rc = r == 1 ? tg_dist_check(d, TG_EIO, "cannot load data/none")
                    : tg_dist_check(d, TG_OK, NULL);
    CHECK(rc == TG_EIO && strstr(tg_last_error(), "rank 1 of") &&
              strstr(tg_last_error(), "cannot load data/none"),
          "rank 1's failure: %s", tg_last_error());
    rc = tg_dist_check(d, TG_OK, NULL);
    CHECK(rc == TG_OK, "the job goes on after a reported failure");
    /* a rank that gives up tells the others, whatever they are doing */
    if (r == 1) tg_dist_fail(d, TG_ENOMEM, "out of memory in step 3");
    else rc = tg_dist_barrier(d);
    CHECK(r == 1 || (rc == TG_ENOMEM && strstr(tg_last_error(), "rank 1 of") &&
                     strstr(tg_last_error(), "out of memory in step 3")),
          "tg_dist_fail on rank 1: %s", tg_last_error());
    rc = tg_dist_barrier(d);
    CHECK(rc == TG_ESTATE, "later calls refuse: %s", tg_last_error());
  } else if (!strcmp(what, "mismatch")) {
    net m;
    if (net_new(&m, 1, H, false)) return 1;
    for (int i = 0; i < 4; i++) tg_fill(tg_tensor_grad(m.p[i]), 1);
    int rc = r == 1 ? tg_dist_barrier(d) : tg_dist_mean_grads(d, m.p, 4, 4);
    CHECK(rc < 0 && strstr(tg_last_error(), "rank "), "rank 1 in another exchange: %s",
          tg_last_error());
    net_free(&m);
  } else if (!strcmp(what, "silent") || !strcmp(what, "exit")) {
    bool ex = !strcmp(what, "exit");
    if (!ex) tg_dist_set_timeout(d, 2);
    net m;
    if (net_new(&m, 1, H, false)) return 1;
    for (int s = 0;; s++) {
      if (r == 1 && s == 3) {
        if (ex) {
          fflush(stdout);
          _exit(argc > 2 ? atoi(argv[2]) : 3); /* no tg_dist_finalize, no MPI_Finalize */
        }
        sleep(60);
      }
      for (int i = 0; i < 4; i++) tg_fill(tg_tensor_grad(m.p[i]), 0.5);
      int rc = tg_dist_mean_grads(d, m.p, 4, 4);
      if (rc) {
        CHECK(!ex && strstr(tg_last_error(), "no word from rank 1 of"),
              "step %d: %s", s, tg_last_error());
        break;
      }
      if (ex) nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    net_free(&m);
  } else {
    printf("FAIL: unknown scenario %s\n", what);
    fails++;
  }
  int rc = tg_dist_finalize(d);
  if (rc) {
    /* not finalized: the first rank to exit makes mpirun stop the rest, so
     * give them a moment to print their checks */
    printf("rank %d of %d: %s\n", r, P, tg_last_error());
    fflush(stdout);
    sleep(3);
  }
  fflush(stdout);
  return fails ? 1 : rc ? 2 : 0;
}
