/* tests/test_gemm.c: the built-in GEMM against a plain triple loop in
 * double, for every layout, alpha/beta case and kernel this CPU can run,
 * on sizes chosen to hit every edge of the blocking. */
#include <float.h>
#include <stdint.h>
#include <stdio.h>

#include "testutil.h"

typedef struct {
  int64_t m, n, k;
  bool all_scalars; /* every alpha/beta case, or only one (large sizes) */
} shape;

static const shape shapes[] = {
    {1, 1, 1, true},      {1, 7, 3, true},      {5, 1, 9, true},
    {7, 13, 1, true},     {13, 17, 19, true},   {6, 16, 256, true},
    {12, 32, 257, true},  {31, 37, 41, true},   {67, 71, 73, true},
    {145, 33, 300, true}, {3, 200, 5, true},    {200, 3, 600, true},
    /* MNIST training shapes: forward, then the NT/TN backward ones. */
    {32, 100, 784, true}, {32, 10, 100, true},  {784, 100, 32, true},
    {100, 10, 32, true},  {32, 100, 10, true},  {128, 10, 512, true},
    {512, 10, 128, true}, {128, 512, 10, true},  {128, 512, 784, false},
    {512, 512, 128, false},
    /* Two threads, two K blocks; more columns than one NC block. */
    {64, 300, 260, true}, {7, 2100, 9, true},
    /* Above every block size, for both threads. */
    {300, 520, 700, false},
};

/* Under valgrind (make check-valgrind sets TG_TEST_QUICK), shapes above
 * this many multiply-adds are left out: they add time, not coverage. */
#define QUICK_MAX_WORK 6000000

typedef struct {
  double alpha, beta;
} scalars;
static const scalars cases[] = {{1, 0}, {1, 1}, {-0.75, 0.5}, {2, -1}};

static uint64_t rng_state;
static double uniform(void) {
  rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(rng_state >> 11) / (double)(1ULL << 53) * 2 - 1;
}

/* op(A) [m,k] and op(B) [k,n] as logical matrices in double, rounded to
 * the tested type so both sides see the same inputs; the exact product and
 * the sums of |a||b| that bound its rounding error. */
typedef struct {
  int64_t m, n, k;
  double *a, *b, *ab, *absab;
} problem;

static problem make_problem(const shape *s, bool single) {
  problem p = {s->m, s->n, s->k, NULL, NULL, NULL, NULL};
  p.a = malloc(sizeof(double) * s->m * s->k);
  p.b = malloc(sizeof(double) * s->k * s->n);
  p.ab = calloc(s->m * s->n, sizeof(double));
  p.absab = calloc(s->m * s->n, sizeof(double));
  ck_assert(p.a && p.b && p.ab && p.absab);
  for (int64_t i = 0; i < s->m * s->k; i++)
    p.a[i] = single ? (double)(float)uniform() : uniform();
  for (int64_t i = 0; i < s->k * s->n; i++)
    p.b[i] = single ? (double)(float)uniform() : uniform();
  for (int64_t i = 0; i < s->m; i++)
    for (int64_t k = 0; k < s->k; k++) {
      double a = p.a[i * s->k + k];
      const double *b = p.b + k * s->n;
      for (int64_t j = 0; j < s->n; j++) {
        p.ab[i * s->n + j] += a * b[j];
        p.absab[i * s->n + j] += fabs(a * b[j]);
      }
    }
  return p;
}

static void free_problem(problem *p) {
  free(p->a);
  free(p->b);
  free(p->ab);
  free(p->absab);
}

/* Leading dimensions a few elements past the minimum, so the kernels must
 * honour them. */
#define PAD 3

