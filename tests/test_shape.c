/* tests/test_shape.c: the shape ops by hand, on values worked out on paper:
 * which results are views (the same data pointer) and which are copies,
 * gradients through views, and caller-owned row views (tg_rows). The
 * generic checks of every op are in test_ops. */
#include "testutil.h"

static tg_tensor *seq(int ndim, const int64_t *shape) {
  tg_tensor *x = tg_zeros(TG_F64, ndim, shape);
  ck_assert_ptr_nonnull(x);
  for (int64_t i = 0; i < x->numel; i++) tg_set(x, i, (double)(i + 1));
  return x;
}

static void assert_values(const tg_tensor *x, const double *want, int64_t n) {
  ck_assert_int_eq(x->numel, n);
  for (int64_t i = 0; i < n; i++)
    ck_assert_msg(tg_get(x, i) == want[i], "element %lld: %g, want %g",
                  (long long)i, tg_get(x, i), want[i]);
}

static void assert_grad(const tg_tensor *x, const double *want) {
  for (int64_t i = 0; i < x->numel; i++)
    ck_assert_msg(tg_grad_get(x, i) == want[i], "grad %lld: %g, want %g",
                  (long long)i, tg_grad_get(x, i), want[i]);
}

static void assert_shape(const tg_tensor *x, int ndim, const int64_t *shape) {
  ck_assert_int_eq(x->ndim, ndim);
  for (int d = 0; d < ndim; d++) ck_assert_int_eq(x->shape[d], shape[d]);
}

START_TEST(reshape_is_a_view_and_passes_the_gradient) {
  tg_tensor *a = seq(TG_SHAPE(2, 3));
  tg_requires_grad(a, true);
  tg_tape *t = tg_tape_new();
  tg_tensor *r = tg_reshape(t, a, TG_SHAPE(3, -1));
  ck_assert_ptr_nonnull(r);
  ck_assert_ptr_eq(r->data, a->data);
  assert_shape(r, TG_SHAPE(3, 2));
  tg_tensor *r2 = tg_reshape(t, r, TG_SHAPE(6)); /* a view of a view */
  ck_assert_ptr_eq(r2->data, a->data);
  tg_tensor *g = seq(TG_SHAPE(6));
  ck_assert_int_eq(tg_backward_grad(t, r2, g), TG_OK);
  assert_grad(a, (const double[]){1, 2, 3, 4, 5, 6});
  /* a tape result too */
  tg_tensor *s = tg_scale(t, a, 2), *rs = tg_reshape(t, s, TG_SHAPE(1, 6, 1));
  ck_assert_ptr_eq(rs->data, s->data);
  assert_values(rs, (const double[]){2, 4, 6, 8, 10, 12}, 6);
  tg_tape_free(t);
  tg_tensor_free(a);
  tg_tensor_free(g);
}
END_TEST

START_TEST(reshape_of_0d_and_back) {
  tg_tensor *a = tg_zeros(TG_F64, 0, NULL);
  tg_set(a, 0, 2.5);
  tg_requires_grad(a, true);
  tg_tape *t = tg_tape_new();
  tg_tensor *r1 = tg_reshape(t, a, TG_SHAPE(1));
  tg_tensor *r0 = tg_reshape(t, r1, 0, NULL);
  ck_assert_ptr_nonnull(r0);
  ck_assert_ptr_eq(r1->data, a->data);
  ck_assert_ptr_eq(r0->data, a->data);
  ck_assert_int_eq(r1->ndim, 1);
  ck_assert_int_eq(r0->ndim, 0);
  ck_assert_double_eq(tg_get(r0, 0), 2.5);
  ck_assert_int_eq(tg_backward(t, tg_scale(t, r0, 3)), TG_OK);
  ck_assert_double_eq(tg_grad_get(a, 0), 3);
  tg_tape_free(t);
  tg_tensor_free(a);
}
END_TEST

