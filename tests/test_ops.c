/* tests/test_ops.c: every op in ops/ops.def, driven from the op list itself:
 * gradient checks in float64 on each of the op's cases, and float32 results
 * against float64. A new op without cases fails here. */
#include "testutil.h"

#define GRAD_TOL 1e-6
#define F32_TOL 1e-5

static int n_inputs(const tg_opdef *op, const tg_opcase *c) {
  return op->n_in == TG__VARIADIC ? c->n : op->n_in;
}

/* Inputs for one case in the given float dtype. Float inputs become
 * parameters when `grad`; class indices are int32. */
static void make_inputs(const tg_opdef *op, const tg_opcase *c, tg_dtype dt,
                        bool grad, uint64_t seed, tg_tensor **in) {
  tg_rng rng;
  tg_rng_seed(&rng, seed);
  for (int k = 0; k < n_inputs(op, c); k++) {
    int dom = c->domain[k];
    if (c->ndim[k] < 0) { /* an optional input, left out */
      in[k] = NULL;
      continue;
    }
    int64_t last = c->ndim[k] ? c->shape[k][c->ndim[k] - 1] : 1;
    tg_tensor *x = tg_zeros(dom == TG__DOM_CLASS ? TG_I32 : TG_F64, c->ndim[k],
                            c->shape[k]);
    ck_assert_ptr_nonnull(x);
    for (int64_t i = 0; i < x->numel; i++) {
      double v;
      switch (dom) {
      case TG__DOM_POS: v = 0.5 + 1.5 * tg_rng_uniform(&rng); break;
      case TG__DOM_NONZERO:
        v = (0.1 + 1.9 * tg_rng_uniform(&rng)) * (tg_rng_below(&rng, 2) ? 1 : -1);
        break;
      case TG__DOM_CLASS: v = (double)tg_rng_below(&rng, (uint64_t)c->classes); break;
      case TG__DOM_COLSIGN:
        v = (0.1 + 0.9 * tg_rng_uniform(&rng)) * (i % last % 2 ? -1 : 1);
        break;
      case TG__DOM_PROB:
      case TG__DOM_UNIT: v = tg_rng_uniform(&rng); break;
      case TG__DOM_DISTINCT: v = ((double)i - (double)(x->numel / 2)) / 16; break;
      default: v = tg_rng_normal(&rng);
      }
      tg_set(x, i, v);
    }
    if (dom == TG__DOM_DISTINCT) /* (k - n/2) / 16 for k = 0..n-1, shuffled */
      for (int64_t i = 0; i < x->numel; i++) {
        int64_t j = i + (int64_t)tg_rng_below(&rng, (uint64_t)(x->numel - i));
        double vj = tg_get(x, j);
        tg_set(x, j, tg_get(x, i));
        tg_set(x, i, vj);
      }
    if (dom == TG__DOM_PROB) { /* normalise each row */
      int64_t rows, cols;
      tg__rows_cols(x, &rows, &cols);
      double *d = x->data;
      for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t j = 0; j < cols; j++) s += d[r * cols + j];
        for (int64_t j = 0; j < cols; j++) d[r * cols + j] /= s;
      }
    }
    if (dt == TG_F32 && x->dtype == TG_F64) {
      /* Round to float32 and keep both views equal: the float64 reference
       * then sees exactly the float32 inputs. */
      tg_tensor *y = tg_zeros(TG_F32, x->ndim, x->shape);
      for (int64_t i = 0; i < x->numel; i++) tg_set(y, i, tg_get(x, i));
      tg_tensor_free(x);
      x = y;
    }
    if (grad && tg__is_float(x->dtype))
      ck_assert_int_eq(tg_requires_grad(x, true), TG_OK);
    in[k] = x;
  }
}

static void free_inputs(const tg_opdef *op, const tg_opcase *c, tg_tensor **in) {
  for (int k = 0; k < n_inputs(op, c); k++) tg_tensor_free(in[k]);
}

typedef struct {
  const tg_opdef *op;
  const tg_opcase *c;
  tg_tensor *const *all; /* every input, parameters or not */
} op_ctx;

