/* tests/test_nn.c: activations, the dense and convolution layers, the
 * minibatch iterator, accuracy and the confusion matrix, a short training
 * run that must learn, and training loops (dense, and a small CNN) that
 * allocate nothing after their first steps. */
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

/* The fused layer on a batch large enough to split its bias fill, its
 * activation and its derivative (by elements) and the bias gradient (by
 * columns) over threads: one thread and two give the same bits, and the
 * values match the composed layer's. */
START_TEST(dense_act_large_over_threads) {
  const int64_t N = 700, K = 64, O = 600;
  tg__par_guard_enable(false); /* two threads whenever the op asks */
  for (int act = TG_ACT_NONE; act <= TG_ACT_TANH; act++) {
    float *got[2];
    size_t len = (size_t)(N * O + K * O + O + N * K);
    for (int thr = 1; thr <= 2; thr++) {
      ck_assert_int_eq(tg_set_num_threads(thr), TG_OK);
      tg_rng rng;
      tg_rng_seed(&rng, 12);
      tg_dense *d = tg_dense_new(K, O, TG_F32, TG_ACT_RELU, &rng);
      tg_tensor *W = tg_dense_weight(d), *b = tg_dense_bias(d);
      tg_fill_normal(b, &rng, 0, 1);
      tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(N, K));
      tg_fill_normal(x, &rng, 0, 1);
      ck_assert_int_eq(tg_requires_grad(x, true), TG_OK);
      tg_tape *t = tg_tape_new();
      tg_tensor *y = tg_dense_act(t, d, x, (tg_activation)act);
      ck_assert_msg(y != NULL, "%s", tg_last_error());
      ck_assert_int_eq(tg_backward(t, tg_sum(t, tg_mul(t, y, y))), TG_OK);
      float *o = got[thr - 1] = malloc(len * sizeof(float));
      memcpy(o, tg_tensor_f32(y), (size_t)(N * O) * sizeof(float));
      memcpy(o + N * O, tg_tensor_f32(tg_tensor_grad(W)), (size_t)(K * O) * sizeof(float));
      memcpy(o + N * O + K * O, tg_tensor_f32(tg_tensor_grad(b)), (size_t)O * sizeof(float));
      memcpy(o + N * O + K * O + O, tg_tensor_f32(tg_tensor_grad(x)),
             (size_t)(N * K) * sizeof(float));
      if (thr == 2) { /* the composed layer, on two threads too */
        tg_zero_grad(W);
        tg_zero_grad(b);
        tg_zero_grad(x);
        tg_tensor *z = tg_activate(t, tg_dense_forward(t, d, x), (tg_activation)act);
        ck_assert_int_eq(tg_backward(t, tg_sum(t, tg_mul(t, z, z))), TG_OK);
        const float *zs = tg_tensor_f32(z), *dbs = tg_tensor_f32(tg_tensor_grad(b));
        for (int64_t i = 0; i < N * O; i++)
          if (!(fabsf(zs[i] - o[i]) <= 1e-5f * (1 + fabsf(zs[i]))))
            ck_abort_msg("act %d: y[%lld] %g, composed %g", act, (long long)i,
                         o[i], zs[i]);
        for (int64_t j = 0; j < O; j++) {
          float want = dbs[j], have = o[N * O + K * O + j];
          ck_assert_msg(fabsf(want - have) <= 1e-4f * (1 + fabsf(want)),
                        "act %d: db[%lld] %g, composed %g", act, (long long)j, have, want);
        }
      }
      tg_tape_free(t);
      tg_tensor_free(x);
      tg_dense_free(d);
    }
    ck_assert_msg(!memcmp(got[0], got[1], len * sizeof(float)), "act %d", act);
    free(got[0]);
    free(got[1]);
  }
  tg__par_guard_enable(true);
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

/* --- 2-D convolution layer */