START_TEST(reshape_refuses_bad_shapes) {
  tg_tensor *a = seq(TG_SHAPE(2, 3));
  tg_tape *t = tg_tape_new();
  ck_assert_ptr_null(tg_reshape(t, a, TG_SHAPE(4, 2)));
  ck_assert_error_has(TG_ESHAPE, "tg_reshape", "[2,3]", "[4,2]");
  ck_assert_ptr_null(tg_reshape(t, a, 5, (const int64_t[]){6, 1, 1, 1, 1}));
  ck_assert_error_has(TG_ESHAPE, "tg_reshape", "ndim is 5");
  ck_assert_ptr_null(tg_reshape(t, a, 2, NULL));
  ck_assert_error_has(TG_EINVAL, "tg_reshape", "NULL");
  ck_assert_ptr_null(tg_reshape(t, a, TG_SHAPE(-1, -1)));
  ck_assert_error_has(TG_ESHAPE, "tg_reshape", "-1");
  tg_clear_error();
  ck_assert_ptr_null(tg_reshape(t, NULL, TG_SHAPE(6)));
  ck_assert_int_eq(tg_last_status(), TG_OK); /* NULL in, NULL out, no message */
  tg_tape_free(t);
  tg_tensor_free(a);
}
END_TEST

START_TEST(slices_are_views_when_contiguous) {
  tg_tensor *a = seq(TG_SHAPE(4, 3));
  tg_requires_grad(a, true);
  tg_tape *t = tg_tape_new();
  const double *ad = a->data;
  tg_tensor *s = tg_slice(t, a, 0, 1, 3, 1);
  ck_assert_ptr_eq(s->data, ad + 3);
  assert_shape(s, TG_SHAPE(2, 3));
  assert_values(s, (const double[]){4, 5, 6, 7, 8, 9}, 6);
  tg_tensor *s2 = tg_slice(t, s, -2, -1, 5, 1); /* a view of a view */
  ck_assert_ptr_eq(s2->data, ad + 6);
  tg_tensor *r = tg_reshape(t, s2, TG_SHAPE(1, 3));
  tg_tensor *s3 = tg_slice(t, r, 1, 1, 3, 1); /* outer dims of size 1 */
  ck_assert_ptr_eq(s3->data, ad + 7);
  assert_values(s3, (const double[]){8, 9}, 2);
  tg_tensor *one = tg_slice(t, a, 0, 3, 100, 5); /* a single row */
  ck_assert_ptr_eq(one->data, ad + 9);
  tg_tensor *g = tg_ones(TG_F64, TG_SHAPE(1, 2));
  ck_assert_int_eq(tg_backward_grad(t, s3, g), TG_OK);
  assert_grad(a, (const double[]){0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0});
  tg_tape_free(t);
  tg_tensor_free(a);
  tg_tensor_free(g);
}
END_TEST

START_TEST(strided_slices_are_copies) {
  tg_tensor *a = seq(TG_SHAPE(4, 3));
  tg_requires_grad(a, true);
  tg_tape *t = tg_tape_new();
  tg_tensor *s = tg_slice(t, a, 1, 0, 3, 2);
  ck_assert_ptr_ne(s->data, a->data);
  assert_values(s, (const double[]){1, 3, 4, 6, 7, 9, 10, 12}, 8);
  tg_tensor *c = tg_slice(t, a, -1, -100, -1, 1); /* start clamped to 0 */
  assert_shape(c, TG_SHAPE(4, 2));
  assert_values(c, (const double[]){1, 2, 4, 5, 7, 8, 10, 11}, 8);
  tg_tensor *r = tg_slice(t, a, 0, -3, 4, 2); /* rows 1 and 3 */
  assert_values(r, (const double[]){4, 5, 6, 10, 11, 12}, 6);
  tg_tensor *g = seq(TG_SHAPE(4, 2));
  ck_assert_int_eq(tg_backward_grad(t, c, g), TG_OK);
  assert_grad(a, (const double[]){1, 2, 0, 3, 4, 0, 5, 6, 0, 7, 8, 0});
  tg_tensor *e = tg_slice(t, a, 0, 3, 1, 1); /* empty */
  ck_assert_ptr_nonnull(e);
  assert_shape(e, TG_SHAPE(0, 3));
  tg_tensor *e2 = tg_slice(t, a, 1, 2, 2, 3);
  assert_shape(e2, TG_SHAPE(4, 0));
  ck_assert_ptr_null(tg_slice(t, a, 0, 0, 4, 0));
  ck_assert_error_has(TG_EINVAL, "tg_slice", "step is 0");
  ck_assert_ptr_null(tg_slice(t, a, 2, 0, 4, 1));
  ck_assert_error_has(TG_ERANGE, "tg_slice", "axis 2", "[4,3]");
  tg_tape_free(t);
  tg_tensor_free(a);
  tg_tensor_free(g);
}
END_TEST