/* One type's check of one problem in one layout, all requested scalars. */
#define DEF_CHECK(T, S, EPS)                                                  \
  static void check_##S(const problem *p, bool ta, bool tb, bool all,         \
                        const char *kname) {                                  \
    int64_t m = p->m, n = p->n, k = p->k;                                     \
    int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k,                \
            bc = tb ? k : n;                                                  \
    int64_t lda = ac + PAD, ldb = bc + PAD, ldc = n + PAD;                    \
    T *A = malloc(sizeof(T) * ar * lda), *B = malloc(sizeof(T) * br * ldb);  \
    T *C = malloc(sizeof(T) * m * ldc);                                       \
    T *F = malloc(sizeof(T) * m * ldc), *bias = malloc(sizeof(T) * n);        \
    double *c0 = malloc(sizeof(double) * m * n);                              \
    ck_assert(A && B && C && F && bias && c0);                                \
    for (int64_t i = 0; i < m; i++)                                           \
      for (int64_t j = 0; j < k; j++)                                         \
        A[ta ? j * lda + i : i * lda + j] = (T)p->a[i * k + j];               \
    for (int64_t i = 0; i < k; i++)                                           \
      for (int64_t j = 0; j < n; j++)                                         \
        B[tb ? j * ldb + i : i * ldb + j] = (T)p->b[i * n + j];               \
    size_t ncases = all ? sizeof cases / sizeof *cases : 1;                   \
    for (size_t c = 0; c < ncases; c++) {                                     \
      /* Alternate the one-case pick so large shapes see beta 0 and not. */   \
      scalars sc = all ? cases[c] : cases[(m + n + k + ta + tb) % 4];         \
      for (int64_t i = 0; i < m; i++)                                         \
        for (int64_t j = 0; j < ldc; j++)                                     \
          C[i * ldc + j] = j >= n ? (T)12345                                  \
                           : sc.beta == 0 ? (T)NAN                            \
                                          : (T)uniform();                     \
      for (int64_t i = 0; i < m; i++)                                         \
        for (int64_t j = 0; j < n; j++) c0[i * n + j] = C[i * ldc + j];       \
      tg__##S##gemm(ta, tb, m, n, k, (T)sc.alpha, A, lda, B, ldb,             \
                    (T)sc.beta, C, ldc);                                      \
      for (int64_t i = 0; i < m; i++) {                                       \
        for (int64_t j = 0; j < n; j++) {                                     \
          double want = sc.alpha * p->ab[i * n + j] +                         \
                        (sc.beta == 0 ? 0 : sc.beta * c0[i * n + j]);         \
          double bound = fabs(sc.alpha) * p->absab[i * n + j] +               \
                         fabs(sc.beta == 0 ? 0 : sc.beta * c0[i * n + j]);    \
          double tol = 2.0 * (double)(k + 4) * EPS * bound + 1e-300;          \
          double got = C[i * ldc + j];                                        \
          /* Check records every assertion it passes: call it on failure   \
           * only, or the test spends its time writing to its log. */        \
          if (!(fabs(got - want) <= tol))                                     \
            ck_assert_msg(0,                                                  \
                          "%s %s%s %ldx%ldx%ld alpha %g beta %g: C[%ld,%ld] " \
                          "= %.9g, want %.9g (tol %.3g)",                     \
                          kname, ta ? "T" : "N", tb ? "T" : "N", (long)m,     \
                          (long)n, (long)k, sc.alpha, sc.beta, (long)i,       \
                          (long)j, got, want, tol);                           \
        }                                                                     \
        for (int64_t j = n; j < ldc; j++)                                     \
          if (C[i * ldc + j] != (T)12345)                                     \
            ck_assert_msg(0, "%s wrote past column %ld", kname, (long)n);     \
      }                                                                       \
      /* The bias form: the bits of C filled with the bias rows, then the  \
       * plain product; C itself is never read (NaN). */                    \
      for (int64_t j = 0; j < n; j++) bias[j] = (T)uniform();                 \
      for (int64_t i = 0; i < m; i++)                                         \
        for (int64_t j = 0; j < ldc; j++) {                                   \
          F[i * ldc + j] = j >= n ? (T)12345 : bias[j];                       \
          C[i * ldc + j] = j >= n ? (T)12345 : (T)NAN;                        \
        }                                                                     \
      tg__##S##gemm(ta, tb, m, n, k, (T)sc.alpha, A, lda, B, ldb,             \
                    (T)sc.beta, F, ldc);                                      \
      tg__##S##gemm_bias(ta, tb, m, n, k, (T)sc.alpha, A, lda, B, ldb,        \
                         (T)sc.beta, bias, C, ldc);                           \
      for (int64_t i = 0; i < m; i++)                                         \
        for (int64_t j = 0; j < ldc; j++)                                     \
          if (memcmp(&C[i * ldc + j], &F[i * ldc + j], sizeof(T)))            \
            ck_assert_msg(0,                                                  \
                          "%s %s%s %ldx%ldx%ld alpha %g beta %g, bias: "      \
                          "C[%ld,%ld] = %.9g, the filled rows give %.9g",     \
                          kname, ta ? "T" : "N", tb ? "T" : "N", (long)m,     \
                          (long)n, (long)k, sc.alpha, sc.beta, (long)i,       \
                          (long)j, (double)C[i * ldc + j],                    \
                          (double)F[i * ldc + j]);                            \
    }                                                                         \
    free(A);                                                                  \
    free(B);                                                                  \
    free(C);                                                                  \
    free(F);                                                                  \
    free(bias);                                                               \
    free(c0);                                                                 \
  }