static tg_tensor *apply_op(tg_tape *t, tg_tensor *const *params, void *ctx) {
  (void)params; /* the same tensors as ctx->all, which keeps their order */
  op_ctx *o = ctx;
  return tg__apply_n(t, o->op, o->all, n_inputs(o->op, o->c), &o->c->args);
}

START_TEST(every_op_has_cases) {
  ck_assert_int_gt(tg__n_ops, 0);
  for (int i = 0; i < tg__n_ops; i++) {
    const tg_opdef *op = tg__ops[i];
    ck_assert_msg(op->n_cases >= 1 && op->cases && op->rule && op->forward &&
                      op->backward,
                  "op %s has no test cases or no rule or kernels", op->name);
  }
}
END_TEST

/* _i is the op's index in the list (a loop test). */
START_TEST(gradcheck_op) {
  const tg_opdef *op = tg__ops[_i];
  for (int ci = 0; ci < op->n_cases; ci++) {
    const tg_opcase *c = &op->cases[ci];
    if (c->status) continue; /* bad input: bad_cases_refused */
    tg_tensor *in[TG__MAX_IN] = {0};
    make_inputs(op, c, TG_F64, true, 1000 + 17 * (uint64_t)ci, in);
    tg_tensor *params[TG__MAX_IN];
    int np = 0;
    for (int k = 0; k < n_inputs(op, c); k++)
      if (in[k] && !(op->flags & (TG__IN_INT(k) | TG__IN_NODIFF(k))))
        params[np++] = in[k];
    op_ctx ctx = {op, c, in};
    tg_gradcheck_result res;
    int rc = tg_gradcheck(apply_op, &ctx, params, np, 1e-6, &res);
    ck_assert_msg(rc == TG_OK, "op %s case %d: %s", op->name, ci, tg_last_error());
    ck_assert_msg(res.max_rel_err <= GRAD_TOL,
                  "op %s case %d: relative error %g at param %d index %lld "
                  "(analytic %.12g, numeric %.12g)", op->name, ci,
                  res.max_rel_err, res.param, (long long)res.index,
                  res.analytic, res.numeric);
    free_inputs(op, c, in);
  }
}
END_TEST

START_TEST(float32_matches_float64) {
  const tg_opdef *op = tg__ops[_i];
  for (int ci = 0; ci < op->n_cases; ci++) {
    const tg_opcase *c = &op->cases[ci];
    if (c->status) continue;
    tg_tensor *in32[TG__MAX_IN] = {0}, *in64[TG__MAX_IN] = {0};
    make_inputs(op, c, TG_F32, false, 2000 + (uint64_t)ci, in32);
    for (int k = 0; k < n_inputs(op, c); k++) { /* exact float64 copies */
      if (!in32[k]) continue;
      tg_dtype dt = in32[k]->dtype == TG_F32 ? TG_F64 : in32[k]->dtype;
      in64[k] = tg_zeros(dt, in32[k]->ndim, in32[k]->shape);
      for (int64_t i = 0; i < in32[k]->numel; i++)
        tg_set(in64[k], i, tg_get(in32[k], i));
    }
    tg_tape *t = tg_tape_new();
    tg_tensor *y32 = tg__apply_n(t, op, in32, n_inputs(op, c), &c->args),
              *y64 = tg__apply_n(t, op, in64, n_inputs(op, c), &c->args);
    ck_assert_msg(y32 && y64, "op %s: %s", op->name, tg_last_error());
    ck_assert_int_eq(y32->dtype, TG_F32);
    ck_assert_int_eq(y64->dtype, TG_F64);
    ck_assert(tg__same_shape(y32, y64));
    for (int64_t i = 0; i < y64->numel; i++) {
      double a = tg_get(y64, i), b = tg_get(y32, i);
      double rel = fabs(a - b) / fmax(1.0, fabs(a));
      ck_assert_msg(rel <= F32_TOL, "op %s case %d element %lld: f64 %.9g, f32 %.9g",
                    op->name, ci, (long long)i, a, b);
    }
    tg_tape_free(t);
    free_inputs(op, c, in32);
    free_inputs(op, c, in64);
  }
}
END_TEST