START_TEST(transpose_by_hand) {
  tg_tensor *a = seq(TG_SHAPE(2, 3));
  tg_requires_grad(a, true);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_transpose(t, a, 0, 1), *z = tg_transpose(t, a, -1, 0);
  assert_shape(y, TG_SHAPE(3, 2));
  assert_values(y, (const double[]){1, 4, 2, 5, 3, 6}, 6);
  assert_values(z, (const double[]){1, 4, 2, 5, 3, 6}, 6);
  tg_tensor *g = seq(TG_SHAPE(3, 2));
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  assert_grad(a, (const double[]){1, 3, 5, 2, 4, 6});
  tg_tensor *b = seq(TG_SHAPE(2, 1, 3));
  tg_tensor *p = tg_permute(t, b, (const int[]){2, 0, 1});
  assert_shape(p, TG_SHAPE(3, 2, 1));
  assert_values(p, (const double[]){1, 4, 2, 5, 3, 6}, 6);
  ck_assert_ptr_null(tg_transpose(t, a, 0, 2));
  ck_assert_error_has(TG_ERANGE, "tg_transpose", "d1 is 2", "[2,3]");
  ck_assert_ptr_null(tg_permute(t, b, (const int[]){0, 0, 1}));
  ck_assert_error_has(TG_EINVAL, "tg_permute", "repeats axis 0");
  ck_assert_ptr_null(tg_permute(t, b, (const int[]){0, -1, 1}));
  ck_assert_error_has(TG_EINVAL, "tg_permute", "perm[1] is -1");
  ck_assert_ptr_null(tg_permute(t, b, NULL));
  ck_assert_error_has(TG_EINVAL, "tg_permute", "NULL");
  tg_tape_free(t);
  tg_tensor_free(a);
  tg_tensor_free(b);
  tg_tensor_free(g);
}
END_TEST

START_TEST(concat_and_stack_values) {
  tg_tensor *x = seq(TG_SHAPE(2, 2)), *y = tg_tensor_from(TG_F64, TG_SHAPE(2, 1),
                                                         (const double[]){5, 6});
  tg_requires_grad(x, true);
  tg_requires_grad(y, true);
  tg_tape *t = tg_tape_new();
  tg_tensor *c = tg_concat(t, (tg_tensor *[]){x, y}, 2, -1);
  assert_shape(c, TG_SHAPE(2, 3));
  assert_values(c, (const double[]){1, 2, 5, 3, 4, 6}, 6);
  tg_tensor *g = seq(TG_SHAPE(2, 3));
  ck_assert_int_eq(tg_backward_grad(t, c, g), TG_OK);
  assert_grad(x, (const double[]){1, 2, 4, 5});
  assert_grad(y, (const double[]){3, 6});
  tg_tensor *c0 = tg_concat(t, (tg_tensor *[]){x, x}, 2, 0);
  assert_values(c0, (const double[]){1, 2, 3, 4, 1, 2, 3, 4}, 8);
  tg_tensor *s0 = tg_stack(t, (tg_tensor *[]){x, x}, 2, 0);
  assert_shape(s0, TG_SHAPE(2, 2, 2));
  assert_values(s0, (const double[]){1, 2, 3, 4, 1, 2, 3, 4}, 8);
  tg_tensor *s2 = tg_stack(t, (tg_tensor *[]){x, c0}, 2, -1);
  ck_assert_ptr_null(s2);
  ck_assert_error_has(TG_ESHAPE, "tg_stack", "xs[1] is [4,2], xs[0] is [2,2]");
  tg_tensor *x2 = tg_scale(t, x, 10);
  tg_tensor *s3 = tg_stack(t, (tg_tensor *[]){x, x2}, 2, -1);
  assert_shape(s3, TG_SHAPE(2, 2, 2));
  assert_values(s3, (const double[]){1, 10, 2, 20, 3, 30, 4, 40}, 8);
  tg_tensor *s1 = tg_stack(t, (tg_tensor *[]){x, x2}, 2, 1);
  assert_values(s1, (const double[]){1, 2, 10, 20, 3, 4, 30, 40}, 8);
  ck_assert_ptr_null(tg_concat(t, (tg_tensor *[]){x, y}, 2, 0));
  ck_assert_error_has(TG_ESHAPE, "tg_concat", "xs[1] is [2,1], xs[0] is [2,2]");
  ck_assert_ptr_null(tg_concat(t, (tg_tensor *[]){x}, 0, 0));
  ck_assert_error_has(TG_EINVAL, "tg_concat", "0 inputs");
  tg_tensor *four = tg_zeros(TG_F64, TG_SHAPE(1, 1, 1, 2));
  ck_assert_ptr_null(tg_stack(t, (tg_tensor *[]){four}, 1, 0));
  ck_assert_error_has(TG_ESHAPE, "tg_stack", "5 dimensions");
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_tensor_free(y);
  tg_tensor_free(g);
  tg_tensor_free(four);
}
END_TEST

