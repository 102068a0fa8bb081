/* tests/test_reduce.c: the reductions over axes and softmax along an axis
 * on small examples worked out by hand: values, shapes and gradients; ties,
 * infinities, empty slices and 0-d inputs; the argument errors of the
 * public functions; and log_softmax composed into the negative
 * log-likelihood against the fused tg_softmax_nll; the scaled causal
 * softmax against the graph it fuses. (tests/test_ops.c runs
 * the gradient checks and float32 comparisons on every op's cases.) */
#include "testutil.h"

#define TOL 1e-12

static const int64_t scalar_shape[1] = {1};

/* A caller-owned float64 parameter from values; ndim 0 is a 0-d tensor. */
static tg_tensor *param(int ndim, const int64_t *shape, const double *v) {
  tg_tensor *x = tg_zeros(TG_F64, ndim, ndim ? shape : scalar_shape);
  ck_assert_ptr_nonnull(x);
  for (int64_t i = 0; i < x->numel; i++) tg_set(x, i, v[i]);
  ck_assert_int_eq(tg_requires_grad(x, true), TG_OK);
  return x;
}

static void expect_shape(const tg_tensor *y, int ndim, const int64_t *shape) {
  ck_assert_ptr_nonnull(y);
  ck_assert_int_eq(y->ndim, ndim);
  for (int d = 0; d < ndim; d++) ck_assert_int_eq(y->shape[d], shape[d]);
}

static void expect_values(const tg_tensor *y, const double *want) {
  for (int64_t i = 0; i < y->numel; i++)
    ck_assert_msg(fabs(tg_get(y, i) - want[i]) <= TOL * (1 + fabs(want[i])),
                  "element %lld: %.17g, want %.17g", (long long)i,
                  tg_get(y, i), want[i]);
}

static void expect_grad(const tg_tensor *x, const double *want) {
  for (int64_t i = 0; i < x->numel; i++)
    ck_assert_msg(fabs(tg_grad_get(x, i) - want[i]) <= TOL * (1 + fabs(want[i])),
                  "grad %lld: %.17g, want %.17g", (long long)i,
                  tg_grad_get(x, i), want[i]);
}

/* Backward from y with a gradient of ones, into freshly zeroed grads. */
static void backward_ones(tg_tape *t, tg_tensor *y, tg_tensor *x) {
  tg_zero_grad(x);
  tg_tensor *g = tg_ones(TG_F64, y->ndim, y->ndim ? y->shape : scalar_shape);
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  tg_tensor_free(g);
}

/* x = [[1,2,3],[4,5,6]] */
static const double x23[] = {1, 2, 3, 4, 5, 6};

