/* tests/test_nn.c: activations, the dense layer, the minibatch iterator,
 * accuracy and the confusion matrix, a short training run that must learn,
 * and a training loop that allocates nothing after its first step. */
#include <stdio.h>

#include "testutil.h"

static const tg_dtype dtypes[] = {TG_F64, TG_F32};

/* --- activations */

START_TEST(activations) {
  tg_tensor *x = f64_from(TG_SHAPE(3), (double[]){-1, 0, 2});
  tg_tape *t = tg_tape_new();
  ck_assert_ptr_eq(tg_activate(t, x, TG_ACT_NONE), x);
  tg_tensor *s = tg_activate(t, x, TG_ACT_SIGMOID);
  tg_tensor *r = tg_activate(t, x, TG_ACT_RELU);
  tg_tensor *h = tg_activate(t, x, TG_ACT_TANH);
  const double xs[3] = {-1, 0, 2};
  for (int i = 0; i < 3; i++) {
    ck_assert_double_eq_tol(tg_get(s, i), 1 / (1 + exp(-xs[i])), 1e-15);
    ck_assert_double_eq(tg_get(r, i), xs[i] > 0 ? xs[i] : 0);
    ck_assert_double_eq_tol(tg_get(h, i), tanh(xs[i]), 1e-15);
  }
  ck_assert_str_eq(tg_activation_name(TG_ACT_RELU), "relu");
  ck_assert_str_eq(tg_activation_name((tg_activation)9), "unknown");
  ck_assert_ptr_null(tg_activate(t, x, (tg_activation)7));
  ck_assert_error_has(TG_EINVAL, "tg_activate", "unknown activation 7");
  tg_clear_error();
  ck_assert_ptr_null(tg_activate(t, NULL, TG_ACT_RELU));
  ck_assert_int_eq(tg_last_status(), TG_OK); /* NULL in, no new message */
  ck_assert_ptr_null(tg_activate(NULL, x, TG_ACT_NONE));
  ck_assert_error_has(TG_EINVAL, "tg_activate", "tape is NULL");
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

/* --- dense layer */

START_TEST(dense_init) {
  tg_dtype dt = dtypes[_i];
  tg_rng rng;
  tg_rng_seed(&rng, 11);
  tg_dense *d = tg_dense_new(50, 30, dt, TG_ACT_TANH, &rng);
  ck_assert_ptr_nonnull(d);
  tg_tensor *W = tg_dense_weight(d), *b = tg_dense_bias(d);
  ck_assert_int_eq(tg_tensor_dtype(W), dt);
  ck_assert_int_eq(tg_tensor_dim(W, 0), 50);
  ck_assert_int_eq(tg_tensor_dim(W, 1), 30);
  ck_assert_int_eq(tg_tensor_ndim(b), 1);
  ck_assert_int_eq(tg_tensor_dim(b, 0), 30);
  ck_assert(tg_tensor_requires_grad(W) && tg_tensor_requires_grad(b));
  /* Xavier uniform: inside +-sqrt(6/80), and spread out to near the edge */
  double bound = sqrt(6.0 / 80), lo = 0, hi = 0;
  for (int64_t i = 0; i < 1500; i++) {
    double w = tg_get(W, i);
    ck_assert(fabs(w) <= bound);
    lo = w < lo ? w : lo;
    hi = w > hi ? w : hi;
  }
  ck_assert(lo < -0.9 * bound && hi > 0.9 * bound);
  for (int i = 0; i < 30; i++) ck_assert_double_eq(tg_get(b, i), 0);
  tg_tensor *pair[2];
  ck_assert_int_eq(tg_dense_params(d, pair), 2);
  ck_assert_ptr_eq(pair[0], W);
  ck_assert_ptr_eq(pair[1], b);
  ck_assert_int_eq(tg_dense_params(NULL, pair), 0);

  /* He normal for relu: mean 0, std sqrt(2/400) */
  tg_dense *r = tg_dense_new(400, 100, dt, TG_ACT_RELU, &rng);
  ck_assert_ptr_nonnull(r);
  double sum = 0, sq = 0;
  int64_t n = 400 * 100;
  for (int64_t i = 0; i < n; i++) {
    double w = tg_get(tg_dense_weight(r), i);
    sum += w;
    sq += w * w;
  }
  double mean = sum / n, sd = sqrt(sq / n - mean * mean);
  ck_assert_double_eq_tol(mean, 0, 3 * sqrt(2.0 / 400) / sqrt((double)n));
  ck_assert_double_eq_tol(sd, sqrt(2.0 / 400), 0.02 * sqrt(2.0 / 400));

  /* the same seed gives the same layer; the rng moves on */
  tg_rng again;
  tg_rng_seed(&again, 11);
  tg_dense *d2 = tg_dense_new(50, 30, dt, TG_ACT_TANH, &again);
  tg_dense *d3 = tg_dense_new(50, 30, dt, TG_ACT_TANH, &again);
  ck_assert_double_eq(tg_get(tg_dense_weight(d2), 17), tg_get(W, 17));
  ck_assert_double_ne(tg_get(tg_dense_weight(d3), 17), tg_get(W, 17));
  tg_dense_free(d);
  tg_dense_free(r);
  tg_dense_free(d2);
  tg_dense_free(d3);
  tg_dense_free(NULL);
}
END_TEST

START_TEST(dense_forward_and_backward) {
  tg_dtype dt = dtypes[_i];
  tg_rng rng;
  tg_rng_seed(&rng, 1);
  tg_dense *d = tg_dense_new(2, 3, dt, TG_ACT_NONE, &rng);
  tg_tensor *W = tg_dense_weight(d), *b = tg_dense_bias(d);
  const double wv[6] = {1, 2, 3, -1, 0.5, 0}, bv[3] = {0.25, -1, 2};
  for (int i = 0; i < 6; i++) tg_set(W, i, wv[i]);
  for (int i = 0; i < 3; i++) tg_set(b, i, bv[i]);
  tg_tensor *x = tg_zeros(dt, TG_SHAPE(2, 2));
  const double xv[4] = {1, 2, -3, 4};
  for (int i = 0; i < 4; i++) tg_set(x, i, xv[i]);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_dense_forward(t, d, x);
  ck_assert_ptr_nonnull(y);
  ck_assert_int_eq(tg_tensor_dim(y, 0), 2);
  ck_assert_int_eq(tg_tensor_dim(y, 1), 3);
  /* [1 2; -3 4] . [1 2 3; -1 0.5 0] + [0.25 -1 2] */
  const double want[6] = {-1 + 0.25, 3 - 1, 3 + 2, -7 + 0.25, -4 - 1, -9 + 2};
  for (int i = 0; i < 6; i++) ck_assert_double_eq_tol(tg_get(y, i), want[i], 1e-6);
  /* L = sum(y): dW[i][j] = sum_n x[n][i], db[j] = N */
  ck_assert_int_eq(tg_backward(t, tg_sum(t, y)), TG_OK);
  for (int j = 0; j < 3; j++) {
    ck_assert_double_eq_tol(tg_grad_get(W, j), 1 - 3, 1e-6);
    ck_assert_double_eq_tol(tg_grad_get(W, 3 + j), 2 + 4, 1e-6);
    ck_assert_double_eq_tol(tg_grad_get(b, j), 2, 1e-6);
  }
  tg_tape_free(t);
  tg_tensor_free(x);
  tg_dense_free(d);
}
END_TEST

/* tg_dense_act is the layer and its activation in one op: the values and
 * gradients of tg_activate(tg_dense_forward(...)), on one node. */
START_TEST(dense_act_matches_dense_then_activate) {
  tg_dtype dt = dtypes[_i];
  double tol = dt == TG_F64 ? 1e-12 : 1e-5;
  tg_rng rng;
  tg_rng_seed(&rng, 4);
  tg_dense *d = tg_dense_new(6, 5, dt, TG_ACT_TANH, &rng);
  tg_tensor *W = tg_dense_weight(d), *b = tg_dense_bias(d);
  tg_fill_normal(b, &rng, 0, 1);
  tg_tensor *x = tg_zeros(dt, TG_SHAPE(3, 6));
  tg_fill_normal(x, &rng, 0, 1);
  for (int act = TG_ACT_NONE; act <= TG_ACT_TANH; act++) {
    double want_y[15], want_dw[30], want_db[5];
    for (int fused = 0; fused < 2; fused++) {
      tg_tape *t = tg_tape_new();
      size_t nodes = tg_tape_nodes(t);
      tg_tensor *y = fused ? tg_dense_act(t, d, x, (tg_activation)act)
                           : tg_activate(t, tg_dense_forward(t, d, x), (tg_activation)act);
      ck_assert_msg(y != NULL, "%s", tg_last_error());
      if (fused) ck_assert_uint_eq(tg_tape_nodes(t), nodes + 1);
      ck_assert_int_eq(tg_backward(t, tg_sum(t, tg_mul(t, y, y))), TG_OK);
      for (int i = 0; i < 15; i++) {
        if (!fused) want_y[i] = tg_get(y, i);
        else ck_assert_double_eq_tol(tg_get(y, i), want_y[i], tol * (1 + fabs(want_y[i])));
      }
      for (int i = 0; i < 30; i++) {
        double g = tg_grad_get(W, i);
        if (!fused) want_dw[i] = g;
        else ck_assert_double_eq_tol(g, want_dw[i], tol * (1 + fabs(want_dw[i])));
      }
      for (int i = 0; i < 5; i++) {
        double g = tg_grad_get(b, i);
        if (!fused) want_db[i] = g;
        else ck_assert_double_eq_tol(g, want_db[i], tol * (1 + fabs(want_db[i])));
      }
      tg_zero_grad(W);
      tg_zero_grad(b);
      tg_tape_free(t);
    }
  }
  tg_tape *t = tg_tape_new();
  ck_assert_ptr_null(tg_dense_act(t, d, x, (tg_activation)4));
  ck_assert_error_has(TG_EINVAL, "tg_dense_act", "unknown activation 4");
  tg_tensor *x5 = tg_zeros(dt, TG_SHAPE(3, 5));
  ck_assert_ptr_null(tg_dense_act(t, d, x5, TG_ACT_RELU));
  ck_assert_error_has(TG_ESHAPE, "tg_dense_act", "x is [3,5]", "[6,5]", "[N,6]");
  ck_assert_ptr_null(tg_dense_act(t, NULL, x, TG_ACT_RELU));
  ck_assert_error_has(TG_EINVAL, "tg_dense_act", "layer is NULL");
  ck_assert_ptr_null(tg_dense_act(NULL, d, x, TG_ACT_RELU));
  ck_assert_error_has(TG_EINVAL, "tg_dense_act", "tape is NULL");
  tg_clear_error();
  ck_assert_ptr_null(tg_dense_act(t, d, NULL, TG_ACT_RELU));
  ck_assert_int_eq(tg_last_status(), TG_OK);
  tg_tape_free(t);
  tg_tensor_free(x5);
  tg_tensor_free(x);
  tg_dense_free(d);
}
END_TEST

START_TEST(dense_errors) {
  tg_rng rng;
  tg_rng_seed(&rng, 1);
  ck_assert_ptr_null(tg_dense_new(0, 3, TG_F32, TG_ACT_NONE, &rng));
  ck_assert_error_has(TG_ESHAPE, "tg_dense_new", "in is 0", "out is 3");
  ck_assert_ptr_null(tg_dense_new(4, -2, TG_F32, TG_ACT_NONE, &rng));
  ck_assert_error_has(TG_ESHAPE, "tg_dense_new", "out is -2");
  ck_assert_ptr_null(tg_dense_new(4, 3, TG_I32, TG_ACT_NONE, &rng));
  ck_assert_error_has(TG_EDTYPE, "tg_dense_new", "int32");
  ck_assert_ptr_null(tg_dense_new(4, 3, TG_F32, (tg_activation)5, &rng));
  ck_assert_error_has(TG_EINVAL, "tg_dense_new", "unknown activation 5");
  ck_assert_ptr_null(tg_dense_new(4, 3, TG_F32, TG_ACT_RELU, NULL));
  ck_assert_error_has(TG_EINVAL, "tg_dense_new", "rng is NULL");

  tg_dense *d = tg_dense_new(4, 3, TG_F64, TG_ACT_SIGMOID, &rng);
  tg_tape *t = tg_tape_new();
  tg_tensor *x23 = tg_ones(TG_F64, TG_SHAPE(2, 3));
  tg_tensor *x4 = tg_ones(TG_F64, TG_SHAPE(4));
  tg_tensor *x24f = tg_ones(TG_F32, TG_SHAPE(2, 4));
  ck_assert_ptr_null(tg_dense_forward(t, d, x23));
  ck_assert_error_has(TG_ESHAPE, "tg_dense_forward", "x is [2,3]", "[4,3]",
                      "[N,4]");
  ck_assert_ptr_null(tg_dense_forward(t, d, x4));
  ck_assert_error_has(TG_ESHAPE, "tg_dense_forward", "x is [4]");
  ck_assert_ptr_null(tg_dense_forward(t, d, x24f));
  ck_assert_error_has(TG_EDTYPE, "tg_dense_forward", "float32", "float64");
  ck_assert_ptr_null(tg_dense_forward(t, NULL, x23));
  ck_assert_error_has(TG_EINVAL, "tg_dense_forward", "layer is NULL");
  tg_clear_error();
  ck_assert_ptr_null(tg_dense_forward(t, d, NULL));
  ck_assert_int_eq(tg_last_status(), TG_OK);
  ck_assert_ptr_null(tg_dense_weight(NULL));
  ck_assert_ptr_null(tg_dense_bias(NULL));
  tg_tape_free(t);
  tg_tensor_free(x23);
  tg_tensor_free(x4);
  tg_tensor_free(x24f);
  tg_dense_free(d);
}
END_TEST

/* --- the minibatch iterator */

/* Row i of images is {i, 1000 + i, -i} and its label is 3i + 1, so a batch
 * row tells which sample it came from and whether its label travelled with
 * it. */
static void make_data(tg_dtype dt, int64_t n, tg_tensor **images,
                      tg_tensor **labels) {
  int64_t xs[2] = {n, 3};
  *images = tg_zeros(dt, 2, xs);
  *labels = tg_zeros(TG_I32, 1, &n);
  for (int64_t i = 0; i < n; i++) {
    tg_set(*images, 3 * i, (double)i);
    tg_set(*images, 3 * i + 1, 1000.0 + (double)i);
    tg_set(*images, 3 * i + 2, -(double)i);
    tg_set(*labels, i, 3.0 * (double)i + 1);
  }
}

/* Runs one epoch; writes the sample order to order[] (n entries) and
 * checks every row against its label. Returns the number of batches. */
static int epoch_order(tg_batcher *b, int64_t n, int64_t bs, int64_t *order) {
  tg_tensor *x, *y;
  int64_t k = 0;
  int batches = 0, rc;
  while ((rc = tg_batcher_next(b, &x, &y)) == 1) {
    int64_t rows = tg_tensor_dim(x, 0);
    ck_assert_int_eq(tg_tensor_ndim(x), 2);
    ck_assert_int_eq(tg_tensor_dim(x, 1), 3);
    ck_assert_int_eq(tg_tensor_dim(y, 0), rows);
    /* full batches first, then at most one smaller one */
    ck_assert_int_eq(rows, n - k < bs ? n - k : bs);
    for (int64_t r = 0; r < rows; r++) {
      int64_t i = (int64_t)tg_get(x, 3 * r);
      ck_assert_double_eq(tg_get(x, 3 * r + 1), 1000.0 + (double)i);
      ck_assert_double_eq(tg_get(x, 3 * r + 2), -(double)i);
      ck_assert_int_eq((int64_t)tg_get(y, r), 3 * i + 1);
      ck_assert_int_lt(k, n);
      order[k++] = i;
    }
    batches++;
  }
  ck_assert_int_eq(rc, 0);
  ck_assert_int_eq(k, n);
  return batches;
}

static void assert_permutation(const int64_t *order, int64_t n) {
  char seen[64] = {0};
  ck_assert_int_le(n, 64);
  for (int64_t k = 0; k < n; k++) {
    ck_assert(order[k] >= 0 && order[k] < n);
    ck_assert_msg(!seen[order[k]], "sample %lld served twice", (long long)order[k]);
    seen[order[k]] = 1;
  }
}

START_TEST(batcher_covers_every_sample_once) {
  tg_dtype dt = dtypes[_i];
  const int64_t n = 10;
  tg_tensor *images, *labels;
  make_data(dt, n, &images, &labels);
  int64_t sizes[] = {1, 3, 4, 5, 10, 25};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    int64_t bs = sizes[s], eff = bs < n ? bs : n;
    tg_batcher *b = tg_batcher_new(images, labels, bs, 7);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(tg_batcher_batches(b), (n + eff - 1) / eff);
    int64_t order[10];
    /* before any shuffle: in order */
    ck_assert_int_eq(epoch_order(b, n, eff, order), tg_batcher_batches(b));
    for (int64_t k = 0; k < n; k++) ck_assert_int_eq(order[k], k);
    for (int e = 0; e < 4; e++) {
      ck_assert_int_eq(tg_batcher_shuffle(b), TG_OK);
      ck_assert_int_eq(epoch_order(b, n, eff, order), tg_batcher_batches(b));
      assert_permutation(order, n);
    }
    tg_batcher_free(b);
  }
  tg_tensor_free(images);
  tg_tensor_free(labels);
}
END_TEST

