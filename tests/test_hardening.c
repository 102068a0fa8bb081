/* tests/test_hardening.c: promises kept under careless use: a tensor from
 * before a clear is refused by every tensor function (never read from
 * freed memory), a NULL generator is an error, values an int32 cannot hold
 * are refused by tg_fill, hyper-parameters are checked in the precision
 * they are used in, and tg_gradcheck names the call that failed. */
#include "testutil.h"

/* A step that spills into a second arena chunk: its first result's memory
 * is freed by the clear that merges the chunks. */
START_TEST(stale_tensor_refused_everywhere) {
  tg_rng rng;
  tg_rng_seed(&rng, 1);
  tg_tensor *a = param_normal(TG_F32, TG_SHAPE(512, 512), &rng);
  tg_tape *t = tg_tape_new();
  tg_tensor *c = tg_matmul(t, a, a), *d = tg_matmul(t, c, a);
  ck_assert_ptr_nonnull(d);
  ck_assert_int_eq(tg_backward_grad(t, d, d), TG_OK);
  tg_tensor *g = tg_tensor_grad(c);
  ck_assert_ptr_nonnull(g);
  tg_tape_clear(t);
  (void)tg_get(c, 0);
  ck_assert_error_has(TG_ESTATE, "tg_get", "tg_tape_clear");
  (void)tg_grad_get(c, 0);
  ck_assert_error_has(TG_ESTATE, "tg_grad_get");
  ck_assert_int_eq(tg_set(c, 0, 1), TG_ESTATE);
  ck_assert_int_eq(tg_fill(c, 1), TG_ESTATE);
  ck_assert_int_eq(tg_zero_grad(c), TG_ESTATE);
  ck_assert_ptr_null(tg_tensor_clone(c));
  ck_assert_error_has(TG_ESTATE, "tg_tensor_clone");
  ck_assert_ptr_null(tg_tensor_f32(c));
  ck_assert_error_has(TG_ESTATE, "tg_tensor_f32");
  ck_assert_ptr_null(tg_tensor_data(c));
  ck_assert_ptr_null(tg_tensor_grad(c));
  ck_assert_uint_eq(tg_tensor_hash(c), 0);
  ck_assert_error_has(TG_ESTATE, "tg_tensor_hash");
  FILE *devnull = fopen("/dev/null", "w");
  ck_assert_int_eq(tg_tensor_print(devnull, c, "c"), TG_ESTATE);
  fclose(devnull);
  (void)tg_get(g, 0); /* the gradient view of a tape tensor goes too */
  ck_assert_error_has(TG_ESTATE, "tg_get");
  tg_rng_seed(&rng, 2);
  ck_assert_int_eq(tg_fill_normal(c, &rng, 0, 1), TG_ESTATE);
  /* the output gradient of tg_backward_grad */
  tg_tensor *e = tg_matmul(t, a, a);
  ck_assert_int_eq(tg_backward_grad(t, e, d), TG_ESTATE);
  ck_assert_error_has(TG_ESTATE, "tg_backward_grad", "output gradient");
  tg_tape_free(t);
  tg_tensor_free(a);
}
END_TEST

START_TEST(null_rng_is_an_error) {
  tg_clear_error();
  tg_rng_seed(NULL, 1);
  ck_assert_error_has(TG_EINVAL, "tg_rng_seed", "rng is NULL");
  ck_assert_uint_eq(tg_rng_next(NULL), 0);
  ck_assert_error_has(TG_EINVAL, "tg_rng_next", "rng is NULL");
  ck_assert(isnan(tg_rng_uniform(NULL)));
  ck_assert_error_has(TG_EINVAL, "tg_rng_uniform");
  ck_assert_uint_eq(tg_rng_below(NULL, 10), 0);
  ck_assert_error_has(TG_EINVAL, "tg_rng_below");
  ck_assert(isnan(tg_rng_normal(NULL)));
  ck_assert_error_has(TG_EINVAL, "tg_rng_normal");
  tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(3));
  ck_assert_int_eq(tg_fill_uniform(x, NULL, 0, 1), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_fill_uniform", "rng is NULL");
  ck_assert_int_eq(tg_init_he(x, NULL), TG_EINVAL);
  tg_tensor_free(x);
}
END_TEST

/* tg_fill refuses what tg_set refuses: converting NaN or 1e20 to int32 is
 * undefined (it stored INT32_MIN). */
