/* tests/test_errors.c: bad input gives NULL or an error status and a
 * message naming the function and the shapes; nothing crashes or leaks. */
#include "testutil.h"

static tg_tape *t;
static tg_tensor *a23, *b23, *b34, *b32, *f32_23, *v3, *v4, *cls2;

static void setup(void) {
  t = tg_tape_new();
  a23 = tg_ones(TG_F64, TG_SHAPE(2, 3));
  b23 = tg_ones(TG_F64, TG_SHAPE(2, 3));
  b34 = tg_ones(TG_F64, TG_SHAPE(3, 4));
  b32 = tg_ones(TG_F64, TG_SHAPE(3, 2));
  f32_23 = tg_ones(TG_F32, TG_SHAPE(2, 3));
  v3 = tg_ones(TG_F64, TG_SHAPE(3));
  v4 = tg_ones(TG_F64, TG_SHAPE(4));
  cls2 = tg_tensor_from(TG_I32, TG_SHAPE(2), (int32_t[]){0, 2});
  tg_requires_grad(a23, true);
  tg_clear_error();
}

static void teardown(void) {
  tg_tape_free(t);
  tg_tensor *all[] = {a23, b23, b34, b32, f32_23, v3, v4, cls2};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) tg_tensor_free(all[i]);
}

START_TEST(matmul_errors) {
  ck_assert_ptr_null(tg_matmul(t, a23, b23));
  ck_assert_error_has(TG_ESHAPE, "tg_matmul: inner dimensions differ", "[2,3]", "[2,3]");
  ck_assert_ptr_null(tg_matmul(t, a23, v3));
  ck_assert_error_has(TG_ESHAPE, "tg_matmul", "2-D", "[3]");
  ck_assert_ptr_null(tg_matmul(t, f32_23, b34));
  ck_assert_error_has(TG_EDTYPE, "tg_matmul", "float32", "float64");
  ck_assert_ptr_null(tg_matmul(t, a23, cls2));
  ck_assert_error_has(TG_EDTYPE, "tg_matmul", "int32");
  ck_assert_ptr_nonnull(tg_matmul(t, a23, b34));
}
END_TEST

START_TEST(linear_errors) {
  ck_assert_ptr_null(tg_linear(t, v3, b34, v4, TG_ACT_NONE));
  ck_assert_error_has(TG_ESHAPE, "tg_linear", "2-D", "x is [3]", "[3,4]");
  ck_assert_ptr_null(tg_linear(t, a23, v3, NULL, TG_ACT_NONE));
  ck_assert_error_has(TG_ESHAPE, "tg_linear", "2-D", "W is [3]");
  ck_assert_ptr_null(tg_linear(t, a23, b23, NULL, TG_ACT_RELU));
  ck_assert_error_has(TG_ESHAPE, "tg_linear: inner dimensions differ",
                      "x is [2,3]", "W is [2,3]");
  ck_assert_ptr_null(tg_linear(t, a23, b34, v3, TG_ACT_SIGMOID));
  ck_assert_error_has(TG_ESHAPE, "tg_linear", "b is [3]", "[3,4]", "[4]");
  ck_assert_ptr_null(tg_linear(t, a23, b34, b34, TG_ACT_NONE));
  ck_assert_error_has(TG_ESHAPE, "tg_linear", "b is [3,4]");
  ck_assert_ptr_null(tg_linear(t, f32_23, b34, NULL, TG_ACT_NONE));
  ck_assert_error_has(TG_EDTYPE, "tg_linear", "dtypes differ", "x is float32",
                      "W is float64");
  tg_tensor *f32_4 = tg_ones(TG_F32, TG_SHAPE(4));
  ck_assert_ptr_null(tg_linear(t, a23, b34, f32_4, TG_ACT_NONE));
  ck_assert_error_has(TG_EDTYPE, "tg_linear", "b is float32");
  tg_tensor_free(f32_4);
  ck_assert_ptr_null(tg_linear(t, a23, b34, cls2, TG_ACT_NONE));
  ck_assert_error_has(TG_EDTYPE, "tg_linear", "b is int32");
  ck_assert_ptr_null(tg_linear(t, a23, b34, v4, (tg_activation)7));
  ck_assert_error_has(TG_EINVAL, "tg_linear", "unknown activation 7");
  ck_assert_ptr_null(tg_linear(t, a23, b34, v4, (tg_activation)-1));
  ck_assert_error_has(TG_EINVAL, "tg_linear", "unknown activation -1");
  ck_assert_ptr_null(tg_linear(NULL, a23, b34, v4, TG_ACT_NONE));
  ck_assert_error_has(TG_EINVAL, "tg_linear", "tape is NULL");
  tg_tape *other = tg_tape_new();
  tg_tensor *W = tg_exp(other, b34);
  ck_assert_ptr_null(tg_linear(t, a23, W, v4, TG_ACT_NONE));
  ck_assert_error_has(TG_ESTATE, "tg_linear", "W was made on another tape");
  tg_tape_free(other);
  /* NULL x or W: NULL without a new message; NULL b: no bias */
  tg_clear_error();
  ck_assert_ptr_null(tg_linear(t, NULL, b34, v4, TG_ACT_NONE));
  ck_assert_ptr_null(tg_linear(t, a23, NULL, v4, TG_ACT_TANH));
  ck_assert_ptr_null(tg_linear(NULL, NULL, b34, v4, TG_ACT_NONE));
  ck_assert_int_eq(tg_last_status(), TG_OK);
  ck_assert_ptr_nonnull(tg_linear(t, a23, b34, v4, TG_ACT_RELU));
  ck_assert_ptr_nonnull(tg_linear(t, a23, b34, NULL, TG_ACT_TANH));
}
END_TEST