START_TEST(sum_and_mean_by_hand) {
  tg_tensor *x = param(TG_SHAPE(2, 3), x23);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_sum_axes(t, x, (int[]){0}, 1, false);
  expect_shape(y, TG_SHAPE(3));
  expect_values(y, (double[]){5, 7, 9});
  backward_ones(t, y, x);
  expect_grad(x, (double[]){1, 1, 1, 1, 1, 1});

  y = tg_sum_axes(t, x, (int[]){-1}, 1, true);
  expect_shape(y, TG_SHAPE(2, 1));
  expect_values(y, (double[]){6, 15});

  y = tg_sum_axes(t, x, NULL, 0, false); /* every axis: 0-d */
  expect_shape(y, 0, NULL);
  expect_values(y, (double[]){21});
  y = tg_sum_axes(t, x, (int[]){1, 0}, 2, true);
  expect_shape(y, TG_SHAPE(1, 1));
  expect_values(y, (double[]){21});

  y = tg_mean_axes(t, x, (int[]){1}, 1, false);
  expect_shape(y, TG_SHAPE(2));
  expect_values(y, (double[]){2, 5});
  backward_ones(t, y, x);
  expect_grad(x, (double[]){1. / 3, 1. / 3, 1. / 3, 1. / 3, 1. / 3, 1. / 3});
  y = tg_mean_axes(t, x, NULL, 0, true);
  expect_shape(y, TG_SHAPE(1, 1));
  expect_values(y, (double[]){3.5});
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

/* x[i,j,k] = 12 i + 4 j + k on [2,3,4]: over i and k, 32 j + 60. */
START_TEST(sum_two_axes_of_3d) {
  double v[24];
  for (int i = 0; i < 24; i++) v[i] = i;
  tg_tensor *x = param(TG_SHAPE(2, 3, 4), v);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_sum_axes(t, x, (int[]){0, -1}, 2, true);
  expect_shape(y, TG_SHAPE(1, 3, 1));
  expect_values(y, (double[]){60, 92, 124});
  tg_tensor *g = tg_tensor_from(TG_F64, TG_SHAPE(1, 3, 1), (double[]){1, 2, 3});
  tg_zero_grad(x);
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  for (int64_t i = 0; i < 24; i++)
    ck_assert_double_eq(tg_grad_get(x, i), (double)(i / 4 % 3 + 1));
  /* over j only: 12 i + k + 4 (0 + 1 + 2) */
  y = tg_mean_axes(t, x, (int[]){1}, 1, false);
  expect_shape(y, TG_SHAPE(2, 4));
  expect_values(y, (double[]){4, 5, 6, 7, 16, 17, 18, 19});
  tg_tensor_free(g);
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

START_TEST(max_min_by_hand) {
  tg_tensor *x = param(TG_SHAPE(2, 3), (double[]){1, 7, 3, 4, -5, 6});
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_max_axes(t, x, (int[]){0}, 1, false);
  expect_values(y, (double[]){4, 7, 6});
  backward_ones(t, y, x);
  expect_grad(x, (double[]){0, 1, 0, 1, 0, 1});
  y = tg_min_axes(t, x, (int[]){1}, 1, true);
  expect_shape(y, TG_SHAPE(2, 1));
  expect_values(y, (double[]){1, -5});
  backward_ones(t, y, x);
  expect_grad(x, (double[]){1, 0, 0, 0, 1, 0});
  y = tg_max_axes(t, x, NULL, 0, false);
  expect_shape(y, 0, NULL);
  expect_values(y, (double[]){7});
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

/* Tied extremes share the gradient evenly, as PyTorch's amax and amin. */
START_TEST(max_min_ties_split_gradient) {
  tg_tensor *x = param(TG_SHAPE(2, 3), (double[]){1, 5, 5, 2, 2, 2});
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_max_axes(t, x, (int[]){1}, 1, false);
  expect_values(y, (double[]){5, 2});
  tg_tensor *g = tg_tensor_from(TG_F64, TG_SHAPE(2), (double[]){1, 3});
  tg_zero_grad(x);
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  expect_grad(x, (double[]){0, 0.5, 0.5, 1, 1, 1});
  y = tg_min_axes(t, x, NULL, 0, false);
  expect_values(y, (double[]){1});
  backward_ones(t, y, x);
  expect_grad(x, (double[]){1, 0, 0, 0, 0, 0});
  y = tg_min_axes(t, x, (int[]){0}, 1, false); /* [1, 2, 2]: column 0 alone */
  backward_ones(t, y, x);
  expect_grad(x, (double[]){1, 0, 0, 0, 1, 1});
  tg_tensor_free(g);
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

START_TEST(max_min_nan_propagates) {
  tg_tensor *x = param(TG_SHAPE(2, 3), (double[]){1, NAN, 3, 4, 5, 6});
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_max_axes(t, x, (int[]){1}, 1, false);
  ck_assert(isnan(tg_get(y, 0)));
  ck_assert_double_eq(tg_get(y, 1), 6);
  y = tg_min_axes(t, x, (int[]){1}, 1, false);
  ck_assert(isnan(tg_get(y, 0)));
  ck_assert_double_eq(tg_get(y, 1), 4);
  backward_ones(t, y, x); /* no element equals NaN: none gets a share */
  expect_grad(x, (double[]){0, 0, 0, 1, 0, 0});
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

START_TEST(logsumexp_by_hand) {
  tg_tensor *x = param(TG_SHAPE(2, 3), x23);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_logsumexp(t, x, (int[]){1}, 1, false);
  double l0 = log(exp(1) + exp(2) + exp(3)), l1 = log(exp(4) + exp(5) + exp(6));
  expect_values(y, (double[]){l0, l1});
  backward_ones(t, y, x);
  double s = exp(1) + exp(2) + exp(3);
  expect_grad(x, (double[]){exp(1) / s, exp(2) / s, exp(3) / s, exp(1) / s,
                            exp(2) / s, exp(3) / s});
  /* stable where the direct formula overflows */
  tg_tensor *big = param(TG_SHAPE(2), (double[]){1000, 1000});
  y = tg_logsumexp(t, big, NULL, 0, false);
  expect_values(y, (double[]){1000 + log(2)});
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(big);
}
END_TEST

/* A slice of -inf only: ln 0 = -inf, not -inf + inf = NaN; its elements
 * get no gradient. */
START_TEST(logsumexp_of_all_minus_inf) {
  tg_tensor *x = param(TG_SHAPE(2, 2), (double[]){-INFINITY, -INFINITY, 0, 0});
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_logsumexp(t, x, (int[]){-1}, 1, true);
  expect_shape(y, TG_SHAPE(2, 1));
  ck_assert(isinf(tg_get(y, 0)) && tg_get(y, 0) < 0);
  ck_assert_double_eq_tol(tg_get(y, 1), log(2), TOL);
  backward_ones(t, y, x);
  expect_grad(x, (double[]){0, 0, 0.5, 0.5});
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

START_TEST(var_by_hand) {
  tg_tensor *x = param(TG_SHAPE(2, 3), x23);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_var(t, x, (int[]){1}, 1, 1, false);
  expect_values(y, (double[]){1, 1});
  backward_ones(t, y, x); /* 2 (x - u) / 2 */
  expect_grad(x, (double[]){-1, 0, 1, -1, 0, 1});
  y = tg_var(t, x, (int[]){1}, 1, 0, true);
  expect_shape(y, TG_SHAPE(2, 1));
  expect_values(y, (double[]){2. / 3, 2. / 3});
  /* all: mean 3.5, squared deviations 17.5 */
  y = tg_var(t, x, NULL, 0, 1, false);
  expect_values(y, (double[]){3.5});
  backward_ones(t, y, x);
  expect_grad(x, (double[]){-1, -0.6, -0.2, 0.2, 0.6, 1});
  y = tg_var(t, x, (int[]){0}, 1, 0, false); /* pairs 3 apart */
  expect_values(y, (double[]){2.25, 2.25, 2.25});
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

/* Along axis 0 of [[1,2],[3,4]]: the columns [1,3] and [2,4], each
 * softmax(0, 2) = (1, e^2) / (1 + e^2). */
START_TEST(softmax_and_log_softmax_along_axis_0) {
  tg_tensor *x = param(TG_SHAPE(2, 2), (double[]){1, 2, 3, 4});
  tg_tape *t = tg_tape_new();
  double p = 1 / (1 + exp(2)), q = exp(2) / (1 + exp(2));
  tg_tensor *y = tg_softmax_axis(t, x, 0);
  expect_shape(y, TG_SHAPE(2, 2));
  expect_values(y, (double[]){p, p, q, q});
  /* g = [[1,0],[0,0]]: dx = y (g - y_00) down column 0, 0 in column 1 */
  tg_tensor *g = tg_tensor_from(TG_F64, TG_SHAPE(2, 2), (double[]){1, 0, 0, 0});
  tg_zero_grad(x);
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  expect_grad(x, (double[]){p * (1 - p), 0, -q * p, 0});
  y = tg_log_softmax(t, x, -2);
  expect_values(y, (double[]){log(p), log(p), log(q), log(q)});
  /* dx = g - softmax * sum g: column 0 [1 - p, -q] */
  tg_zero_grad(x);
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  expect_grad(x, (double[]){1 - p, 0, -q, 0});
  tg_tensor_free(g);
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

/* Many strided lines at once (more than one chunk of them), against
 * tg_softmax on the transposed copy; and along the last axis, tg_softmax
 * itself. */
START_TEST(softmax_axis_matches_softmax) {
  enum { R = 3, C = 41 };
  tg_rng rng;
  tg_rng_seed(&rng, 7);
  tg_tensor *x = param_normal(TG_F64, TG_SHAPE(R, C), &rng);
  tg_tensor *xt = tg_zeros(TG_F64, TG_SHAPE(C, R));
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) tg_set(xt, c * R + r, tg_get(x, r * C + c));
  tg_tape *t = tg_tape_new();
  tg_tensor *y0 = tg_softmax_axis(t, x, 0), *ref0 = tg_softmax(t, xt);
  tg_tensor *l0 = tg_log_softmax(t, x, 0);
  ck_assert(y0 && ref0 && l0);
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) {
      double want = tg_get(ref0, c * R + r);
      ck_assert_double_eq_tol(tg_get(y0, r * C + c), want, TOL);
      ck_assert_double_eq_tol(tg_get(l0, r * C + c), log(want), TOL);
    }
  tg_tensor *y1 = tg_softmax_axis(t, x, 1), *ref1 = tg_softmax(t, x);
  for (int64_t i = 0; i < x->numel; i++)
    ck_assert_double_eq(tg_get(y1, i), tg_get(ref1, i));
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(xt);
}
END_TEST

static tg_tensor *softmax_or_log(tg_tape *t, tg_tensor *x, int axis,
                                 bool logs) {
  return logs ? tg_log_softmax(t, x, axis) : tg_softmax_axis(t, x, axis);
}

/* Whether x's gradient on one row (length L, element k at base + k * step)
 * is dx computed in double from y and g, within tol times a bound on the
 * rounding of its terms; a miss is printed. (A Check assertion per element
 * would cost a write each.) */
static bool row_grad_ok(const tg_tensor *y, const tg_tensor *g,
                        const tg_tensor *x, int64_t base, int64_t step,
                        int64_t L, bool logs, double tol) {
  double d = 0, s = 0;
  for (int64_t k = 0; k < L; k++) {
    double gk = tg_get(g, base + k * step), yk = tg_get(y, base + k * step);
    d += logs ? gk : gk * yk;
    s += logs ? fabs(gk) : fabs(gk * yk);
  }
  for (int64_t k = 0; k < L; k++) {
    int64_t e = base + k * step;
    double gk = tg_get(g, e), yk = tg_get(y, e);
    double p = logs ? exp(yk) : yk;
    double want = logs ? gk - p * d : yk * (gk - d);
    double got = tg_grad_get(x, e);
    if (!(fabs(got - want) <= tol * (fabs(gk) + p * s + DBL_MIN))) {
      fprintf(stderr, "L %lld, element %lld (%s): %.9g, want %.9g\n",
              (long long)L, (long long)e, logs ? "log_softmax" : "softmax_axis",
              got, want);
      return false;
    }
  }
  return true;
}

/* The backward along a contiguous last axis (its own vectorised row loops,
 * rows split over threads) on rows of odd lengths, float and double, for
 * softmax_axis and log_softmax: against the formula evaluated in double
 * from the op's own output; against the strided path's on the transposed
 * data (axis 0); and the same bits, forward and backward, with one thread
 * as with two. Enough rows that two threads split them. */
START_TEST(softmax_axis_last_axis_backward) {
  const int64_t lens[] = {1, 3, 17, 33, 129};
  const tg_dtype dts[] = {TG_F32, TG_F64};
  int before = tg_get_num_threads();
  tg__par_guard_enable(false); /* two threads whenever the op asks */
  tg_rng rng;
  tg_rng_seed(&rng, 11);
  for (size_t di = 0; di < 2; di++)
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
      for (int logs = 0; logs < 2; logs++) {
        tg_dtype dt = dts[di];
        const int64_t L = lens[li], R = ((int64_t)1 << 18) / L + 5;
        const double tol = dt == TG_F32 ? 1e-5 : 1e-13;
        const size_t esz = dt == TG_F32 ? sizeof(float) : sizeof(double);
        tg_tensor *x = param_normal(dt, TG_SHAPE(R, L), &rng);
        tg_tensor *g = tg_zeros(dt, TG_SHAPE(R, L));
        tg_fill_normal(g, &rng, 0, 1);
        tg_tensor *xt = tg_zeros(dt, TG_SHAPE(L, R)),
                  *gt = tg_zeros(dt, TG_SHAPE(L, R));
        for (int64_t r = 0; r < R; r++)
          for (int64_t k = 0; k < L; k++) {
            tg_set(xt, k * R + r, tg_get(x, r * L + k));
            tg_set(gt, k * R + r, tg_get(g, r * L + k));
          }
        tg_requires_grad(xt, true);
        void *grad1 = malloc((size_t)x->numel * esz);
        void *out1 = malloc((size_t)x->numel * esz);
        ck_assert(grad1 && out1);
        for (int nt = 1; nt <= 2; nt++) {
          ck_assert_int_eq(tg_set_num_threads(nt), TG_OK);
          tg_tape *t = tg_tape_new();
          tg_tensor *y = softmax_or_log(t, x, -1, logs);
          ck_assert_ptr_nonnull(y);
          tg_zero_grad(x);
          ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
          if (nt == 1) {
            memcpy(out1, y->data, (size_t)x->numel * esz);
            memcpy(grad1, x->grad, (size_t)x->numel * esz);
            bool ok = true;
            for (int64_t r = 0; r < R && ok; r++)
              ok = row_grad_ok(y, g, x, r * L, 1, L, logs, tol);
            ck_assert_msg(ok, "last axis, L %lld: a gradient is off",
                          (long long)L);
          } else {
            ck_assert_msg(!memcmp(out1, y->data, (size_t)x->numel * esz),
                          "L %lld: two threads' y differ from one's",
                          (long long)L);
            ck_assert_msg(!memcmp(grad1, x->grad, (size_t)x->numel * esz),
                          "L %lld: two threads' dx differ from one's",
                          (long long)L);
          }
          tg_tape_free(t);
        }
        tg_set_num_threads(before);
        tg_tape *t = tg_tape_new();
        tg_tensor *yt = softmax_or_log(t, xt, 0, logs);
        ck_assert_ptr_nonnull(yt);
        tg_zero_grad(xt);
        ck_assert_int_eq(tg_backward_grad(t, yt, gt), TG_OK);
        bool ok = true;
        int64_t far = 0; /* elements where the two paths disagree */
        for (int64_t r = 0; r < R && ok; r++) {
          ok = row_grad_ok(yt, gt, xt, r, R, L, logs, tol);
          for (int64_t k = 0; k < L; k++) {
            double a = tg_grad_get(xt, k * R + r);
            double b = tg_grad_get(x, r * L + k);
            far += !(fabs(a - b) <= tol * (fabs(tg_get(g, r * L + k)) + 1));
          }
        }
        ck_assert_msg(ok, "axis 0, L %lld: a gradient is off", (long long)L);
        ck_assert_msg(!far, "L %lld: %lld elements differ between the paths",
                      (long long)L, (long long)far);
        tg_tape_free(t);
        free(grad1);
        free(out1);
        tg_tensor_free(x);
        tg_tensor_free(g);
        tg_tensor_free(xt);
        tg_tensor_free(gt);
      }
  tg__par_guard_enable(true);
}
END_TEST

/* Logits of +-1000: exp would overflow, the fused form stays finite, and
 * so does its gradient. Along the last axis and along a strided one. */
START_TEST(log_softmax_of_huge_logits_is_finite) {
  tg_tensor *x = param(TG_SHAPE(3), (double[]){1000, -1000, 0});
  tg_tensor *xc = param(TG_SHAPE(3, 2), (double[]){1000, 1, -1000, 2, 0, 3});
  tg_tape *t = tg_tape_new();
  tg_tape_set_check_finite(t, true);
  tg_tensor *y = tg_log_softmax(t, x, 0);
  ck_assert_msg(y, "%s", tg_last_error());
  expect_values(y, (double[]){0, -2000, -1000});
  backward_ones(t, y, x); /* 1 - 3 softmax */
  expect_grad(x, (double[]){-2, 1, 1});
  tg_tensor *yc = tg_log_softmax(t, xc, 0);
  ck_assert_msg(yc, "%s", tg_last_error());
  ck_assert_double_eq_tol(tg_get(yc, 0), 0, TOL);
  ck_assert_double_eq_tol(tg_get(yc, 2), -2000, TOL);
  ck_assert_double_eq_tol(tg_get(yc, 4), -1000, TOL);
  backward_ones(t, yc, xc);
  for (int64_t i = 0; i < xc->numel; i++) ck_assert(isfinite(tg_grad_get(xc, i)));
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(xc);
}
END_TEST

/* A sum of no elements is 0; a mean, 0/0 = NaN; a max or min has no
 * value and is refused. */
START_TEST(reductions_over_zero_elements) {
  tg_tensor *x = tg_zeros(TG_F64, TG_SHAPE(0, 3));
  tg_requires_grad(x, true);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_sum_axes(t, x, (int[]){0}, 1, false);
  expect_shape(y, TG_SHAPE(3));
  expect_values(y, (double[]){0, 0, 0});
  backward_ones(t, y, x);
  y = tg_sum_axes(t, x, NULL, 0, false);
  expect_values(y, (double[]){0});
  y = tg_logsumexp(t, x, (int[]){0}, 1, false);
  ck_assert(isinf(tg_get(y, 0)) && tg_get(y, 0) < 0);
  y = tg_mean_axes(t, x, (int[]){0}, 1, true);
  expect_shape(y, TG_SHAPE(1, 3));
  ck_assert(isnan(tg_get(y, 0)));
  /* over the non-empty axis: an empty result, which is fine */
  y = tg_max_axes(t, x, (int[]){1}, 1, false);
  expect_shape(y, TG_SHAPE(0));
  tg_clear_error();
  ck_assert_ptr_null(tg_max_axes(t, x, (int[]){0}, 1, false));
  ck_assert_error_has(TG_ESHAPE, "tg_max_axes", "zero elements", "[0,3]");
  ck_assert_ptr_null(tg_min_axes(t, x, NULL, 0, false));
  ck_assert_error_has(TG_ESHAPE, "tg_min_axes", "[0,3]");
  ck_assert_ptr_null(tg_var(t, x, (int[]){0}, 1, 0, false));
  ck_assert_error_has(TG_EINVAL, "tg_var", "0 elements per slice");
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

/* A 0-d input, reduced over nothing, gives its value; softmax of one
 * element is 1 and its log 0. */
START_TEST(zero_d_input) {
  tg_tensor *x = param(0, NULL, (double[]){2.5});
  tg_tape *t = tg_tape_new();
  tg_tensor *(*const fns[])(tg_tape *, tg_tensor *, const int *, int, bool) = {
      tg_sum_axes, tg_mean_axes, tg_max_axes, tg_min_axes};
  for (size_t k = 0; k < sizeof fns / sizeof *fns; k++) {
    tg_tensor *y = fns[k](t, x, NULL, 0, false);
    expect_shape(y, 0, NULL);
    expect_values(y, (double[]){2.5});
    backward_ones(t, y, x);
    expect_grad(x, (double[]){1});
  }
  tg_tensor *y = tg_logsumexp(t, x, NULL, 0, true);
  expect_shape(y, 0, NULL);
  expect_values(y, (double[]){2.5});
  y = tg_var(t, x, NULL, 0, 0, false);
  expect_values(y, (double[]){0});
  y = tg_softmax_axis(t, x, 0);
  expect_shape(y, 0, NULL);
  expect_values(y, (double[]){1});
  y = tg_log_softmax(t, x, -1);
  expect_values(y, (double[]){0});
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

START_TEST(argument_errors) {
  tg_tensor *x = param(TG_SHAPE(2, 3), x23);
  tg_tape *t = tg_tape_new();
  ck_assert_ptr_null(tg_sum_axes(t, x, (int[]){0}, -1, false));
  ck_assert_error_has(TG_EINVAL, "tg_sum_axes", "n_axes is -1");
  ck_assert_ptr_null(tg_mean_axes(t, x, NULL, 1, false));
  ck_assert_error_has(TG_EINVAL, "tg_mean_axes", "axes is NULL");
  ck_assert_ptr_null(tg_max_axes(t, x, (int[]){1, 1}, 2, false));
  ck_assert_error_has(TG_EINVAL, "tg_max_axes", "axis 1 is given twice");
  ck_assert_ptr_null(tg_min_axes(t, x, (int[]){1, -1}, 2, false));
  ck_assert_error_has(TG_EINVAL, "tg_min_axes", "given twice", "[2,3]");
  ck_assert_ptr_null(tg_logsumexp(t, x, (int[]){2}, 1, false));
  ck_assert_error_has(TG_ERANGE, "tg_logsumexp", "axis 2", "[2,3]");
  ck_assert_ptr_null(tg_sum_axes(t, x, (int[]){-3}, 1, false));
  ck_assert_error_has(TG_ERANGE, "tg_sum_axes", "axis -3", "[2,3]");
  ck_assert_ptr_null(tg_sum_axes(t, x, (int[]){0, 1000}, 2, false));
  ck_assert_error_has(TG_ERANGE, "tg_sum_axes", "axis 1000", "[2,3]");
  ck_assert_ptr_null(tg_sum_axes(t, x, (int[]){0, 1, 0}, 3, false));
  ck_assert_error_has(TG_EINVAL, "tg_sum_axes", "twice");
  ck_assert_ptr_null(tg_sum_axes(t, x, (int[]){0, 1, -1}, 3, false));
  ck_assert_error_has(TG_EINVAL, "tg_sum_axes", "3 axes", "[2,3]");
  ck_assert_ptr_null(tg_var(t, x, (int[]){0}, 1, -1, false));
  ck_assert_error_has(TG_EINVAL, "tg_var", "correction is -1");
  ck_assert_ptr_null(tg_var(t, x, (int[]){0}, 1, 2, false));
  ck_assert_error_has(TG_EINVAL, "tg_var", "correction 2", "[2,3]");
  ck_assert_ptr_null(tg_softmax_axis(t, x, 2));
  ck_assert_error_has(TG_ERANGE, "tg_softmax_axis", "axis 2", "[2,3]");
  ck_assert_ptr_null(tg_log_softmax(t, x, -3));
  ck_assert_error_has(TG_ERANGE, "tg_log_softmax", "axis -3", "[2,3]");
  /* A NULL input keeps the earlier op's message, bad axes or not. */
  tg_tensor *bad = tg_softmax_axis(t, x, 5);
  ck_assert_ptr_null(tg_sum_axes(t, bad, NULL, -4, false));
  ck_assert_error_has(TG_ERANGE, "tg_softmax_axis", "axis 5");
  ck_assert_int_eq(tg_tape_nodes(t), 0);
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

/* The composed loss: L = -mean_i log_softmax(z)[i, y_i], which must equal
 * the fused tg_softmax_nll in value and in dL/dz. */
START_TEST(log_softmax_pick_mean_equals_softmax_nll) {
  enum { N = 6, C = 5 };
  const int32_t labels[N] = {0, 4, 2, 2, 1, 3};
  tg_rng rng;
  tg_rng_seed(&rng, 21);
  tg_tensor *z = tg_zeros(TG_F64, TG_SHAPE(N, C));
  tg_fill_normal(z, &rng, 0, 3);
  tg_set(z, 7, 40); /* a large logit in one row */
  tg_requires_grad(z, true);
  tg_tensor *y = tg_tensor_from(TG_I32, TG_SHAPE(N), labels);
  tg_tape *t = tg_tape_new();
  tg_tensor *L1 = tg_scale(t, tg_mean(t, tg_pick(t, tg_log_softmax(t, z, 1), y)), -1);
  ck_assert_msg(L1, "%s", tg_last_error());
  ck_assert_int_eq(tg_backward(t, L1), TG_OK);
  double dz[N * C];
  for (int i = 0; i < N * C; i++) dz[i] = tg_grad_get(z, i);
  tg_zero_grad(z);
  tg_tensor *L2 = tg_softmax_nll(t, z, y);
  ck_assert_msg(L2, "%s", tg_last_error());
  ck_assert_int_eq(tg_backward(t, L2), TG_OK);
  ck_assert_double_eq_tol(tg_get(L1, 0), tg_get(L2, 0), 1e-12);
  for (int i = 0; i < N * C; i++)
    ck_assert_msg(fabs(dz[i] - tg_grad_get(z, i)) <= 1e-12,
                  "dz[%d]: composed %.17g, fused %.17g", i, dz[i],
                  tg_grad_get(z, i));
  tg_tape_free(t);
  tg_tensor_free(z);
  tg_tensor_free(y);
}
END_TEST

/* float32 sums are accumulated in double: 2^24 + 1 + 1 ... is kept. */
START_TEST(float32_sum_accumulates_in_double) {
  enum { M = 4097 };
  tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(1, M));
  tg_set(x, 0, 16777216.0); /* 2^24: adding 1 in float32 does nothing */
  for (int64_t i = 1; i < M; i++) tg_set(x, i, 1.0);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_sum_axes(t, x, (int[]){1}, 1, false);
  ck_assert_ptr_nonnull(y);
  ck_assert_double_eq(tg_get(y, 0), 16777216.0 + 4096);
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

/* The causal mask of an [Tq,Tk] block: 1 where row i sees column j. */
static tg_tensor *causal_mask(int64_t tq, int64_t tk) {
  tg_tensor *k = tg_zeros(TG_I32, TG_SHAPE(tq, tk));
  ck_assert_ptr_nonnull(k);
  int32_t *d = tg_tensor_i32(k);
  for (int64_t i = 0; i < tq; i++)
    for (int64_t j = 0; j <= i + tk - tq; j++) d[i * tk + j] = 1;
  return k;
}

/* The fused op against the graph it replaces, scale -> where(mask, .,
 * -1e9) -> softmax_axis, forward and backward from a random upstream
 * gradient, in both dtypes. Bound: |fused - composed| <= 1e-14 (float64)
 * and 2e-7 (float32) for y and dx, whose sizes are at most about 1 and
 * scale: the two sum the same terms, the composed adding exact zeros, in
 * another order. Masked entries are exactly 0 in both. */
static void check_causal_vs_composed(tg_dtype dt, int ndim, const int64_t *shape,
                                     double c) {
  tg_rng rng;
  tg_rng_seed(&rng, 11);
  const int64_t tq = shape[ndim - 2], tk = shape[ndim - 1];
  const double tol = dt == TG_F64 ? 1e-14 : 2e-7;
  tg_tensor *x = param_normal(dt, ndim, shape, &rng);
  tg_tensor *x2 = param_normal(dt, ndim, shape, &rng);
  for (int64_t e = 0; e < x->numel; e++) tg_set(x2, e, tg_get(x, e));
  tg_tensor *g = tg_zeros(dt, ndim, shape);
  ck_assert_int_eq(tg_fill_normal(g, &rng, 0, 1), TG_OK);
  tg_tensor *mask = causal_mask(tq, tk);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_softmax_causal(t, x, c);
  ck_assert_msg(y, "%s", tg_last_error());
  tg_tensor *r = tg_softmax_axis(
      t, tg_where(t, mask, tg_scale(t, x2, c), tg_const(t, dt, -1e9)), -1);
  ck_assert_msg(r, "%s", tg_last_error());
  tg_zero_grad(x);
  tg_zero_grad(x2);
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  ck_assert_int_eq(tg_backward_grad(t, r, g), TG_OK);
  for (int64_t e = 0; e < x->numel; e++) {
    int64_t i = e / tk % tq, j = e % tk;
    if (j > i + tk - tq) {
      ck_assert(tg_get(y, e) == 0 && tg_grad_get(x, e) == 0);
      continue;
    }
    ck_assert_msg(fabs(tg_get(y, e) - tg_get(r, e)) <= tol, "y %lld: %.9g vs %.9g",
                  (long long)e, tg_get(y, e), tg_get(r, e));
    ck_assert_msg(fabs(tg_grad_get(x, e) - tg_grad_get(x2, e)) <= tol,
                  "dx %lld: %.9g vs %.9g", (long long)e, tg_grad_get(x, e),
                  tg_grad_get(x2, e));
  }
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(x2);
  tg_tensor_free(g);
  tg_tensor_free(mask);
}

START_TEST(softmax_causal_matches_composed) {
  for (int k = 0; k < 2; k++) {
    tg_dtype dt = k ? TG_F32 : TG_F64;
    check_causal_vs_composed(dt, TG_SHAPE(2, 3, 9, 9), 0.35);
    check_causal_vs_composed(dt, TG_SHAPE(2, 5, 21), -1.5); /* Tq < Tk */
    check_causal_vs_composed(dt, TG_SHAPE(1, 2, 40, 40), 1 / sqrt(32.0));
  }
}
END_TEST

/* Row 0 of a square block sees only column 0: y = [1, 0, ...] exactly and
 * no gradient at all; one query over Tk keys sees them all; Tq < Tk by
 * hand (x = 0: row i is uniform over its i + Tk - Tq + 1 columns). */
START_TEST(softmax_causal_by_hand) {
  tg_tensor *x = param(TG_SHAPE(3, 3), (double[]){5, -2, 7, 1, 2, 9, 0, 0, 0});
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_softmax_causal(t, x, 2);
  expect_shape(y, TG_SHAPE(3, 3));
  double p = 1 / (1 + exp(2)), q = 1 - p; /* row 1: softmax(2, 4) */
  expect_values(y, (double[]){1, 0, 0, p, q, 0, 1. / 3, 1. / 3, 1. / 3});
  ck_assert(tg_get(y, 0) == 1 && tg_get(y, 1) == 0 && tg_get(y, 2) == 0);
  tg_tensor *g = f64_from(TG_SHAPE(3, 3), (double[]){3, 4, 5, 1, 0, 6, 0, 0, 1});
  tg_zero_grad(x);
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  /* row 1: d = p, dx = 2 y (g - d); row 2: d = 1/3, dx = 2/3 (g - 1/3) */
  double r2 = 2. / 3;
  expect_grad(x, (double[]){0, 0, 0, 2 * p * (1 - p), 2 * q * -p, 0,
                            r2 * (-1. / 3), r2 * (-1. / 3), r2 * (2. / 3)});
  ck_assert(tg_grad_get(x, 0) == 0);
  tg_tensor *z = param(TG_SHAPE(2, 3), (double[]){0, 0, 0, 0, 0, 0});
  y = tg_softmax_causal(t, z, 1);
  expect_values(y, (double[]){.5, .5, 0, 1. / 3, 1. / 3, 1. / 3});
  tg_tensor *w = param(TG_SHAPE(1, 1, 4), (double[]){0, 1, 2, 3});
  y = tg_softmax_causal(t, w, 1);
  double s = 1 + exp(1) + exp(2) + exp(3);
  expect_values(y, (double[]){1 / s, exp(1) / s, exp(2) / s, exp(3) / s});
  tg_tensor_free(g);
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(z);
  tg_tensor_free(w);
}
END_TEST

/* Empty sizes are valid results of the same shape, forward and backward;
 * Tq = 0 rows over Tk keys too. */
START_TEST(softmax_causal_empty) {
  const int64_t shapes[][3] = {{0, 4, 4}, {2, 0, 3}, {2, 0, 0}, {3, 2, 0}};
  tg_tape *t = tg_tape_new();
  for (int k = 0; k < 4; k++) {
    tg_tensor *x = tg_zeros(TG_F64, 3, shapes[k]);
    ck_assert_int_eq(tg_requires_grad(x, true), TG_OK);
    tg_clear_error();
    tg_tensor *y = tg_softmax_causal(t, x, 1);
    if (k == 3) { /* Tq 2 > Tk 0 */
      ck_assert_ptr_null(y);
      ck_assert_error_has(TG_ESHAPE, "tg_softmax_causal", "[3,2,0]");
    } else {
      expect_shape(y, 3, shapes[k]);
      ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
    }
    tg_tensor_free(x);
  }
  tg_tape_free(t);
}
END_TEST

START_TEST(softmax_causal_errors) {
  tg_tensor *v = param(TG_SHAPE(3), x23);
  tg_tensor *x = param(TG_SHAPE(1, 3, 2), x23);
  tg_tensor *ok = param(TG_SHAPE(2, 3), x23);
  tg_tape *t = tg_tape_new();
  ck_assert_ptr_null(tg_softmax_causal(t, v, 1));
  ck_assert_error_has(TG_ESHAPE, "tg_softmax_causal", "2-D", "[3]");
  ck_assert_ptr_null(tg_softmax_causal(t, x, 1));
  ck_assert_error_has(TG_ESHAPE, "tg_softmax_causal", "Tq 3 > Tk 2", "[1,3,2]");
  ck_assert_ptr_null(tg_softmax_causal(t, ok, INFINITY));
  ck_assert_error_has(TG_EINVAL, "tg_softmax_causal", "scale", "[2,3]");
  ck_assert_ptr_null(tg_softmax_causal(t, ok, -INFINITY));
  ck_assert_error_has(TG_EINVAL, "tg_softmax_causal", "scale", "[2,3]");
  ck_assert_ptr_null(tg_softmax_causal(t, ok, NAN));
  ck_assert_error_has(TG_EINVAL, "tg_softmax_causal", "scale", "[2,3]");
  ck_assert_ptr_null(tg_softmax_causal(t, NULL, 1));
  ck_assert_int_eq(tg_tape_nodes(t), 0);
  tg_tape_free(t);
  tg_tensor_free(v);
  tg_tensor_free(x);
  tg_tensor_free(ok);
}
END_TEST

/* Rows split over threads (a block large enough for the split) give the
 * same bits as one thread, forward and backward. */
START_TEST(softmax_causal_thread_count_independent) {
  tg_rng rng;
  tg_rng_seed(&rng, 5);
  tg_tensor *x = param_normal(TG_F32, TG_SHAPE(4, 4, 128, 128), &rng);
  tg_tensor *out[2], *grad[2];
  int before = tg_get_num_threads();
  for (int k = 0; k < 2; k++) {
    ck_assert_int_eq(tg_set_num_threads(k + 1), TG_OK);
    tg_tape *t = tg_tape_new();
    tg_tensor *y = tg_softmax_causal(t, x, 0.2);
    ck_assert_ptr_nonnull(y);
    tg_zero_grad(x);
    ck_assert_int_eq(tg_backward(t, tg_sum(t, tg_mul(t, y, y))), TG_OK);
    out[k] = tg_zeros(TG_F32, TG_SHAPE(4, 4, 128, 128));
    grad[k] = tg_zeros(TG_F32, TG_SHAPE(4, 4, 128, 128));
    for (int64_t e = 0; e < x->numel; e++) {
      tg_set(out[k], e, tg_get(y, e));
      tg_set(grad[k], e, tg_grad_get(x, e));
    }
    tg_tape_free(t);
  }
  tg_set_num_threads(before);
  ck_assert(!memcmp(out[0]->data, out[1]->data, (size_t)x->numel * sizeof(float)));
  ck_assert(!memcmp(grad[0]->data, grad[1]->data, (size_t)x->numel * sizeof(float)));
  for (int k = 0; k < 2; k++) {
    tg_tensor_free(out[k]);
    tg_tensor_free(grad[k]);
  }
  tg_tensor_free(x);
}
END_TEST

int main(void) {
  Suite *s = suite_create("reduce");
  TCase *tc = tcase_create("reductions");
  tcase_add_test(tc, sum_and_mean_by_hand);
  tcase_add_test(tc, sum_two_axes_of_3d);
  tcase_add_test(tc, max_min_by_hand);
  tcase_add_test(tc, max_min_ties_split_gradient);
  tcase_add_test(tc, max_min_nan_propagates);
  tcase_add_test(tc, logsumexp_by_hand);
  tcase_add_test(tc, logsumexp_of_all_minus_inf);
  tcase_add_test(tc, var_by_hand);
  tcase_add_test(tc, softmax_and_log_softmax_along_axis_0);
  tcase_add_test(tc, softmax_axis_matches_softmax);
  tcase_add_test(tc, log_softmax_of_huge_logits_is_finite);
  tcase_add_test(tc, reductions_over_zero_elements);
  tcase_add_test(tc, zero_d_input);
  tcase_add_test(tc, argument_errors);
  tcase_add_test(tc, log_softmax_pick_mean_equals_softmax_nll);
  tcase_add_test(tc, float32_sum_accumulates_in_double);
  tcase_add_test(tc, softmax_causal_matches_composed);
  tcase_add_test(tc, softmax_causal_by_hand);
  tcase_add_test(tc, softmax_causal_empty);
  tcase_add_test(tc, softmax_causal_errors);
  tcase_add_test(tc, softmax_causal_thread_count_independent);
  suite_add_tcase(s, tc);
  /* Rows enough for two threads at each of 20 shapes: longer than Check's
   * default 4 seconds on a loaded machine. */
  TCase *rows = tcase_create("softmax_rows");
  tcase_set_timeout(rows, 60);
  tcase_add_test(rows, softmax_axis_last_axis_backward);
  suite_add_tcase(s, rows);
  return run_suite(s);
}
