/* tests/testutil.h: helpers shared by the Check suites. */
#ifndef TAPEGRAD_TESTUTIL_H
#define TAPEGRAD_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tapegrad.h"

/* Runs one suite; the exit status is the number of failed tests. */
static inline int run_suite(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* The last error message contains every given fragment. */
#define ck_assert_error_has(status, ...)                                     \
  do {                                                                       \
    const char *frags_[] = {__VA_ARGS__};                                    \
    ck_assert_int_eq(tg_last_status(), (status));                            \
    for (size_t k_ = 0; k_ < sizeof frags_ / sizeof *frags_; k_++)           \
      ck_assert_msg(strstr(tg_last_error(), frags_[k_]) != NULL,             \
                    "message \"%s\" lacks \"%s\"", tg_last_error(),          \
                    frags_[k_]);                                             \
  } while (0)

/* A caller-owned float64 tensor from a list of values. */
static inline tg_tensor *f64_from(int ndim, const int64_t *shape,
                                  const double *v) {
  tg_tensor *t = tg_tensor_from(TG_F64, ndim, shape, v);
  ck_assert_ptr_nonnull(t);
  return t;
}

static inline tg_tensor *param_normal(tg_dtype dt, int ndim,
                                      const int64_t *shape, tg_rng *rng) {
  tg_tensor *t = tg_zeros(dt, ndim, shape);
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(tg_fill_normal(t, rng, 0, 1), TG_OK);
  ck_assert_int_eq(tg_requires_grad(t, true), TG_OK);
  return t;
}

/* A counting allocator for tg_set_allocator: every library malloc, realloc
 * and calloc bumps test_allocs(), every free bumps test_frees(). Switch it
 * on before making any tapegrad object and off after freeing them all. */
static inline long *test_allocs(void) {
  static long n;
  return &n;
}
static inline long *test_frees(void) {
  static long n;
  return &n;
}
static inline void *count_malloc(size_t n) {
  ++*test_allocs();
  return malloc(n);
}
static inline void *count_realloc(void *p, size_t n) {
  ++*test_allocs();
  return realloc(p, n);
}
static inline void *count_calloc(size_t c, size_t n) {
  ++*test_allocs();
  return calloc(c, n);
}
static inline void count_free(void *p) {
  ++*test_frees();
  free(p);
}
static inline void counting_allocator(bool on) {
  *test_allocs() = *test_frees() = 0;
  if (on)
    ck_assert_int_eq(tg_set_allocator(count_malloc, count_realloc,
                                      count_calloc, count_free), TG_OK);
  else
    ck_assert_int_eq(tg_set_allocator(malloc, realloc, calloc, free), TG_OK);
}

#endif
