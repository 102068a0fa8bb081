/* tests/test_dist.c: the distributed API as a one-process job (no mpirun,
 * or a build without MPI): rank 0 of 1, every exchange does what it would
 * in a job of one, a training loop written against it gives the same bits
 * as one without it, and bad arguments are refused with a message. The
 * jobs of several processes are tests/mpi-dist.sh's. */
#include "tests/testutil.h"

static void no_mpirun(void) {
  unsetenv("OMPI_COMM_WORLD_SIZE");
  unsetenv("PMIX_RANK");
  unsetenv("PMI_RANK");
  unsetenv("TG_DIST_TIMEOUT");
}

START_TEST(one_process) {
  no_mpirun();
  tg_dist *d = tg_dist_init(NULL, NULL);
  ck_assert_ptr_nonnull(d);
  ck_assert_int_eq(tg_dist_rank(d), 0);
  ck_assert_int_eq(tg_dist_size(d), 1);
  ck_assert(!tg_dist_is_mpi(d));
  ck_assert_int_eq(tg_dist_barrier(d), TG_OK);
  ck_assert_int_eq(tg_dist_check(d, TG_OK, NULL), TG_OK);
  ck_assert_int_eq(tg_dist_check(d, TG_EIO, "cannot load x"), TG_EIO);
  ck_assert_error_has(TG_EIO, "rank 0 of 1", "cannot load x");
  double v[3] = {1.5, -2, 3};
  ck_assert_int_eq(tg_dist_sum(d, v, 3), TG_OK);
  ck_assert(v[0] == 1.5 && v[1] == -2 && v[2] == 3);
  ck_assert_int_eq(tg_dist_set_reduce(d, TG_DIST_REDUCE_MPI), TG_OK);
  ck_assert_int_eq(tg_dist_set_timeout(d, 3), TG_OK);
  ck_assert_int_eq(tg_dist_finalize(d), TG_OK);
  ck_assert_int_eq(tg_dist_finalize(NULL), TG_OK);
}
END_TEST

/* The same training loop with and without the dist calls: the same bits. */
static uint64_t run(bool dist) {
  tg_rng rng;
  tg_rng_seed(&rng, 3);
  tg_dense *l1 = tg_dense_new(6, 5, TG_F32, TG_ACT_TANH, &rng);
  tg_dense *l2 = tg_dense_new(5, 3, TG_F32, TG_ACT_NONE, &rng);
  tg_tensor *p[4];
  tg_dense_params(l1, p);
  tg_dense_params(l2, p + 2);
  tg_adam_config c = TG_ADAM_DEFAULTS;
  tg_optim *opt = tg_adam_new(p, 4, &c);
  tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(8, 6)), *y = tg_zeros(TG_I32, TG_SHAPE(8));
  tg_fill_normal(x, &rng, 0, 1);
  for (int i = 0; i < 8; i++) tg_tensor_i32(y)[i] = i % 3;
  tg_dist *d = dist ? tg_dist_init(NULL, NULL) : NULL;
  if (dist) ck_assert_int_eq(tg_dist_broadcast_optim(d, opt), TG_OK);
  tg_tape *t = tg_tape_new();
  for (int s = 0; s < 5; s++) {
    tg_tensor *loss = tg_softmax_nll(t, tg_dense_forward(t, l2,
                                     tg_dense_act(t, l1, x, TG_ACT_TANH)), y);
    ck_assert_int_eq(tg_backward(t, loss), TG_OK);
    if (dist) ck_assert_int_eq(tg_dist_mean_grads(d, p, 4, 8), TG_OK);
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    tg_optim_zero_grad(opt);
    tg_tape_clear(t);
  }
  uint64_t h = 0;
  for (int i = 0; i < 4; i++) h = h * 31 + tg_tensor_hash(p[i]);
  if (dist) ck_assert_int_eq(tg_dist_finalize(d), TG_OK);
  tg_tape_free(t);
  tg_optim_free(opt);
  tg_dense_free(l1);
  tg_dense_free(l2);
  tg_tensor_free(x);
  tg_tensor_free(y);
  return h;
}

START_TEST(same_bits_as_without) {
  no_mpirun();
  ck_assert_uint_eq(run(true), run(false));
}
END_TEST