START_TEST(batcher_tensors_are_made_once) {
  tg_tensor *images, *labels;
  make_data(TG_F32, 10, &images, &labels);
  tg_batcher *b = tg_batcher_new(images, labels, 4, 3);
  tg_tensor *x[3], *y[3], *x2, *y2;
  for (int k = 0; k < 3; k++) ck_assert_int_eq(tg_batcher_next(b, &x[k], &y[k]), 1);
  ck_assert_ptr_eq(x[0], x[1]); /* the two full batches share tensors */
  ck_assert_ptr_eq(y[0], y[1]);
  ck_assert_ptr_ne(x[2], x[0]); /* the remainder has its own, of 2 rows */
  ck_assert_int_eq(tg_tensor_dim(x[2], 0), 2);
  ck_assert_int_eq(tg_tensor_dim(x[0], 0), 4);
  ck_assert_int_eq(tg_batcher_next(b, &x2, &y2), 0);
  ck_assert_int_eq(tg_batcher_next(b, &x2, &y2), 1); /* rewound itself */
  ck_assert_ptr_eq(x2, x[0]);
  ck_assert_double_eq(tg_get(x2, 0), 0);
  ck_assert_int_eq(tg_batcher_next(b, &x2, &y2), 1);
  ck_assert_double_eq(tg_get(x2, 0), 4);
  ck_assert_int_eq(tg_batcher_rewind(b), TG_OK);
  ck_assert_int_eq(tg_batcher_next(b, &x2, &y2), 1);
  ck_assert_double_eq(tg_get(x2, 0), 0);
  tg_batcher_free(b);
  tg_tensor_free(images);
  tg_tensor_free(labels);
}
END_TEST

