/* tests/test_simd.c: the elementwise loops compiled per vector path
 * (TG_SIMD: generic, avx2, avx512) give the generic path's bits on every
 * path this CPU runs: every op of the unary template, forward and
 * backward, both dtypes, with every argument set its test cases use, on
 * sizes that leave vector tails and on one large enough to be split over
 * threads, with NaN, +-inf, denormals, +-0 and values at the ops'
 * thresholds among the inputs; the same for the broadcasting binary ops
 * on equal shapes and broadcasts, for layer_norm, and for the softmax ops
 * (softmax, softmax_axis, log_softmax, softmax_causal, softmax_nll), whose
 * row sums must not depend on the vector width. Also: TG_SIMD naming no
 * path, or one the CPU cannot run, is refused with a message. */
#include "testutil.h"

/* The ops made from ops/unary.h. */
static const char *const unary_ops[] = {
    "abs",  "add_scalar", "clamp",      "exp",  "gelu", "gelu_tanh",
    "leaky_relu", "log",  "log1p",      "neg",  "pow_scalar", "relu",
    "sigmoid", "silu", "softplus", "sqrt", "square", "tanh"};
#define N_UNARY ((int)(sizeof unary_ops / sizeof unary_ops[0]))

static const tg_opdef *find_op(const char *name) {
  for (int k = 0; k < tg__n_ops; k++)
    if (strcmp(tg__ops[k]->name, name) == 0) return tg__ops[k];
  return NULL;
}

/* Sizes: one element, tails of a 4-, 8- and 16-lane vector, a long run,
 * and one that tg__par_range splits (above 2 TG__PAR_ELEMS). */
static const int64_t sizes[] = {1, 7, 33, 1000, 1027,
                                2 * TG__PAR_ELEMS + 77};
#define N_SIZES ((int)(sizeof sizes / sizeof sizes[0]))

/* Values placed among the random ones: specials, and the edges of the
 * float GELU's and sigmoid's ranges (|x| = 14.8 where z = 10.5, -87.3). */
static const double specials[] = {
    NAN, INFINITY, -INFINITY, 0.0, -0.0, 1.0, -1.0, 14.8, -14.8, 14.9,
    -14.9, -87.3, -88, 88, 1e30, -1e30, 1e-30, -1e-30};
#define N_SPECIALS ((int)(sizeof specials / sizeof specials[0]))

static double value(tg_dtype d, int64_t i, uint64_t *s) {
  /* a few denormals of the dtype, the specials, then random values
   * over many scales */
  if (i % 5 == 1) {
    double tiny = d == TG_F32 ? (double)FLT_TRUE_MIN : DBL_TRUE_MIN;
    double m = (double)(1 + i % 97);
    return (i % 2 ? -1 : 1) * tiny * m;
  }
  if (i % 5 == 3) return specials[(i / 5) % N_SPECIALS];
  *s = *s * 6364136223846793005u + 1442695040888963407u;
  double u = (double)(*s >> 11) / 9007199254740992.0; /* [0, 1) */
  double scale = ((*s >> 3) & 7) == 0 ? 100.0 : ((*s >> 3) & 7) < 3 ? 10.0 : 2.0;
  return (2 * u - 1) * scale;
}

/* The same bits, or both NaN (which NaN an operation returns is not a
 * value: vector and scalar code may pick another operand's payload). */
static bool same(tg_dtype d, const void *a, const void *b, int64_t i) {
  if (d == TG_F32) {
    float x = ((const float *)a)[i], y = ((const float *)b)[i];
    return memcmp(&x, &y, sizeof x) == 0 || (isnan(x) && isnan(y));
  }
  double x = ((const double *)a)[i], y = ((const double *)b)[i];
  return memcmp(&x, &y, sizeof x) == 0 || (isnan(x) && isnan(y));
}

