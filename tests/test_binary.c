/* tests/test_binary.c: the broadcasting binary ops on small examples worked
 * out by hand: the values, the summed gradients of broadcast inputs,
 * zero-size dimensions, where's mask, maximum's and minimum's ties, and
 * that a training-like loop of broadcast ops allocates nothing once warm. */
#include "testutil.h"

static tg_tensor *param_from(int ndim, const int64_t *shape, const double *v) {
  tg_tensor *x = f64_from(ndim, shape, v);
  ck_assert_int_eq(tg_requires_grad(x, true), TG_OK);
  return x;
}

static tg_tensor *scalar(double v, bool grad) {
  tg_tensor *x = tg_tensor_from(TG_F64, 0, NULL, &v);
  ck_assert_ptr_nonnull(x);
  if (grad) ck_assert_int_eq(tg_requires_grad(x, true), TG_OK);
  return x;
}

static void assert_values(const tg_tensor *y, const double *want, int64_t n) {
  ck_assert_int_eq(tg_tensor_numel(y), n);
  for (int64_t i = 0; i < n; i++)
    ck_assert_msg(fabs(tg_get(y, i) - want[i]) <= 1e-12 * (1 + fabs(want[i])),
                  "element %lld: %.17g, want %.17g", (long long)i, tg_get(y, i),
                  want[i]);
}

static void assert_grad(const tg_tensor *x, const double *want, int64_t n) {
  ck_assert_int_eq(tg_tensor_numel(x), n);
  for (int64_t i = 0; i < n; i++)
    ck_assert_msg(fabs(tg_grad_get(x, i) - want[i]) <=
                      1e-12 * (1 + fabs(want[i])),
                  "grad %lld: %.17g, want %.17g", (long long)i,
                  tg_grad_get(x, i), want[i]);
}

static void assert_shape(const tg_tensor *y, int ndim, const int64_t *shape) {
  ck_assert_int_eq(tg_tensor_ndim(y), ndim);
  for (int d = 0; d < ndim; d++)
    ck_assert_int_eq(tg_tensor_dim(y, d), shape[d]);
}

/* [2,1] - [3] is the [2,3] table of a_i - b_j; da_i sums g over its row,
 * db_j minus g over its column. */
START_TEST(sub_table) {
  tg_tape *t = tg_tape_new();
  tg_tensor *a = param_from(TG_SHAPE(2, 1), (double[]){1, 2});
  tg_tensor *b = param_from(TG_SHAPE(3), (double[]){10, 20, 30});
  tg_tensor *y = tg_sub(t, a, b);
  ck_assert_ptr_nonnull(y);
  assert_shape(y, TG_SHAPE(2, 3));
  assert_values(y, (double[]){-9, -19, -29, -8, -18, -28}, 6);
  tg_tensor *g = f64_from(TG_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6});
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  assert_grad(a, (double[]){6, 15}, 2);
  assert_grad(b, (double[]){-5, -7, -9}, 3);
  /* the other way round: [3] - [2,1] */
  tg_zero_grad(a);
  tg_zero_grad(b);
  y = tg_sub(t, b, a);
  assert_values(y, (double[]){9, 19, 29, 8, 18, 28}, 6);
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  assert_grad(a, (double[]){-6, -15}, 2);
  assert_grad(b, (double[]){5, 7, 9}, 3);
  tg_tensor_free(g);
  tg_tensor_free(a);
  tg_tensor_free(b);
  tg_tape_free(t);
}
END_TEST

/* [2,1,3] * [4,1] is [2,4,3]: y[i,j,k] = a[i,k] b[j]. With g = 1,
 * da[i,k] = sum_j b[j], db[j] = sum_{i,k} a[i,k]. */
