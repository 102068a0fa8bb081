/* tests/test_tensor.c: creation, queries, element access, printing, the
 * random generator and the initialisers. */
#include <stdint.h>

#include "testutil.h"

START_TEST(create_and_query) {
  tg_tensor *t = tg_zeros(TG_F32, TG_SHAPE(2, 3, 4));
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(tg_tensor_ndim(t), 3);
  ck_assert_int_eq(tg_tensor_dim(t, 0), 2);
  ck_assert_int_eq(tg_tensor_dim(t, -1), 4);
  ck_assert_int_eq(tg_tensor_dim(t, 3), 0);
  ck_assert_int_eq(tg_tensor_numel(t), 24);
  ck_assert_int_eq(tg_tensor_dtype(t), TG_F32);
  ck_assert_uint_eq((uintptr_t)tg_tensor_data(t) % 64, 0);
  for (int i = 0; i < 24; i++) ck_assert_double_eq(tg_get(t, i), 0);
  ck_assert_ptr_nonnull(tg_tensor_f32(t));
  ck_assert_ptr_null(tg_tensor_f64(t));
  ck_assert_error_has(TG_EDTYPE, "tg_tensor_f64", "float32");
  ck_assert_int_eq(tg_set(t, 5, 2.5), TG_OK);
  ck_assert_double_eq(tg_tensor_f32(t)[5], 2.5f);
  tg_tensor_free(t);

  tg_tensor *o = tg_ones(TG_F64, TG_SHAPE(5));
  for (int i = 0; i < 5; i++) ck_assert_double_eq(tg_get(o, i), 1);
  tg_tensor *c = tg_tensor_clone(o);
  ck_assert_ptr_ne(tg_tensor_data(c), tg_tensor_data(o));
  ck_assert_double_eq(tg_get(c, 4), 1);
  tg_tensor_free(o);
  tg_tensor_free(c);

  int32_t v[3] = {7, -1, 9};
  tg_tensor *i = tg_tensor_from(TG_I32, TG_SHAPE(3), v);
  v[0] = 0; /* copied, not borrowed */
  ck_assert_int_eq(tg_tensor_i32(i)[0], 7);
  ck_assert_int_eq(tg_set(i, 0, 1e12), TG_ERANGE);
  ck_assert_int_eq(tg_requires_grad(i, true), TG_EDTYPE);
  tg_tensor_free(i);
}
END_TEST

START_TEST(bad_creation) {
  ck_assert_ptr_null(tg_zeros(TG_F32, -1, (int64_t[]){1}));
  ck_assert_error_has(TG_ESHAPE, "tg_zeros", "ndim is -1", "0 to 4");
  ck_assert_ptr_null(tg_zeros(TG_F32, 5, (int64_t[]){1, 1, 1, 1, 1}));
  ck_assert_error_has(TG_ESHAPE, "ndim is 5");
  ck_assert_ptr_null(tg_zeros(TG_F32, TG_SHAPE(-2)));
  ck_assert_error_has(TG_ESHAPE, "dimension 0 is -2", ">= 0");
  ck_assert_ptr_null(tg_ones(TG_F64, TG_SHAPE(INT64_MAX / 2, 4)));
  ck_assert_error_has(TG_ESHAPE, "overflows");
  ck_assert_ptr_null(tg_zeros((tg_dtype)9, TG_SHAPE(2)));
  ck_assert_error_has(TG_EINVAL, "unknown dtype 9");
  ck_assert_ptr_null(tg_zeros(TG_F32, 2, NULL));
  ck_assert_error_has(TG_EINVAL, "shape is NULL");
  ck_assert_ptr_null(tg_tensor_from(TG_F32, TG_SHAPE(2), NULL));
  ck_assert_error_has(TG_EINVAL, "data is NULL");
  ck_assert_int_eq(tg_tensor_free(NULL), TG_OK);

  tg_tensor *t = tg_zeros(TG_F64, TG_SHAPE(2));
  ck_assert_double_eq(tg_get(t, 2), 0);
  ck_assert_error_has(TG_ERANGE, "tg_get", "index 2", "2 elements");
  ck_assert_int_eq(tg_set(t, -1, 0), TG_ERANGE);
  ck_assert_double_eq(tg_grad_get(t, 0), 0);
  ck_assert_error_has(TG_ESTATE, "no gradient");
  tg_tensor_free(t);
}
END_TEST

START_TEST(print_is_readable) {
  tg_tensor *t = tg_tensor_from(TG_F64, TG_SHAPE(2, 2), (double[]){1, -0.5, 0.25, 3});
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ck_assert_int_eq(tg_tensor_print(f, t, "w"), TG_OK);
  fclose(f);
  ck_assert_str_eq(buf, "w [2,2] float64\n   1.000000 -0.500000\n   0.250000  3.000000\n");
  free(buf);
  tg_tensor_free(t);
}
END_TEST

START_TEST(rng_is_deterministic_and_fixed) {
  tg_rng a, b;
  tg_rng_seed(&a, 42);
  tg_rng_seed(&b, 42);
  for (int i = 0; i < 100; i++) ck_assert_uint_eq(tg_rng_next(&a), tg_rng_next(&b));
  /* The stream is part of the library's contract: same seed, same numbers on
   * every machine. These are the first outputs for seed 1. */
  tg_rng_seed(&a, 1);
  uint64_t first = tg_rng_next(&a);
  tg_rng_seed(&b, 1);
  ck_assert_uint_eq(first, tg_rng_next(&b));
  ck_assert_uint_eq(first, UINT64_C(0xb3f2af6d0fc710c5));
  tg_rng_seed(&a, 2);
  ck_assert_uint_ne(tg_rng_next(&a), first);
}
END_TEST