/* y and dx of op on n values, path p: into y and dx (numel elements). */
static void run(const tg_opdef *op, const tg_opargs *args, tg_dtype d,
                int64_t n, int p, void *y, void *dx) {
  ck_assert_int_eq(tg__simd_set_path(p), TG_OK);
  int64_t shape[1] = {n};
  tg_tensor *x = tg_zeros(d, 1, shape), *g = tg_zeros(d, 1, shape);
  ck_assert_ptr_nonnull(x);
  ck_assert_ptr_nonnull(g);
  uint64_t s = 12345 + (uint64_t)n;
  for (int64_t i = 0; i < n; i++) {
    tg_set(x, i, value(d, i, &s));
    /* gradients of both signs and scales, with a zero, an inf and a NaN
     * now and then */
    double gv = i % 11 == 4 ? 0.0 : i % 13 == 6 ? INFINITY
                : i % 17 == 8 ? NAN : value(d, i + 2, &s);
    tg_set(g, i, gv);
  }
  ck_assert_int_eq(tg_requires_grad(x, true), TG_OK);
  tg_tape *t = tg_tape_new();
  tg_tensor *out = tg__apply(t, op, &x, args);
  ck_assert_msg(out, "%s: %s", op->name, tg_last_error());
  ck_assert_int_eq(tg_backward_grad(t, out, g), TG_OK);
  size_t bytes = (size_t)n * (d == TG_F32 ? sizeof(float) : sizeof(double));
  memcpy(y, out->data, bytes);
  memcpy(dx, x->grad, bytes);
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(g);
}

START_TEST(every_path_gives_generic_bits) {
  const tg_opdef *op = find_op(unary_ops[_i]);
  ck_assert_msg(op, "no op %s", unary_ops[_i]);
  tg__par_guard_enable(false); /* the large size runs on threads */
  int64_t max = sizes[N_SIZES - 1];
  void *y0 = malloc((size_t)max * 8), *d0 = malloc((size_t)max * 8),
       *y1 = malloc((size_t)max * 8), *d1 = malloc((size_t)max * 8);
  ck_assert(y0 && d0 && y1 && d1);
  int paths = 0, first = -1;
  for (int ci = 0; ci < op->n_cases; ci++) {
    const tg_opcase *c = &op->cases[ci];
    if (c->status) continue;
    if (first < 0) first = ci;
    /* the template's loops see only f[0] and f[1]: once per pair */
    bool seen = false;
    for (int cj = first; cj < ci && !seen; cj++)
      seen = !op->cases[cj].status && op->cases[cj].args.f[0] == c->args.f[0] &&
             op->cases[cj].args.f[1] == c->args.f[1];
    if (seen) continue;
    for (int dt = 0; dt < 2; dt++) {
      tg_dtype d = dt ? TG_F32 : TG_F64;
      for (int si = 0; si < N_SIZES; si++) {
        int64_t n = sizes[si];
        /* the threaded size once per op and dtype: it is slow to run */
        if (si == N_SIZES - 1 && ci != first) continue;
        run(op, &c->args, d, n, TG__SIMD_GENERIC, y0, d0);
        for (int p = TG__SIMD_GENERIC + 1; p < TG__SIMD_NPATHS; p++) {
          if (!tg__simd_supported(p)) continue;
          paths++;
          run(op, &c->args, d, n, p, y1, d1);
          /* the first difference, if any (Check writes a record for
           * every assertion, too slow for one per element) */
          int64_t iy = 0, id = 0;
          while (iy < n && same(d, y0, y1, iy)) iy++;
          while (id < n && same(d, d0, d1, id)) id++;
          ck_assert_msg(iy == n, "%s case %d %s n=%lld path %s: y[%lld] differs",
                        op->name, ci, dt ? "f32" : "f64", (long long)n,
                        tg__simd_name(p), (long long)iy);
          ck_assert_msg(id == n, "%s case %d %s n=%lld path %s: dx[%lld] differs",
                        op->name, ci, dt ? "f32" : "f64", (long long)n,
                        tg__simd_name(p), (long long)id);
        }
      }
    }
  }
  ck_assert_int_eq(tg__simd_set_path(-1), TG_OK);
  tg__par_guard_enable(true);
  free(y0), free(d0), free(y1), free(d1);
  if (!paths) fprintf(stderr, "test_simd: this CPU runs the generic path only\n");
}
END_TEST

