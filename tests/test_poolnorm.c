/* tests/test_poolnorm.c: pooling and batch normalisation beyond what the op
 * list's generated tests cover: batch norm's running statistics against
 * values worked out by hand, training against evaluation, refusals that
 * need a tape's tensor or shared data, pooling's edge cases (padding,
 * -inf and NaN, empty batches), and the batch norm and dropout layers with
 * their training mode and a checkpoint round trip of the running
 * statistics; layer norm on one thread and two. (The allocation-free step
 * with these layers is in test_nn.) */
#include "testutil.h"

#define TOL 1e-12

static tg_tensor *f64v(int ndim, const int64_t *shape, const double *v) {
  return f64_from(ndim, shape, v);
}

static void assert_values(const tg_tensor *x, const double *want, int64_t n,
                          double tol) {
  ck_assert_int_eq(tg_tensor_numel(x), n);
  for (int64_t i = 0; i < n; i++)
    ck_assert_msg(fabs(tg_get(x, i) - want[i]) <= tol * (1 + fabs(want[i])),
                  "[%lld] = %.17g, want %.17g", (long long)i, tg_get(x, i),
                  want[i]);
}

static void assert_grad(tg_tensor *x, const double *want, int64_t n) {
  tg_tensor *g = tg_tensor_grad(x);
  ck_assert_ptr_nonnull(g);
  assert_values(g, want, n, TOL);
}

/* --- batch norm's running statistics, by hand */

/* x [4,2]: channel 0 holds 1, 2, 3, 6 (mean 3, biased variance 14/4,
 * unbiased 14/3), channel 1 holds -1, -1, 1, 1 (mean 0, variances 1 and
 * 4/3). Momentum 0.1 from mean 0, var 1:
 *   mean: 0.9 * 0 + 0.1 * 3 = 0.3,        0
 *   var:  0.9 * 1 + 0.1 * 14/3,           0.9 + 0.1 * 4/3
 * and a second identical call moves them again from there. */
START_TEST(running_stats_by_hand) {
  tg_tensor *x = f64v(TG_SHAPE(4, 2), (double[]){1, -1, 2, -1, 3, 1, 6, 1});
  tg_tensor *rm = tg_zeros(TG_F64, TG_SHAPE(2)), *rv = tg_ones(TG_F64, TG_SHAPE(2));
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_batch_norm(t, x, NULL, NULL, rm, rv, true, 0.1, 1e-5);
  ck_assert_ptr_nonnull(y);
  assert_values(rm, (double[]){0.3, 0}, 2, TOL);
  assert_values(rv, (double[]){0.9 + 0.1 * 14.0 / 3, 0.9 + 0.1 * 4.0 / 3}, 2, TOL);
  /* the output uses the biased variance */
  double s0 = 1 / sqrt(3.5 + 1e-5), s1 = 1 / sqrt(1 + 1e-5);
  assert_values(y, (double[]){-2 * s0, -s1, -s0, -s1, 0, s1, 3 * s0, s1}, 8, TOL);
  ck_assert_ptr_nonnull(tg_batch_norm(t, x, NULL, NULL, rm, rv, true, 0.1, 1e-5));
  double v0 = 0.9 + 0.1 * 14.0 / 3, v1 = 0.9 + 0.1 * 4.0 / 3;
  assert_values(rm, (double[]){0.9 * 0.3 + 0.3, 0}, 2, TOL);
  assert_values(rv, (double[]){0.9 * v0 + 0.1 * 14.0 / 3, 0.9 * v1 + 0.1 * 4.0 / 3},
                2, TOL);
  /* momentum 0 keeps them; momentum 1 takes the batch's */
  ck_assert_ptr_nonnull(tg_batch_norm(t, x, NULL, NULL, rm, rv, true, 0, 1e-5));
  assert_values(rm, (double[]){0.57, 0}, 2, TOL);
  ck_assert_ptr_nonnull(tg_batch_norm(t, x, NULL, NULL, rm, rv, true, 1, 1e-5));
  assert_values(rm, (double[]){3, 0}, 2, TOL);
  assert_values(rv, (double[]){14.0 / 3, 4.0 / 3}, 2, TOL);
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(rm);
  tg_tensor_free(rv);
}
END_TEST

/* A channel whose mean is far from 0 normalises as well as one near it:
 * 1e8 + {1, 2, 3, 6} gives what {1, 2, 3, 6} gives (x - mean is exact
 * here, so nothing but the order of operations can lose digits). */
START_TEST(large_mean_keeps_precision) {
  tg_tensor *x = f64v(TG_SHAPE(4, 1), (double[]){1e8 + 1, 1e8 + 2, 1e8 + 3, 1e8 + 6});
  tg_tensor *rm = tg_zeros(TG_F64, TG_SHAPE(1)), *rv = tg_ones(TG_F64, TG_SHAPE(1));
  tg_tensor *gamma = f64v(TG_SHAPE(1), (double[]){1.5});
  tg_tensor *beta = f64v(TG_SHAPE(1), (double[]){0.25});
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_batch_norm(t, x, gamma, beta, rm, rv, true, 0.1, 1e-5);
  ck_assert_ptr_nonnull(y);
  double s = 1.5 / sqrt(3.5 + 1e-5);
  assert_values(y, (double[]){-2 * s + 0.25, -s + 0.25, 0.25, 3 * s + 0.25}, 4, TOL);
  tg_tape_free(t);
  tg_tensor *all[] = {x, rm, rv, gamma, beta};
  for (int i = 0; i < 5; i++) tg_tensor_free(all[i]);
}
END_TEST

/* [N,C,H,W]: a channel's statistics run over the batch and the plane. x
 * [2,2,1,2]: channel 0 holds 0, 2 (n = 0) and 4, 6 (n = 1): mean 3,
 * unbiased variance 20/3; channel 1 holds 1, 1, 1, 1: variance 0. In
 * float32 too. */