START_TEST(conv_init) {
  tg_dtype dt = dtypes[_i];
  counting_allocator(true);
  tg_rng rng;
  tg_rng_seed(&rng, 5);
  tg_conv_spec spec = {.in = 8, .out = 128, .kh = 5, .kw = 3, .groups = 2,
                       .pad_h = 1};
  tg_conv *c = tg_conv_new(&spec, dt, &rng);
  ck_assert_msg(c != NULL, "%s", tg_last_error());
  tg_tensor *W = tg_conv_weight(c), *b = tg_conv_bias(c);
  ck_assert_int_eq(tg_tensor_dtype(W), dt);
  ck_assert_int_eq(tg_tensor_ndim(W), 4);
  int64_t want[4] = {128, 4, 5, 3};
  for (int i = 0; i < 4; i++) ck_assert_int_eq(tg_tensor_dim(W, i), want[i]);
  ck_assert_int_eq(tg_tensor_ndim(b), 1);
  ck_assert_int_eq(tg_tensor_dim(b, 0), 128);
  ck_assert(tg_tensor_requires_grad(W) && tg_tensor_requires_grad(b));
  for (int i = 0; i < 128; i++) ck_assert_double_eq(tg_get(b, i), 0);
  /* He normal with fan_in = in/groups * kh * kw = 60 */
  double sd0 = sqrt(2.0 / 60), sum = 0, sq = 0;
  int64_t n = tg_tensor_numel(W);
  ck_assert_int_eq(n, 128 * 60);
  for (int64_t i = 0; i < n; i++) {
    double w = tg_get(W, i);
    sum += w;
    sq += w * w;
  }
  double mean = sum / n, sd = sqrt(sq / n - mean * mean);
  ck_assert_double_eq_tol(mean, 0, 4 * sd0 / sqrt((double)n));
  ck_assert_double_eq_tol(sd, sd0, 0.04 * sd0);
  /* the spec kept, with the defaults resolved */
  const tg_conv_spec *s = tg_conv_get_spec(c);
  ck_assert_int_eq(s->in, 8);
  ck_assert_int_eq(s->out, 128);
  ck_assert_int_eq(s->stride_h, 1);
  ck_assert_int_eq(s->stride_w, 1);
  ck_assert_int_eq(s->dil_h, 1);
  ck_assert_int_eq(s->dil_w, 1);
  ck_assert_int_eq(s->groups, 2);
  ck_assert_int_eq(s->pad_h, 1);
  ck_assert_int_eq(s->pad_w, 0);
  ck_assert_ptr_null(tg_conv_get_spec(NULL));
  tg_tensor *p[3] = {NULL, NULL, NULL};
  ck_assert_int_eq(tg_conv_params(c, p), 2);
  ck_assert_ptr_eq(p[0], W);
  ck_assert_ptr_eq(p[1], b);
  ck_assert_ptr_null(p[2]);
  ck_assert_int_eq(tg_conv_params(NULL, p), 0);
  ck_assert_int_eq(tg_conv_params(c, NULL), 0);
  /* the same seed gives the same layer; the rng moves on */
  tg_rng again;
  tg_rng_seed(&again, 5);
  tg_conv *c2 = tg_conv_new(&spec, dt, &again);
  tg_conv *c3 = tg_conv_new(&spec, dt, &again);
  ck_assert_double_eq(tg_get(tg_conv_weight(c2), 77), tg_get(W, 77));
  ck_assert_double_ne(tg_get(tg_conv_weight(c3), 77), tg_get(W, 77));
  tg_conv_free(c);
  tg_conv_free(c2);
  tg_conv_free(c3);
  tg_conv_free(NULL);
  ck_assert_int_gt(*test_allocs(), 0);
  ck_assert_int_eq(*test_frees(), *test_allocs()); /* nothing leaks */
  counting_allocator(false);
}
END_TEST

