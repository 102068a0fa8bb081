/* tests/test_profile.c: the tape's profiler: exact counts per (region, op),
 * times that fit inside the wall time, nothing recorded when off, a profiled
 * step that allocates nothing, bad input; and the arena's high-water mark. */
#include <time.h>

#include "testutil.h"

static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The entry of (region, op) among n, or NULL. */
static const tg_profile_entry *find(const tg_profile_entry *e, int n,
                                    const char *region, const char *op) {
  for (int i = 0; i < n; i++)
    if (!strcmp(e[i].op, op) &&
        (region ? e[i].region && !strcmp(e[i].region, region) : !e[i].region))
      return &e[i];
  return NULL;
}

typedef struct {
  tg_tensor *x, *W1, *W2;
} net;

static net net_new(void) {
  tg_rng rng;
  tg_rng_seed(&rng, 7);
  net n = {.x = tg_zeros(TG_F64, TG_SHAPE(4, 8))};
  ck_assert_ptr_nonnull(n.x);
  ck_assert_int_eq(tg_fill_normal(n.x, &rng, 0, 1), TG_OK);
  n.W1 = param_normal(TG_F64, TG_SHAPE(8, 8), &rng);
  n.W2 = param_normal(TG_F64, TG_SHAPE(8, 8), &rng);
  return n;
}

static void net_free(net *n) {
  tg_tensor_free(n->x);
  tg_tensor_free(n->W1);
  tg_tensor_free(n->W2);
}

/* L = sum(x W1 W2 + x W1): 2 matmuls, 1 add, 1 sum; the first matmul in
 * region "first" when regions is set. */
static tg_tensor *record(tg_tape *t, net *n, bool regions) {
  if (regions) ck_assert_int_eq(tg_tape_region(t, "first"), TG_OK);
  tg_tensor *h = tg_matmul(t, n->x, n->W1);
  if (regions) ck_assert_int_eq(tg_tape_region(t, NULL), TG_OK);
  tg_tensor *L = tg_sum(t, tg_add(t, tg_matmul(t, h, n->W2), h));
  ck_assert_ptr_nonnull(L);
  return L;
}

START_TEST(counts_are_exact) {
  net n = net_new();
  tg_tape *t = tg_tape_new();
  ck_assert_int_eq(tg_tape_set_profile(t, true), TG_OK);
  ck_assert_int_eq(tg_backward(t, record(t, &n, false)), TG_OK);
  tg_profile_entry e[8];
  ck_assert_int_eq(tg_tape_profile(t, e, 8), 3);
  const tg_profile_entry *mm = find(e, 3, NULL, "matmul"), *add = find(e, 3, NULL, "add"),
                         *sum = find(e, 3, NULL, "sum");
  ck_assert_ptr_nonnull(mm);
  ck_assert_ptr_nonnull(add);
  ck_assert_ptr_nonnull(sum);
  ck_assert_int_eq(mm->forward_calls, 2);
  ck_assert_int_eq(mm->backward_calls, 2);
  ck_assert_int_eq(add->forward_calls, 1);
  ck_assert_int_eq(add->backward_calls, 1);
  ck_assert_int_eq(sum->forward_calls, 1);
  ck_assert_int_eq(sum->backward_calls, 1);
  /* a second step adds to the totals; a count-only query asks for no room */
  tg_tape_clear(t);
  ck_assert_int_eq(tg_backward(t, record(t, &n, false)), TG_OK);
  ck_assert_int_eq(tg_tape_profile(t, NULL, 0), 3);
  ck_assert_int_eq(tg_tape_profile(t, e, 1), 3); /* one copied, three in all */
  ck_assert_int_eq(tg_tape_profile(t, e, 8), 3);
  ck_assert_int_eq(find(e, 3, NULL, "matmul")->forward_calls, 4);
  ck_assert_int_eq(find(e, 3, NULL, "matmul")->backward_calls, 4);
  /* reset forgets the totals */
  tg_tape_profile_reset(t);
  ck_assert_int_eq(tg_tape_profile(t, e, 8), 0);
  tg_tape_free(t);
  net_free(&n);
}
END_TEST