START_TEST(running_stats_over_planes) {
  for (int dt = 0; dt < 2; dt++) {
    tg_dtype d = dt ? TG_F32 : TG_F64;
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(2, 2, 1, 2),
                                  (double[]){0, 2, 1, 1, 4, 6, 1, 1});
    if (dt) {
      tg_tensor *x32 = tg_zeros(TG_F32, TG_SHAPE(2, 2, 1, 2));
      for (int i = 0; i < 8; i++) tg_set(x32, i, tg_get(x, i));
      tg_tensor_free(x);
      x = x32;
    }
    tg_tensor *rm = tg_zeros(d, TG_SHAPE(2)), *rv = tg_ones(d, TG_SHAPE(2));
    tg_tensor *gamma = tg_ones(d, TG_SHAPE(2)), *beta = tg_zeros(d, TG_SHAPE(2));
    tg_set(gamma, 1, 2);
    tg_set(beta, 1, 0.5);
    tg_tape *t = tg_tape_new();
    tg_tensor *y = tg_batch_norm(t, x, gamma, beta, rm, rv, true, 0.25, 1e-5);
    ck_assert_ptr_nonnull(y);
    double tol = dt ? 1e-6 : TOL;
    assert_values(rm, (double[]){0.75, 0.25}, 2, tol);
    assert_values(rv, (double[]){0.75 + 0.25 * 20.0 / 3, 0.75}, 2, tol);
    /* channel 1 has no spread: gamma * 0 + beta */
    double s = 1 / sqrt(5 + 1e-5);
    assert_values(y, (double[]){-3 * s, -s, 0.5, 0.5, s, 3 * s, 0.5, 0.5}, 8, tol);
    tg_tape_free(t);
    tg_tensor *all[] = {x, rm, rv, gamma, beta};
    for (int i = 0; i < 5; i++) tg_tensor_free(all[i]);
  }
}
END_TEST

/* Evaluation uses the running statistics and updates nothing; training's
 * output does not depend on them. */
START_TEST(train_and_eval_differ) {
  tg_tensor *x = f64v(TG_SHAPE(4, 2), (double[]){1, -1, 2, -1, 3, 1, 6, 1});
  tg_tensor *rm = f64v(TG_SHAPE(2), (double[]){0.5, -1});
  tg_tensor *rv = f64v(TG_SHAPE(2), (double[]){4, 0.25});
  tg_tensor *gamma = param_normal(TG_F64, TG_SHAPE(2), &(tg_rng){{1, 2, 3, 4}});
  tg_tensor *beta = param_normal(TG_F64, TG_SHAPE(2), &(tg_rng){{5, 6, 7, 8}});
  double g0 = tg_get(gamma, 0), g1 = tg_get(gamma, 1), b0 = tg_get(beta, 0),
         b1 = tg_get(beta, 1);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_batch_norm(t, x, gamma, beta, rm, rv, false, 0.1, 1e-5);
  ck_assert_ptr_nonnull(y);
  assert_values(rm, (double[]){0.5, -1}, 2, 0);
  assert_values(rv, (double[]){4, 0.25}, 2, 0);
  double s0 = g0 / sqrt(4 + 1e-5), s1 = g1 / sqrt(0.25 + 1e-5);
  double want[8];
  const double xs[8] = {1, -1, 2, -1, 3, 1, 6, 1};
  for (int i = 0; i < 8; i++)
    want[i] = i % 2 ? (xs[i] + 1) * s1 + b1 : (xs[i] - 0.5) * s0 + b0;
  assert_values(y, want, 8, TOL);
  /* backward in evaluation: the affine map */
  tg_requires_grad(x, true);
  y = tg_batch_norm(t, x, gamma, beta, rm, rv, false, 0.1, 1e-5);
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  assert_grad(x, (double[]){s0, s1, s0, s1, s0, s1, s0, s1}, 8);
  assert_grad(beta, (double[]){4, 4}, 2);
  /* training: the same output whatever the running statistics hold */
  tg_tensor *y1 = tg_batch_norm(t, x, gamma, beta, rm, rv, true, 0.1, 1e-5);
  tg_tensor *rm2 = f64v(TG_SHAPE(2), (double[]){100, 7}),
            *rv2 = f64v(TG_SHAPE(2), (double[]){1e6, 3});
  tg_tensor *y2 = tg_batch_norm(t, x, gamma, beta, rm2, rv2, true, 0.1, 1e-5);
  ck_assert_ptr_nonnull(y1);
  ck_assert_ptr_nonnull(y2);
  for (int i = 0; i < 8; i++) ck_assert(tg_get(y1, i) == tg_get(y2, i));
  /* ...and differs from evaluation's */
  ck_assert(fabs(tg_get(y1, 0) - want[0]) > 0.1);
  /* and training backward sums to zero over a channel (the mean is out) */
  tg_zero_grad(x);
  ck_assert_int_eq(tg_backward(t, tg_sum(t, tg_square(t, y1))), TG_OK);
  double s = 0;
  for (int i = 0; i < 8; i += 2) s += tg_grad_get(x, i);
  ck_assert_double_eq_tol(s, 0, 1e-12);
  tg_tape_free(t);
  tg_tensor *all[] = {x, rm, rv, gamma, beta, rm2, rv2};
  for (int i = 0; i < 7; i++) tg_tensor_free(all[i]);
}
END_TEST

/* No-grad mode records nothing but still updates in training. */
START_TEST(no_grad_still_updates) {
  tg_tensor *x = f64v(TG_SHAPE(2, 1), (double[]){1, 3});
  tg_requires_grad(x, true);
  tg_tensor *rm = tg_zeros(TG_F64, TG_SHAPE(1)), *rv = tg_ones(TG_F64, TG_SHAPE(1));
  tg_tape *t = tg_tape_new();
  tg_tape_set_grad(t, false);
  ck_assert_ptr_nonnull(tg_batch_norm(t, x, NULL, NULL, rm, rv, true, 0.5, 1e-5));
  ck_assert_int_eq(tg_tape_nodes(t), 0);
  assert_values(rm, (double[]){1}, 1, TOL);
  assert_values(rv, (double[]){0.5 + 0.5 * 2}, 1, TOL);
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(rm);
  tg_tensor_free(rv);
}
END_TEST