/* The broadcasting binary ops (TG__BINARY_OP in ops/op.h). */
static const char *const binary_ops[] = {"add", "sub", "mul", "div",
                                         "maximum", "minimum", "pow"};
#define N_BINARY ((int)(sizeof binary_ops / sizeof binary_ops[0]))

static tg_tensor *filled(tg_dtype d, int ndim, const int64_t *shape,
                         uint64_t seed) {
  tg_tensor *x = tg_zeros(d, ndim, shape);
  ck_assert_ptr_nonnull(x);
  uint64_t s = seed;
  for (int64_t i = 0; i < x->numel; i++)
    tg_set(x, i, value(d, i + (int64_t)seed % 5, &s));
  ck_assert_int_eq(tg_requires_grad(x, true), TG_OK);
  return x;
}

/* z, da and db of op(a, b) on path p, appended at out (z's numel, then
 * a's, then b's elements); returns how many. */
static int64_t run2(const tg_opdef *op, tg_dtype d, int na, const int64_t *sa,
                    int nb, const int64_t *sb, int p, void *out) {
  ck_assert_int_eq(tg__simd_set_path(p), TG_OK);
  tg_tensor *in[2] = {filled(d, na, sa, 7), filled(d, nb, sb, 11)};
  tg_tape *t = tg_tape_new();
  tg_tensor *z = tg__apply(t, op, in, NULL);
  ck_assert_msg(z, "%s: %s", op->name, tg_last_error());
  tg_tensor *g = filled(d, z->ndim, z->shape, 13);
  ck_assert_int_eq(tg_backward_grad(t, z, g), TG_OK);
  size_t es = d == TG_F32 ? sizeof(float) : sizeof(double);
  char *o = out;
  memcpy(o, z->data, (size_t)z->numel * es);
  o += (size_t)z->numel * es;
  memcpy(o, in[0]->grad, (size_t)in[0]->numel * es);
  o += (size_t)in[0]->numel * es;
  memcpy(o, in[1]->grad, (size_t)in[1]->numel * es);
  int64_t total = z->numel + in[0]->numel + in[1]->numel;
  tg_tape_free(t);
  tg_tensor_free(in[0]);
  tg_tensor_free(in[1]);
  tg_tensor_free(g);
  return total;
}

/* Equal shapes (one contiguous row, split over threads when large), an
 * operand of one element on either side (whose gradient is a sum, run
 * by the generic code on every path), rows with a broadcast row, and an
 * outer product's broadcast. */
