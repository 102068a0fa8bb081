/* tests/test_tape.c: recording, the backward walk, accumulation, no-grad
 * mode, clearing and arena reuse, the finite check. */
#include "testutil.h"

START_TEST(grads_accumulate_until_zeroed) {
  tg_tensor *x = f64_from(TG_SHAPE(3), (double[]){1, 2, 3});
  tg_requires_grad(x, true);
  tg_tape *t = tg_tape_new();
  for (int step = 1; step <= 3; step++) {
    tg_tensor *L = tg_sum(t, tg_mul(t, x, x)); /* dL/dx = 2x */
    ck_assert_int_eq(tg_backward(t, L), TG_OK);
    for (int i = 0; i < 3; i++)
      ck_assert_double_eq_tol(tg_grad_get(x, i), step * 2.0 * (i + 1), 1e-12);
    tg_tape_clear(t);
  }
  tg_zero_grad(x);
  for (int i = 0; i < 3; i++) ck_assert_double_eq(tg_grad_get(x, i), 0);
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

START_TEST(shared_input_and_diamond) {
  /* y = exp(x); L = sum(y * y + y): dL/dx = (2y + 1) y */
  tg_tensor *x = f64_from(TG_SHAPE(2), (double[]){0.5, -1});
  tg_requires_grad(x, true);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_exp(t, x);
  tg_tensor *L = tg_sum(t, tg_add(t, tg_mul(t, y, y), y));
  ck_assert_int_eq(tg_backward(t, L), TG_OK);
  for (int i = 0; i < 2; i++) {
    double yv = exp(tg_get(x, i));
    ck_assert_double_eq_tol(tg_grad_get(x, i), (2 * yv + 1) * yv, 1e-12);
    ck_assert_double_eq_tol(tg_grad_get(y, i), 2 * yv + 1, 1e-12);
  }
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

START_TEST(backward_twice_adds_again) {
  tg_tensor *x = f64_from(TG_SHAPE(2), (double[]){1, 2});
  tg_requires_grad(x, true);
  tg_tape *t = tg_tape_new();
  tg_tensor *h = tg_scale(t, x, 3);
  tg_tensor *L = tg_sum(t, h);
  tg_backward(t, L);
  tg_backward(t, L);
  ck_assert_double_eq_tol(tg_grad_get(x, 0), 6, 1e-12);
  /* intermediate grads are per pass, not accumulated */
  ck_assert_double_eq_tol(tg_grad_get(h, 0), 1, 1e-12);
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

START_TEST(only_nodes_from_params_are_recorded) {
  tg_tensor *w = f64_from(TG_SHAPE(2), (double[]){1, 2});
  tg_tensor *c = f64_from(TG_SHAPE(2), (double[]){3, 4});
  tg_requires_grad(w, true);
  tg_tape *t = tg_tape_new();
  tg_tensor *k = tg_exp(t, tg_neg(t, c)); /* constant: no nodes */
  ck_assert_uint_eq(tg_tape_nodes(t), 0);
  tg_tensor *L = tg_sum(t, tg_mul(t, w, k));
  ck_assert_uint_eq(tg_tape_nodes(t), 2);
  ck_assert_int_eq(tg_backward(t, L), TG_OK);
  ck_assert_ptr_null(tg_tensor_grad(k));
  ck_assert_ptr_null(tg_tensor_grad(c));
  ck_assert_double_eq_tol(tg_grad_get(w, 1), exp(-4.0), 1e-15);
  tg_tape_free(t);
  tg_tensor_free(w);
  tg_tensor_free(c);
}
END_TEST

START_TEST(branch_not_reaching_loss_does_no_work) {
  tg_tensor *w = f64_from(TG_SHAPE(2), (double[]){1, 2});
  tg_requires_grad(w, true);
  tg_tape *t = tg_tape_new();
  tg_tensor *side = tg_exp(t, w); /* recorded, but the loss ignores it */
  tg_tensor *L = tg_sum(t, w);
  ck_assert_int_eq(tg_backward(t, L), TG_OK);
  ck_assert_ptr_null(tg_tensor_grad(side));
  ck_assert_double_eq(tg_grad_get(w, 0), 1);
  tg_tape_free(t);
  tg_tensor_free(w);
}
END_TEST

START_TEST(no_grad_mode_records_nothing) {
  tg_tensor *w = f64_from(TG_SHAPE(2), (double[]){1, 2});
  tg_requires_grad(w, true);
  tg_tape *t = tg_tape_new();
  ck_assert(tg_tape_set_grad(t, false));
  tg_tensor *L = tg_sum(t, tg_mul(t, w, w));
  ck_assert_double_eq(tg_get(L, 0), 5);
  ck_assert_uint_eq(tg_tape_nodes(t), 0);
  ck_assert_int_eq(tg_backward(t, L), TG_ESTATE);
  ck_assert(!tg_tape_set_grad(t, true));
  tg_tape_free(t);
  tg_tensor_free(w);
}
END_TEST

START_TEST(clear_reuses_the_arena) {
  tg_tensor *w = tg_zeros(TG_F32, TG_SHAPE(64, 64));
  tg_fill(w, 0.01);
  tg_requires_grad(w, true);
  tg_tensor *x = tg_ones(TG_F32, TG_SHAPE(512, 64));
  tg_tape *t = tg_tape_new();
  size_t bytes = 0;
  void *first = NULL;
  for (int step = 0; step < 5; step++) {
    tg_tensor *h = tg_matmul(t, x, w);
    for (int k = 0; k < 8; k++) h = tg_sigmoid(t, tg_matmul(t, h, w));
    tg_tensor *L = tg_mean(t, h);
    ck_assert_int_eq(tg_backward(t, L), TG_OK);
    if (step == 1) first = h;
    if (step >= 1) {
      /* after the first clear the arena is one chunk that never grows,
       * of the step's own size (not the doubling chunks' sum) */
      if (step == 1) bytes = tg_tape_arena_bytes(t);
      ck_assert_uint_eq(tg_tape_arena_bytes(t), tg_tape_arena_peak(t));
      ck_assert_uint_eq(tg_tape_arena_bytes(t), bytes);
    }
    if (step == 2) ck_assert_ptr_eq(h, first); /* same memory, reused */
    tg_tape_clear(t);
    ck_assert_uint_eq(tg_tape_nodes(t), 0);
  }
  ck_assert_uint_gt(bytes, 0);
  tg_tape_free(t);
  tg_tensor_free(w);
  tg_tensor_free(x);
}
END_TEST

START_TEST(explicit_output_gradient) {
  tg_tensor *x = f64_from(TG_SHAPE(2, 2), (double[]){1, 2, 3, 4});
  tg_requires_grad(x, true);
  tg_tensor *g = f64_from(TG_SHAPE(2, 2), (double[]){1, 0, -1, 2});
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_scale(t, x, 5);
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  for (int i = 0; i < 4; i++)
    ck_assert_double_eq_tol(tg_grad_get(x, i), 5 * tg_get(g, i), 1e-12);
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(g);
}
END_TEST

START_TEST(finite_check_names_first_bad_op) {
  tg_tensor *x = f64_from(TG_SHAPE(3), (double[]){1, 0, 2});
  tg_requires_grad(x, true);
  tg_tape *t = tg_tape_new();
  tg_tensor *ok = tg_log(t, x); /* check off: -inf passes */
  ck_assert_ptr_nonnull(ok);
  ck_assert(isinf(tg_get(ok, 1)));
  ck_assert(!tg_tape_set_check_finite(t, true));
  tg_tensor *e = tg_exp(t, x);
  ck_assert_ptr_nonnull(e);
  tg_tensor *bad = tg_log(t, x);
  ck_assert_ptr_null(bad);
  ck_assert_error_has(TG_ENONFINITE, "tg_log", "element 1", "[3]");
  /* downstream ops see NULL and keep the first message */
  ck_assert_ptr_null(tg_sum(t, tg_neg(t, bad)));
  ck_assert_error_has(TG_ENONFINITE, "tg_log");
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

START_TEST(float32_training_step) {
  /* the same small model in float32 and float64 gives the same gradient */
  tg_rng rng;
  tg_rng_seed(&rng, 3);
  tg_tensor *w64 = param_normal(TG_F64, TG_SHAPE(4, 3), &rng);
  tg_tensor *w32 = tg_zeros(TG_F32, TG_SHAPE(4, 3));
  for (int i = 0; i < 12; i++) tg_set(w32, i, tg_get(w64, i));
  for (int i = 0; i < 12; i++) tg_set(w64, i, tg_get(w32, i));
  tg_requires_grad(w32, true);
  tg_tensor *x64 = tg_zeros(TG_F64, TG_SHAPE(2, 4)), *x32 = tg_zeros(TG_F32, TG_SHAPE(2, 4));
  tg_fill(x64, 0.5);
  tg_fill(x32, 0.5);
  tg_tensor *y = tg_tensor_from(TG_I32, TG_SHAPE(2), (int32_t[]){0, 2});
  tg_tape *t = tg_tape_new();
  tg_backward(t, tg_softmax_nll(t, tg_tanh(t, tg_matmul(t, x64, w64)), y));
  ck_assert_int_eq(tg_backward(t, tg_softmax_nll(t, tg_tanh(t, tg_matmul(t, x32, w32)), y)), TG_OK);
  for (int i = 0; i < 12; i++)
    ck_assert_double_eq_tol(tg_grad_get(w32, i), tg_grad_get(w64, i), 1e-6);
  tg_tape_free(t);
  tg_tensor *all[] = {w64, w32, x64, x32, y};
  for (int i = 0; i < 5; i++) tg_tensor_free(all[i]);
}
END_TEST

/* A gradient is a tensor: the view of the grad buffer, of the same dtype
 * and shape, that every tensor function takes; made once; refused by
 * tg_tensor_free; a tape tensor's is gone with the tape's clear. */
START_TEST(grad_is_a_tensor) {
  tg_rng rng;
  tg_rng_seed(&rng, 12);
  tg_tensor *w = param_normal(TG_F64, TG_SHAPE(2, 3), &rng);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_mul(t, w, w);
  ck_assert_ptr_null(tg_tensor_grad(y)); /* none before backward */
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  tg_tensor *g = tg_tensor_grad(w);
  ck_assert_ptr_nonnull(g);
  ck_assert_ptr_eq(tg_tensor_grad(w), g);
  ck_assert_int_eq(tg_tensor_dtype(g), TG_F64);
  ck_assert_int_eq(tg_tensor_ndim(g), 2);
  ck_assert_int_eq(tg_tensor_dim(g, 1), 3);
  for (int64_t i = 0; i < 6; i++)
    ck_assert_double_eq_tol(tg_get(g, i), 2 * tg_get(w, i), 1e-15);
  ck_assert_ptr_eq(tg_tensor_f64(g), tg_tensor_data(g));
  ck_assert_int_eq(tg_set(g, 0, 7.0), TG_OK); /* writes the gradient */
  ck_assert_double_eq(tg_grad_get(w, 0), 7.0);
  ck_assert_int_eq(tg_tensor_free(g), TG_ESTATE);
  ck_assert_error_has(TG_ESTATE, "tg_tensor_free", "gradient");
  tg_tensor *gy = tg_tensor_grad(y);
  ck_assert_ptr_nonnull(gy);
  ck_assert_double_eq(tg_get(gy, 4), 1.0);
  tg_tape_clear(t);
  ck_assert_ptr_null(tg_tensor_grad(y));
  ck_assert_error_has(TG_ESTATE, "tg_tensor_grad", "tg_tape_clear");
  tg_tensor *c = tg_zeros(TG_F32, TG_SHAPE(3));
  ck_assert_ptr_null(tg_tensor_grad(c)); /* not a parameter */
  tg_tensor_free(c);
  tg_tape_free(t);
  tg_tensor_free(w);
}
END_TEST

/* A scalar constant is one call; 0-d tensors go through ops and backward,
 * and zero-size ones give the empty results (the sum of nothing is 0). */
START_TEST(constants_and_zero_dims) {
  tg_tape *t = tg_tape_new();
  tg_tensor *c = tg_const(t, TG_F64, 2.5);
  ck_assert_ptr_nonnull(c);
  ck_assert_int_eq(tg_tensor_ndim(c), 0);
  ck_assert_int_eq(tg_tensor_numel(c), 1);
  ck_assert_double_eq(tg_get(c, 0), 2.5);
  tg_tensor *f = tg_const(t, TG_F32, 0.1);
  ck_assert_double_eq(tg_get(f, 0), (double)0.1f);
  ck_assert_ptr_null(tg_const(NULL, TG_F64, 1));
  ck_assert_error_has(TG_EINVAL, "tg_const", "tape is NULL");
  ck_assert_ptr_null(tg_const(t, TG_I32, 1));
  ck_assert_error_has(TG_EDTYPE, "tg_const", "int32");
  tg_tensor *y = tg_exp(t, tg_scale(t, c, 2));
  ck_assert_int_eq(tg_tensor_ndim(y), 0);
  ck_assert_double_eq_tol(tg_get(y, 0), exp(5.0), 1e-12);

  tg_tensor *s = tg_zeros(TG_F64, 0, NULL);
  tg_set(s, 0, 0.5);
  tg_requires_grad(s, true);
  tg_tensor *L = tg_mul(t, s, s); /* a 0-d loss */
  ck_assert_int_eq(tg_tensor_ndim(L), 0);
  ck_assert_int_eq(tg_backward(t, L), TG_OK);
  ck_assert_double_eq_tol(tg_grad_get(s, 0), 1.0, 1e-15);

  tg_tensor *e = tg_zeros(TG_F32, TG_SHAPE(0, 3));
  tg_requires_grad(e, true);
  tg_tensor *ee = tg_exp(t, e);
  ck_assert_int_eq(tg_tensor_dim(ee, 0), 0);
  ck_assert_int_eq(tg_tensor_numel(ee), 0);
  tg_tensor *se = tg_sum(t, ee);
  ck_assert_double_eq(tg_get(se, 0), 0.0);
  ck_assert_int_eq(tg_backward(t, se), TG_OK);
  tg_tape_free(t);
  tg_tensor_free(s);
  tg_tensor_free(e);
}
END_TEST

/* The recorded graph as DOT: every recorded op, its result's shape, the
 * parameters and inputs, one arrow per input. */
START_TEST(dot_of_a_small_graph) {
  tg_rng rng;
  tg_rng_seed(&rng, 13);
  tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(4, 3));
  tg_fill_normal(x, &rng, 0, 1);
  tg_tensor *W = param_normal(TG_F32, TG_SHAPE(3, 2), &rng);
  tg_tensor *b = param_normal(TG_F32, TG_SHAPE(2), &rng);
  tg_tensor *y = tg_tensor_from(TG_I32, TG_SHAPE(4), (int32_t[]){0, 1, 1, 0});
  tg_tape *t = tg_tape_new();
  tg_tensor *L = tg_softmax_nll(t, tg_add(t, tg_matmul(t, x, W), b), y);
  ck_assert_ptr_nonnull(L);
  FILE *f = tmpfile();
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(tg_tape_dot(t, f), TG_OK);
  rewind(f);
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  ck_assert_msg(strncmp(buf, "digraph tapegrad {", 18) == 0, "%s", buf);
  ck_assert_ptr_nonnull(strstr(buf, "matmul\\n[4,2] float32"));
  ck_assert_ptr_nonnull(strstr(buf, "add\\n[4,2] float32"));
  ck_assert_ptr_nonnull(strstr(buf, "softmax_nll\\n[] float32"));
  ck_assert_ptr_nonnull(strstr(buf, "parameter\\n[3,2] float32"));
  ck_assert_ptr_nonnull(strstr(buf, "parameter\\n[2] float32"));
  ck_assert_ptr_nonnull(strstr(buf, "input\\n[4,3] float32"));
  ck_assert_ptr_nonnull(strstr(buf, "input\\n[4] int32"));
  ck_assert_ptr_nonnull(strstr(buf, "n0 -> n1;"));
  ck_assert_ptr_nonnull(strstr(buf, "n1 -> n2;"));
  int arrows = 0;
  for (const char *p = buf; (p = strstr(p, " -> ")); p++) arrows++;
  ck_assert_int_eq(arrows, 6);
  ck_assert_int_eq(tg_tape_dot(NULL, stdout), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_tape_dot", "tape is NULL");
  ck_assert_int_eq(tg_tape_dot(t, NULL), TG_EINVAL);
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(W);
  tg_tensor_free(b);
  tg_tensor_free(y);
}
END_TEST

int main(void) {
  Suite *s = suite_create("tape");
  TCase *tc = tcase_create("tape");
  tcase_add_test(tc, grads_accumulate_until_zeroed);
  tcase_add_test(tc, grad_is_a_tensor);
  tcase_add_test(tc, dot_of_a_small_graph);
  tcase_add_test(tc, constants_and_zero_dims);
  tcase_add_test(tc, shared_input_and_diamond);
  tcase_add_test(tc, backward_twice_adds_again);
  tcase_add_test(tc, only_nodes_from_params_are_recorded);
  tcase_add_test(tc, branch_not_reaching_loss_does_no_work);
  tcase_add_test(tc, no_grad_mode_records_nothing);
  tcase_add_test(tc, clear_reuses_the_arena);
  tcase_add_test(tc, explicit_output_gradient);
  tcase_add_test(tc, finite_check_names_first_bad_op);
  tcase_add_test(tc, float32_training_step);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