/* Refusals the op list's cases cannot express, and that nothing is
 * updated by a refused call. */
START_TEST(batch_norm_refusals) {
  tg_tensor *x = f64v(TG_SHAPE(4, 2), (double[]){1, -1, 2, -1, 3, 1, 6, 1});
  tg_tensor *rm = f64v(TG_SHAPE(2), (double[]){0.5, -1});
  tg_tensor *rv = f64v(TG_SHAPE(2), (double[]){4, 0.25});
  tg_tensor *rv32 = tg_ones(TG_F32, TG_SHAPE(2));
  tg_tape *t = tg_tape_new();
  /* a tape's tensor as a running statistic */
  tg_tensor *tape_rm = tg_scale(t, rm, 1.0);
  ck_assert_ptr_nonnull(tape_rm);
  ck_assert_ptr_null(tg_batch_norm(t, x, NULL, NULL, tape_rm, rv, true, 0.1, 1e-5));
  ck_assert_error_has(TG_EINVAL, "tg_batch_norm", "running_mean is a tape's tensor");
  ck_assert_ptr_null(tg_batch_norm(t, x, NULL, NULL, rm, tape_rm, false, 0.1, 1e-5));
  ck_assert_error_has(TG_EINVAL, "running_var is a tape's tensor");
  /* shared data */
  ck_assert_ptr_null(tg_batch_norm(t, x, NULL, NULL, rm, rm, true, 0.1, 1e-5));
  ck_assert_error_has(TG_EINVAL, "running_mean and running_var share their data");
  ck_assert_ptr_null(tg_batch_norm(t, x, rv, NULL, rm, rv, true, 0.1, 1e-5));
  ck_assert_error_has(TG_EINVAL, "gamma and running_var share");
  /* another dtype */
  ck_assert_ptr_null(tg_batch_norm(t, x, NULL, NULL, rm, rv32, true, 0.1, 1e-5));
  ck_assert_error_has(TG_EDTYPE, "tg_batch_norm", "running_var is float32");
  /* a required running statistic left out */
  tg_clear_error();
  ck_assert_ptr_null(tg_batch_norm(t, x, NULL, NULL, NULL, rv, true, 0.1, 1e-5));
  /* nothing moved */
  assert_values(rm, (double[]){0.5, -1}, 2, 0);
  assert_values(rv, (double[]){4, 0.25}, 2, 0);
  ck_assert_ptr_null(tg_batch_norm(t, x, NULL, NULL, rm, rv, true, 2, 1e-5));
  assert_values(rm, (double[]){0.5, -1}, 2, 0);
  ck_assert_int_eq(tg_tape_nodes(t), 0);
  tg_tape_free(t);
  tg_tensor *all[] = {x, rm, rv, rv32};
  for (int i = 0; i < 4; i++) tg_tensor_free(all[i]);
}
END_TEST

/* --- pooling */

/* Average pooling counts the padding in its divisor (count_include_pad):
 * a 2x2 plane of ones, kernel 2, stride 1, padding 1 gives a 3x3 plane of
 * corners 1/4, edges 1/2 and the centre 1; the gradient of the sum is
 * 4 windows x 1/4 for each element. */