/* Every bad case of every op is refused: NULL, the case's status, and a
 * message that names the op and holds the case's fragment. */
START_TEST(bad_cases_refused) {
  const tg_opdef *op = tg__ops[_i];
  char buf[64];
  const char *fn = tg__fn_of(op, buf, sizeof buf);
  for (int ci = 0; ci < op->n_cases; ci++) {
    const tg_opcase *c = &op->cases[ci];
    if (!c->status) continue;
    for (int dt = 0; dt < 2; dt++) {
      tg_tensor *in[TG__MAX_IN] = {0};
      make_inputs(op, c, dt ? TG_F32 : TG_F64, true, 3000 + (uint64_t)ci, in);
      tg_tape *t = tg_tape_new();
      tg_clear_error();
      tg_tensor *y = tg__apply_n(t, op, in, n_inputs(op, c), &c->args);
      ck_assert_msg(!y, "op %s bad case %d was accepted", op->name, ci);
      ck_assert_msg(tg_last_status() == c->status,
                    "op %s bad case %d: status %s, want %s (%s)", op->name, ci,
                    tg_status_name(tg_last_status()),
                    tg_status_name(c->status), tg_last_error());
      ck_assert_msg(strstr(tg_last_error(), fn) &&
                        (!c->msg || strstr(tg_last_error(), c->msg)),
                    "op %s bad case %d: message \"%s\" lacks \"%s\" or \"%s\"",
                    op->name, ci, tg_last_error(), fn, c->msg ? c->msg : "");
      ck_assert_int_eq(tg_tape_nodes(t), 0);
      tg_tape_free(t);
      free_inputs(op, c, in);
    }
  }
}
END_TEST

/* Every op, forward and backward, on inputs holding NaN, +-Inf, -0 and
 * denormals: no crash, and (in the sanitizer build) no undefined
 * behaviour. What the values come out as is not checked. */
START_TEST(special_values) {
  const tg_opdef *op = tg__ops[_i];
  for (int ci = 0; ci < op->n_cases; ci++) {
    const tg_opcase *c = &op->cases[ci];
    if (c->status) continue;
    for (int dt = 0; dt < 2; dt++) {
      tg_dtype d = dt ? TG_F32 : TG_F64;
      const double special[] = {NAN, INFINITY, -INFINITY, -0.0,
                                dt ? (double)FLT_TRUE_MIN : DBL_TRUE_MIN,
                                dt ? -(double)FLT_TRUE_MIN : -DBL_TRUE_MIN,
                                1e300, -1e300};
      const int ns = (int)(sizeof special / sizeof special[0]);
      tg_tensor *in[TG__MAX_IN] = {0};
      make_inputs(op, c, d, true, 4000 + (uint64_t)ci, in);
      for (int k = 0; k < n_inputs(op, c); k++)
        if (in[k] && tg__is_float(in[k]->dtype))
          for (int64_t i = 0; i < in[k]->numel; i++)
            if ((i + k) % 2 == 0)
              tg_set(in[k], i, special[(i / 2 + k) % ns]);
      tg_tape *t = tg_tape_new();
      tg_tensor *y = tg__apply_n(t, op, in, n_inputs(op, c), &c->args);
      ck_assert_msg(y, "op %s case %d: %s", op->name, ci, tg_last_error());
      tg_tensor *g = tg_ones(d, y->ndim, y->shape);
      ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
      tg_tensor_free(g);
      tg_tape_free(t);
      free_inputs(op, c, in);
    }
  }
}
END_TEST

/* The checker itself must fail on a wrong gradient: an op whose backward is
 * off by a factor is caught. */
static void wrong_backward(const tg_node *n) {
  double *dx = tg__gin(n, 0);
  const double *g = n->out->grad;
  if (dx)
    for (int64_t i = 0; i < n->out->numel; i++) dx[i] += 1.01 * g[i];
}
static tg_opdef wrong_factor = {.name = "wrong", .n_in = 1, .backward = wrong_backward};