DEF_CHECK(float, s, (double)FLT_EPSILON)
DEF_CHECK(double, d, DBL_EPSILON)

/* _i: kernel * 2 + (0 float, 1 double); kernel TG__GEMM_NKERNELS is the
 * default route (the best kernel, or a CBLAS in a --with-blas build). */
START_TEST(test_gemm_all) {
  /* every product that asks for threads gets them, whatever the load of
   * the machine running the tests */
  tg__par_guard_enable(false);
  int kern = _i / 2;
  bool single = _i % 2 == 0;
  const char *kname =
      kern == TG__GEMM_NKERNELS ? "default" : tg__gemm_kernel_name(kern);
  if (kern == TG__GEMM_NKERNELS) {
    ck_assert_int_eq(tg__gemm_set_kernel(-1), TG_OK);
  } else if (!tg__gemm_kernel_supported(kern)) {
    printf("test_gemm: this CPU cannot run the %s kernel; not tested\n", kname);
    return;
  } else {
    ck_assert_int_eq(tg__gemm_set_kernel(kern), TG_OK);
    ck_assert_int_eq(tg__gemm_kernel(), kern);
  }
  rng_state = 42 + (uint64_t)_i;
  bool quick = getenv("TG_TEST_QUICK") != NULL;
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
    if (quick && shapes[s].m * shapes[s].n * shapes[s].k > QUICK_MAX_WORK)
      continue;
    problem p = make_problem(&shapes[s], single);
    for (int l = 0; l < 4; l++) {
      if (single)
        check_s(&p, l & 1, l & 2, shapes[s].all_scalars, kname);
      else
        check_d(&p, l & 1, l & 2, shapes[s].all_scalars, kname);
    }
    free_problem(&p);
  }
  ck_assert_int_eq(tg__gemm_set_kernel(-1), TG_OK);
  tg__gemm_release();
}
END_TEST

