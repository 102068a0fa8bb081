/* tests/testutil.h: helpers shared by the Check suites. */
#ifndef TAPEGRAD_TESTUTIL_H
#define TAPEGRAD_TESTUTIL_H

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ops/op.h"
#include "src/io/io.h"
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

/* One temporary directory for a whole test run, made before the tests fork:
 * make_dir("test_x") creates $TMPDIR/test_x.XXXXXX (./test_x.XXXXXX without
 * TMPDIR), test_dir() names it, P() and put() work inside it, and
 * remove_tree(test_dir()) takes it away at the end. */
#define TEST_DIR_LEN 1024
static inline char *test_dir(void) {
  static char dir[TEST_DIR_LEN];
  return dir;
}

static inline void make_dir(const char *test) {
  char *dir = test_dir();
  const char *base = getenv("TMPDIR");
  if (!base || !*base) base = ".";
  snprintf(dir, TEST_DIR_LEN, "%s/%s.XXXXXX", base, test);
  if (!mkdtemp(dir)) {
    fprintf(stderr, "%s: mkdtemp %s: %s\n", test, dir, strerror(errno));
    exit(EXIT_FAILURE);
  }
}

/* Removes path and, if it is a directory, everything under it. */
static inline void remove_tree(const char *path) {
  DIR *d = opendir(path);
  if (!d) {
    unlink(path);
    return;
  }
  struct dirent *e;
  char p[2048];
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (snprintf(p, sizeof p, "%s/%s", path, e->d_name) >= (int)sizeof p)
      continue; /* too long to name: never so under a test's own folder */
    remove_tree(p);
  }
  closedir(d);
  rmdir(path);
}

/* "<test_dir()>/<name>" in one of a few rotating buffers. */
static inline const char *P(const char *name) {
  static char bufs[4][2048];
  static int k;
  char *b = bufs[k++ % 4];
  snprintf(b, sizeof bufs[0], "%s/%s", test_dir(), name);
  return b;
}

/* Writes n bytes of data to the file P(name). */
static inline void put(const char *name, const void *data, size_t n) {
  FILE *f = fopen(P(name), "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(data, 1, n, f), n);
  ck_assert_int_eq(fclose(f), 0);
}

/* Runs body in a child with an alarm, so a loader that blocks fails the
 * test (the child dies of SIGALRM) instead of hanging the suite. The body
 * reports with fprintf and returns the number of failed checks, since
 * Check's assertions belong to the test's own process. */
static inline void in_child_with_alarm(const char *what, int (*body)(void)) {
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    alarm(2); /* before Check's own 4-second timeout */
    _exit(body() ? 1 : 0);
  }
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  ck_assert_msg(!WIFSIGNALED(st), "%s: the child died of signal %d%s", what,
                WIFSIGNALED(st) ? WTERMSIG(st) : 0,
                WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM ? " (it blocked)" : "");
  ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: a check failed",
                what);
}

#endif