START_TEST(avg_pool_counts_padding) {
  tg_tensor *x = tg_ones(TG_F64, TG_SHAPE(1, 1, 2, 2));
  tg_requires_grad(x, true);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_avg_pool2d(t, x, 2, 2, 1, 1, 1, 1);
  ck_assert_ptr_nonnull(y);
  ck_assert_int_eq(tg_tensor_dim(y, 2), 3);
  ck_assert_int_eq(tg_tensor_dim(y, 3), 3);
  assert_values(y, (double[]){0.25, 0.5, 0.25, 0.5, 1, 0.5, 0.25, 0.5, 0.25}, 9, 0);
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  assert_grad(x, (double[]){1, 1, 1, 1}, 4);
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

/* Max pooling: the output size is floored (a 5x5 plane, kernel 2, stride
 * 2 drops the last row and column); padding is -inf, so a plane of -inf
 * gives -inf and the gradient goes to the window's first element inside
 * the plane; a NaN wins; ties go to the first; repeated backward
 * accumulates. */
START_TEST(max_pool_edges) {
  tg_tape *t = tg_tape_new();
  double v[25];
  for (int i = 0; i < 25; i++) v[i] = i;
  tg_tensor *x = f64v(TG_SHAPE(1, 1, 5, 5), v);
  tg_requires_grad(x, true);
  tg_tensor *y = tg_max_pool2d(t, x, 2, 2, 2, 2, 0, 0);
  ck_assert_ptr_nonnull(y);
  ck_assert_int_eq(tg_tensor_dim(y, 2), 2);
  ck_assert_int_eq(tg_tensor_dim(y, 3), 2);
  assert_values(y, (double[]){6, 8, 16, 18}, 4, 0);
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  for (int i = 0; i < 25; i++)
    ck_assert(tg_grad_get(x, i) == (i == 6 || i == 8 || i == 16 || i == 18 ? 2 : 0));
  tg_tensor_free(x);

  /* -inf everywhere, padding 1: each window's first element in the plane */
  tg_tensor *m = tg_zeros(TG_F64, TG_SHAPE(1, 1, 2, 3));
  for (int i = 0; i < 6; i++) tg_set(m, i, -INFINITY);
  tg_requires_grad(m, true);
  y = tg_max_pool2d(t, m, 3, 3, 1, 1, 1, 1);
  ck_assert_ptr_nonnull(y);
  for (int i = 0; i < 6; i++) ck_assert(tg_get(y, i) == -INFINITY);
  ck_assert_int_eq(tg_backward(t, tg_sum(t, tg_scale(t, y, 0.0))), TG_OK);
  tg_tensor *g = tg_ones(TG_F64, TG_SHAPE(1, 1, 2, 3));
  tg_zero_grad(m);
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  /* windows (0,0) (0,1) (1,0) (1,1) start at element 0, (0,2) (1,2) at 1 */
  assert_grad(m, (double[]){4, 2, 0, 0, 0, 0}, 6);
  tg_tensor_free(m);

  /* a NaN wins; ties go to the first */
  tg_tensor *n = f64v(TG_SHAPE(1, 1, 2, 2), (double[]){1, NAN, 5, 5});
  tg_tensor *tie = f64v(TG_SHAPE(1, 1, 2, 2), (double[]){1, 5, 5, 5});
  tg_requires_grad(n, true);
  tg_requires_grad(tie, true);
  y = tg_max_pool2d(t, n, 2, 2, 1, 1, 0, 0);
  ck_assert(isnan(tg_get(y, 0)));
  tg_tensor *z = tg_max_pool2d(t, tie, 2, 2, 1, 1, 0, 0);
  assert_values(z, (double[]){5}, 1, 0);
  ck_assert_int_eq(tg_backward(t, tg_sum(t, z)), TG_OK);
  assert_grad(tie, (double[]){0, 1, 0, 0}, 4);
  tg_tensor *g1 = tg_ones(TG_F64, TG_SHAPE(1, 1, 1, 1));
  ck_assert_int_eq(tg_backward_grad(t, y, g1), TG_OK);
  assert_grad(n, (double[]){0, 1, 0, 0}, 4);
  tg_tape_free(t);
  tg_tensor *all[] = {g, n, tie, g1};
  for (int i = 0; i < 4; i++) tg_tensor_free(all[i]);
}
END_TEST

/* The 2x2, stride 2, unpadded window has a path of its own: against the
 * rule written out here (row-major order, ties to the first, the last NaN
 * wins) on planes full of ties, NaNs and -inf, odd sizes floored, in both
 * dtypes; the gradient lands on the chosen element. */
static void ref_max22(const double *x, int64_t planes, int64_t H, int64_t W,
                      double *y, int64_t *at) {
  int64_t OH = H / 2, OW = W / 2;
  for (int64_t p = 0; p < planes; p++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        double best = -INFINITY;
        int64_t bi = p * H * W + 2 * oh * W + 2 * ow;
        for (int dh = 0; dh < 2; dh++)
          for (int dw = 0; dw < 2; dw++) {
            int64_t i = p * H * W + (2 * oh + dh) * W + 2 * ow + dw;
            if (x[i] > best || isnan(x[i])) best = x[i], bi = i;
          }
        y[(p * OH + oh) * OW + ow] = best;
        at[(p * OH + oh) * OW + ow] = bi;
      }
}

/* One shape of max_pool_2x2_path: W = 9 gives rows of 4 windows, one
 * vector of f32; W = 31 gives 15, vectors and a scalar tail. */
static void check_max22(int64_t W, uint64_t seed) {
  const int64_t N = 2, C = 3, H = 7, OH = 3, OW = W / 2, n = N * C * H * W;
  const int64_t no = N * C * OH * OW;
  static const double pick[] = {1, 2, 2, -INFINITY, 0, -0.5, 3};
  double *v = malloc((size_t)n * sizeof *v), *y = malloc((size_t)no * sizeof *y);
  int64_t *at = malloc((size_t)no * sizeof *at);
  ck_assert(v && y && at);
  tg_rng rng;
  tg_rng_seed(&rng, seed);
  for (int64_t i = 0; i < n; i++) {
    double u = tg_rng_uniform(&rng);
    v[i] = u < 0.08 ? NAN : pick[(int)(7 * tg_rng_uniform(&rng)) % 7];
  }
  ref_max22(v, N * C, H, W, y, at);
  /* with a gradient (positions kept) and without (the forward alone) */
  for (int d = 0; d < 4; d++) {
    tg_dtype dt = d & 1 ? TG_F32 : TG_F64;
    bool grad = d < 2;
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_zeros(dt, TG_SHAPE(N, C, H, W));
    for (int64_t i = 0; i < n; i++) tg_set(x, i, v[i]);
    tg_requires_grad(x, grad);
    tg_tensor *p = tg_max_pool2d(t, x, 2, 2, 2, 2, 0, 0);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(tg_tensor_numel(p), no);
    tg_tensor *g = tg_zeros(dt, TG_SHAPE(N, C, OH, OW));
    for (int64_t o = 0; o < no; o++) {
      double got = tg_get(p, o);
      ck_assert_msg(isnan(y[o]) ? isnan(got) : got == y[o],
                    "W %lld output %lld: %g, want %g", (long long)W,
                    (long long)o, got, y[o]);
      tg_set(g, o, (double)(o + 1));
    }
    if (grad) {
      ck_assert_int_eq(tg_backward_grad(t, p, g), TG_OK);
      for (int64_t i = 0; i < n; i++) {
        double want = 0;
        for (int64_t o = 0; o < no; o++)
          if (at[o] == i) want += (double)(o + 1);
        ck_assert_msg(tg_grad_get(x, i) == want, "%s W %lld dx[%lld] = %g, want %g",
                      d & 1 ? "f32" : "f64", (long long)W, (long long)i,
                      tg_grad_get(x, i), want);
      }
    }
    tg_tape_free(t);
    tg_tensor_free(x);
    tg_tensor_free(g);
  }
  free(v);
  free(y);
  free(at);
}

START_TEST(max_pool_2x2_path) {
  check_max22(9, 11);
  check_max22(31, 12);
}
END_TEST

/* Empty batches pool to empty results; a stale tensor is refused. */
START_TEST(pool_empty_and_stale) {
  tg_tape *t = tg_tape_new();
  tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(0, 3, 4, 4));
  tg_tensor *y = tg_max_pool2d(t, x, 2, 2, 2, 2, 0, 0);
  ck_assert_ptr_nonnull(y);
  ck_assert_int_eq(tg_tensor_numel(y), 0);
  ck_assert_int_eq(tg_tensor_dim(y, 2), 2);
  y = tg_avg_pool2d(t, x, 3, 3, 1, 1, 1, 1);
  ck_assert_ptr_nonnull(y);
  ck_assert_int_eq(tg_tensor_dim(y, 3), 4);
  y = tg_global_avg_pool2d(t, x);
  ck_assert_ptr_nonnull(y);
  ck_assert_int_eq(tg_tensor_ndim(y), 2);
  ck_assert_int_eq(tg_tensor_dim(y, 1), 3);
  tg_tensor *ones = tg_ones(TG_F32, TG_SHAPE(2, 3, 2, 2));
  tg_tensor *old = tg_scale(t, ones, 2.0);
  tg_tape_clear(t);
  ck_assert_ptr_null(tg_max_pool2d(t, old, 2, 2, 1, 1, 0, 0));
  ck_assert_error_has(TG_ESTATE, "tg_max_pool2d");
  /* a NULL input keeps the earlier message */
  tg_clear_error();
  ck_assert_ptr_null(tg_avg_pool2d(t, NULL, 2, 2, 1, 1, 0, 0));
  ck_assert_int_eq(tg_last_status(), TG_OK);
  /* the global pool: the plane's mean, [N,C] */
  y = tg_global_avg_pool2d(t, ones);
  assert_values(y, (double[]){1, 1, 1, 1, 1, 1}, 6, 0);
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(ones);
}
END_TEST