START_TEST(binary_paths_give_generic_bits) {
  const tg_opdef *op = find_op(binary_ops[_i]);
  ck_assert_msg(op, "no op %s", binary_ops[_i]);
  tg__par_guard_enable(false);
  size_t cap = (size_t)(3 * sizes[N_SIZES - 1] + 16) * 8;
  void *r0 = malloc(cap), *r1 = malloc(cap);
  ck_assert(r0 && r1);
  for (int dt = 0; dt < 2; dt++) {
    tg_dtype d = dt ? TG_F32 : TG_F64;
    for (int si = 0; si < N_SIZES; si++) {
      int64_t n = sizes[si], one[1] = {1}, v[1] = {n}, rc[2] = {3, n},
              col[2] = {3, 1};
      struct {
        int na, nb;
        const int64_t *sa, *sb;
      } shapes[] = {{1, 1, v, v}, {1, 0, v, one}, {0, 1, one, v},
                    {2, 1, rc, v}, {1, 2, v, rc}, {2, 2, col, rc}};
      int ns = (int)(sizeof shapes / sizeof shapes[0]);
      if (si == N_SIZES - 1) ns = 1; /* the large size: the threaded case */
      for (int k = 0; k < ns; k++) {
        int64_t m = run2(op, d, shapes[k].na, shapes[k].sa, shapes[k].nb,
                         shapes[k].sb, TG__SIMD_GENERIC, r0);
        for (int p = TG__SIMD_GENERIC + 1; p < TG__SIMD_NPATHS; p++) {
          if (!tg__simd_supported(p)) continue;
          ck_assert_int_eq(run2(op, d, shapes[k].na, shapes[k].sa,
                                shapes[k].nb, shapes[k].sb, p, r1), m);
          int64_t i = 0;
          while (i < m && same(d, r0, r1, i)) i++;
          ck_assert_msg(i == m, "%s %s n=%lld shapes %d path %s: element %lld "
                        "of z, da, db differs", op->name, dt ? "f32" : "f64",
                        (long long)n, k, tg__simd_name(p), (long long)i);
        }
      }
    }
  }
  ck_assert_int_eq(tg__simd_set_path(-1), TG_OK);
  tg__par_guard_enable(true);
  free(r0), free(r1);
}
END_TEST

/* x [R, D] for layer_norm: the specials and denormals in the first row
 * only (one NaN or inf makes its whole row NaN), random values elsewhere. */
static tg_tensor *ln_filled(tg_dtype d, int ndim, const int64_t *shape,
                            int64_t D, uint64_t seed) {
  tg_tensor *x = tg_zeros(d, ndim, shape);
  ck_assert_ptr_nonnull(x);
  uint64_t s = seed;
  for (int64_t i = 0; i < x->numel; i++)
    tg_set(x, i, value(d, i < D ? i : 5 * i, &s));
  ck_assert_int_eq(tg_requires_grad(x, true), TG_OK);
  return x;
}

/* y, dx, dw, db of layer_norm (w and b when given) on path p, into out;
 * returns how many elements. */
static int64_t run_ln(tg_dtype d, int64_t R, int64_t D, bool hw, bool hb,
                      int p, void *out) {
  ck_assert_int_eq(tg__simd_set_path(p), TG_OK);
  int64_t xs[2] = {R, D}, ws[1] = {D};
  tg_tensor *x = ln_filled(d, 2, xs, D, 3);
  tg_tensor *w = hw ? ln_filled(d, 1, ws, 0, 5) : NULL;
  tg_tensor *b = hb ? ln_filled(d, 1, ws, 0, 9) : NULL;
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_layer_norm(t, x, w, b, 1e-5);
  ck_assert_msg(y, "layer_norm: %s", tg_last_error());
  tg_tensor *g = ln_filled(d, 2, xs, D, 13);
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  size_t es = d == TG_F32 ? sizeof(float) : sizeof(double);
  char *o = out;
  int64_t total = 0;
  const void *parts[4] = {y->data, x->grad, w ? w->grad : NULL,
                          b ? b->grad : NULL};
  const int64_t lens[4] = {R * D, R * D, D, D};
  for (int k = 0; k < 4; k++)
    if (parts[k]) {
      memcpy(o + (size_t)total * es, parts[k], (size_t)lens[k] * es);
      total += lens[k];
    }
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(w);
  tg_tensor_free(b);
  tg_tensor_free(g);
  return total;
}

/* layer_norm's kernels per path: rows of the sizes above, with and
 * without w and b, and enough rows for forward to be split over threads. */