START_TEST(regions_attribute) {
  net n = net_new();
  tg_tape *t = tg_tape_new();
  ck_assert_int_eq(tg_tape_set_profile(t, true), TG_OK);
  /* a label told apart by its text, not its pointer */
  char again[] = "first";
  ck_assert_int_eq(tg_tape_region(t, again), TG_OK);
  ck_assert_int_eq(tg_tape_region(t, NULL), TG_OK);
  ck_assert_int_eq(tg_backward(t, record(t, &n, true)), TG_OK);
  tg_profile_entry e[8];
  ck_assert_int_eq(tg_tape_profile(t, e, 8), 4);
  const tg_profile_entry *a = find(e, 4, "first", "matmul"), *b = find(e, 4, NULL, "matmul");
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_nonnull(b);
  ck_assert_int_eq(a->forward_calls, 1);
  ck_assert_int_eq(a->backward_calls, 1);
  ck_assert_int_eq(b->forward_calls, 1);
  ck_assert_int_eq(b->backward_calls, 1);
  ck_assert_ptr_null(find(e, 4, "first", "add"));
  ck_assert_int_eq(find(e, 4, NULL, "add")->forward_calls, 1);
  /* the region stays across a clear until changed */
  tg_tape_clear(t);
  tg_tape_profile_reset(t);
  ck_assert_int_eq(tg_tape_region(t, "second"), TG_OK);
  ck_assert_ptr_nonnull(tg_sum(t, tg_mul(t, n.W1, n.W1)));
  tg_tape_clear(t);
  ck_assert_ptr_nonnull(tg_sum(t, tg_mul(t, n.W1, n.W1)));
  ck_assert_int_eq(tg_tape_profile(t, e, 8), 2);
  ck_assert_int_eq(find(e, 2, "second", "mul")->forward_calls, 2);
  ck_assert_int_eq(find(e, 2, "second", "sum")->backward_calls, 0);
  tg_tape_free(t);
  net_free(&n);
}
END_TEST

START_TEST(times_fit_in_the_wall_time) {
  net n = net_new();
  tg_tape *t = tg_tape_new();
  ck_assert_int_eq(tg_tape_set_profile(t, true), TG_OK);
  double t0 = wall();
  for (int step = 0; step < 20; step++) {
    ck_assert_int_eq(tg_backward(t, record(t, &n, true)), TG_OK);
    tg_tape_clear(t);
  }
  double elapsed = wall() - t0, sum = 0;
  tg_profile_entry e[8];
  int k = tg_tape_profile(t, e, 8);
  ck_assert_int_eq(k, 4);
  for (int i = 0; i < k; i++) {
    ck_assert(e[i].forward_seconds >= 0);
    ck_assert(e[i].backward_seconds >= 0);
    sum += e[i].forward_seconds + e[i].backward_seconds;
  }
  ck_assert_msg(sum > 0, "nothing timed");
  ck_assert_msg(sum <= elapsed, "timed %g s in a block of %g s", sum, elapsed);
  tg_tape_free(t);
  net_free(&n);
}
END_TEST

START_TEST(off_records_nothing) {
  net n = net_new();
  tg_tape *t = tg_tape_new();
  ck_assert_int_eq(tg_backward(t, record(t, &n, true)), TG_OK);
  ck_assert_int_eq(tg_tape_profile(t, NULL, 0), 0);
  tg_tape_clear(t);
  /* on, then off before backward: the forward is counted, the backward not;
   * a forward recorded while off is not timed in a backward run while on */
  ck_assert_int_eq(tg_tape_set_profile(t, true), TG_OK);
  tg_tensor *L = record(t, &n, false);
  ck_assert_int_eq(tg_tape_set_profile(t, false), TG_OK);
  ck_assert_int_eq(tg_backward(t, L), TG_OK);
  tg_profile_entry e[8];
  ck_assert_int_eq(tg_tape_profile(t, e, 8), 3);
  ck_assert_int_eq(find(e, 3, NULL, "matmul")->forward_calls, 2);
  ck_assert_int_eq(find(e, 3, NULL, "matmul")->backward_calls, 0);
  tg_tape_clear(t);
  tg_tape_profile_reset(t);
  L = record(t, &n, false);
  ck_assert_int_eq(tg_tape_set_profile(t, true), TG_OK);
  ck_assert_int_eq(tg_backward(t, L), TG_OK);
  ck_assert_int_eq(tg_tape_profile(t, NULL, 0), 0);
  tg_tape_free(t);
  net_free(&n);
}
END_TEST

START_TEST(a_profiled_step_allocates_nothing) {
  counting_allocator(true);
  net n = net_new();
  tg_tape *t = tg_tape_new();
  ck_assert_int_eq(tg_tape_set_profile(t, true), TG_OK);
  long allocs = 0;
  for (int step = 0; step < 3; step++) {
    if (step == 1) allocs = *test_allocs();
    ck_assert_int_eq(tg_backward(t, record(t, &n, true)), TG_OK);
    tg_tape_clear(t);
  }
  ck_assert_int_eq(*test_allocs(), allocs);
  tg_tape_free(t);
  net_free(&n);
  ck_assert_int_eq(*test_frees(), *test_allocs());
  counting_allocator(false);
}
END_TEST

START_TEST(print_a_table) {
  net n = net_new();
  tg_tape *t = tg_tape_new();
  ck_assert_int_eq(tg_tape_set_profile(t, true), TG_OK);
  ck_assert_int_eq(tg_backward(t, record(t, &n, true)), TG_OK);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(tg_tape_profile_print(t, f), TG_OK);
  fclose(f);
  ck_assert_ptr_nonnull(strstr(buf, "first"));
  ck_assert_ptr_nonnull(strstr(buf, "matmul"));
  ck_assert_ptr_nonnull(strstr(buf, "add"));
  ck_assert_ptr_nonnull(strstr(buf, "total"));
  free(buf);
  tg_tape_free(t);
  net_free(&n);
}
END_TEST