/* Pooling and batch norm split their passes over threads by plane and by
 * channel; on shapes large enough to split, one thread and two give the
 * same bits, forward and backward. (The split falls on multiples of 16
 * planes or channels: C is 32 so that batch norm splits too.) */
#define C 32
static void cnn_pass(tg_tensor *x, tg_tensor *gamma, tg_tensor *beta,
                     tg_tensor *rm, tg_tensor *rv, float *out, float *grads) {
  tg_zero_grad(x);
  tg_zero_grad(gamma);
  tg_zero_grad(beta);
  tg_tape *t = tg_tape_new();
  tg_tensor *h = tg_batch_norm(t, x, gamma, beta, rm, rv, true, 0.1, 1e-5);
  tg_tensor *a = tg_max_pool2d(t, h, 2, 2, 2, 2, 0, 0);
  tg_tensor *b = tg_avg_pool2d(t, a, 3, 3, 1, 1, 1, 1);
  tg_tensor *g = tg_global_avg_pool2d(t, tg_square(t, b));
  tg_tensor *loss = tg_sum(t, tg_add(t, g, tg_sum(t, tg_square(t, h))));
  ck_assert_msg(loss != NULL, "%s", tg_last_error());
  ck_assert_int_eq(tg_backward(t, loss), TG_OK);
  memcpy(out, tg_tensor_f32(b), (size_t)tg_tensor_numel(b) * sizeof(float));
  int64_t nx = tg_tensor_numel(x);
  memcpy(grads, tg_tensor_f32(tg_tensor_grad(x)), (size_t)nx * sizeof(float));
  memcpy(grads + nx, tg_tensor_f32(tg_tensor_grad(gamma)), C * sizeof(float));
  memcpy(grads + nx + C, tg_tensor_f32(tg_tensor_grad(beta)), C * sizeof(float));
  tg_tape_free(t);
}

START_TEST(threads_give_the_same_bits) {
  tg_rng rng;
  tg_rng_seed(&rng, 21);
  tg_tensor *x = param_normal(TG_F32, TG_SHAPE(4, C, 32, 32), &rng);
  tg_tensor *gamma = param_normal(TG_F32, TG_SHAPE(C), &rng);
  tg_tensor *beta = param_normal(TG_F32, TG_SHAPE(C), &rng);
  tg_tensor *rm[2], *rv[2];
  const int64_t nx = 4 * C * 32 * 32, ny = 4 * C * 16 * 16;
  float *out[2], *grads[2];
  for (int k = 0; k < 2; k++) {
    rm[k] = tg_zeros(TG_F32, TG_SHAPE(C));
    rv[k] = tg_ones(TG_F32, TG_SHAPE(C));
    out[k] = malloc((size_t)ny * sizeof(float));
    grads[k] = malloc((size_t)(nx + 2 * C) * sizeof(float));
    ck_assert_int_eq(tg_set_num_threads(k + 1), TG_OK);
    cnn_pass(x, gamma, beta, rm[k], rv[k], out[k], grads[k]);
  }
  ck_assert(!memcmp(out[0], out[1], (size_t)ny * sizeof(float)));
  ck_assert(!memcmp(grads[0], grads[1], (size_t)(nx + 2 * C) * sizeof(float)));
  ck_assert(!memcmp(tg_tensor_f32(rm[0]), tg_tensor_f32(rm[1]), C * sizeof(float)));
  ck_assert(!memcmp(tg_tensor_f32(rv[0]), tg_tensor_f32(rv[1]), C * sizeof(float)));
  for (int k = 0; k < 2; k++) {
    tg_tensor_free(rm[k]);
    tg_tensor_free(rv[k]);
    free(out[k]);
    free(grads[k]);
  }
  tg_tensor_free(x);
  tg_tensor_free(gamma);
  tg_tensor_free(beta);
}
END_TEST
#undef C

/* --- layers */