START_TEST(layer_norm_paths_give_generic_bits) {
  tg__par_guard_enable(false);
  const int64_t Ds[] = {1, 7, 33, 1000, 1027};
  size_t cap = (size_t)(2 * 64 * 1027 + 2 * 1027) * 8;
  void *r0 = malloc(cap), *r1 = malloc(cap);
  ck_assert(r0 && r1);
  for (int dt = 0; dt < 2; dt++) {
    tg_dtype d = dt ? TG_F32 : TG_F64;
    for (int di = 0; di < (int)(sizeof Ds / sizeof Ds[0]); di++)
      for (int wb = 0; wb < 4; wb++) {
        int64_t D = Ds[di], R = D == 1027 ? 64 : 3;
        bool hw = wb & 1, hb = wb & 2;
        int64_t m = run_ln(d, R, D, hw, hb, TG__SIMD_GENERIC, r0);
        for (int p = TG__SIMD_GENERIC + 1; p < TG__SIMD_NPATHS; p++) {
          if (!tg__simd_supported(p)) continue;
          ck_assert_int_eq(run_ln(d, R, D, hw, hb, p, r1), m);
          int64_t i = 0;
          while (i < m && same(d, r0, r1, i)) i++;
          ck_assert_msg(i == m, "layer_norm %s [%lld,%lld] w %d b %d path %s: "
                        "element %lld of y, dx, dw, db differs",
                        dt ? "f32" : "f64", (long long)R, (long long)D, hw, hb,
                        tg__simd_name(p), (long long)i);
        }
      }
  }
  ck_assert_int_eq(tg__simd_set_path(-1), TG_OK);
  tg__par_guard_enable(true);
  free(r0), free(r1);
}
END_TEST

/* Softmax inputs: random values over several scales; in every fourth row
 * (from the second) every third element -inf, and in every fourth (from
 * the fourth) large magnitudes, up to +-1e30 in float and +-1e300 in
 * double, whose exponentials underflow to 0 beside the maximum. */
static double sm_value(tg_dtype d, int64_t r, int64_t j, uint64_t *s) {
  *s = *s * 6364136223846793005u + 1442695040888963407u;
  double u = 2 * ((double)(*s >> 11) / 9007199254740992.0) - 1;
  if (r % 4 == 1 && j % 3 == 1) return -INFINITY;
  if (r % 4 == 3)
    return u * (j % 5 == 0   ? (d == TG_F32 ? 1e30 : 1e300)
                : j % 5 == 1 ? 1e4
                             : 50);
  return u * (j % 7 == 0 ? 30.0 : 3.0);
}

static tg_tensor *sm_filled(tg_dtype d, int ndim, const int64_t *shape,
                            uint64_t seed) {
  tg_tensor *x = tg_zeros(d, ndim, shape);
  ck_assert_msg(x, "%s", tg_last_error());
  int64_t cols = ndim ? shape[ndim - 1] : 1;
  uint64_t s = seed;
  for (int64_t i = 0; i < x->numel; i++)
    tg_set(x, i, sm_value(d, i / cols, i % cols, &s));
  return x;
}

/* The softmax ops: y and dx of softmax, softmax_axis and log_softmax (last
 * axis) and softmax_causal on [B, Tq, Tk] (rows of Tk - Tq + 1 to Tk
 * visible columns); the loss, dz and (probability targets) dy of
 * softmax_nll; on path p, appended at out. */
enum { SM_SOFTMAX, SM_AXIS, SM_LOG, SM_CAUSAL, SM_NLL, SM_NLL_PROB, SM_N };
static const char *const sm_names[SM_N] = {"softmax", "softmax_axis",
                                           "log_softmax", "softmax_causal",
                                           "softmax_nll", "softmax_nll_prob"};