START_TEST(bad_arguments) {
  no_mpirun();
  ck_assert_int_eq(tg_dist_rank(NULL), 0);
  ck_assert_int_eq(tg_dist_size(NULL), 0);
  ck_assert_int_eq(tg_dist_barrier(NULL), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_dist_barrier", "NULL");
  ck_assert_int_eq(tg_dist_mean_grads(NULL, NULL, 0, 1), TG_EINVAL);
  tg_dist *d = tg_dist_init(NULL, NULL);
  ck_assert_ptr_nonnull(d);
  tg_tensor *a = tg_zeros(TG_F32, TG_SHAPE(3)), *b = tg_zeros(TG_F64, TG_SHAPE(2));
  tg_tensor *c = tg_zeros(TG_F32, TG_SHAPE(2));
  tg_requires_grad(a, true);
  tg_requires_grad(b, true);
  tg_tensor *ab[] = {a, b}, *ac[] = {a, c}, *an[] = {a, NULL};
  ck_assert_int_eq(tg_dist_mean_grads(d, ab, 2, 4), TG_EDTYPE);
  ck_assert_error_has(TG_EDTYPE, "tg_dist_mean_grads", "params[1] is float64");
  ck_assert_int_eq(tg_dist_mean_grads(d, ac, 2, 4), TG_ESTATE);
  ck_assert_error_has(TG_ESTATE, "params[1] has no grad");
  ck_assert_int_eq(tg_dist_mean_grads(d, an, 2, 4), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "params[1] is NULL");
  ck_assert_int_eq(tg_dist_mean_grads(d, ab, 0, 4), TG_EINVAL);
  ck_assert_int_eq(tg_dist_mean_grads(d, ab, 1, -1), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "rows is -1");
  ck_assert_int_eq(tg_dist_mean_grads(d, ab, 1, 0), TG_ERANGE);
  ck_assert_error_has(TG_ERANGE, "no rank has any rows");
  ck_assert_int_eq(tg_dist_broadcast(d, an, 2), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_dist_broadcast", "tensor 1 of 2 is NULL");
  ck_assert_int_eq(tg_dist_broadcast(d, NULL, 1), TG_EINVAL);
  ck_assert_int_eq(tg_dist_broadcast(d, NULL, 0), TG_OK);
  ck_assert_int_eq(tg_dist_broadcast_optim(d, NULL), TG_EINVAL);
  ck_assert_int_eq(tg_dist_sum(d, NULL, 1), TG_EINVAL);
  double v[TG_DIST_MAX_SUM + 1] = {0};
  ck_assert_int_eq(tg_dist_sum(d, v, TG_DIST_MAX_SUM + 1), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_dist_sum", "n is 17");
  ck_assert_int_eq(tg_dist_set_timeout(d, 0), TG_EINVAL);
  ck_assert_int_eq(tg_dist_set_timeout(d, NAN), TG_EINVAL);
  ck_assert_int_eq(tg_dist_set_reduce(d, (tg_dist_reduce)7), TG_EINVAL);
  ck_assert_int_eq(tg_dist_check(d, 3, NULL), TG_EINVAL);
  /* after a failure every exchange refuses, naming it */
  ck_assert_int_eq(tg_dist_fail(d, TG_EIO, "disk gone"), TG_EIO);
  ck_assert_int_eq(tg_dist_barrier(d), TG_ESTATE);
  ck_assert_error_has(TG_ESTATE, "an earlier exchange failed", "disk gone");
  ck_assert_int_eq(tg_dist_finalize(d), TG_OK);
  tg_tensor_free(a);
  tg_tensor_free(b);
  tg_tensor_free(c);
  setenv("TG_DIST_TIMEOUT", "soon", 1);
  ck_assert_ptr_null(tg_dist_init(NULL, NULL));
  ck_assert_error_has(TG_EINVAL, "TG_DIST_TIMEOUT is 'soon'");
  unsetenv("TG_DIST_TIMEOUT");
}
END_TEST

START_TEST(allocates_nothing_per_step) {
  no_mpirun();
  tg_dist *d = tg_dist_init(NULL, NULL);
  tg_tensor *a = tg_zeros(TG_F32, TG_SHAPE(3));
  tg_requires_grad(a, true);
  tg_tensor *list[] = {a};
  ck_assert_int_eq(tg_dist_mean_grads(d, list, 1, 2), TG_OK); /* makes the grad view */
  counting_allocator(true);
  for (int i = 0; i < 10; i++) ck_assert_int_eq(tg_dist_mean_grads(d, list, 1, 2), TG_OK);
  long n = *test_allocs();
  counting_allocator(false);
  ck_assert_int_eq(n, 0);
  tg_tensor_free(a);
  tg_dist_finalize(d);
}
END_TEST

int main(void) {
  Suite *s = suite_create("dist");
  TCase *tc = tcase_create("one process");
  tcase_add_test(tc, one_process);
  tcase_add_test(tc, same_bits_as_without);
  tcase_add_test(tc, bad_arguments);
  tcase_add_test(tc, allocates_nothing_per_step);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