START_TEST(batch_norm_layer_basics) {
  tg_batch_norm_layer *l = tg_batch_norm_layer_new(3, TG_F64);
  ck_assert_ptr_nonnull(l);
  ck_assert(tg_batch_norm_layer_training(l));
  tg_tensor *p[2], *b[2];
  ck_assert_int_eq(tg_batch_norm_layer_params(l, p), 2);
  ck_assert_int_eq(tg_batch_norm_layer_buffers(l, b), 2);
  ck_assert(tg_tensor_requires_grad(p[0]) && tg_tensor_requires_grad(p[1]));
  ck_assert(!tg_tensor_requires_grad(b[0]) && !tg_tensor_requires_grad(b[1]));
  assert_values(p[0], (double[]){1, 1, 1}, 3, 0);
  assert_values(p[1], (double[]){0, 0, 0}, 3, 0);
  assert_values(b[0], (double[]){0, 0, 0}, 3, 0);
  assert_values(b[1], (double[]){1, 1, 1}, 3, 0);
  tg_rng rng;
  tg_rng_seed(&rng, 4);
  tg_tensor *x = tg_zeros(TG_F64, TG_SHAPE(4, 3, 2, 2));
  tg_fill_normal(x, &rng, 2, 3);
  tg_tape *t = tg_tape_new();
  /* training: the default momentum 0.1 moves the mean a tenth of the way */
  tg_tensor *y = tg_batch_norm_layer_forward(t, l, x);
  ck_assert_ptr_nonnull(y);
  for (int c = 0; c < 3; c++) {
    double s = 0;
    for (int n = 0; n < 4; n++)
      for (int k = 0; k < 4; k++) s += tg_get(x, (n * 3 + c) * 4 + k);
    ck_assert_double_eq_tol(tg_get(b[0], c), 0.1 * s / 16, 1e-12);
  }
  /* evaluation: the running statistics, unchanged by the call */
  tg_batch_norm_layer_set_training(l, false);
  ck_assert(!tg_batch_norm_layer_training(l));
  double m0 = tg_get(b[0], 0), v0 = tg_get(b[1], 0);
  y = tg_batch_norm_layer_forward(t, l, x);
  ck_assert_ptr_nonnull(y);
  ck_assert_double_eq_tol(tg_get(y, 0), (tg_get(x, 0) - m0) / sqrt(v0 + 1e-5), 1e-12);
  ck_assert(tg_get(b[0], 0) == m0);
  /* configure: a bad value leaves the layer as it was */
  ck_assert_int_eq(tg_batch_norm_layer_configure(l, 1.5, 1e-3), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_batch_norm_layer_configure", "momentum is 1.5");
  ck_assert_int_eq(tg_batch_norm_layer_configure(l, 0.5, 0), TG_EINVAL);
  ck_assert_int_eq(tg_batch_norm_layer_configure(l, 0.5, 1e-3), TG_OK);
  y = tg_batch_norm_layer_forward(t, l, x);
  ck_assert_double_eq_tol(tg_get(y, 0), (tg_get(x, 0) - m0) / sqrt(v0 + 1e-3), 1e-12);
  /* [N,C] features too */
  tg_tensor *f = tg_ones(TG_F64, TG_SHAPE(2, 3));
  tg_batch_norm_layer_set_training(l, true);
  ck_assert_ptr_nonnull(tg_batch_norm_layer_forward(t, l, f));
  /* errors name the layer */
  tg_tensor *bad = tg_ones(TG_F64, TG_SHAPE(2, 4, 2, 2));
  ck_assert_ptr_null(tg_batch_norm_layer_forward(t, l, bad));
  ck_assert_error_has(TG_ESHAPE, "tg_batch_norm_layer_forward",
                      "x is [2,4,2,2]; the layer has 3 channels");
  tg_tensor *x32 = tg_ones(TG_F32, TG_SHAPE(2, 3));
  ck_assert_ptr_null(tg_batch_norm_layer_forward(t, l, x32));
  ck_assert_error_has(TG_EDTYPE, "x is float32; the layer is float64");
  ck_assert_ptr_null(tg_batch_norm_layer_forward(t, NULL, x));
  ck_assert_error_has(TG_EINVAL, "layer is NULL");
  tg_clear_error();
  ck_assert_ptr_null(tg_batch_norm_layer_forward(t, l, NULL));
  ck_assert_int_eq(tg_last_status(), TG_OK);
  ck_assert_ptr_null(tg_batch_norm_layer_new(0, TG_F32));
  ck_assert_error_has(TG_ESHAPE, "tg_batch_norm_layer_new", "C is 0");
  ck_assert_ptr_null(tg_batch_norm_layer_new(3, TG_I32));
  ck_assert_error_has(TG_EDTYPE, "dtype is int32");
  ck_assert_int_eq(tg_batch_norm_layer_params(NULL, p), 0);
  ck_assert_int_eq(tg_batch_norm_layer_buffers(l, NULL), 0);
  tg_batch_norm_layer_free(NULL);
  tg_tape_free(t);
  tg_tensor *all[] = {x, f, bad, x32};
  for (int i = 0; i < 4; i++) tg_tensor_free(all[i]);
  tg_batch_norm_layer_free(l);
}
END_TEST

START_TEST(dropout_layer_modes) {
  tg_dropout_layer *l = tg_dropout_layer_new(0.5, 7);
  ck_assert_ptr_nonnull(l);
  ck_assert(tg_dropout_layer_training(l));
  tg_tensor *x = tg_ones(TG_F32, TG_SHAPE(4, 8));
  tg_tape *t = tg_tape_new();
  tg_tensor *y1 = tg_dropout_layer_forward(t, l, x);
  ck_assert_ptr_nonnull(y1);
  ck_assert_ptr_ne(y1, x);
  int zeros = 0;
  for (int i = 0; i < 32; i++) {
    double v = tg_get(y1, i);
    ck_assert(v == 0 || v == 2);
    zeros += v == 0;
  }
  ck_assert(zeros > 0 && zeros < 32);
  /* the generator moves on: the next mask differs; seeding again repeats */
  tg_tensor *y2 = tg_dropout_layer_forward(t, l, x);
  bool differ = false;
  for (int i = 0; i < 32; i++) differ |= tg_get(y1, i) != tg_get(y2, i);
  ck_assert(differ);
  tg_dropout_layer_seed(l, 7);
  tg_tensor *y3 = tg_dropout_layer_forward(t, l, x);
  for (int i = 0; i < 32; i++) ck_assert(tg_get(y1, i) == tg_get(y3, i));
  /* evaluation: x itself */
  tg_dropout_layer_set_training(l, false);
  ck_assert(!tg_dropout_layer_training(l));
  ck_assert_ptr_eq(tg_dropout_layer_forward(t, l, x), x);
  ck_assert_ptr_null(tg_dropout_layer_forward(t, NULL, x));
  ck_assert_error_has(TG_EINVAL, "tg_dropout_layer_forward", "layer is NULL");
  ck_assert_ptr_null(tg_dropout_layer_new(1.0, 1));
  ck_assert_error_has(TG_EINVAL, "tg_dropout_layer_new", "p is 1");
  ck_assert_ptr_null(tg_dropout_layer_new(NAN, 1));
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_dropout_layer_free(l);
  tg_dropout_layer_free(NULL);
}
END_TEST

/* A few training steps of a batch norm layer, a checkpoint of its
 * parameters and running statistics, and a fresh layer loaded from it:
 * every tensor bit for bit, the same evaluation output, and the same
 * state after one more training step on both. */
static void bn_steps(tg_batch_norm_layer *l, tg_tape *t, tg_rng *rng, int n) {
  tg_tensor *p[2];
  tg_batch_norm_layer_params(l, p);
  tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(5, 2, 3, 3));
  for (int s = 0; s < n; s++) {
    tg_fill_normal(x, rng, 1, 2);
    tg_tensor *y = tg_batch_norm_layer_forward(t, l, x);
    ck_assert_int_eq(tg_backward(t, tg_sum(t, tg_square(t, tg_add_scalar(t, y, 0.3)))),
                     TG_OK);
    for (int k = 0; k < 2; k++) { /* plain SGD */
      float *d = tg_tensor_f32(p[k]);
      const float *g = tg_tensor_f32(tg_tensor_grad(p[k]));
      for (int i = 0; i < 2; i++) d[i] -= 0.01f * g[i];
      tg_zero_grad(p[k]);
    }
    tg_tape_clear(t);
  }
  tg_tensor_free(x);
}