/* alpha 0 or K 0: C = beta C, and beta 0 clears NaN. */
START_TEST(test_gemm_degenerate) {
  float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 2, 3, 4, 5, 6};
  float C[4] = {NAN, NAN, NAN, NAN};
  tg__sgemm(false, false, 2, 2, 3, 0, A, 3, B, 2, 0, C, 2);
  for (int i = 0; i < 4; i++) ck_assert(C[i] == 0);
  float D[4] = {1, 2, 3, 4};
  tg__sgemm(false, false, 2, 2, 0, 1, A, 3, B, 2, 2, D, 2);
  for (int i = 0; i < 4; i++) ck_assert(D[i] == 2 * (i + 1));
  tg__sgemm(false, false, 0, 2, 3, 1, A, 3, B, 2, 0, NULL, 2);
  /* with a bias, C = beta bias in every row, and C is not read */
  float bias[2] = {3, -5}, E[4] = {NAN, NAN, NAN, NAN};
  tg__sgemm_bias(false, false, 2, 2, 3, 0, A, 3, B, 2, 0.5f, bias, E, 2);
  for (int i = 0; i < 4; i++) ck_assert(E[i] == 0.5f * bias[i % 2]);
  tg__sgemm_bias(false, false, 2, 2, 0, 1, A, 3, B, 2, 0, bias, E, 2);
  for (int i = 0; i < 4; i++) ck_assert(E[i] == 0);
  tg__gemm_release();
}
END_TEST

START_TEST(test_gemm_kernel_choice) {
  ck_assert(tg__gemm_kernel_supported(TG__GEMM_GENERIC));
  ck_assert(!tg__gemm_kernel_supported(TG__GEMM_NKERNELS));
  ck_assert_int_eq(tg__gemm_set_kernel(TG__GEMM_NKERNELS), TG_EINVAL);
  ck_assert(tg__gemm_kernel_supported(tg__gemm_kernel()));
  ck_assert_str_eq(tg__gemm_kernel_name(TG__GEMM_AVX512), "avx512");
  /* The AVX-512 tile on AVX2 vectors is for tests: never picked. */
  ck_assert_int_ne(tg__gemm_kernel(), TG__GEMM_AVX512_ON_AVX2);
  ck_assert_str_eq(tg__gemm_kernel_name(TG__GEMM_AVX512_ON_AVX2), "avx512-on-avx2");
}
END_TEST

/* The packing buffer is made once, at the size of the largest block, so
 * a later larger product does not reallocate; release frees it with the
 * allocator that made it. */
START_TEST(test_gemm_buffer_once) {
  int threads = tg_get_num_threads();
  ck_assert_int_eq(tg_set_num_threads(1), TG_OK);
  tg__gemm_release();
  counting_allocator(true);
  int64_t m = 150, n = 2100, k = 300;
  float *A = calloc(m * k, sizeof(float)), *B = calloc(k * n, sizeof(float));
  float *C = calloc(m * n, sizeof(float));
  ck_assert(A && B && C);
  tg__sgemm(false, false, 8, 8, 8, 1, A, k, B, n, 0, C, n);
  ck_assert_int_eq(*test_allocs(), 1);
  tg__sgemm(false, true, m, n, k, 1, A, k, B, k, 0, C, n);
  tg__dgemm(true, false, 40, 50, 60, 1, (double *)A, 40, (double *)B, 50, 0,
            (double *)C, 50);
  ck_assert_int_eq(*test_allocs(), 1);
  tg__gemm_release();
  ck_assert_int_eq(*test_frees(), 1);
  counting_allocator(false);
  free(A);
  free(B);
  free(C);
  ck_assert_int_eq(tg_set_num_threads(threads), TG_OK);
}
END_TEST

/* The guard's rule, on made-up timings: regions whose threads' CPU time
 * comes to less than 1.1 times their wall time send the next ones to one
 * thread, for a stretch that doubles each time a retry fails. */
static int64_t serial_run(tg__guard *g) {
  int64_t n = 0;
  while (tg__guard_serial(g)) n++;
  return n;
}

/* Regions of the given timings until the guard sends the next to one
 * thread; -1 if it did not within max. */
static int until_trip(tg__guard *g, int max, double cpu, double wall) {
  for (int i = 1; i <= max; i++) {
    tg__guard_update(g, cpu, wall);
    if (tg__guard_serial(g)) return i;
  }
  return -1;
}