START_TEST(pad_values_and_interior_gradient) {
  tg_tensor *a = seq(TG_SHAPE(2, 2));
  tg_requires_grad(a, true);
  tg_tape *t = tg_tape_new();
  tg_tensor *p = tg_pad(t, a, (const int64_t[]){1, 0}, (const int64_t[]){0, 2}, 9);
  ck_assert_ptr_nonnull(p);
  assert_shape(p, TG_SHAPE(3, 4));
  assert_values(p, (const double[]){9, 9, 9, 9, 1, 2, 9, 9, 3, 4, 9, 9}, 12);
  tg_tensor *g = seq(TG_SHAPE(3, 4));
  ck_assert_int_eq(tg_backward_grad(t, p, g), TG_OK);
  assert_grad(a, (const double[]){5, 6, 9, 10});
  ck_assert_ptr_null(tg_pad(t, a, (const int64_t[]){0, -1}, (const int64_t[]){0, 0}, 0));
  ck_assert_error_has(TG_EINVAL, "tg_pad", "before[1] is -1");
  ck_assert_ptr_null(tg_pad(t, a, (const int64_t[]){0, 0}, (const int64_t[]){(int64_t)1 << 40, 0}, 0));
  ck_assert_error_has(TG_ESHAPE, "tg_pad", "after[0]");
  ck_assert_ptr_null(tg_pad(t, a, NULL, (const int64_t[]){0, 0}, 0));
  ck_assert_error_has(TG_EINVAL, "tg_pad", "required");
  tg_tape_free(t);
  tg_tensor_free(a);
  tg_tensor_free(g);
}
END_TEST

START_TEST(gather_repeated_indices_accumulate) {
  tg_tensor *a = seq(TG_SHAPE(2, 3));
  tg_requires_grad(a, true);
  tg_tensor *index = tg_tensor_from(TG_I32, TG_SHAPE(2, 4),
                                    (const int32_t[]){0, 0, 2, 0, 1, 1, 1, 2});
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_gather(t, a, 1, index);
  assert_shape(y, TG_SHAPE(2, 4));
  assert_values(y, (const double[]){1, 1, 3, 1, 5, 5, 5, 6}, 8);
  tg_fill(index, 0); /* backward must use the indices forward checked */
  tg_tensor *g = tg_ones(TG_F64, TG_SHAPE(2, 4));
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  assert_grad(a, (const double[]){3, 0, 1, 0, 3, 1});
  tg_tensor *i0 = tg_tensor_from(TG_I32, TG_SHAPE(3, 2), (const int32_t[]){1, 0, 1, 1, 0, 0});
  tg_tensor *y0 = tg_gather(t, a, -2, i0);
  assert_values(y0, (const double[]){4, 2, 4, 5, 1, 2}, 6);
  tg_set(i0, 5, 2);
  ck_assert_ptr_null(tg_gather(t, a, 0, i0));
  ck_assert_error_has(TG_ERANGE, "tg_gather", "index 2 at position [2,1]");
  tg_set(i0, 5, -1);
  ck_assert_ptr_null(tg_gather(t, a, 0, i0));
  ck_assert_error_has(TG_ERANGE, "tg_gather", "index -1 at position [2,1]");
  tg_tensor *wide = tg_zeros(TG_I32, TG_SHAPE(1, 4));
  ck_assert_ptr_null(tg_gather(t, a, 0, wide));
  ck_assert_error_has(TG_ESHAPE, "tg_gather", "index is [1,4], a is [2,3]");
  tg_tape_free(t);
  tg_tensor_free(a);
  tg_tensor_free(index);
  tg_tensor_free(i0);
  tg_tensor_free(wide);
  tg_tensor_free(g);
}
END_TEST