START_TEST(elementwise_errors) {
  ck_assert_ptr_null(tg_add(t, a23, v4));
  ck_assert_error_has(TG_ESHAPE, "tg_add", "[2,3]", "[4]");
  ck_assert_ptr_null(tg_add(t, a23, b32));
  ck_assert_error_has(TG_ESHAPE, "tg_add", "[3,2]");
  ck_assert_ptr_null(tg_add(t, a23, f32_23));
  ck_assert_error_has(TG_EDTYPE, "tg_add", "float64", "float32");
  ck_assert_ptr_nonnull(tg_add(t, a23, v3)); /* bias broadcast */
  ck_assert_ptr_null(tg_mul(t, a23, b32));
  ck_assert_error_has(TG_ESHAPE, "tg_mul: shapes do not broadcast", "[2,3]",
                      "[3,2]");
  ck_assert_ptr_nonnull(tg_mul(t, a23, v3)); /* mul broadcasts too */
  ck_assert_ptr_null(tg_mul(t, a23, v4));
  ck_assert_error_has(TG_ESHAPE, "tg_mul", "a is [2,3], b is [4]");
  ck_assert_ptr_null(tg_sub(t, a23, v4));
  ck_assert_error_has(TG_ESHAPE, "tg_sub: shapes do not broadcast: a is [2,3], b is [4]");
  ck_assert_ptr_null(tg_where(t, a23, a23, b23)); /* a float mask */
  ck_assert_error_has(TG_EDTYPE, "tg_where", "mask", "int32");
  ck_assert_ptr_null(tg_mul(t, f32_23, b23));
  ck_assert_error_has(TG_EDTYPE, "tg_mul");
  ck_assert_ptr_null(tg_sigmoid(t, cls2));
  ck_assert_error_has(TG_EDTYPE, "tg_sigmoid", "int32");
  ck_assert_ptr_null(tg_log(t, cls2));
  ck_assert_error_has(TG_EDTYPE, "tg_log");
  ck_assert_ptr_null(tg_scale(t, a23, NAN));
  ck_assert_error_has(TG_EINVAL, "tg_scale", "NaN");
  ck_assert_ptr_null(tg_sum_axis(t, a23, 2));
  ck_assert_error_has(TG_ERANGE, "tg_sum_axis", "axis 2", "[2,3]");
  ck_assert_ptr_null(tg_sum_axis(t, a23, -3));
  ck_assert_error_has(TG_ERANGE, "axis -3");
  ck_assert_ptr_null(tg_softmax(t, cls2));
  ck_assert_error_has(TG_EDTYPE, "tg_softmax");
}
END_TEST