START_TEST(bad_input) {
  tg_profile_entry e[2];
  ck_assert_int_eq(tg_tape_set_profile(NULL, true), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_tape_set_profile", "NULL");
  ck_assert_int_eq(tg_tape_region(NULL, "x"), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_tape_region");
  ck_assert_int_eq(tg_tape_profile(NULL, e, 2), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_tape_profile");
  ck_assert_int_eq(tg_tape_profile_print(NULL, stdout), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_tape_profile_print");
  tg_tape_profile_reset(NULL);
  ck_assert_int_eq(tg_tape_arena_peak(NULL), 0);

  tg_tape *t = tg_tape_new();
  ck_assert_int_eq(tg_tape_profile(t, NULL, 2), TG_EINVAL);
  ck_assert_int_eq(tg_tape_profile(t, e, -1), TG_EINVAL);
  ck_assert_int_eq(tg_tape_profile_print(t, NULL), TG_EINVAL);
  ck_assert_int_eq(tg_tape_profile(t, e, 2), 0); /* never on: empty */
  /* labels are kept as pointers: give each its own lasting text */
  static char labels[TG_PROFILE_MAX_REGIONS + 1][8];
  for (int i = 0; i < TG_PROFILE_MAX_REGIONS; i++) {
    snprintf(labels[i], sizeof labels[i], "r%d", i);
    ck_assert_int_eq(tg_tape_region(t, labels[i]), TG_OK);
  }
  ck_assert_int_eq(tg_tape_region(t, labels[3]), TG_OK); /* a known one */
  snprintf(labels[TG_PROFILE_MAX_REGIONS], 8, "extra");
  ck_assert_int_eq(tg_tape_region(t, labels[TG_PROFILE_MAX_REGIONS]), TG_ERANGE);
  ck_assert_error_has(TG_ERANGE, "tg_tape_region", "extra", "at most 32");

  /* more (region, op) pairs than the table holds: the op fails, no crash */
  ck_assert_int_eq(tg_tape_set_profile(t, true), TG_OK);
  tg_tensor *x = f64_from(TG_SHAPE(2), (double[]){1, 2});
  tg_requires_grad(x, true);
  int made = 0;
  tg_tensor *y = x;
  for (int r = 0; r < TG_PROFILE_MAX_REGIONS && y; r++) {
    ck_assert_int_eq(tg_tape_region(t, labels[r]), TG_OK);
    tg_tensor *(*const un[])(tg_tape *, tg_tensor *) = {tg_exp, tg_neg, tg_tanh,
                                                         tg_sigmoid, tg_relu, tg_abs,
                                                         tg_square, tg_silu, tg_softplus};
    for (size_t k = 0; k < sizeof un / sizeof *un && y; k++) {
      tg_tensor *z = un[k](t, y);
      if (z) made++;
      y = z;
    }
  }
  ck_assert_ptr_null(y);
  ck_assert_int_eq(made, TG_PROFILE_MAX_ENTRIES);
  ck_assert_error_has(TG_ERANGE, "the tape's profile", "256");
  ck_assert_int_eq(tg_tape_profile(t, NULL, 0), TG_PROFILE_MAX_ENTRIES);
  FILE *f = fopen("/dev/null", "w");
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(tg_tape_profile_print(t, f), TG_OK);
  fclose(f);
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

START_TEST(arena_peak) {
  net n = net_new();
  tg_tape *t = tg_tape_new();
  ck_assert_int_eq(tg_tape_arena_peak(t), 0);
  ck_assert_int_eq(tg_backward(t, record(t, &n, false)), TG_OK);
  size_t one = tg_tape_arena_peak(t);
  /* at least the four results' data and the grads of the three not params */
  size_t floor = (3 * 4 * 8 + 1) * sizeof(double) + 3 * 4 * 8 * sizeof(double);
  ck_assert_uint_ge(one, floor);
  ck_assert_uint_le(one, tg_tape_arena_bytes(t));
  /* the same step again: the mark stays; a step twice as big raises it */
  tg_tape_clear(t);
  ck_assert_int_eq(tg_backward(t, record(t, &n, false)), TG_OK);
  ck_assert_uint_eq(tg_tape_arena_peak(t), one);
  tg_tape_clear(t);
  ck_assert_ptr_nonnull(record(t, &n, false));
  ck_assert_int_eq(tg_backward(t, record(t, &n, false)), TG_OK);
  ck_assert_uint_gt(tg_tape_arena_peak(t), one);
  tg_tape_free(t);
  net_free(&n);
}
END_TEST

int main(void) {
  Suite *s = suite_create("profile");
  TCase *tc = tcase_create("profile");
  tcase_add_test(tc, counts_are_exact);
  tcase_add_test(tc, regions_attribute);
  tcase_add_test(tc, times_fit_in_the_wall_time);
  tcase_add_test(tc, off_records_nothing);
  tcase_add_test(tc, a_profiled_step_allocates_nothing);
  tcase_add_test(tc, print_a_table);
  tcase_add_test(tc, bad_input);
  tcase_add_test(tc, arena_peak);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