START_TEST(rng_distributions) {
  tg_rng r;
  tg_rng_seed(&r, 7);
  double s = 0, s2 = 0, lo = 1, hi = 0;
  int counts[6] = {0};
  const int n = 200000;
  for (int i = 0; i < n; i++) {
    double u = tg_rng_uniform(&r);
    lo = fmin(lo, u);
    hi = fmax(hi, u);
    double g = tg_rng_normal(&r);
    s += g;
    s2 += g * g;
    counts[tg_rng_below(&r, 6)]++;
  }
  ck_assert(lo >= 0 && hi < 1);
  ck_assert_double_eq_tol(s / n, 0, 0.01);      /* 4.5 standard errors */
  ck_assert_double_eq_tol(s2 / n, 1, 0.015);
  for (int k = 0; k < 6; k++) ck_assert_int_gt(counts[k], n / 6 - 800);
  ck_assert_uint_eq(tg_rng_below(&r, 1), 0);
}
END_TEST

START_TEST(initialisers) {
  tg_rng r;
  tg_rng_seed(&r, 9);
  tg_tensor *w = tg_zeros(TG_F32, TG_SHAPE(300, 100));
  ck_assert_int_eq(tg_init_xavier(w, &r), TG_OK);
  double a = sqrt(6.0 / 400), mx = 0, s2 = 0;
  for (int i = 0; i < 30000; i++) {
    mx = fmax(mx, fabs(tg_get(w, i)));
    s2 += tg_get(w, i) * tg_get(w, i);
  }
  ck_assert(mx <= a);
  ck_assert_double_eq_tol(s2 / 30000, a * a / 3, 0.05 * a * a / 3);
  ck_assert_int_eq(tg_init_he(w, &r), TG_OK);
  s2 = 0;
  for (int i = 0; i < 30000; i++) s2 += tg_get(w, i) * tg_get(w, i);
  ck_assert_double_eq_tol(s2 / 30000, 2.0 / 300, 0.05 * 2.0 / 300);
  tg_tensor *v = tg_zeros(TG_F32, TG_SHAPE(10));
  ck_assert_int_eq(tg_init_he(v, &r), TG_ESHAPE);
  ck_assert_error_has(TG_ESHAPE, "tg_init_he", "[10]");
  ck_assert_int_eq(tg_fill_uniform(v, &r, 1, 0), TG_EINVAL);
  ck_assert_int_eq(tg_fill_normal(v, NULL, 0, 1), TG_EINVAL);
  tg_tensor_free(w);
  tg_tensor_free(v);
}
END_TEST

START_TEST(hash_sees_dtype_shape_and_bits) {
  float v[6] = {1, 2, 3, 4, 5, 6};
  tg_tensor *a = tg_tensor_from(TG_F32, TG_SHAPE(2, 3), v);
  tg_tensor *b = tg_tensor_from(TG_F32, TG_SHAPE(2, 3), v);
  tg_tensor *c = tg_tensor_from(TG_F32, TG_SHAPE(3, 2), v);
  tg_tensor *d = tg_tensor_from(TG_I32, TG_SHAPE(2, 3), v);
  ck_assert_uint_eq(tg_tensor_hash(a), tg_tensor_hash(b));
  ck_assert_uint_ne(tg_tensor_hash(a), tg_tensor_hash(c));
  ck_assert_uint_ne(tg_tensor_hash(a), tg_tensor_hash(d));
  tg_tensor_f32(b)[5] = nextafterf(6.0f, 7.0f); /* one bit */
  ck_assert_uint_ne(tg_tensor_hash(a), tg_tensor_hash(b));
  ck_assert_uint_eq(tg_tensor_hash(NULL), 0);
  tg_tensor *all[] = {a, b, c, d};
  for (int i = 0; i < 4; i++) tg_tensor_free(all[i]);
}
END_TEST

START_TEST(status_table) {
  ck_assert_str_eq(tg_status_name(TG_ESHAPE), "TG_ESHAPE");
  ck_assert_str_eq(tg_strerror(TG_ECHECKSUM), "checksum mismatch");
  ck_assert_str_eq(tg_status_name(12345), "TG_UNKNOWN");
  tg__err(TG_EIO, "x");
  tg_clear_error();
  ck_assert_int_eq(tg_last_status(), TG_OK);
  ck_assert_str_eq(tg_last_error(), "");
  ck_assert_int_eq(tg_set_allocator(NULL, NULL, NULL, NULL), TG_EINVAL);
  ck_assert_int_eq(tg_set_num_threads(0), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_set_num_threads", "0 threads");
  int before = tg_get_num_threads();
  ck_assert_int_ge(before, 1);
  ck_assert_int_eq(tg_set_num_threads(1), TG_OK);
  ck_assert_int_eq(tg_get_num_threads(), 1);
  tg_set_num_threads(before);
}
END_TEST

int main(void) {
  Suite *s = suite_create("tensor");
  TCase *tc = tcase_create("tensor");
  tcase_add_test(tc, create_and_query);
  tcase_add_test(tc, bad_creation);
  tcase_add_test(tc, print_is_readable);
  tcase_add_test(tc, rng_is_deterministic_and_fixed);
  tcase_add_test(tc, rng_distributions);
  tcase_add_test(tc, initialisers);
  tcase_add_test(tc, hash_sees_dtype_shape_and_bits);
  tcase_add_test(tc, status_table);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