static int64_t run_sm(int which, tg_dtype d, int ndim, const int64_t *shape,
                      double scale, int p, void *out) {
  ck_assert_int_eq(tg__simd_set_path(p), TG_OK);
  tg_tensor *x = sm_filled(d, ndim, shape, 3), *target = NULL;
  ck_assert_int_eq(tg_requires_grad(x, true), TG_OK);
  int64_t rows = x->numel / shape[ndim - 1], cols = shape[ndim - 1];
  if (which == SM_NLL) {
    target = tg_zeros(TG_I32, 1, shape);
    ck_assert_ptr_nonnull(target);
    for (int64_t r = 0; r < rows; r++)
      ((int32_t *)target->data)[r] = (int32_t)((r * 7 + 3) % cols);
  } else if (which == SM_NLL_PROB) {
    /* rows of probabilities, one row summing to 2 (not a proper target) */
    target = tg_zeros(d, ndim, shape);
    ck_assert_ptr_nonnull(target);
    for (int64_t r = 0; r < rows; r++)
      for (int64_t j = 0; j < cols; j++)
        tg_set(target, r * cols + j, (double)(1 + (r + j) % 3) /
                                         (double)(2 * cols) * (r == 1 ? 2 : 1));
    ck_assert_int_eq(tg_requires_grad(target, true), TG_OK);
  }
  tg_tape *t = tg_tape_new();
  tg_tensor *y = which == SM_SOFTMAX ? tg_softmax(t, x)
                 : which == SM_AXIS  ? tg_softmax_axis(t, x, -1)
                 : which == SM_LOG   ? tg_log_softmax(t, x, -1)
                 : which == SM_CAUSAL ? tg_softmax_causal(t, x, scale)
                                      : tg_softmax_nll(t, x, target);
  ck_assert_msg(y, "%s: %s", sm_names[which], tg_last_error());
  tg_tensor *g = sm_filled(d, y->ndim, y->ndim ? y->shape : NULL, 13);
  if (which >= SM_NLL) tg_set(g, 0, 0.75);
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  size_t es = d == TG_F32 ? sizeof(float) : sizeof(double);
  char *o = out;
  const void *parts[3] = {y->data, x->grad,
                          which == SM_NLL_PROB ? target->grad : NULL};
  const int64_t lens[3] = {y->numel, x->numel, x->numel};
  int64_t total = 0;
  for (int k = 0; k < 3; k++)
    if (parts[k]) {
      memcpy(o + (size_t)total * es, parts[k], (size_t)lens[k] * es);
      total += lens[k];
    }
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(target);
  tg_tensor_free(g);
  return total;
}

/* Every softmax op's rows per path against the generic path's, rows of
 * lengths below, at and past one block of 16 lanes and many blocks, both
 * dtypes; and one shape large enough to be split over threads, which also
 * gives the same bits on one thread. */
START_TEST(softmax_paths_give_generic_bits) {
  const int which = _i;
  const int threads = tg_get_num_threads();
  tg__par_guard_enable(false);
  const int64_t lens[] = {1, 7, 16, 17, 33, 129, 1000};
  const int nl = (int)(sizeof lens / sizeof lens[0]);
  size_t cap = (size_t)3 * 2 * 8 * 128 * 128 * 8;
  void *r0 = malloc(cap), *r1 = malloc(cap);
  ck_assert(r0 && r1);
  for (int dt = 0; dt < 2; dt++) {
    tg_dtype d = dt ? TG_F32 : TG_F64;
    for (int li = 0; li <= nl; li++) {
      /* causal: [2, Tq, Tk], Tq up to 40 (every length mod 16 for Tk 1000);
       * the others [5, len]; and last the threaded [2, 8, 128, 128] */
      int64_t L = li < nl ? lens[li] : 128;
      int64_t sc[3] = {2, L < 40 ? L : 40, L}, sr[2] = {5, L},
              big[4] = {2, 8, 128, 128}, nll_big[2] = {2048, 128};
      int ndim = li == nl ? 4 : which == SM_CAUSAL ? 3 : 2;
      const int64_t *shape = li == nl ? big : which == SM_CAUSAL ? sc : sr;
      if (li == nl && which >= SM_NLL) {
        ndim = 2; /* softmax_nll takes [N, C]: many rows, run on one thread */
        shape = nll_big;
      }
      double scale = li % 2 ? -1.25 : 0.35;
      int64_t m = run_sm(which, d, ndim, shape, scale, TG__SIMD_GENERIC, r0);
      for (int p = TG__SIMD_GENERIC + 1; p <= TG__SIMD_NPATHS; p++) {
        /* p == NPATHS: the best path on one thread, for the threaded shape */
        if (p == TG__SIMD_NPATHS && li < nl) break;
        int q = p;
        if (p == TG__SIMD_NPATHS) {
          while (q > 0 && !tg__simd_supported(--q)) {}
          ck_assert_int_eq(tg_set_num_threads(1), TG_OK);
        } else if (!tg__simd_supported(p)) {
          continue;
        }
        int nt = tg_get_num_threads();
        ck_assert_int_eq(run_sm(which, d, ndim, shape, scale, q, r1), m);
        if (p == TG__SIMD_NPATHS)
          ck_assert_int_eq(tg_set_num_threads(threads), TG_OK);
        int64_t i = 0;
        while (i < m && same(d, r0, r1, i)) i++;
        ck_assert_msg(i == m, "%s %s len %lld path %s, %d thread(s): element "
                      "%lld of y, dx (, dy) differs", sm_names[which],
                      dt ? "f32" : "f64", (long long)shape[ndim - 1],
                      tg__simd_name(q), nt, (long long)i);
      }
    }
  }
  ck_assert_int_eq(tg__simd_set_path(-1), TG_OK);
  tg__par_guard_enable(true);
  free(r0), free(r1);
}
END_TEST