START_TEST(loss_errors) {
  tg_tensor *bad = tg_tensor_from(TG_I32, TG_SHAPE(2), (int32_t[]){1, 3});
  ck_assert_ptr_null(tg_softmax_nll(t, a23, bad));
  ck_assert_error_has(TG_ERANGE, "tg_softmax_nll", "class index 3", "row 1", "3 classes");
  tg_set(bad, 1, -1);
  ck_assert_ptr_null(tg_softmax_nll(t, a23, bad));
  ck_assert_error_has(TG_ERANGE, "class index -1");
  ck_assert_ptr_null(tg_pick(t, a23, bad));
  ck_assert_error_has(TG_ERANGE, "tg_pick", "class index -1");
  tg_tensor_free(bad);
  tg_tensor *three = tg_tensor_from(TG_I32, TG_SHAPE(3), (int32_t[]){0, 0, 0});
  ck_assert_ptr_null(tg_softmax_nll(t, a23, three));
  ck_assert_error_has(TG_ESHAPE, "tg_softmax_nll", "[2,3]", "[3]");
  tg_tensor_free(three);
  ck_assert_ptr_null(tg_softmax_nll(t, a23, v3));
  ck_assert_error_has(TG_ESHAPE, "tg_softmax_nll", "[2,3]", "[3]");
  ck_assert_ptr_null(tg_softmax_nll(t, a23, f32_23));
  ck_assert_error_has(TG_EDTYPE, "tg_softmax_nll", "float64", "float32");
  ck_assert_ptr_null(tg_softmax_nll(t, v3, cls2));
  ck_assert_error_has(TG_ESHAPE, "tg_softmax_nll", "2-D", "[3]");
  ck_assert_ptr_null(tg_sigmoid_bce(t, a23, b32));
  ck_assert_error_has(TG_ESHAPE, "tg_sigmoid_bce", "[3,2]");
  ck_assert_ptr_null(tg_sigmoid_bce(t, a23, cls2));
  ck_assert_error_has(TG_EDTYPE, "tg_sigmoid_bce", "int32");
  ck_assert_ptr_null(tg_quadratic(t, a23, b32));
  ck_assert_error_has(TG_ESHAPE, "tg_quadratic", "[2,3]", "[3,2]");
  ck_assert_ptr_null(tg_pick(t, a23, v3));
  ck_assert_error_has(TG_EDTYPE, "tg_pick", "int32", "float64");
}
END_TEST