/* sum(identity(x)) where identity is recorded with the faulty op in ctx. */
static tg_tensor *faulty_fn(tg_tape *t, tg_tensor *const *p, void *ctx) {
  tg_tensor *y = tg__emit(t, ctx, TG_F64, p[0]->ndim, p[0]->shape, p, 1);
  memcpy(y->data, p[0]->data, (size_t)p[0]->numel * sizeof(double));
  return tg_sum(t, y);
}

/* ... and a NaN in the gradient, wherever it is. */
static void nan_backward(const tg_node *n) {
  double *dx = tg__gin(n, 0);
  const double *g = n->out->grad;
  if (dx)
    for (int64_t i = 0; i < n->out->numel; i++) dx[i] += i == 0 ? NAN : g[i];
}
static tg_opdef nan_first = {.name = "nan_first", .n_in = 1, .backward = nan_backward};

START_TEST(gradcheck_catches_nan_gradient) {
  tg_rng rng;
  tg_rng_seed(&rng, 6);
  tg_tensor *x = param_normal(TG_F64, TG_SHAPE(5), &rng);
  tg_gradcheck_result res;
  ck_assert_int_eq(tg_gradcheck(faulty_fn, &nan_first, &x, 1, 0, &res), TG_OK);
  ck_assert(isnan(res.max_rel_err));
  ck_assert_int_eq(res.index, 0);
  ck_assert(!(res.max_rel_err <= GRAD_TOL)); /* the suite's check fails */
  tg_tensor_free(x);
}
END_TEST

START_TEST(gradcheck_catches_wrong_gradient) {
  tg_rng rng;
  tg_rng_seed(&rng, 5);
  tg_tensor *x = param_normal(TG_F64, TG_SHAPE(4), &rng);
  tg_gradcheck_result res;
  ck_assert_int_eq(tg_gradcheck(faulty_fn, &wrong_factor, &x, 1, 0, &res), TG_OK);
  ck_assert_double_gt(res.max_rel_err, 5e-3);
  ck_assert_double_eq_tol(res.analytic, 1.01, 1e-12);
  ck_assert_double_eq_tol(res.numeric, 1.0, 1e-6);
  tg_tensor_free(x);
}
END_TEST


/* A caller-owned float left operand that is mostly zeros takes the sparse
 * product (src/spmm.c): its forward and both gradients must match a float64
 * reference, for widths with and without a ragged last block, and for an
 * operand of zeros only. */
static const int64_t sparse_shapes[][3] = {
    {37, 50, 70}, {32, 784, 100}, {5, 9, 3}, {64, 40, 33}, {6, 16, 32}};

START_TEST(sparse_left_operand_matches_dense) {
  const int64_t M = sparse_shapes[_i][0], K = sparse_shapes[_i][1],
                N = sparse_shapes[_i][2];
  tg_rng rng;
  tg_rng_seed(&rng, 40 + (uint64_t)_i);
  for (int all_zero = 0; all_zero < 2; all_zero++) {
    tg_tensor *a = tg_zeros(TG_F32, TG_SHAPE(M, K));
    for (int64_t i = 0; i < a->numel; i++)
      if (!all_zero && tg_rng_uniform(&rng) < 0.2) tg_set(a, i, tg_rng_normal(&rng));
    tg_requires_grad(a, true); /* dA goes through the dense product */
    tg_tensor *b = param_normal(TG_F32, TG_SHAPE(K, N), &rng);
    tg_tensor *g = tg_zeros(TG_F32, TG_SHAPE(M, N));
    tg_fill_normal(g, &rng, 0, 1);
    tg_tape *t = tg_tape_new();
    tg_tensor *c = tg_matmul(t, a, b);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(tg_backward_grad(t, c, g), TG_OK);
    const float *A = a->data, *B = b->data, *G = g->data, *C = c->data;
    const float *dA = a->grad, *dB = b->grad;
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double ref = 0, mag = 0;
        for (int64_t k = 0; k < K; k++) {
          ref += (double)A[i * K + k] * B[k * N + j];
          mag += fabs((double)A[i * K + k] * B[k * N + j]);
        }
        ck_assert_double_eq_tol(C[i * N + j], ref, 1e-5 * (1 + mag));
      }
    for (int64_t k = 0; k < K; k++)
      for (int64_t j = 0; j < N; j++) {
        double ref = 0, mag = 0;
        for (int64_t i = 0; i < M; i++) {
          ref += (double)A[i * K + k] * G[i * N + j];
          mag += fabs((double)A[i * K + k] * G[i * N + j]);
        }
        ck_assert_double_eq_tol(dB[k * N + j], ref, 1e-5 * (1 + mag));
      }
    for (int64_t i = 0; i < M; i++)
      for (int64_t k = 0; k < K; k++) {
        double ref = 0, mag = 0;
        for (int64_t j = 0; j < N; j++) {
          ref += (double)G[i * N + j] * B[k * N + j];
          mag += fabs((double)G[i * N + j] * B[k * N + j]);
        }
        ck_assert_double_eq_tol(dA[i * K + k], ref, 1e-5 * (1 + mag));
      }
    tg_tape_free(t);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(g);
  }
}
END_TEST