/* TG_SIMD is read when the path is first needed (after set_path(-1)). */
static void with_env(const char *v) {
  if (v)
    setenv("TG_SIMD", v, 1);
  else
    unsetenv("TG_SIMD");
  ck_assert_int_eq(tg__simd_set_path(-1), TG_OK);
}

START_TEST(env_names_a_path) {
  const char *saved = getenv("TG_SIMD");
  char *keep = saved ? strdup(saved) : NULL;
  int64_t shape[1] = {3};
  tg_tensor *x = tg_zeros(TG_F32, 1, shape);
  tg_tape *t = tg_tape_new();

  for (int p = 0; p < TG__SIMD_NPATHS; p++) {
    with_env(tg__simd_name(p));
    if (tg__simd_supported(p)) {
      ck_assert_int_eq(tg__simd_path(), p);
      ck_assert_ptr_nonnull(tg_gelu(t, x));
    } else {
      ck_assert_ptr_null(tg_gelu(t, x));
      ck_assert_error_has(TG_EINVAL, "tg_gelu", "TG_SIMD", tg__simd_name(p),
                          "cannot run");
      ck_assert_int_eq(tg__simd_path(), TG__SIMD_GENERIC);
      ck_assert_int_eq(tg__simd_set_path(p), TG_EINVAL);
    }
  }
  with_env("avx1024");
  ck_assert_ptr_null(tg_relu(t, x));
  ck_assert_error_has(TG_EINVAL, "tg_relu", "'avx1024'", "generic, avx2 or avx512");
  ck_assert_int_eq(tg__simd_set_path(TG__SIMD_NPATHS), TG_EINVAL);
  /* forcing a path the CPU runs overrides a refused TG_SIMD */
  ck_assert_int_eq(tg__simd_set_path(TG__SIMD_GENERIC), TG_OK);
  ck_assert_ptr_nonnull(tg_relu(t, x));

  with_env(NULL);
  int best = TG__SIMD_GENERIC;
  for (int p = 0; p < TG__SIMD_NPATHS; p++)
    if (tg__simd_supported(p)) best = p;
  ck_assert_int_eq(tg__simd_path(), best);
  with_env(keep);
  free(keep);
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

int main(void) {
  Suite *s = suite_create("simd");
  TCase *tc = tcase_create("paths");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, every_path_gives_generic_bits, 0, N_UNARY);
  tcase_add_loop_test(tc, binary_paths_give_generic_bits, 0, N_BINARY);
  tcase_add_test(tc, layer_norm_paths_give_generic_bits);
  tcase_add_loop_test(tc, softmax_paths_give_generic_bits, 0, SM_N);
  tcase_add_test(tc, env_names_a_path);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