START_TEST(mul_general_broadcast) {
  tg_tape *t = tg_tape_new();
  const double av[] = {1, 2, 3, 4, 5, 6}, bv[] = {1, -1, 2, 0.5};
  tg_tensor *a = param_from(TG_SHAPE(2, 1, 3), av);
  tg_tensor *b = param_from(TG_SHAPE(4, 1), bv);
  tg_tensor *y = tg_mul(t, a, b);
  ck_assert_ptr_nonnull(y);
  assert_shape(y, TG_SHAPE(2, 4, 3));
  double want[24];
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 4; j++)
      for (int k = 0; k < 3; k++)
        want[(i * 4 + j) * 3 + k] = av[i * 3 + k] * bv[j];
  assert_values(y, want, 24);
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  assert_grad(a, (double[]){2.5, 2.5, 2.5, 2.5, 2.5, 2.5}, 6);
  assert_grad(b, (double[]){21, 21, 21, 21}, 4);
  tg_tensor_free(a);
  tg_tensor_free(b);
  tg_tape_free(t);
}
END_TEST

/* The bias form [N,C] + [C] in both dtypes, a 0-d operand on either side,
 * and [N,1] + [1,C]. */
START_TEST(add_forms) {
  for (int dt = 0; dt < 2; dt++) {
    tg_dtype d = dt ? TG_F32 : TG_F64;
    tg_tape *t = tg_tape_new();
    const float a32[] = {1, 2, 3, 4, 5, 6};
    const double a64[] = {1, 2, 3, 4, 5, 6};
    tg_tensor *a = tg_tensor_from(d, TG_SHAPE(3, 2),
                                  dt ? (const void *)a32 : (const void *)a64);
    tg_tensor *b = tg_tensor_from(d, TG_SHAPE(2),
                                  dt ? (const void *)(float[]){10, 20}
                                     : (const void *)(double[]){10, 20});
    tg_requires_grad(a, true);
    tg_requires_grad(b, true);
    tg_tensor *y = tg_add(t, a, b);
    assert_values(y, (double[]){11, 22, 13, 24, 15, 26}, 6);
    ck_assert_int_eq(tg_backward(t, tg_sum(t, tg_mul(t, y, y))), TG_OK);
    /* d sum(y^2) = 2y; db sums it over rows */
    assert_grad(a, (double[]){22, 44, 26, 48, 30, 52}, 6);
    assert_grad(b, (double[]){78, 144}, 2);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tape_free(t);
  }
  tg_tape *t = tg_tape_new();
  tg_tensor *s = scalar(0.5, true);
  tg_tensor *m = param_from(TG_SHAPE(2, 2), (double[]){1, 2, 3, 4});
  tg_tensor *y = tg_add(t, s, m);
  assert_shape(y, TG_SHAPE(2, 2));
  assert_values(y, (double[]){1.5, 2.5, 3.5, 4.5}, 4);
  tg_tensor *g = f64_from(TG_SHAPE(2, 2), (double[]){1, 2, 3, 4});
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  assert_grad(s, (double[]){10}, 1);
  assert_grad(m, (double[]){1, 2, 3, 4}, 4);
  y = tg_div(t, m, s); /* 0-d on the right */
  assert_values(y, (double[]){2, 4, 6, 8}, 4);
  tg_zero_grad(s);
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  /* ds = -sum g m / s^2 = -30 / 0.25 */
  assert_grad(s, (double[]){-120}, 1);
  tg_tensor *c = param_from(TG_SHAPE(3, 1), (double[]){1, 2, 3});
  tg_tensor *r = param_from(TG_SHAPE(1, 2), (double[]){10, 20});
  y = tg_add(t, c, r);
  assert_shape(y, TG_SHAPE(3, 2));
  assert_values(y, (double[]){11, 21, 12, 22, 13, 23}, 6);
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  assert_grad(c, (double[]){2, 2, 2}, 3);
  assert_grad(r, (double[]){3, 3}, 2);
  tg_tensor *s2 = scalar(2, false), *s3 = scalar(3, false);
  y = tg_pow(t, s2, s3); /* 0-d with 0-d */
  ck_assert_int_eq(tg_tensor_ndim(y), 0);
  assert_values(y, (double[]){8}, 1);
  tg_tensor_free(g);
  tg_tensor_free(s);
  tg_tensor_free(m);
  tg_tensor_free(c);
  tg_tensor_free(r);
  tg_tensor_free(s2);
  tg_tensor_free(s3);
  tg_tape_free(t);
}
END_TEST