START_TEST(batcher_is_deterministic_per_seed) {
  const int64_t n = 50;
  tg_tensor *images, *labels;
  make_data(TG_F32, n, &images, &labels);
  tg_batcher *a = tg_batcher_new(images, labels, 8, 123);
  tg_batcher *a2 = tg_batcher_new(images, labels, 8, 123);
  tg_batcher *c = tg_batcher_new(images, labels, 8, 124);
  int64_t oa[2][50], oa2[2][50], oc[2][50];
  for (int e = 0; e < 2; e++) {
    tg_batcher_shuffle(a);
    tg_batcher_shuffle(a2);
    tg_batcher_shuffle(c);
    epoch_order(a, n, 8, oa[e]);
    epoch_order(a2, n, 8, oa2[e]);
    epoch_order(c, n, 8, oc[e]);
    assert_permutation(oa[e], n);
    assert_permutation(oc[e], n);
    ck_assert_mem_eq(oa[e], oa2[e], sizeof oa[e]); /* same seed, same order */
    ck_assert(memcmp(oa[e], oc[e], sizeof oa[e]) != 0); /* another seed */
  }
  ck_assert(memcmp(oa[0], oa[1], sizeof oa[0]) != 0); /* another epoch */
  /* not merely a rotation or reversal of 0..n-1 */
  int fixed = 0;
  for (int64_t k = 0; k < n; k++) fixed += oa[0][k] == k;
  ck_assert_int_lt(fixed, 10);
  /* the order is the documented one: Fisher-Yates over 0..n-1 driven by
   * tg_rng_below on an rng seeded with the seed, and does not depend on the
   * batch size */
  int64_t want[50];
  tg_rng rng;
  tg_rng_seed(&rng, 123);
  for (int64_t k = 0; k < n; k++) want[k] = k;
  for (int64_t k = n - 1; k > 0; k--) {
    int64_t j = (int64_t)tg_rng_below(&rng, (uint64_t)k + 1), tmp = want[k];
    want[k] = want[j];
    want[j] = tmp;
  }
  ck_assert_mem_eq(want, oa[0], sizeof want);
  /* the next epoch shuffles 0..n-1 afresh with the same rng */
  for (int64_t k = 0; k < n; k++) want[k] = k;
  for (int64_t k = n - 1; k > 0; k--) {
    int64_t j = (int64_t)tg_rng_below(&rng, (uint64_t)k + 1), tmp = want[k];
    want[k] = want[j];
    want[j] = tmp;
  }
  ck_assert_mem_eq(want, oa[1], sizeof want);
  tg_batcher *f = tg_batcher_new(images, labels, 50, 123);
  tg_batcher_shuffle(f);
  int64_t first[50];
  ck_assert_int_eq(epoch_order(f, n, 50, first), 1);
  ck_assert_mem_eq(first, oa[0], sizeof first);
  tg_batcher_free(a);
  tg_batcher_free(a2);
  tg_batcher_free(c);
  tg_batcher_free(f);
  tg_tensor_free(images);
  tg_tensor_free(labels);
}
END_TEST