START_TEST(test_guard_rule) {
  const double pay_cpu = 1.9e-3, pay_wall = 1e-3; /* two threads busy */
  const double no_cpu = 1e-3, no_wall = 1.2e-3;   /* slower than one */
  tg__guard g = {.stretch = TG__GUARD_MIN_STRETCH};
  ck_assert(!tg__guard_serial(&g));
  ck_assert_int_eq(until_trip(&g, 200, pay_cpu, pay_wall), -1);
  /* one preempted region among paying ones does not trip it */
  ck_assert_int_eq(until_trip(&g, 1, 1e-3, 5e-3), -1);
  ck_assert_int_eq(until_trip(&g, 50, pay_cpu, pay_wall), -1);
  /* regions that stop paying do, within a few windows */
  int n = until_trip(&g, 3 * TG__GUARD_WINDOW, no_cpu, no_wall);
  ck_assert(n > 0);
  ck_assert_int_eq(serial_run(&g) + 1, TG__GUARD_MIN_STRETCH);
  /* each retry is a window in parallel; a failed one doubles the stretch,
   * up to the maximum */
  int64_t want = TG__GUARD_MIN_STRETCH;
  for (int retry = 0; retry < 10; retry++) {
    if (want < TG__GUARD_MAX_STRETCH) want *= 2;
    ck_assert_int_eq(until_trip(&g, TG__GUARD_WINDOW, no_cpu, no_wall),
                     TG__GUARD_WINDOW);
    ck_assert_int_eq(serial_run(&g) + 1, want);
  }
  ck_assert_int_eq(want, TG__GUARD_MAX_STRETCH);
  /* a retry that pays: back to threads, and the next stretch is short */
  ck_assert_int_eq(until_trip(&g, 100, pay_cpu, pay_wall), -1);
  ck_assert(until_trip(&g, 3 * TG__GUARD_WINDOW, no_cpu, no_wall) > 0);
  ck_assert_int_eq(serial_run(&g) + 1, TG__GUARD_MIN_STRETCH);
}
END_TEST

/* tg__par_run gives every thread its index once, and one call on one
 * thread when asked for fewer than two. */
static void mark(void *ctx, int t, int nt) {
  int *seen = ctx;
  ck_assert(t >= 0 && t < nt && nt <= 8);
#ifdef _OPENMP
#pragma omp atomic
#endif
  seen[t]++;
}

START_TEST(test_par_run) {
  int seen[8] = {0};
  tg__par_run(1, mark, seen);
  ck_assert_int_eq(seen[0], 1);
  int threads = tg_get_num_threads();
  ck_assert_int_eq(tg_set_num_threads(2), TG_OK);
  tg__par_guard_enable(false);
  int nt = tg__par_threads(2);
#ifdef _OPENMP
  ck_assert_int_eq(nt, 2);
#else
  ck_assert_int_eq(nt, 1);
#endif
  tg__par_run(nt, mark, seen);
  ck_assert_int_eq(seen[0], 2);
  ck_assert_int_eq(seen[1], nt == 2 ? 1 : 0);
  ck_assert_int_eq(tg__par_threads(1), 1);
  tg__par_guard_enable(true);
  ck_assert_int_eq(tg_set_num_threads(threads), TG_OK);
}
END_TEST

static Suite *gemm_suite(void) {
  Suite *s = suite_create("gemm");
  TCase *tc = tcase_create("gemm");
  tcase_set_timeout(tc, 600);
  tcase_add_loop_test(tc, test_gemm_all, 0, 2 * (TG__GEMM_NKERNELS + 1));
  tcase_add_test(tc, test_gemm_degenerate);
  tcase_add_test(tc, test_gemm_kernel_choice);
  tcase_add_test(tc, test_gemm_buffer_once);
  suite_add_tcase(s, tc);
  TCase *th = tcase_create("threads");
  tcase_add_test(th, test_guard_rule);
  tcase_add_test(th, test_par_run);
  suite_add_tcase(s, th);
  return s;
}

int main(void) { return run_suite(gemm_suite()); }