START_TEST(rows_share_data_and_refuse_tape_tensors) {
  tg_tensor *a = seq(TG_SHAPE(5, 2));
  const double *ad = a->data;
  tg_tensor *v = tg_rows(a, 1, 4);
  ck_assert_ptr_nonnull(v);
  ck_assert_ptr_eq(v->data, ad + 2);
  assert_shape(v, TG_SHAPE(3, 2));
  assert_values(v, (const double[]){3, 4, 5, 6, 7, 8}, 6);
  tg_tensor *w = tg_rows(v, 1, 2); /* a view of a view */
  ck_assert_ptr_eq(w->data, ad + 4);
  tg_tensor *e = tg_rows(a, 5, 5);
  ck_assert_ptr_nonnull(e);
  ck_assert_int_eq(e->numel, 0);
  tg_set(w, 0, 50); /* writes show through */
  ck_assert_double_eq(tg_get(a, 4), 50);
  tg_tape *t = tg_tape_new();
  tg_tensor *s = tg_sum(t, v);
  ck_assert_double_eq(tg_get(s, 0), 3 + 4 + 50 + 6 + 7 + 8);
  ck_assert_ptr_null(tg_rows(s, 0, 1));
  ck_assert_error_has(TG_ESTATE, "tg_rows", "tape");
  ck_assert_ptr_null(tg_rows(a, 3, 6));
  ck_assert_error_has(TG_ERANGE, "tg_rows", "[3, 6)", "[5,2]");
  ck_assert_ptr_null(tg_rows(a, 3, 2));
  ck_assert_error_has(TG_ERANGE, "tg_rows");
  tg_tensor *z = tg_zeros(TG_F64, 0, NULL);
  ck_assert_ptr_null(tg_rows(z, 0, 0));
  ck_assert_error_has(TG_ESHAPE, "tg_rows", "0-d");
  ck_assert_int_eq(tg_requires_grad(v, true), TG_OK); /* a grad of its own */
  ck_assert_int_eq(tg_tensor_free(w), TG_OK);
  ck_assert_int_eq(tg_tensor_free(e), TG_OK);
  ck_assert_int_eq(tg_tensor_free(v), TG_OK);
  ck_assert_double_eq(tg_get(a, 9), 10); /* a is intact */
  tg_tensor *labels = tg_tensor_from(TG_I32, TG_SHAPE(4), (const int32_t[]){7, 1, 4, 2});
  tg_tensor *val = tg_rows(labels, 2, 4); /* int32 labels split alike */
  ck_assert_int_eq(val->dtype, TG_I32);
  ck_assert_ptr_eq(val->data, (int32_t *)labels->data + 2);
  ck_assert_double_eq(tg_get(val, 1), 2);
  tg_tensor_free(val);
  tg_tensor_free(labels);
  tg_tape_free(t);
  tg_tensor_free(a);
  tg_tensor_free(z);
}
END_TEST

/* permute (after a reshape) on shapes large enough to go over threads,
 * with the last axis kept (contiguous rows) and moved (strided): every
 * element against the
 * index formula, forward and backward (g = y's own values, so dx must
 * come back as x), and the same bits on one thread and two. */