/* The layer is tg_conv2d with its spec: the same values and gradients. */
START_TEST(conv_forward_and_backward) {
  tg_dtype dt = dtypes[_i];
  tg_rng rng;
  tg_rng_seed(&rng, 8);
  tg_conv_spec spec = {.in = 4, .out = 6, .kh = 3, .kw = 2, .stride_h = 2,
                       .pad_h = 1, .pad_w = 2, .dil_w = 2, .groups = 2};
  tg_conv *c = tg_conv_new(&spec, dt, &rng);
  ck_assert_ptr_nonnull(c);
  ck_assert_int_eq(tg_fill_normal(tg_conv_bias(c), &rng, 0, 1), TG_OK);
  tg_tensor *x = tg_zeros(dt, TG_SHAPE(2, 4, 7, 6));
  ck_assert_int_eq(tg_fill_normal(x, &rng, 0, 1), TG_OK);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_conv_forward(t, c, x);
  ck_assert_msg(y != NULL, "%s", tg_last_error());
  /* H' = (7 + 2 - 2 - 1)/2 + 1 = 4, W' = (6 + 4 - 2 - 1)/1 + 1 = 8 */
  int64_t want[4] = {2, 6, 4, 8};
  ck_assert_int_eq(tg_tensor_ndim(y), 4);
  for (int i = 0; i < 4; i++) ck_assert_int_eq(tg_tensor_dim(y, i), want[i]);
  ck_assert_int_eq(tg_backward(t, tg_sum(t, tg_square(t, y))), TG_OK);
  tg_tensor *W = tg_conv_weight(c), *b = tg_conv_bias(c);
  tg_tensor *gW = tg_tensor_clone(tg_tensor_grad(W)),
            *gb = tg_tensor_clone(tg_tensor_grad(b));
  ck_assert_ptr_nonnull(gW);
  ck_assert_ptr_nonnull(gb);
  tg_zero_grad(W);
  tg_zero_grad(b);
  tg_tensor *z = tg_conv2d(t, x, W, b, 2, 1, 1, 2, 1, 2, 2);
  ck_assert_ptr_nonnull(z);
  for (int64_t i = 0; i < tg_tensor_numel(y); i++)
    ck_assert_double_eq(tg_get(y, i), tg_get(z, i));
  ck_assert_int_eq(tg_backward(t, tg_sum(t, tg_square(t, z))), TG_OK);
  double gsum = 0;
  for (int64_t i = 0; i < tg_tensor_numel(gW); i++) {
    ck_assert_double_eq(tg_get(gW, i), tg_get(tg_tensor_grad(W), i));
    gsum += fabs(tg_get(gW, i));
  }
  for (int64_t i = 0; i < 6; i++)
    ck_assert_double_eq(tg_get(gb, i), tg_get(tg_tensor_grad(b), i));
  ck_assert(gsum > 0);
  tg_tape_free(t);
  tg_tensor_free(gW);
  tg_tensor_free(gb);
  tg_tensor_free(x);
  tg_conv_free(c);
}
END_TEST

/* tg_conv2d against plain loops, on calls large enough to split the batch
 * over threads and to sum the weight gradient in chunks (the op list's
 * small cases never do), and the same to the bit on 1 and 2 threads and
 * on the generic vector path (where the forward's packing from x takes
 * its portable select instead of AVX-512's masked loads). */
typedef struct {
  int64_t x[4], w[4];
  int st[2], pad[2], dil[2], groups;
} conv_cfg;