static bool same_bits(const tg_tensor *a, const tg_tensor *b) {
  return tg_tensor_numel(a) == tg_tensor_numel(b) &&
         !memcmp(tg_tensor_f32((tg_tensor *)a), tg_tensor_f32((tg_tensor *)b),
                 (size_t)tg_tensor_numel(a) * sizeof(float));
}

START_TEST(batch_norm_layer_checkpoint_round_trip) {
  tg_batch_norm_layer *a = tg_batch_norm_layer_new(2, TG_F32),
                      *b = tg_batch_norm_layer_new(2, TG_F32);
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_nonnull(b);
  tg_tape *t = tg_tape_new();
  tg_rng rng;
  tg_rng_seed(&rng, 11);
  bn_steps(a, t, &rng, 5);
  tg_tensor *ta[4], *tb[4];
  int na = tg_batch_norm_layer_params(a, ta);
  na += tg_batch_norm_layer_buffers(a, ta + na);
  int nb = tg_batch_norm_layer_params(b, tb);
  nb += tg_batch_norm_layer_buffers(b, tb + nb);
  ck_assert_int_eq(na, 4);
  ck_assert_int_eq(nb, 4);
  /* the running statistics have moved from 0 and 1 */
  ck_assert(tg_get(ta[2], 0) != 0 && tg_get(ta[3], 0) != 1);
  const char *names[] = {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"};
  const char *path = P("bn.safetensors");
  ck_assert_int_eq(tg_save(path, names, ta, 4, NULL), TG_OK);
  ck_assert_int_eq(tg_load_into(path, names, tb, 4), TG_OK);
  for (int k = 0; k < 4; k++) ck_assert_msg(same_bits(ta[k], tb[k]), "tensor %s", names[k]);
  /* the same evaluation output */
  tg_batch_norm_layer_set_training(a, false);
  tg_batch_norm_layer_set_training(b, false);
  tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(3, 2, 2, 2));
  tg_fill_normal(x, &rng, 0, 1);
  tg_tensor *ya = tg_batch_norm_layer_forward(t, a, x),
            *yb = tg_batch_norm_layer_forward(t, b, x);
  ck_assert(same_bits(ya, yb));
  tg_tape_clear(t);
  /* and the same state after more training on both */
  tg_batch_norm_layer_set_training(a, true);
  tg_batch_norm_layer_set_training(b, true);
  tg_rng r1 = rng, r2 = rng;
  bn_steps(a, t, &r1, 2);
  bn_steps(b, t, &r2, 2);
  for (int k = 0; k < 4; k++) ck_assert(same_bits(ta[k], tb[k]));
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_batch_norm_layer_free(a);
  tg_batch_norm_layer_free(b);
}
END_TEST

/* Layer norm splits rows (forward, dx) and columns (dw, db) over threads:
 * one thread and two give the same bits, on rows of a length that leaves
 * a tail after its 8 partial sums, and the values agree with the formulas
 * evaluated here in double. */