/* a^b with a tensor exponent: da = b a^(b-1), db = a^b ln a. */
START_TEST(pow_values_and_gradients) {
  tg_tape *t = tg_tape_new();
  tg_tensor *a = param_from(TG_SHAPE(2), (double[]){2, 3});
  tg_tensor *b = scalar(2, true);
  tg_tensor *y = tg_pow(t, a, b);
  assert_values(y, (double[]){4, 9}, 2);
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  assert_grad(a, (double[]){4, 6}, 2);
  assert_grad(b, (double[]){4 * log(2.0) + 9 * log(3.0)}, 1);
  tg_tensor_free(a);
  tg_tensor_free(b);
  tg_tape_free(t);
}
END_TEST

/* NumPy's zero-size rule: 0 against 1 gives 0, 0 against 3 does not
 * broadcast; the empty result's backward leaves the inputs' gradients 0. */
START_TEST(zero_size_broadcasting) {
  tg_tape *t = tg_tape_new();
  tg_tensor *e03 = tg_zeros(TG_F64, TG_SHAPE(0, 3));
  tg_tensor *b13 = param_from(TG_SHAPE(1, 3), (double[]){1, 2, 3});
  tg_tensor *e20 = tg_zeros(TG_F64, TG_SHAPE(2, 0));
  tg_tensor *b21 = param_from(TG_SHAPE(2, 1), (double[]){1, 2});
  tg_tensor *e0 = tg_zeros(TG_F64, TG_SHAPE(0));
  tg_tensor *v3 = tg_zeros(TG_F64, TG_SHAPE(3));
  tg_tensor *s = scalar(1, true);
  ck_assert_ptr_nonnull(e03);
  tg_requires_grad(e03, true);
  tg_tensor *y = tg_add(t, e03, b13);
  ck_assert_ptr_nonnull(y);
  assert_shape(y, TG_SHAPE(0, 3));
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  assert_grad(b13, (double[]){0, 0, 0}, 3);
  y = tg_mul(t, b21, e20);
  ck_assert_ptr_nonnull(y);
  assert_shape(y, TG_SHAPE(2, 0));
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  assert_grad(b21, (double[]){0, 0}, 2);
  y = tg_maximum(t, s, e0);
  ck_assert_ptr_nonnull(y);
  assert_shape(y, TG_SHAPE(0));
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  assert_grad(s, (double[]){0}, 1);
  y = tg_sub(t, e03, b21); /* [0,3] with [2,1]: 0 against 2 */
  ck_assert_ptr_null(y);
  ck_assert_error_has(TG_ESHAPE, "tg_sub: shapes do not broadcast",
                      "a is [0,3], b is [2,1]");
  ck_assert_ptr_null(tg_add(t, e0, v3));
  ck_assert_error_has(TG_ESHAPE, "tg_add", "a is [0], b is [3]");
  tg_tensor *all[] = {e03, b13, e20, b21, e0, v3, s};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) tg_tensor_free(all[i]);
  tg_tape_free(t);
}
END_TEST

/* where(mask[2,1], a[3], b 0-d): row 0 from a, row 1 all b. */
START_TEST(where_with_mask) {
  tg_tape *t = tg_tape_new();
  tg_tensor *mask = tg_tensor_from(TG_I32, TG_SHAPE(2, 1), (int32_t[]){5, 0});
  tg_tensor *a = param_from(TG_SHAPE(3), (double[]){1, 2, 3});
  tg_tensor *b = scalar(7, true);
  tg_tensor *y = tg_where(t, mask, a, b);
  ck_assert_ptr_nonnull(y);
  assert_shape(y, TG_SHAPE(2, 3));
  assert_values(y, (double[]){1, 2, 3, 7, 7, 7}, 6);
  tg_tensor *g = f64_from(TG_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6});
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  assert_grad(a, (double[]){1, 2, 3}, 3);
  assert_grad(b, (double[]){15}, 1);
  /* the mask alone broadcast over a and b of one element each */
  tg_tensor *m3 = tg_tensor_from(TG_I32, TG_SHAPE(3), (int32_t[]){0, 1, 0});
  tg_tensor *one = scalar(-1, false);
  tg_zero_grad(b);
  y = tg_where(t, m3, b, one);
  assert_values(y, (double[]){-1, 7, -1}, 3);
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  assert_grad(b, (double[]){1}, 1);
  tg_tensor *two = f64_from(TG_SHAPE(2), (double[]){1, 2});
  ck_assert_ptr_null(tg_where(t, m3, a, two));
  ck_assert_error_has(TG_ESHAPE, "tg_where: shapes do not broadcast",
                      "mask is [3], a is [3], b is [2]");
  tg_tensor *all[] = {mask, a, b, g, m3, one, two};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) tg_tensor_free(all[i]);
  tg_tape_free(t);
}
END_TEST