static const conv_cfg big_convs[] = {
    {{8, 16, 16, 16}, {32, 8, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 2},
    {{40, 16, 17, 15}, {32, 16, 3, 2}, {2, 2}, {2, 2}, {2, 2}, 1},
    {{8, 64, 16, 16}, {64, 64, 1, 1}, {1, 1}, {0, 0}, {1, 1}, 1}, /* no im2col */
    /* C R S >= 256: the forward over several images' columns at once,
     * with a last batch of fewer images (7 = 3 + 3 + 1 on one thread) */
    {{7, 32, 14, 14}, {16, 16, 4, 4}, {1, 1}, {2, 2}, {1, 1}, 2},
    {{5, 32, 15, 13}, {8, 32, 3, 3}, {2, 1}, {1, 2}, {2, 1}, 1},
    /* stride 2, dilation 2, unequal padding, groups, odd sizes: P = 14 x
     * 12, nb = 4, so 4 + 1 images on one thread, 2 and 3 on two */
    {{5, 24, 31, 29}, {20, 12, 5, 5}, {2, 2}, {2, 1}, {2, 2}, 2},
    /* stride 1 unpadded, Wo < W: the packed panels span output rows that
     * do not read consecutive x */
    {{8, 40, 9, 7}, {48, 40, 3, 3}, {1, 1}, {0, 0}, {1, 1}, 1},
    /* C R S < K / groups: the weight gradient's chunks summed transposed
     * (conv1 of the CNN; and in groups) */
    {{8, 1, 28, 28}, {32, 1, 5, 5}, {1, 1}, {2, 2}, {1, 1}, 1},
    {{10, 4, 20, 19}, {64, 2, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 2},
};

/* y, dx, dw and db of sum(y * g) by the definition. */
static void conv_loops(const conv_cfg *c, const double *x, const double *w,
                       const double *b, const double *g, int64_t ho,
                       int64_t wo, double *y, double *dx, double *dw,
                       double *db) {
  int64_t N = c->x[0], C = c->x[1], H = c->x[2], W = c->x[3], K = c->w[0],
          Cg = c->w[1], R = c->w[2], S = c->w[3], Kg = K / c->groups;
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++)
      for (int64_t i = 0; i < ho; i++)
        for (int64_t j = 0; j < wo; j++) {
          int64_t yi = ((n * K + k) * ho + i) * wo + j;
          double acc = b[k], gy = g[yi];
          db[k] += gy;
          for (int64_t cc = 0; cc < Cg; cc++)
            for (int64_t r = 0; r < R; r++)
              for (int64_t s = 0; s < S; s++) {
                int64_t ih = i * c->st[0] - c->pad[0] + r * c->dil[0],
                        iw = j * c->st[1] - c->pad[1] + s * c->dil[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                int64_t ch = k / Kg * Cg + cc;
                int64_t xi = ((n * C + ch) * H + ih) * W + iw,
                        wi = ((k * Cg + cc) * R + r) * S + s;
                acc += w[wi] * x[xi];
                dx[xi] += w[wi] * gy;
                dw[wi] += x[xi] * gy;
              }
          y[yi] = acc;
        }
}

START_TEST(conv2d_large_matches_loops) {
  const conv_cfg *c = &big_convs[_i];
  tg__par_guard_enable(false); /* two threads whenever the op asks */
  tg_rng rng;
  tg_rng_seed(&rng, 30 + (uint64_t)_i);
  tg_tensor *x = tg_zeros(TG_F64, 4, c->x), *w = tg_zeros(TG_F64, 4, c->w);
  tg_tensor *b = tg_zeros(TG_F64, 1, c->w);
  ck_assert_int_eq(tg_fill_normal(x, &rng, 0, 1), TG_OK);
  ck_assert_int_eq(tg_fill_normal(w, &rng, 0, 1), TG_OK);
  ck_assert_int_eq(tg_fill_normal(b, &rng, 0, 1), TG_OK);
  tg_tensor *in[3] = {x, w, b};
  for (int k = 0; k < 3; k++) ck_assert_int_eq(tg_requires_grad(in[k], true), TG_OK);
  int threads_before = tg_get_num_threads();
  /* y, dx, dw, db on 1 and 2 threads, and on 1 on the generic path */
  tg_tensor *got[3][4] = {{NULL}};
  tg_tensor *g = NULL;
  for (int run = 0; run < 3; run++) {
    int thr = run == 1 ? 2 : 1;
    ck_assert_int_eq(tg_set_num_threads(thr), TG_OK);
    ck_assert_int_eq(tg__simd_set_path(run == 2 ? TG__SIMD_GENERIC : -1),
                     TG_OK);
    for (int k = 0; k < 3; k++) tg_zero_grad(in[k]);
    tg_tape *t = tg_tape_new();
    tg_tensor *y = tg_conv2d(t, x, w, b, c->st[0], c->st[1], c->pad[0],
                             c->pad[1], c->dil[0], c->dil[1], c->groups);
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    if (!g) {
      int64_t ys[4];
      for (int d = 0; d < 4; d++) ys[d] = tg_tensor_dim(y, d);
      g = tg_zeros(TG_F64, 4, ys);
      ck_assert_int_eq(tg_fill_normal(g, &rng, 0, 1), TG_OK);
    }
    ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
    got[run][0] = tg_tensor_clone(y);
    for (int k = 0; k < 3; k++) got[run][k + 1] = tg_tensor_clone(tg_tensor_grad(in[k]));
    tg_tape_free(t);
  }
  ck_assert_int_eq(tg__simd_set_path(-1), TG_OK);
  ck_assert_int_eq(tg_set_num_threads(threads_before), TG_OK);
  int64_t ho = tg_tensor_dim(got[0][0], 2), wo = tg_tensor_dim(got[0][0], 3);
  double *ref[4];
  int64_t len[4] = {tg_tensor_numel(got[0][0]), tg_tensor_numel(x),
                    tg_tensor_numel(w), c->w[0]};
  for (int k = 0; k < 4; k++) {
    ref[k] = calloc((size_t)len[k], sizeof(double));
    ck_assert_ptr_nonnull(ref[k]);
  }
  conv_loops(c, tg_tensor_f64(x), tg_tensor_f64(w), tg_tensor_f64(b),
             tg_tensor_f64(g), ho, wo, ref[0], ref[1], ref[2], ref[3]);
  static const char *const what[4] = {"y", "dx", "dw", "db"};
  for (int k = 0; k < 4; k++) {
    const double *a1 = tg_tensor_f64(got[0][k]), *a2 = tg_tensor_f64(got[1][k]);
    const double *a3 = tg_tensor_f64(got[2][k]);
    for (int64_t i = 0; i < len[k]; i++) {
      ck_assert_msg(a1[i] == a2[i], "%s[%lld]: %.17g on 1 thread, %.17g on 2",
                    what[k], (long long)i, a1[i], a2[i]);
      ck_assert_msg(memcmp(&a1[i], &a3[i], sizeof *a1) == 0,
                    "%s[%lld]: %.17g, on the generic path %.17g", what[k],
                    (long long)i, a1[i], a3[i]);
      ck_assert_msg(fabs(a1[i] - ref[k][i]) <= 1e-10 * (1 + fabs(ref[k][i])),
                    "%s[%lld]: %.17g, the loops %.17g", what[k], (long long)i,
                    a1[i], ref[k][i]);
    }
    free(ref[k]);
    for (int r = 0; r < 3; r++) tg_tensor_free(got[r][k]);
  }
  tg_tensor_free(g);
  for (int k = 0; k < 3; k++) tg_tensor_free(in[k]);
  tg__par_guard_enable(true);
}
END_TEST

/* tg_conv2d on empty sizes (which the op list's gradient checks cannot
 * take): no images, no kernels. The results are empty and backward runs. */
START_TEST(conv2d_empty_sizes) {
  static const int64_t shapes[][2][4] = {
      {{0, 2, 4, 4}, {3, 2, 3, 3}}, /* N = 0 */
      {{2, 2, 4, 4}, {0, 2, 3, 3}}, /* K = 0 */
  };
  for (int i = 0; i < 2; i++) {
    tg_tensor *x = tg_ones(TG_F64, 4, shapes[i][0]);
    tg_tensor *w = tg_ones(TG_F64, 4, shapes[i][1]);
    ck_assert_int_eq(tg_requires_grad(x, true), TG_OK);
    ck_assert_int_eq(tg_requires_grad(w, true), TG_OK);
    tg_tape *t = tg_tape_new();
    tg_tensor *y = tg_conv2d(t, x, w, NULL, 1, 1, 1, 1, 1, 1, 1);
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    ck_assert_int_eq(tg_tensor_numel(y), 0);
    ck_assert_int_eq(tg_tensor_dim(y, 0), shapes[i][0][0]);
    ck_assert_int_eq(tg_tensor_dim(y, 1), shapes[i][1][0]);
    ck_assert_int_eq(tg_tensor_dim(y, 2), 4);
    int64_t ys[4];
    for (int d = 0; d < 4; d++) ys[d] = tg_tensor_dim(y, d);
    tg_tensor *g = tg_zeros(TG_F64, 4, ys);
    ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
    for (int64_t k = 0; k < tg_tensor_numel(w); k++)
      ck_assert_double_eq(tg_get(tg_tensor_grad(w), k), 0);
    for (int64_t k = 0; k < tg_tensor_numel(x); k++)
      ck_assert_double_eq(tg_get(tg_tensor_grad(x), k), 0);
    tg_tape_free(t);
    tg_tensor_free(g);
    tg_tensor_free(x);
    tg_tensor_free(w);
  }
}
END_TEST

START_TEST(conv_errors) {
  tg_rng rng;
  tg_rng_seed(&rng, 1);
  tg_conv_spec ok = {.in = 2, .out = 4, .kh = 3, .kw = 3};
  ck_assert_ptr_null(tg_conv_new(NULL, TG_F32, &rng));
  ck_assert_error_has(TG_EINVAL, "tg_conv_new", "spec is NULL");
  ck_assert_ptr_null(tg_conv_new(&ok, TG_F32, NULL));
  ck_assert_error_has(TG_EINVAL, "tg_conv_new", "rng is NULL");
  ck_assert_ptr_null(tg_conv_new(&ok, TG_I32, &rng));
  ck_assert_error_has(TG_EDTYPE, "tg_conv_new", "int32");
  tg_conv_spec bad = ok;
  bad.in = 0;
  ck_assert_ptr_null(tg_conv_new(&bad, TG_F32, &rng));
  ck_assert_error_has(TG_ESHAPE, "tg_conv_new", "in 0, out 4, kernel 3x3");
  bad = ok;
  bad.kw = 0;
  ck_assert_ptr_null(tg_conv_new(&bad, TG_F32, &rng));
  ck_assert_error_has(TG_ESHAPE, "tg_conv_new", "kernel 3x0");
  bad = ok;
  bad.groups = 3;
  ck_assert_ptr_null(tg_conv_new(&bad, TG_F32, &rng));
  ck_assert_error_has(TG_ESHAPE, "tg_conv_new", "in 2 and out 4", "groups 3");
  bad = ok;
  bad.stride_w = -1;
  ck_assert_ptr_null(tg_conv_new(&bad, TG_F32, &rng));
  ck_assert_error_has(TG_EINVAL, "tg_conv_new", "stride 0x-1", "negative");
  bad = ok;
  bad.pad_h = -2;
  ck_assert_ptr_null(tg_conv_new(&bad, TG_F32, &rng));
  ck_assert_error_has(TG_EINVAL, "tg_conv_new", "padding -2x0");

  tg_conv *c = tg_conv_new(&ok, TG_F64, &rng);
  ck_assert_ptr_nonnull(c);
  tg_tape *t = tg_tape_new();
  tg_tensor *x3 = tg_ones(TG_F64, TG_SHAPE(2, 5, 5));
  tg_tensor *xc = tg_ones(TG_F64, TG_SHAPE(1, 3, 5, 5));
  tg_tensor *xf = tg_ones(TG_F32, TG_SHAPE(1, 2, 5, 5));
  tg_tensor *xs = tg_ones(TG_F64, TG_SHAPE(1, 2, 2, 5));
  ck_assert_ptr_null(tg_conv_forward(t, c, x3));
  ck_assert_error_has(TG_ESHAPE, "tg_conv_forward", "x is [2,5,5]",
                      "[4,2,3,3]", "[N,2,H,W]");
  ck_assert_ptr_null(tg_conv_forward(t, c, xc));
  ck_assert_error_has(TG_ESHAPE, "tg_conv_forward", "x is [1,3,5,5]");
  ck_assert_ptr_null(tg_conv_forward(t, c, xf));
  ck_assert_error_has(TG_EDTYPE, "tg_conv_forward", "float32", "float64");
  ck_assert_ptr_null(tg_conv_forward(t, c, xs)); /* 2 rows, a kernel of 3 */
  ck_assert_error_has(TG_ESHAPE, "tg_conv2d", "larger than the padded input",
                      "x is [1,2,2,5]");
  ck_assert_ptr_null(tg_conv_forward(t, NULL, xc));
  ck_assert_error_has(TG_EINVAL, "tg_conv_forward", "layer is NULL");
  tg_clear_error();
  ck_assert_ptr_null(tg_conv_forward(t, c, NULL));
  ck_assert_int_eq(tg_last_status(), TG_OK);
  ck_assert_ptr_null(tg_conv_weight(NULL));
  ck_assert_ptr_null(tg_conv_bias(NULL));
  /* the op itself: inputs of two dtypes */
  ck_assert_ptr_null(tg_conv2d(t, xf, tg_conv_weight(c), NULL, 1, 1, 0, 0, 1,
                               1, 1));
  ck_assert_error_has(TG_EDTYPE, "tg_conv2d");
  ck_assert_int_eq(tg_tape_nodes(t), 0);
  tg_tape_free(t);
  tg_tensor_free(x3);
  tg_tensor_free(xc);
  tg_tensor_free(xf);
  tg_tensor_free(xs);
  tg_conv_free(c);
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

/* A small CNN step (conv, relu, reshape, dense, softmax_nll, backward,
 * SGD, clear) allocates nothing once the first epoch has seen both batch
 * sizes. _i = 1 makes the convolution large enough to split its batch over
 * threads (its column buffers, one per thread, come from the arena too).
 * The thread guard is off so that every step splits the same way: the
 * GEMM's per-thread packing buffer is made on a thread's first product. */
START_TEST(steady_state_conv_allocates_nothing) {
  counting_allocator(true);
  tg__par_guard_enable(false);
  const int64_t n = 20, side = _i ? 16 : 8, ch = _i ? 4 : 1;
  tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(n, ch * side * side));
  tg_tensor *y = tg_zeros(TG_I32, TG_SHAPE(n));
  tg_rng rng;
  tg_rng_seed(&rng, 4);
  ck_assert_int_eq(tg_fill_normal(x, &rng, 0, 1), TG_OK);
  for (int64_t i = 0; i < n; i++) tg_set(y, i, (double)(i % 3));
  tg_conv_spec spec = {.in = ch, .out = _i ? 32 : 4, .kh = _i ? 5 : 3,
                       .kw = _i ? 5 : 3, .pad_h = _i ? 2 : 1,
                       .pad_w = _i ? 2 : 1};
  tg_conv *c = tg_conv_new(&spec, TG_F32, &rng);
  tg_dense *d = tg_dense_new(spec.out * side * side, 3, TG_F32, TG_ACT_NONE, &rng);
  ck_assert_ptr_nonnull(c);
  ck_assert_ptr_nonnull(d);
  tg_tensor *p[4];
  int np = tg_conv_params(c, p);
  np += tg_dense_params(d, p + np);
  tg_sgd_config cfg = TG_SGD_DEFAULTS;
  cfg.lr = 0.01;
  tg_optim *opt = tg_sgd_new(p, np, &cfg);
  tg_tape *t = tg_tape_new();
  tg_batcher *b = tg_batcher_new(x, y, 8, 1); /* two of 8 and one of 4 */
  long allocs = -1, frees = -1;
  for (int epoch = 0; epoch < 3; epoch++) {
    tg_tensor *bx, *by;
    while (tg_batcher_next(b, &bx, &by) == 1) {
      int64_t img[4] = {tg_tensor_dim(bx, 0), ch, side, side};
      tg_tensor *h = tg_relu(t, tg_conv_forward(t, c, tg_reshape(t, bx, 4, img)));
      int64_t flat[2] = {img[0], -1};
      tg_tensor *loss =
          tg_softmax_nll(t, tg_dense_forward(t, d, tg_reshape(t, h, 2, flat)), by);
      ck_assert_msg(loss != NULL, "%s", tg_last_error());
      ck_assert(isfinite(tg_get(loss, 0)));
      ck_assert_int_eq(tg_backward(t, loss), TG_OK);
      ck_assert_int_eq(tg_optim_step(opt), TG_OK);
      ck_assert_int_eq(tg_optim_zero_grad(opt), TG_OK);
      tg_tape_clear(t);
    }
    if (epoch == 0) allocs = *test_allocs(), frees = *test_frees();
    ck_assert_int_eq(tg_batcher_shuffle(b), TG_OK);
  }
  ck_assert_int_gt(allocs, 0);
  ck_assert_int_eq(*test_allocs(), allocs);
  ck_assert_int_eq(*test_frees(), frees);
  tg_tape_free(t);
  tg_batcher_free(b);
  tg_optim_free(opt);
  tg_conv_free(c);
  tg_dense_free(d);
  tg_tensor_free(x);
  tg_tensor_free(y);
  tg__par_guard_enable(true);
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
  /* The convolution checked against plain loops takes seconds under the
   * sanitizers on a busy machine; Check's default is 4. */
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, activations);
  tcase_add_loop_test(tc, dense_init, 0, 2);
  tcase_add_loop_test(tc, dense_forward_and_backward, 0, 2);
  tcase_add_loop_test(tc, dense_act_matches_dense_then_activate, 0, 2);
  tcase_add_test(tc, dense_act_large_over_threads);
  tcase_add_test(tc, dense_errors);
  tcase_add_loop_test(tc, conv_init, 0, 2);
  tcase_add_loop_test(tc, conv_forward_and_backward, 0, 2);
  tcase_add_test(tc, conv_errors);
  tcase_add_test(tc, conv2d_empty_sizes);
  tcase_add_loop_test(tc, conv2d_large_matches_loops, 0,
                      (int)(sizeof big_convs / sizeof *big_convs));
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
  tcase_add_loop_test(tc, steady_state_conv_allocates_nothing, 0, 2);
  tcase_add_test(tc, steady_state_pool_batch_norm_allocates_nothing);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