START_TEST(fill_int32_out_of_range) {
  tg_tensor *x = tg_tensor_from(TG_I32, TG_SHAPE(2), (int32_t[]){4, 5});
  ck_assert_int_eq(tg_fill(x, 1e20), TG_ERANGE);
  ck_assert_error_has(TG_ERANGE, "tg_fill", "does not fit in int32");
  ck_assert_int_eq(tg_fill(x, NAN), TG_ERANGE);
  ck_assert_int_eq(tg_fill(x, -3e9), TG_ERANGE);
  ck_assert_int_eq(tg_tensor_i32(x)[0], 4); /* untouched */
  ck_assert_int_eq(tg_fill(x, -7), TG_OK);
  ck_assert_int_eq(tg_tensor_i32(x)[1], -7);
  tg_tensor_free(x);
}
END_TEST

/* Adam's eps of 1e-50 is > 0 in double but 0 in float32: one step with a
 * zero gradient made the parameter NaN (0/0). */
START_TEST(hyper_parameters_in_their_precision) {
  tg_tensor *w = tg_ones(TG_F32, TG_SHAPE(4));
  tg_tensor *w64 = tg_ones(TG_F64, TG_SHAPE(4));
  tg_requires_grad(w, true);
  tg_requires_grad(w64, true);
  tg_adam_config cfg = TG_ADAM_DEFAULTS;
  cfg.eps = 1e-50;
  ck_assert_ptr_null(tg_adam_new(&w, 1, &cfg));
  ck_assert_error_has(TG_EINVAL, "tg_adam_new", "eps is 1e-50", "float32",
                      "params[0]");
  tg_optim *o = tg_adam_new(&w64, 1, &cfg); /* fine in float64 */
  ck_assert_ptr_nonnull(o);
  ck_assert_int_eq(tg_optim_step(o), TG_OK);
  ck_assert(!isnan(tg_get(w64, 0)));
  tg_optim_free(o);
  cfg = (tg_adam_config)TG_ADAM_DEFAULTS;
  cfg.lr = 1e300;
  ck_assert_ptr_null(tg_adam_new(&w, 1, &cfg));
  ck_assert_error_has(TG_EINVAL, "tg_adam_new", "lr is 1e+300");
  tg_sgd_config sc = TG_SGD_DEFAULTS;
  sc.lr = 1e39;
  ck_assert_ptr_null(tg_sgd_new(&w, 1, &sc));
  ck_assert_error_has(TG_EINVAL, "tg_sgd_new", "lr");
  sc.lr = 0.1;
  o = tg_sgd_new(&w, 1, &sc);
  ck_assert_ptr_nonnull(o);
  ck_assert_int_eq(tg_optim_set_lr(o, 1e39), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_optim_set_lr", "float32");
  ck_assert_int_eq(tg_optim_set_lr(o, 0.5), TG_OK);
  tg_optim_free(o);
  tg_tensor_free(w);
  tg_tensor_free(w64);
}
END_TEST

static tg_tensor *fails_in_an_op(tg_tape *t, tg_tensor *const *p, void *ctx) {
  (void)ctx;
  return tg_sum(t, tg_matmul(t, p[0], p[0])); /* [3] x [3]: not 2-D */
}
static tg_tensor *fails_silently(tg_tape *t, tg_tensor *const *p, void *ctx) {
  (void)t;
  (void)p;
  (void)ctx;
  return NULL;
}

START_TEST(gradcheck_names_the_failure) {
  tg_tensor *x = tg_ones(TG_F64, TG_SHAPE(3));
  tg_requires_grad(x, true);
  tg_gradcheck_result res;
  tg__err(TG_EIO, "an older, unrelated error");
  ck_assert_int_eq(tg_gradcheck(fails_in_an_op, NULL, &x, 1, 0, &res), TG_ESHAPE);
  ck_assert_error_has(TG_ESHAPE, "tg_gradcheck: the function returned NULL",
                      "tg_matmul", "2-D");
  tg__err(TG_EIO, "an older, unrelated error");
  ck_assert_int_eq(tg_gradcheck(fails_silently, NULL, &x, 1, 0, &res), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_gradcheck", "recorded no error");
  ck_assert(!strstr(tg_last_error(), "unrelated"));
  tg_tensor_free(x);
}
END_TEST

int main(void) {
  Suite *s = suite_create("hardening");
  TCase *tc = tcase_create("careless use");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, stale_tensor_refused_everywhere);
  tcase_add_test(tc, null_rng_is_an_error);
  tcase_add_test(tc, fill_int32_out_of_range);
  tcase_add_test(tc, hyper_parameters_in_their_precision);
  tcase_add_test(tc, gradcheck_names_the_failure);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