/* tg_linear against the layer it fuses, tg_activate(tg_add(tg_matmul(x, W),
 * b)): the same values and the same three gradients, for every activation,
 * with and without a bias. */
static tg_tensor *composed(tg_tape *t, tg_tensor *x, tg_tensor *W,
                           tg_tensor *b, tg_activation act) {
  tg_tensor *z = tg_matmul(t, x, W);
  return tg_activate(t, b ? tg_add(t, z, b) : z, act);
}

static void assert_close(const char *what, const void *got, const void *want,
                         tg_dtype dt, int64_t n, double tol, int act, int bias) {
  for (int64_t i = 0; i < n; i++) {
    double g = dt == TG_F32 ? ((const float *)got)[i] : ((const double *)got)[i];
    double w = dt == TG_F32 ? ((const float *)want)[i] : ((const double *)want)[i];
    ck_assert_msg(fabs(g - w) <= tol * (1 + fabs(w)),
                  "%s[%lld]: fused %.17g, composed %.17g (act %s, bias %d)",
                  what, (long long)i, g, w, tg_activation_name(act), bias);
  }
}

/* Runs the composed layer's backward, then the fused one's into the same
 * parameters without zeroing them: gradients accumulate, so each must end
 * at twice the composed one's. */
static void compare_linear(tg_tensor *x, tg_tensor *W, tg_tensor *b,
                           tg_activation act, double tol, uint64_t seed) {
  tg_dtype dt = W->dtype;
  int64_t N = x->shape[0], O = W->shape[1];
  tg_rng rng;
  tg_rng_seed(&rng, seed);
  tg_tensor *g = tg_zeros(dt, TG_SHAPE(N, O));
  tg_fill_normal(g, &rng, 0, 1);
  tg_tensor *p[3] = {x, W, b};
  void *ref[3] = {0};
  tg_tape *t = tg_tape_new();
  tg_tensor *yc = composed(t, x, W, b, act), *yf = tg_linear(t, x, W, b, act);
  ck_assert_msg(yc && yf, "%s", tg_last_error());
  ck_assert(tg__same_shape(yc, yf) && yf->dtype == dt);
  assert_close("y", yf->data, yc->data, dt, yf->numel, tol, act, !!b);
  ck_assert_int_eq(tg_backward_grad(t, yc, g), TG_OK);
  for (int k = 0; k < 3; k++)
    if (p[k] && p[k]->grad) {
      size_t bytes = (size_t)p[k]->numel * tg__dtype_size(dt);
      ref[k] = malloc(bytes);
      memcpy(ref[k], p[k]->grad, bytes);
    }
  ck_assert_int_eq(tg_backward_grad(t, yf, g), TG_OK);
  /* dy is the caller's to read: backward left it alone */
  assert_close("dy", yf->grad, g->data, dt, g->numel, 0, act, !!b);
  static const char *names[3] = {"dx", "dW", "db"};
  for (int k = 0; k < 3; k++) {
    if (!ref[k]) continue;
    tg_tensor *half = tg_zeros(dt, p[k]->ndim, p[k]->shape);
    for (int64_t i = 0; i < p[k]->numel; i++)
      tg_set(half, i, tg_grad_get(p[k], i) / 2);
    assert_close(names[k], half->data, ref[k], dt, half->numel, tol, act, !!b);
    tg_tensor_free(half);
    free(ref[k]);
    tg_zero_grad(p[k]);
  }
  tg_tape_free(t);
  tg_tensor_free(g);
}