START_TEST(permute_large_over_threads) {
  static const int perms[2][4] = {{0, 2, 1, 3}, {3, 1, 0, 2}};
  const int64_t shape[4] = {8, 64, 18, 33}, n = 8 * 64 * 18 * 33;
  tg__par_guard_enable(false); /* two threads whenever the op asks */
  for (int pi = 0; pi < 2; pi++) {
    const int *p = perms[pi];
    float *out[2];
    for (int thr = 1; thr <= 2; thr++) {
      ck_assert_int_eq(tg_set_num_threads(thr), TG_OK);
      tg_tensor *x = tg_zeros(TG_F32, 4, shape);
      float *xs = tg_tensor_f32(x);
      for (int64_t i = 0; i < n; i++) xs[i] = (float)i;
      ck_assert_int_eq(tg_requires_grad(x, true), TG_OK);
      tg_tape *t = tg_tape_new();
      /* through a reshape, whose backward adds over threads too */
      tg_tensor *y = tg_permute(t, tg_reshape(t, x, 4, shape), p);
      ck_assert_msg(y != NULL, "%s", tg_last_error());
      const float *ys = tg_tensor_f32(y);
      int64_t yd[4], k = 0, bad = -1, want = 0;
      for (int d = 0; d < 4; d++) yd[d] = shape[p[d]];
      for (int64_t i0 = 0; i0 < yd[0]; i0++)
        for (int64_t i1 = 0; i1 < yd[1]; i1++)
          for (int64_t i2 = 0; i2 < yd[2]; i2++)
            for (int64_t i3 = 0; i3 < yd[3]; i3++, k++) {
              int64_t j[4], ii[4] = {i0, i1, i2, i3};
              for (int d = 0; d < 4; d++) j[p[d]] = ii[d];
              int64_t src = ((j[0] * shape[1] + j[1]) * shape[2] + j[2]) * shape[3] + j[3];
              if (bad < 0 && ys[k] != (float)src) bad = k, want = src;
            }
      /* one assertion for the lot: each one costs a write to Check's pipe */
      ck_assert_msg(bad < 0, "perm %d: y[%lld] %g, want %lld", pi, (long long)bad,
                    bad < 0 ? 0 : ys[bad], (long long)want);
      tg_tensor *g = tg_zeros(TG_F32, 4, yd);
      memcpy(tg_tensor_f32(g), ys, (size_t)n * sizeof(float));
      ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
      const float *dx = tg_tensor_f32(tg_tensor_grad(x));
      for (int64_t i = 0; i < n && bad < 0; i++)
        if (dx[i] != (float)i) bad = i;
      ck_assert_msg(bad < 0, "perm %d: dx[%lld] %g", pi, (long long)bad,
                    bad < 0 ? 0 : dx[bad]);
      out[thr - 1] = malloc((size_t)n * sizeof(float));
      memcpy(out[thr - 1], ys, (size_t)n * sizeof(float));
      tg_tape_free(t);
      tg_tensor_free(g);
      tg_tensor_free(x);
    }
    ck_assert(!memcmp(out[0], out[1], (size_t)n * sizeof(float)));
    free(out[0]);
    free(out[1]);
  }
  tg__par_guard_enable(true);
}
END_TEST

int main(void) {
  Suite *s = suite_create("shape");
  TCase *tc = tcase_create("shape ops");
  tcase_add_test(tc, reshape_is_a_view_and_passes_the_gradient);
  tcase_add_test(tc, reshape_of_0d_and_back);
  tcase_add_test(tc, reshape_refuses_bad_shapes);
  tcase_add_test(tc, slices_are_views_when_contiguous);
  tcase_add_test(tc, strided_slices_are_copies);
  tcase_add_test(tc, transpose_by_hand);
  tcase_add_test(tc, permute_large_over_threads);
  tcase_add_test(tc, concat_and_stack_values);
  tcase_add_test(tc, pad_values_and_interior_gradient);
  tcase_add_test(tc, gather_repeated_indices_accumulate);
  tcase_add_test(tc, rows_share_data_and_refuse_tape_tensors);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