START_TEST(null_inputs_propagate) {
  /* A NULL input gives NULL and keeps the first message. */
  ck_assert_ptr_null(tg_matmul(t, a23, b23));
  const char *first = "tg_matmul: inner dimensions differ";
  ck_assert_ptr_null(tg_sigmoid(t, NULL));
  ck_assert_ptr_null(tg_add(t, NULL, v3));
  ck_assert_ptr_null(tg_softmax_nll(t, NULL, cls2));
  ck_assert_ptr_null(tg_softmax_nll(t, a23, NULL));
  ck_assert_ptr_null(tg_scale(t, NULL, 2));
  ck_assert_ptr_null(tg_sum_axis(t, NULL, 0));
  ck_assert_error_has(TG_ESHAPE, first);
  /* backward of the NULL loss keeps the failed op's status and message */
  ck_assert_int_eq(tg_backward(t, NULL), TG_ESHAPE);
  ck_assert_error_has(TG_ESHAPE, first);
  tg_clear_error();
  ck_assert_int_eq(tg_backward(t, NULL), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_backward", "NULL");
  ck_assert_ptr_null(tg_exp(NULL, a23));
  ck_assert_error_has(TG_EINVAL, "tg_exp", "tape is NULL");
  ck_assert_int_eq(tg_backward(NULL, a23), TG_EINVAL);
  ck_assert_int_eq(tg_backward_grad(t, a23, NULL), TG_EINVAL);
  tg_tape_free(NULL);
  tg_tape_clear(NULL);
}
END_TEST

START_TEST(backward_errors) {
  tg_tensor *y = tg_sigmoid(t, a23);
  ck_assert_int_eq(tg_backward(t, y), TG_ESHAPE);
  ck_assert_error_has(TG_ESHAPE, "tg_backward", "one element", "[2,3]", "tg_backward_grad");
  ck_assert_int_eq(tg_backward_grad(t, y, v3), TG_ESHAPE);
  ck_assert_error_has(TG_ESHAPE, "tg_backward_grad", "[3]", "[2,3]");
  ck_assert_int_eq(tg_backward_grad(t, y, f32_23), TG_ESHAPE);
  ck_assert_error_has(TG_ESHAPE, "float32", "float64");
  /* a parameter itself is not an op's output */
  ck_assert_int_eq(tg_backward(t, a23), TG_ESTATE);
  ck_assert_error_has(TG_ESTATE, "tg_backward", "not made by an op");
  /* no parameter behind the loss */
  tg_tensor *c = tg_sum(t, b23);
  ck_assert_int_eq(tg_backward(t, c), TG_ESTATE);
  ck_assert_error_has(TG_ESTATE, "depends on no tensor that requires grad");
}
END_TEST

START_TEST(stale_and_foreign_tensors) {
  tg_tensor *L = tg_sum(t, a23);
  tg_tensor *h = tg_exp(t, a23);
  ck_assert_int_eq(tg_backward(t, L), TG_OK);
  tg_tape_clear(t);
  ck_assert_int_eq(tg_backward(t, L), TG_ESTATE);
  ck_assert_error_has(TG_ESTATE, "tg_backward", "tg_tape_clear");
  ck_assert_ptr_null(tg_neg(t, h));
  ck_assert_error_has(TG_ESTATE, "tg_neg", "tg_tape_clear");
  tg_tape *other = tg_tape_new();
  tg_tensor *o = tg_exp(other, a23);
  ck_assert_ptr_null(tg_add(t, a23, o));
  ck_assert_error_has(TG_ESTATE, "tg_add", "b was made on another tape");
  ck_assert_int_eq(tg_backward(t, tg_sum(other, o)), TG_ESTATE);
  ck_assert_error_has(TG_ESTATE, "another tape");
  ck_assert_int_eq(tg_tensor_free(o), TG_ESTATE);
  ck_assert_error_has(TG_ESTATE, "tg_tensor_free", "belongs to a tape");
  ck_assert_int_eq(tg_requires_grad(o, true), TG_ESTATE);
  ck_assert_error_has(TG_ESTATE, "tg_requires_grad");
  tg_tape_free(other);
}
END_TEST

static tg_tensor *sum_fn(tg_tape *tp, tg_tensor *const *p, void *ctx) {
  (void)ctx;
  return tg_sum(tp, p[0]);
}

START_TEST(result_too_large) {
  /* An op whose result would have 2^62 elements is refused before any
   * allocation (matmul of [2^31,1] by [1,2^31] would ask for this; the
   * inputs alone would take 16 GiB, so the guard is driven directly). */
  int64_t n = INT64_C(1) << 31;
  tg_tensor *in[2] = {a23, b34};
  ck_assert_ptr_null(tg__emit(t, &tg__op_matmul, TG_F64, 2, (int64_t[]){n, n}, in, 2));
  ck_assert_error_has(TG_ESHAPE, "tg_matmul", "too many elements", "[2,3]", "[3,4]");
  ck_assert_uint_eq(tg_tape_nodes(t), 0);
}
END_TEST

START_TEST(labels_changed_before_backward) {
  /* Backward uses the class indices checked in forward, not the caller's
   * buffer refilled since (which here would index far out of bounds). */
  tg_tensor *y = tg_tensor_from(TG_I32, TG_SHAPE(2), (int32_t[]){0, 2});
  tg_tape *tp = tg_tape_new();
  tg_tensor *L = tg_softmax_nll(tp, a23, y);
  tg_tensor *P = tg_sum(tp, tg_pick(tp, a23, y));
  tg_set(y, 1, 100000);
  ck_assert_int_eq(tg_backward(tp, L), TG_OK);
  /* a23 is all ones: p = 1/3 everywhere; dz = (p - onehot)/2 */
  ck_assert_double_eq_tol(tg_grad_get(a23, 0), (1.0 / 3 - 1) / 2, 1e-12);
  ck_assert_double_eq_tol(tg_grad_get(a23, 5), (1.0 / 3 - 1) / 2, 1e-12);
  ck_assert_double_eq_tol(tg_grad_get(a23, 4), (1.0 / 3) / 2, 1e-12);
  tg_zero_grad(a23);
  ck_assert_int_eq(tg_backward(tp, P), TG_OK);
  ck_assert_double_eq(tg_grad_get(a23, 5), 1);
  ck_assert_double_eq(tg_grad_get(a23, 4), 0);
  tg_tape_free(tp);
  tg_tensor_free(y);
}
END_TEST

START_TEST(stale_after_a_multi_chunk_clear) {
  /* a step larger than the arena's first chunk: the clear merges the
   * chunks, yet the stale tensors are still recognised */
  tg_tensor *x = tg_ones(TG_F32, TG_SHAPE(512, 1024));
  tg_requires_grad(x, true);
  tg_tensor *h = tg_relu(t, x), *y = tg_relu(t, h), *L = tg_sum(t, y);
  ck_assert_ptr_nonnull(L);
  ck_assert_uint_gt(tg_tape_arena_bytes(t), 1u << 20);
  tg_tape_clear(t);
  ck_assert_ptr_null(tg_relu(t, y));
  ck_assert_error_has(TG_ESTATE, "tg_relu", "tg_tape_clear");
  ck_assert_int_eq(tg_backward(t, L), TG_ESTATE);
  ck_assert_error_has(TG_ESTATE, "tg_backward", "tg_tape_clear");
  tg_tensor_free(x);
}
END_TEST

START_TEST(gradcheck_errors) {
  tg_gradcheck_result res;
  tg_tensor *p32 = tg_zeros(TG_F32, TG_SHAPE(2));
  tg_requires_grad(p32, true);
  ck_assert_int_eq(tg_gradcheck((tg_fn)NULL, NULL, &p32, 1, 0, &res), TG_EINVAL);
  tg_tensor *ps[1] = {p32};
  ck_assert_int_eq(tg_gradcheck(sum_fn, NULL, ps, 1, 0, &res), TG_EDTYPE);
  ck_assert_error_has(TG_EDTYPE, "tg_gradcheck", "params[0] is float32");
  ps[0] = b23; /* float64, not a parameter */
  ck_assert_int_eq(tg_gradcheck(sum_fn, NULL, ps, 1, 0, &res), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "does not require grad");
  tg_tensor_free(p32);
}
END_TEST

int main(void) {
  Suite *s = suite_create("errors");
  TCase *tc = tcase_create("bad input");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, matmul_errors);
  tcase_add_test(tc, linear_errors);
  tcase_add_test(tc, elementwise_errors);
  tcase_add_test(tc, loss_errors);
  tcase_add_test(tc, null_inputs_propagate);
  tcase_add_test(tc, backward_errors);
  tcase_add_test(tc, stale_and_foreign_tensors);
  tcase_add_test(tc, gradcheck_errors);
  tcase_add_test(tc, result_too_large);
  tcase_add_test(tc, labels_changed_before_backward);
  tcase_add_test(tc, stale_after_a_multi_chunk_clear);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