static const int64_t linear_shapes[][3] = {
    {7, 5, 4}, {1, 3, 1}, {16, 33, 40}, {2, 1, 6}, {64, 70, 33}};

START_TEST(linear_matches_composed_layer) {
  const int64_t N = linear_shapes[_i][0], K = linear_shapes[_i][1],
                O = linear_shapes[_i][2];
  tg_rng rng;
  tg_rng_seed(&rng, 60 + (uint64_t)_i);
  tg_tensor *x = param_normal(TG_F64, TG_SHAPE(N, K), &rng);
  tg_tensor *W = param_normal(TG_F64, TG_SHAPE(K, O), &rng);
  tg_tensor *b = param_normal(TG_F64, TG_SHAPE(O), &rng);
  for (int act = TG_ACT_NONE; act <= TG_ACT_TANH; act++)
    for (int bias = 0; bias < 2; bias++)
      compare_linear(x, W, bias ? b : NULL, (tg_activation)act, 1e-12,
                     (uint64_t)(10 * act + bias));
  tg_tensor_free(x);
  tg_tensor_free(W);
  tg_tensor_free(b);
}
END_TEST

/* The same on the sparse path: a caller-owned float32 x of mostly zeros
 * (data, which needs no gradient, and once a parameter) goes through the
 * sparse product in both layers. */
START_TEST(linear_sparse_input_matches_composed_layer) {
  const int64_t M = sparse_shapes[_i][0], K = sparse_shapes[_i][1],
                N = sparse_shapes[_i][2];
  tg_rng rng;
  tg_rng_seed(&rng, 80 + (uint64_t)_i);
  for (int xgrad = 0; xgrad < 2; xgrad++) {
    tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(M, K));
    for (int64_t i = 0; i < x->numel; i++)
      if (tg_rng_uniform(&rng) < 0.2) tg_set(x, i, tg_rng_normal(&rng));
    if (xgrad) tg_requires_grad(x, true);
    tg_tensor *W = param_normal(TG_F32, TG_SHAPE(K, N), &rng);
    tg_tensor *b = param_normal(TG_F32, TG_SHAPE(N), &rng);
    if (tg__spmm_enabled()) { /* the premise: this x takes the sparse path */
      tg_tape *t = tg_tape_new();
      ck_assert_ptr_nonnull(tg__spmm_of(t, x, false));
      tg_tape_free(t);
    }
    for (int act = TG_ACT_NONE; act <= TG_ACT_TANH; act++)
      for (int bias = 0; bias < 2; bias++)
        compare_linear(x, W, bias ? b : NULL, (tg_activation)act, 1e-6,
                       (uint64_t)(10 * act + bias));
    tg_tensor_free(x);
    tg_tensor_free(W);
    tg_tensor_free(b);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("ops");
  TCase *tc = tcase_create("op list");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, every_op_has_cases);
  tcase_add_test(tc, gradcheck_catches_wrong_gradient);
  tcase_add_test(tc, gradcheck_catches_nan_gradient);
  tcase_add_loop_test(tc, gradcheck_op, 0, tg__n_ops);
  tcase_add_loop_test(tc, float32_matches_float64, 0, tg__n_ops);
  tcase_add_loop_test(tc, bad_cases_refused, 0, tg__n_ops);
  tcase_add_loop_test(tc, special_values, 0, tg__n_ops);
  tcase_add_loop_test(tc, sparse_left_operand_matches_dense, 0,
                      (int)(sizeof sparse_shapes / sizeof *sparse_shapes));
  tcase_add_loop_test(tc, linear_matches_composed_layer, 0,
                      (int)(sizeof linear_shapes / sizeof *linear_shapes));
  tcase_add_loop_test(tc, linear_sparse_input_matches_composed_layer, 0,
                      (int)(sizeof sparse_shapes / sizeof *sparse_shapes));
  suite_add_tcase(s, tc);
  return run_suite(s);
}