START_TEST(batcher_errors) {
  tg_tensor *images, *labels;
  make_data(TG_F64, 6, &images, &labels);
  tg_tensor *short_labels = tg_zeros(TG_I32, TG_SHAPE(5));
  tg_tensor *float_labels = tg_zeros(TG_F32, TG_SHAPE(6));
  tg_tensor *flat = tg_zeros(TG_F32, TG_SHAPE(6));
  tg_tensor *int_images = tg_zeros(TG_I32, TG_SHAPE(6, 3));
  ck_assert_ptr_null(tg_batcher_new(NULL, labels, 2, 1));
  ck_assert_error_has(TG_EINVAL, "tg_batcher_new", "images is NULL");
  ck_assert_ptr_null(tg_batcher_new(images, NULL, 2, 1));
  ck_assert_error_has(TG_EINVAL, "tg_batcher_new", "labels is NULL");
  ck_assert_ptr_null(tg_batcher_new(images, short_labels, 2, 1));
  ck_assert_error_has(TG_ESHAPE, "tg_batcher_new", "labels is int32 [5]",
                      "[6,3]", "int32 [6]");
  ck_assert_ptr_null(tg_batcher_new(images, float_labels, 2, 1));
  ck_assert_error_has(TG_EDTYPE, "tg_batcher_new", "labels is float32");
  ck_assert_ptr_null(tg_batcher_new(flat, labels, 2, 1));
  ck_assert_error_has(TG_ESHAPE, "tg_batcher_new", "images is float32 [6]", "2-D");
  ck_assert_ptr_null(tg_batcher_new(int_images, labels, 2, 1));
  ck_assert_error_has(TG_EDTYPE, "tg_batcher_new", "images is int32");
  ck_assert_ptr_null(tg_batcher_new(images, labels, 0, 1));
  ck_assert_error_has(TG_EINVAL, "tg_batcher_new", "batch_size is 0");
  tg_set(labels, 4, -2);
  ck_assert_ptr_null(tg_batcher_new(images, labels, 2, 1));
  ck_assert_error_has(TG_ERANGE, "tg_batcher_new", "labels[4] is -2");
  tg_set(labels, 4, 0);

  tg_tape *t = tg_tape_new();
  tg_tensor *on_tape = tg_scale(t, images, 2);
  ck_assert_ptr_null(tg_batcher_new(on_tape, labels, 2, 1));
  ck_assert_error_has(TG_ESTATE, "tg_batcher_new", "images", "tape");
  tg_tape_free(t);

  tg_batcher *b = tg_batcher_new(images, labels, 2, 1);
  tg_tensor *x = NULL;
  ck_assert_int_eq(tg_batcher_next(b, &x, NULL), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_batcher_next");
  ck_assert_int_eq(tg_batcher_next(NULL, &x, &x), TG_EINVAL);
  ck_assert_int_eq(tg_batcher_shuffle(NULL), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_batcher_shuffle");
  ck_assert_int_eq(tg_batcher_rewind(NULL), TG_EINVAL);
  ck_assert_int_eq(tg_batcher_batches(NULL), 0);
  tg_batcher_free(b);
  tg_batcher_free(NULL);
  tg_tensor *all[] = {images, labels, short_labels, float_labels, flat, int_images};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) tg_tensor_free(all[i]);
}
END_TEST

/* --- metrics */

/* Four rows of three classes: a clear win, a tie (lowest index wins), a
 * NaN that must not win, and a tie between the ends. */
static tg_tensor *hand_scores(tg_dtype dt) {
  const double v[12] = {0.1, 0.7, 0.2, 0.5, 0.5, 0.1, NAN, 1, 2, 3, -1, 3};
  tg_tensor *s = tg_zeros(dt, TG_SHAPE(4, 3));
  for (int i = 0; i < 12; i++) tg_set(s, i, v[i]);
  return s;
}

START_TEST(accuracy_and_confusion) {
  tg_dtype dt = dtypes[_i];
  tg_tensor *s = hand_scores(dt);
  /* predictions 1, 0, 2, 0 */
  tg_tensor *y = tg_tensor_from(TG_I32, TG_SHAPE(4), (int32_t[]){1, 1, 2, 2});
  ck_assert_double_eq(tg_accuracy(s, y), 0.5);
  tg_tensor *y_all = tg_tensor_from(TG_I32, TG_SHAPE(4), (int32_t[]){1, 0, 2, 0});
  ck_assert_double_eq(tg_accuracy(s, y_all), 1.0);
  int64_t m[9] = {0};
  ck_assert_int_eq(tg_confusion(s, y, m), TG_OK);
  ck_assert_int_eq(tg_confusion(s, y_all, m), TG_OK); /* accumulates */
  const int64_t want[9] = {/* true 0 */ 2, 0, 0,
                           /* true 1 */ 1, 2, 0,
                           /* true 2 */ 1, 0, 2};
  ck_assert_mem_eq(m, want, sizeof want);

  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ck_assert_int_eq(tg_confusion_print(f, m, 3), TG_OK);
  fclose(f);
  ck_assert_str_eq(buf,
                   "true\\pred 0 1 2\n"
                   "        0 2 0 0\n"
                   "        1 1 2 0\n"
                   "        2 1 0 2\n"
                   "accuracy 0.7500 (6 of 8)\n");
  free(buf);
  tg_tensor_free(s);
  tg_tensor_free(y);
  tg_tensor_free(y_all);
}
END_TEST

START_TEST(confusion_print_widths) {
  const int64_t m[4] = {1234, 5, 0, 7};
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ck_assert_int_eq(tg_confusion_print(f, m, 2), TG_OK);
  const int64_t zero[1] = {0};
  ck_assert_int_eq(tg_confusion_print(f, zero, 1), TG_OK);
  fclose(f);
  ck_assert_str_eq(buf,
                   "true\\pred    0    1\n"
                   "        0 1234    5\n"
                   "        1    0    7\n"
                   "accuracy 0.9960 (1241 of 1246)\n"
                   "true\\pred 0\n"
                   "        0 0\n"
                   "accuracy - (0 samples)\n");
  free(buf);
  ck_assert_int_eq(tg_confusion_print(stdout, m, 0), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_confusion_print", "C is 0");
  ck_assert_int_eq(tg_confusion_print(NULL, m, 2), TG_EINVAL);
  const int64_t neg[1] = {-1};
  ck_assert_int_eq(tg_confusion_print(stdout, neg, 1), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_confusion_print", "entry 0 is -1");
}
END_TEST

START_TEST(metric_errors) {
  tg_tensor *s = hand_scores(TG_F32);
  tg_tensor *bad = tg_tensor_from(TG_I32, TG_SHAPE(4), (int32_t[]){0, 3, 1, 1});
  tg_tensor *neg = tg_tensor_from(TG_I32, TG_SHAPE(4), (int32_t[]){0, 1, -1, 1});
  tg_tensor *y3 = tg_tensor_from(TG_I32, TG_SHAPE(3), (int32_t[]){0, 1, 1});
  tg_tensor *s1 = tg_zeros(TG_F32, TG_SHAPE(12));
  int64_t m[9] = {0};
  ck_assert_double_eq(tg_accuracy(s, bad), TG_ERANGE);
  ck_assert_error_has(TG_ERANGE, "tg_accuracy", "labels[1] is 3", "[0, 3)");
  ck_assert_int_eq(tg_confusion(s, neg, m), TG_ERANGE);
  ck_assert_error_has(TG_ERANGE, "tg_confusion", "labels[2] is -1");
  for (int i = 0; i < 9; i++) ck_assert_int_eq(m[i], 0); /* nothing added */
  ck_assert_double_lt(tg_accuracy(s, y3), 0);
  ck_assert_error_has(TG_ESHAPE, "tg_accuracy", "labels is int32 [3]", "[4,3]",
                      "int32 [4]");
  ck_assert_double_lt(tg_accuracy(s1, y3), 0);
  ck_assert_error_has(TG_ESHAPE, "tg_accuracy", "scores is float32 [12]", "2-D");
  ck_assert_double_lt(tg_accuracy(y3, y3), 0);
  ck_assert_double_lt(tg_accuracy(NULL, y3), 0);
  ck_assert_error_has(TG_EINVAL, "tg_accuracy", "NULL");
  ck_assert_int_eq(tg_confusion(s, y3, NULL), TG_ESHAPE);
  tg_tensor *ok = tg_tensor_from(TG_I32, TG_SHAPE(4), (int32_t[]){0, 0, 0, 0});
  ck_assert_int_eq(tg_confusion(s, ok, NULL), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_confusion", "matrix is NULL");
  /* scores from a tape are fine until its clear */
  tg_tape *t = tg_tape_new();
  tg_tensor *z = tg_scale(t, s, 1);
  ck_assert_double_eq(tg_accuracy(z, ok), 0.5);
  tg_tape_clear(t);
  ck_assert_double_lt(tg_accuracy(z, ok), 0);
  ck_assert_error_has(TG_ESTATE, "tg_accuracy", "tg_tape_clear");
  tg_tape_free(t);
  tg_tensor *all[] = {s, bad, neg, y3, s1, ok};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) tg_tensor_free(all[i]);
}
END_TEST

/* --- training */

/* 4 Gaussian blobs in 2-D, centres (+-2, +-2), sd 0.6; label = blob. */
static void make_blobs(int64_t n, uint64_t seed, tg_tensor **x, tg_tensor **y) {
  static const double cx[4] = {-2, 2, -2, 2}, cy[4] = {-2, -2, 2, 2};
  tg_rng rng;
  tg_rng_seed(&rng, seed);
  int64_t xs[2] = {n, 2};
  *x = tg_zeros(TG_F32, 2, xs);
  *y = tg_zeros(TG_I32, 1, &n);
  float *xv = tg_tensor_f32(*x);
  int32_t *yv = tg_tensor_i32(*y);
  for (int64_t i = 0; i < n; i++) {
    int k = (int)(i % 4);
    yv[i] = k;
    xv[2 * i] = (float)(cx[k] + 0.6 * tg_rng_normal(&rng));
    xv[2 * i + 1] = (float)(cy[k] + 0.6 * tg_rng_normal(&rng));
  }
}

typedef struct {
  tg_dense *l1, *l2;
  tg_tensor *params[4];
  tg_optim *opt;
  bool fused; /* the hidden layer by tg_dense_act, not dense then activate */
} net;

static void net_new(net *m, tg_rng *rng) {
  m->l1 = tg_dense_new(2, 8, TG_F32, TG_ACT_SIGMOID, rng);
  m->l2 = tg_dense_new(8, 4, TG_F32, TG_ACT_NONE, rng);
  ck_assert_ptr_nonnull(m->l1);
  ck_assert_ptr_nonnull(m->l2);
  int n = tg_dense_params(m->l1, m->params);
  n += tg_dense_params(m->l2, m->params + n);
  tg_sgd_config cfg = {.lr = 0.5, .momentum = 0.9};
  m->opt = tg_sgd_new(m->params, n, &cfg);
  ck_assert_ptr_nonnull(m->opt);
  m->fused = false;
}

static void net_free(net *m) {
  tg_optim_free(m->opt);
  tg_dense_free(m->l1);
  tg_dense_free(m->l2);
}

static tg_tensor *logits(tg_tape *t, const net *m, tg_tensor *x) {
  tg_tensor *h = m->fused ? tg_dense_act(t, m->l1, x, TG_ACT_SIGMOID)
                         : tg_activate(t, tg_dense_forward(t, m->l1, x), TG_ACT_SIGMOID);
  return tg_dense_forward(t, m->l2, h);
}

/* One step; returns the batch loss. */
static double train_step(tg_tape *t, net *m, tg_tensor *x, tg_tensor *y) {
  tg_tensor *loss = tg_softmax_nll(t, logits(t, m, x), y);
  ck_assert_msg(loss != NULL, "%s", tg_last_error());
  double l = tg_get(loss, 0);
  ck_assert_int_eq(tg_backward(t, loss), TG_OK);
  ck_assert_int_eq(tg_optim_step(m->opt), TG_OK);
  ck_assert_int_eq(tg_optim_zero_grad(m->opt), TG_OK);
  tg_tape_clear(t);
  return l;
}

/* Loss and accuracy over the whole set, recording nothing. */
static void evaluate(tg_tape *t, const net *m, tg_tensor *x, tg_tensor *y,
                     double *loss, double *acc) {
  bool was = tg_tape_set_grad(t, false);
  tg_tensor *z = logits(t, m, x);
  *loss = tg_get(tg_softmax_nll(t, z, y), 0);
  *acc = tg_accuracy(z, y);
  tg_tape_clear(t);
  tg_tape_set_grad(t, was);
}

/* _i: 1 with the fused hidden layer. */
START_TEST(two_layer_net_learns_blobs) {
  tg_tensor *x, *y;
  make_blobs(400, 5, &x, &y);
  tg_rng rng;
  tg_rng_seed(&rng, 17);
  net m;
  net_new(&m, &rng);
  m.fused = _i;
  tg_tape *t = tg_tape_new();
  tg_batcher *b = tg_batcher_new(x, y, 32, 99); /* 12 batches of 32, one of 16 */
  double loss0, acc0, loss, acc;
  evaluate(t, &m, x, y, &loss0, &acc0);
  tg_tensor *bx, *by;
  for (int epoch = 0; epoch < 20; epoch++) {
    ck_assert_int_eq(tg_batcher_shuffle(b), TG_OK);
    while (tg_batcher_next(b, &bx, &by) == 1) train_step(t, &m, bx, by);
  }
  evaluate(t, &m, x, y, &loss, &acc);
  ck_assert_msg(loss < 0.25 * loss0, "loss went from %g to %g", loss0, loss);
  ck_assert_msg(acc >= 0.95, "training accuracy %g (was %g)", acc, acc0);
  int64_t cm[16] = {0};
  bool was = tg_tape_set_grad(t, false);
  ck_assert_int_eq(tg_confusion(logits(t, &m, x), y, cm), TG_OK);
  tg_tape_set_grad(t, was);
  int64_t right = 0;
  for (int k = 0; k < 4; k++) right += cm[5 * k];
  ck_assert_double_eq_tol((double)right / 400, acc, 1e-12);
  tg_tape_free(t);
  tg_batcher_free(b);
  net_free(&m);
  tg_tensor_free(x);
  tg_tensor_free(y);
}
END_TEST

/* _i: 1 with the fused hidden layer, whose backward buffer comes from the
 * arena like everything else. */
START_TEST(steady_state_allocates_nothing) {
  counting_allocator(true);
  tg_tensor *x, *y;
  make_blobs(100, 6, &x, &y);
  tg_rng rng;
  tg_rng_seed(&rng, 2);
  net m;
  net_new(&m, &rng);
  m.fused = _i;
  tg_tape *t = tg_tape_new();
  tg_batcher *b = tg_batcher_new(x, y, 32, 1); /* 3 of 32 and one of 4 */
  tg_tensor *bx, *by;
  ck_assert_int_eq(tg_batcher_next(b, &bx, &by), 1);
  train_step(t, &m, bx, by); /* the first step sizes the arena and node list */
  long allocs = *test_allocs(), frees = *test_frees();
  ck_assert_int_gt(allocs, 0); /* the counter does see the library */
  for (int epoch = 0; epoch < 3; epoch++) {
    ck_assert_int_eq(tg_optim_set_lr(m.opt, tg_lr_cosine(0.5, epoch, 3, 0.01)),
                     TG_OK);
    while (tg_batcher_next(b, &bx, &by) == 1) train_step(t, &m, bx, by);
    ck_assert_int_eq(tg_batcher_shuffle(b), TG_OK);
    double loss, acc;
    evaluate(t, &m, x, y, &loss, &acc); /* on the whole set, in no-grad mode */
    ck_assert(acc >= 0 && isfinite(loss));
  }
  ck_assert_int_eq(*test_allocs(), allocs);
  ck_assert_int_eq(*test_frees(), frees);
  tg_tape_free(t);
  tg_batcher_free(b);
  net_free(&m);
  tg_tensor_free(x);
  tg_tensor_free(y);
  ck_assert_int_eq(*test_frees(), *test_allocs());
  counting_allocator(false);
}
END_TEST


/* A mostly-zero input takes the sparse product, whose buffers in the arena
 * are sized by the shapes, not by the batch's non-zeros: a later batch with
 * many more non-zeros than the first must not make the arena grow. The
 * layer on it is fused with its activation (tg_dense_act). */
START_TEST(steady_state_sparse_input_allocates_nothing) {
  counting_allocator(true);
  const int64_t n = 96, d = 16384; /* the sparse form outgrows a 1 MiB chunk */
  tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(n, d)), *y = tg_zeros(TG_I32, TG_SHAPE(n));
  tg_rng rng;
  tg_rng_seed(&rng, 3);
  for (int64_t i = 0; i < n; i++) {
    double dens = i < 32 ? 0.02 : 0.28; /* the first batch has the fewest */
    for (int64_t k = 0; k < d; k++)
      if (tg_rng_uniform(&rng) < dens) tg_set(x, i * d + k, 1 + tg_rng_uniform(&rng));
    tg_set(y, i, (double)(i % 4));
  }
  /* a fused relu layer on the sparse input, then the output layer */
  tg_dense *l = tg_dense_new(d, 8, TG_F32, TG_ACT_RELU, &rng);
  tg_dense *l2 = tg_dense_new(8, 4, TG_F32, TG_ACT_NONE, &rng);
  ck_assert_ptr_nonnull(l);
  ck_assert_ptr_nonnull(l2);
  tg_tensor *p[4];
  int np = tg_dense_params(l, p);
  np += tg_dense_params(l2, p + np);
  tg_sgd_config cfg = TG_SGD_DEFAULTS;
  cfg.lr = 0.1;
  tg_optim *opt = tg_sgd_new(p, np, &cfg);
  tg_tape *t = tg_tape_new();
  tg_batcher *b = tg_batcher_new(x, y, 32, 1); /* in order until shuffled */
  long allocs = -1, frees = -1;
  for (int epoch = 0; epoch < 3; epoch++) {
    tg_tensor *bx, *by;
    while (tg_batcher_next(b, &bx, &by) == 1) {
      tg_tensor *h = tg_dense_act(t, l, bx, TG_ACT_RELU);
      tg_tensor *loss = tg_softmax_nll(t, tg_dense_forward(t, l2, h), by);
      ck_assert_ptr_nonnull(loss);
      ck_assert_int_eq(tg_backward(t, loss), TG_OK);
      ck_assert_int_eq(tg_optim_step(opt), TG_OK);
      ck_assert_int_eq(tg_optim_zero_grad(opt), TG_OK);
      tg_tape_clear(t);
      if (allocs < 0) allocs = *test_allocs(), frees = *test_frees();
    }
  }
  ck_assert_int_eq(*test_allocs(), allocs);
  ck_assert_int_eq(*test_frees(), frees);
  tg_tape_free(t);
  tg_batcher_free(b);
  tg_optim_free(opt);
  tg_dense_free(l);
  tg_dense_free(l2);
  tg_tensor_free(x);
  tg_tensor_free(y);
  /* (no alloc/free balance here: the first step's arena growth reallocs
   * its chunk list, which the counter sees as an allocation only) */
  counting_allocator(false);
}
END_TEST

/* The layers of a convolutional network other than the convolution: batch
 * norm over channels, relu, max and average pooling, the global pool,
 * batch norm over features, dropout, a dense layer and the fused loss,
 * trained with SGD and evaluated in evaluation mode between epochs: after
 * the first step, nothing more is allocated (the argmax positions, the
 * statistics and the masks all live in the tape's arena). */
START_TEST(steady_state_pool_batch_norm_allocates_nothing) {
  counting_allocator(true);
  tg_rng rng;
  tg_rng_seed(&rng, 8);
  tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(16, 3, 8, 8));
  tg_tensor *y = tg_zeros(TG_I32, TG_SHAPE(16));
  tg_fill_normal(x, &rng, 0, 1);
  for (int i = 0; i < 16; i++) tg_set(y, i, i % 4);
  tg_batch_norm_layer *bn = tg_batch_norm_layer_new(3, TG_F32),
                      *bn1 = tg_batch_norm_layer_new(3, TG_F32);
  tg_dropout_layer *drop = tg_dropout_layer_new(0.25, 5);
  tg_dense *out = tg_dense_new(3, 4, TG_F32, TG_ACT_NONE, &rng);
  ck_assert(bn && bn1 && drop && out);
  tg_tensor *p[6];
  int np = tg_batch_norm_layer_params(bn, p);
  np += tg_batch_norm_layer_params(bn1, p + np);
  np += tg_dense_params(out, p + np);
  tg_sgd_config cfg = TG_SGD_DEFAULTS;
  cfg.lr = 0.1;
  cfg.momentum = 0.9;
  tg_optim *opt = tg_sgd_new(p, np, &cfg);
  tg_tape *t = tg_tape_new();
  long allocs = -1, frees = -1;
  for (int epoch = 0; epoch < 3; epoch++) {
    for (int step = 0; step < 4; step++) {
      tg_tensor *h = tg_relu(t, tg_batch_norm_layer_forward(t, bn, x));
      h = tg_max_pool2d(t, h, 2, 2, 2, 2, 0, 0);    /* [16,3,4,4] */
      h = tg_avg_pool2d(t, h, 3, 3, 1, 1, 1, 1);    /* [16,3,4,4] */
      h = tg_global_avg_pool2d(t, h);               /* [16,3] */
      h = tg_dropout_layer_forward(t, drop, tg_batch_norm_layer_forward(t, bn1, h));
      tg_tensor *loss = tg_softmax_nll(t, tg_dense_forward(t, out, h), y);
      ck_assert_msg(loss != NULL, "%s", tg_last_error());
      ck_assert_int_eq(tg_backward(t, loss), TG_OK);
      ck_assert_int_eq(tg_optim_step(opt), TG_OK);
      ck_assert_int_eq(tg_optim_zero_grad(opt), TG_OK);
      tg_tape_clear(t);
      if (allocs < 0) allocs = *test_allocs(), frees = *test_frees();
    }
    /* evaluation: running statistics, no dropout, nothing recorded */
    tg_batch_norm_layer_set_training(bn, false);
    tg_batch_norm_layer_set_training(bn1, false);
    tg_dropout_layer_set_training(drop, false);
    bool was = tg_tape_set_grad(t, false);
    tg_tensor *h = tg_relu(t, tg_batch_norm_layer_forward(t, bn, x));
    h = tg_global_avg_pool2d(t, tg_avg_pool2d(t, tg_max_pool2d(t, h, 2, 2, 2, 2, 0, 0),
                                              3, 3, 1, 1, 1, 1));
    h = tg_dense_forward(t, out, tg_batch_norm_layer_forward(t, bn1, h));
    ck_assert_msg(h != NULL, "%s", tg_last_error());
    double acc = tg_accuracy(h, y);
    ck_assert(acc >= 0 && acc <= 1);
    tg_tape_clear(t);
    tg_tape_set_grad(t, was);
    tg_batch_norm_layer_set_training(bn, true);
    tg_batch_norm_layer_set_training(bn1, true);
    tg_dropout_layer_set_training(drop, true);
  }
  ck_assert_int_gt(allocs, 0);
  ck_assert_int_eq(*test_allocs(), allocs);
  ck_assert_int_eq(*test_frees(), frees);
  tg_tape_free(t);
  tg_optim_free(opt);
  tg_batch_norm_layer_free(bn);
  tg_batch_norm_layer_free(bn1);
  tg_dropout_layer_free(drop);
  tg_dense_free(out);
  tg_tensor_free(x);
  tg_tensor_free(y);
  counting_allocator(false);
}
END_TEST

int main(void) {
  Suite *s = suite_create("nn");
  TCase *tc = tcase_create("layers");
  tcase_add_test(tc, activations);
  tcase_add_loop_test(tc, dense_init, 0, 2);
  tcase_add_loop_test(tc, dense_forward_and_backward, 0, 2);
  tcase_add_loop_test(tc, dense_act_matches_dense_then_activate, 0, 2);
  tcase_add_test(tc, dense_errors);
  suite_add_tcase(s, tc);
  tc = tcase_create("batcher");
  tcase_add_loop_test(tc, batcher_covers_every_sample_once, 0, 2);
  tcase_add_test(tc, batcher_tensors_are_made_once);
  tcase_add_test(tc, batcher_is_deterministic_per_seed);
  tcase_add_test(tc, batcher_errors);
  suite_add_tcase(s, tc);
  tc = tcase_create("metrics");
  tcase_add_loop_test(tc, accuracy_and_confusion, 0, 2);
  tcase_add_test(tc, confusion_print_widths);
  tcase_add_test(tc, metric_errors);
  suite_add_tcase(s, tc);
  tc = tcase_create("training");
  tcase_add_loop_test(tc, two_layer_net_learns_blobs, 0, 2);
  tcase_add_loop_test(tc, steady_state_allocates_nothing, 0, 2);
  tcase_add_test(tc, steady_state_sparse_input_allocates_nothing);
  tcase_add_test(tc, steady_state_pool_batch_norm_allocates_nothing);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