static void ln_pass(tg_tensor *x, tg_tensor *w, tg_tensor *b, const tg_tensor *g,
                    float *out) {
  tg_zero_grad(x);
  tg_zero_grad(w);
  tg_zero_grad(b);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_layer_norm(t, x, w, b, 1e-5);
  ck_assert_msg(y != NULL, "%s", tg_last_error());
  ck_assert_int_eq(tg_backward_grad(t, y, (tg_tensor *)g), TG_OK);
  int64_t n = tg_tensor_numel(x), D = tg_tensor_numel(w);
  memcpy(out, tg_tensor_f32(y), (size_t)n * sizeof(float));
  memcpy(out + n, tg_tensor_f32(tg_tensor_grad(x)), (size_t)n * sizeof(float));
  memcpy(out + 2 * n, tg_tensor_f32(tg_tensor_grad(w)), (size_t)D * sizeof(float));
  memcpy(out + 2 * n + D, tg_tensor_f32(tg_tensor_grad(b)), (size_t)D * sizeof(float));
  tg_tape_free(t);
}

START_TEST(layer_norm_threads_same_bits) {
  const int64_t rows = 3001, D = 131, n = rows * D, len = 2 * n + 2 * D;
  tg_rng rng;
  tg_rng_seed(&rng, 77);
  tg_tensor *x = param_normal(TG_F32, TG_SHAPE(rows, D), &rng);
  tg_tensor *w = param_normal(TG_F32, TG_SHAPE(D), &rng);
  tg_tensor *b = param_normal(TG_F32, TG_SHAPE(D), &rng);
  tg_tensor *g = tg_zeros(TG_F32, TG_SHAPE(rows, D));
  tg_fill_normal(g, &rng, 0, 1);
  float *xs = tg_tensor_f32(x);
  for (int64_t i = 0; i < n; i++) xs[i] = 5 + 3 * xs[i]; /* a mean to remove */
  float *out[2];
  tg__par_guard_enable(false); /* two threads whenever the op asks */
  for (int k = 0; k < 2; k++) {
    out[k] = malloc((size_t)len * sizeof(float));
    ck_assert_int_eq(tg_set_num_threads(k + 1), TG_OK);
    ln_pass(x, w, b, g, out[k]);
  }
  tg__par_guard_enable(true);
  ck_assert(!memcmp(out[0], out[1], (size_t)len * sizeof(float)));
  const float *ws = tg_tensor_f32(w), *gs = tg_tensor_f32(g);
  double *dw = calloc((size_t)D, sizeof(double)), *db = calloc((size_t)D, sizeof(double));
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = xs + r * D, *gr = gs + r * D;
    double mu = 0, v = 0, mh = 0, mhx = 0;
    for (int64_t j = 0; j < D; j++) mu += xr[j];
    mu /= (double)D;
    for (int64_t j = 0; j < D; j++) v += (xr[j] - mu) * (xr[j] - mu);
    double rs = 1 / sqrt(v / (double)D + 1e-5);
    for (int64_t j = 0; j < D; j++) {
      double xh = (xr[j] - mu) * rs, h = (double)gr[j] * ws[j];
      mh += h / (double)D;
      mhx += h * xh / (double)D;
      dw[j] += gr[j] * xh;
      db[j] += gr[j];
      double y = xh * ws[j] + tg_tensor_f32(b)[j];
      if (!(fabs(out[0][r * D + j] - y) <= 1e-5 * (1 + fabs(y))))
        ck_abort_msg("y[%lld,%lld] %g, ref %g", (long long)r, (long long)j,
                     out[0][r * D + j], y);
    }
    for (int64_t j = 0; j < D; j++) {
      double xh = (xr[j] - mu) * rs, h = (double)gr[j] * ws[j];
      double dx = rs * (h - mh - xh * mhx);
      if (!(fabs(out[0][n + r * D + j] - dx) <= 1e-4 * (1 + fabs(dx))))
        ck_abort_msg("dx[%lld,%lld] %g, ref %g", (long long)r, (long long)j,
                     out[0][n + r * D + j], dx);
    }
  }
  for (int64_t j = 0; j < D; j++) {
    ck_assert_msg(fabs(out[0][2 * n + j] - dw[j]) <= 1e-3 * (1 + fabs(dw[j])),
                  "dw[%lld] %g, ref %g", (long long)j, out[0][2 * n + j], dw[j]);
    ck_assert_msg(fabs(out[0][2 * n + D + j] - db[j]) <= 1e-3 * (1 + fabs(db[j])),
                  "db[%lld] %g, ref %g", (long long)j, out[0][2 * n + D + j], db[j]);
  }
  free(dw);
  free(db);
  for (int k = 0; k < 2; k++) free(out[k]);
  tg_tensor_free(x);
  tg_tensor_free(w);
  tg_tensor_free(b);
  tg_tensor_free(g);
}
END_TEST

int main(void) {
  make_dir("test_poolnorm");
  Suite *s = suite_create("poolnorm");
  TCase *tc = tcase_create("batch norm");
  tcase_add_test(tc, running_stats_by_hand);
  tcase_add_test(tc, running_stats_over_planes);
  tcase_add_test(tc, large_mean_keeps_precision);
  tcase_add_test(tc, train_and_eval_differ);
  tcase_add_test(tc, no_grad_still_updates);
  tcase_add_test(tc, batch_norm_refusals);
  suite_add_tcase(s, tc);
  tc = tcase_create("pooling");
  tcase_add_test(tc, avg_pool_counts_padding);
  tcase_add_test(tc, max_pool_edges);
  tcase_add_test(tc, max_pool_2x2_path);
  tcase_add_test(tc, pool_empty_and_stale);
  tcase_add_test(tc, threads_give_the_same_bits);
  suite_add_tcase(s, tc);
  tc = tcase_create("layer norm");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, layer_norm_threads_same_bits);
  suite_add_tcase(s, tc);
  tc = tcase_create("layers");
  tcase_add_test(tc, batch_norm_layer_basics);
  tcase_add_test(tc, dropout_layer_modes);
  tcase_add_test(tc, batch_norm_layer_checkpoint_round_trip);
  suite_add_tcase(s, tc);
  int rc = run_suite(s);
  remove_tree(test_dir());
  return rc;
}