/* At a tie each input gets half the gradient. */
START_TEST(maximum_minimum_ties) {
  tg_tape *t = tg_tape_new();
  tg_tensor *a = param_from(TG_SHAPE(3), (double[]){1, 2, 3});
  tg_tensor *b = param_from(TG_SHAPE(3), (double[]){1, 5, 0});
  tg_tensor *y = tg_maximum(t, a, b);
  assert_values(y, (double[]){1, 5, 3}, 3);
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  assert_grad(a, (double[]){0.5, 0, 1}, 3);
  assert_grad(b, (double[]){0.5, 1, 0}, 3);
  tg_zero_grad(a);
  tg_zero_grad(b);
  y = tg_minimum(t, a, b);
  assert_values(y, (double[]){1, 2, 0}, 3);
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  assert_grad(a, (double[]){0.5, 1, 0}, 3);
  assert_grad(b, (double[]){0.5, 0, 1}, 3);
  /* a broadcast 0-d operand tied with two of four elements */
  tg_tensor *m = param_from(TG_SHAPE(2, 2), (double[]){2, 2, 1, 3});
  tg_tensor *s = scalar(2, true);
  y = tg_maximum(t, m, s);
  assert_values(y, (double[]){2, 2, 2, 3}, 4);
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  assert_grad(m, (double[]){0.5, 0.5, 0, 1}, 4);
  assert_grad(s, (double[]){2}, 1);
  /* NaN wins */
  tg_tensor *nan = scalar(NAN, false);
  y = tg_minimum(t, nan, a);
  ck_assert_ptr_nonnull(y);
  ck_assert(isnan(tg_get(y, 0)));
  y = tg_maximum(t, a, nan);
  ck_assert(isnan(tg_get(y, 2)));
  tg_tensor *all[] = {a, b, m, s, nan};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) tg_tensor_free(all[i]);
  tg_tape_free(t);
}
END_TEST

/* A loop of broadcast ops with backward on one tape, cleared each step,
 * allocates nothing after the first step. */
START_TEST(steady_state_allocates_nothing) {
  counting_allocator(true);
  tg_rng rng;
  tg_rng_seed(&rng, 3);
  tg_tensor *x = param_normal(TG_F32, TG_SHAPE(16, 8), &rng);
  tg_tensor *b = param_normal(TG_F32, TG_SHAPE(8), &rng);
  tg_tensor *c = param_normal(TG_F32, TG_SHAPE(16, 1), &rng);
  tg_tape *t = tg_tape_new();
  long allocs = 0, frees = 0;
  for (int step = 0; step < 20; step++) {
    tg_tensor *y = tg_mul(t, tg_add(t, x, b), c);
    ck_assert_int_eq(tg_backward(t, tg_sum(t, tg_maximum(t, y, b))), TG_OK);
    tg_tape_clear(t);
    if (step == 0) {
      allocs = *test_allocs();
      frees = *test_frees();
      ck_assert_int_gt(allocs, 0);
    }
  }
  ck_assert_int_eq(*test_allocs(), allocs);
  ck_assert_int_eq(*test_frees(), frees);
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(b);
  tg_tensor_free(c);
  ck_assert_int_eq(*test_frees(), *test_allocs());
  counting_allocator(false);
}
END_TEST

int main(void) {
  Suite *s = suite_create("binary");
  TCase *tc = tcase_create("broadcasting");
  tcase_add_test(tc, sub_table);
  tcase_add_test(tc, mul_general_broadcast);
  tcase_add_test(tc, add_forms);
  tcase_add_test(tc, pow_values_and_gradients);
  tcase_add_test(tc, zero_size_broadcasting);
  tcase_add_test(tc, where_with_mask);
  tcase_add_test(tc, maximum_minimum_ties);
  tcase_add_test(tc, steady_state_allocates_nothing);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
