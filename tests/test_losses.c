/* tests/test_losses.c: the fused losses against the same losses composed
 * from primitive ops and against gradients written out by hand; Nielsen's
 * backpropagation equations BP1-BP4 falling out of the engine; stability at
 * extreme logits. */
#include "testutil.h"

enum { N = 5, C = 4 };

static void fill_logits(tg_tensor *z, uint64_t seed, double spread) {
  tg_rng rng;
  tg_rng_seed(&rng, seed);
  tg_fill_normal(z, &rng, 0, spread);
}

/* softmax of each row of z, computed here independently of the library. */
static void ref_softmax(const double *z, double *a, int rows, int cols) {
  for (int r = 0; r < rows; r++) {
    double m = z[r * cols], s = 0;
    for (int j = 1; j < cols; j++) m = fmax(m, z[r * cols + j]);
    for (int j = 0; j < cols; j++) s += (a[r * cols + j] = exp(z[r * cols + j] - m));
    for (int j = 0; j < cols; j++) a[r * cols + j] /= s;
  }
}

START_TEST(softmax_nll_fused_equals_composed) {
  const int32_t y[N] = {0, 3, 1, 1, 2};
  tg_tensor *z = tg_zeros(TG_F64, TG_SHAPE(N, C));
  fill_logits(z, 11, 2.0);
  tg_requires_grad(z, true);
  tg_tensor *target = tg_tensor_from(TG_I32, TG_SHAPE(N), y);
  tg_tape *t = tg_tape_new();

  /* composed: L = mean(-log(softmax(z))[i, y_i]) */
  tg_tensor *a = tg_softmax(t, z);
  tg_tensor *la = tg_log(t, a);
  tg_tensor *L1 = tg_mean(t, tg_neg(t, tg_pick(t, la, target)));
  ck_assert_ptr_nonnull(L1);
  ck_assert_int_eq(tg_backward(t, L1), TG_OK);
  double dz_comp[N * C], da[N * C];
  memcpy(dz_comp, z->grad, sizeof dz_comp);
  memcpy(da, a->grad, sizeof da);
  double loss_comp = tg_get(L1, 0);

  /* fused */
  tg_zero_grad(z);
  tg_tape_clear(t);
  tg_tensor *L2 = tg_softmax_nll(t, z, target);
  ck_assert_ptr_nonnull(L2);
  ck_assert_int_eq(tg_backward(t, L2), TG_OK);
  ck_assert_double_eq_tol(tg_get(L2, 0), loss_comp, 1e-12);

  double aref[N * C];
  ref_softmax(z->data, aref, N, C);
  double loss_ref = 0;
  for (int i = 0; i < N; i++) loss_ref -= log(aref[i * C + y[i]]) / N;
  ck_assert_double_eq_tol(loss_comp, loss_ref, 1e-12);

  const double *dz_fused = z->grad;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < C; j++) {
      int k = i * C + j;
      double expect = (aref[k] - (j == y[i])) / N; /* (a - y)/N */
      ck_assert_double_eq_tol(dz_fused[k], dz_comp[k], 1e-12);
      ck_assert_double_eq_tol(dz_fused[k], expect, 1e-12);
      /* dL/dz is dense: every entry is non-zero */
      ck_assert_double_gt(fabs(dz_fused[k]), 1e-6);
      /* dL/da: zero except at the target, where it is -1/(N a_y) */
      if (j == y[i])
        ck_assert_double_eq_tol(da[k], -1.0 / (N * aref[k]), 1e-12);
      else
        ck_assert_double_eq(da[k], 0.0);
    }
  tg_tape_free(t);
  tg_tensor_free(z);
  tg_tensor_free(target);
}
END_TEST

START_TEST(softmax_nll_onehot_rows_equal_indices) {
  const int32_t y[N] = {2, 0, 3, 3, 1};
  double onehot[N * C] = {0};
  for (int i = 0; i < N; i++) onehot[i * C + y[i]] = 1;
  tg_tensor *z = tg_zeros(TG_F64, TG_SHAPE(N, C));
  fill_logits(z, 12, 1.5);
  tg_requires_grad(z, true);
  tg_tensor *ti = tg_tensor_from(TG_I32, TG_SHAPE(N), y);
  tg_tensor *tp = f64_from(TG_SHAPE(N, C), onehot);
  tg_tape *t = tg_tape_new();
  tg_tensor *L1 = tg_softmax_nll(t, z, ti);
  tg_backward(t, L1);
  double g1[N * C];
  memcpy(g1, z->grad, sizeof g1);
  tg_zero_grad(z);
  tg_tensor *L2 = tg_softmax_nll(t, z, tp);
  ck_assert_int_eq(tg_backward(t, L2), TG_OK);
  ck_assert_double_eq_tol(tg_get(L1, 0), tg_get(L2, 0), 1e-12);
  for (int k = 0; k < N * C; k++)
    ck_assert_double_eq_tol(g1[k], ((double *)z->grad)[k], 1e-12);
  tg_tape_free(t);
  tg_tensor_free(z);
  tg_tensor_free(ti);
  tg_tensor_free(tp);
}
END_TEST

START_TEST(sigmoid_bce_fused_equals_composed) {
  tg_rng rng;
  tg_rng_seed(&rng, 13);
  tg_tensor *z = tg_zeros(TG_F64, TG_SHAPE(N, C));
  tg_fill_normal(z, &rng, 0, 2);
  tg_requires_grad(z, true);
  tg_tensor *y = tg_zeros(TG_F64, TG_SHAPE(N, C));
  tg_tensor *one_minus_y = tg_zeros(TG_F64, TG_SHAPE(N, C));
  for (int k = 0; k < N * C; k++) {
    double v = (double)tg_rng_below(&rng, 2);
    tg_set(y, k, v);
    tg_set(one_minus_y, k, 1 - v);
  }
  tg_tape *t = tg_tape_new();
  /* composed: -(1/N) sum [y ln sigmoid(z) + (1-y) ln sigmoid(-z)] */
  tg_tensor *pos = tg_mul(t, y, tg_log(t, tg_sigmoid(t, z)));
  tg_tensor *negt = tg_mul(t, one_minus_y, tg_log(t, tg_sigmoid(t, tg_neg(t, z))));
  tg_tensor *L1 = tg_scale(t, tg_sum(t, tg_add(t, pos, negt)), -1.0 / N);
  ck_assert_ptr_nonnull(L1);
  ck_assert_int_eq(tg_backward(t, L1), TG_OK);
  double gc[N * C];
  memcpy(gc, z->grad, sizeof gc);
  tg_zero_grad(z);
  tg_tensor *L2 = tg_sigmoid_bce(t, z, y);
  ck_assert_int_eq(tg_backward(t, L2), TG_OK);
  ck_assert_double_eq_tol(tg_get(L1, 0), tg_get(L2, 0), 1e-12);
  for (int k = 0; k < N * C; k++) {
    double s = 1 / (1 + exp(-tg_get(z, k)));
    double expect = (s - tg_get(y, k)) / N;
    ck_assert_double_eq_tol(((double *)z->grad)[k], gc[k], 1e-12);
    ck_assert_double_eq_tol(((double *)z->grad)[k], expect, 1e-12);
  }
  tg_tape_free(t);
  tg_tensor_free(z);
  tg_tensor_free(y);
  tg_tensor_free(one_minus_y);
}
END_TEST

START_TEST(quadratic_fused_equals_composed) {
  tg_rng rng;
  tg_rng_seed(&rng, 14);
  tg_tensor *a = param_normal(TG_F64, TG_SHAPE(N, C), &rng);
  tg_tensor *y = tg_zeros(TG_F64, TG_SHAPE(N, C));
  tg_fill_uniform(y, &rng, 0, 1);
  tg_tape *t = tg_tape_new();
  tg_tensor *d = tg_add(t, a, tg_neg(t, y));
  tg_tensor *L1 = tg_scale(t, tg_sum(t, tg_mul(t, d, d)), 0.5 / N);
  tg_backward(t, L1);
  double gc[N * C];
  memcpy(gc, a->grad, sizeof gc);
  tg_zero_grad(a);
  tg_tensor *L2 = tg_quadratic(t, a, y);
  ck_assert_int_eq(tg_backward(t, L2), TG_OK);
  ck_assert_double_eq_tol(tg_get(L1, 0), tg_get(L2, 0), 1e-12);
  for (int k = 0; k < N * C; k++) {
    ck_assert_double_eq_tol(((double *)a->grad)[k], gc[k], 1e-12);
    ck_assert_double_eq_tol(((double *)a->grad)[k], (tg_get(a, k) - tg_get(y, k)) / N, 1e-12);
  }
  tg_tape_free(t);
  tg_tensor_free(a);
  tg_tensor_free(y);
}
END_TEST

/* Nielsen, chapter 2 and 3: a 2-layer sigmoid network with a softmax output
 * and log-likelihood cost. The engine's gradients must equal backprop done
 * by hand: BP1 d_L = a_L - y (softmax + log-likelihood), BP2 d_l =
 * (W_{l+1}^T d_{l+1}) . s'(z_l), BP3 dC/db = d, BP4 dC/dw_jk = a_k d_j.
 * Row-vector convention: z = x W + b with W[in,out]. */
enum { NB = 3, IN = 4, HID = 5, OUT = 3 };

START_TEST(nielsen_bp1_to_bp4) {
  tg_rng rng;
  tg_rng_seed(&rng, 21);
  tg_tensor *W1 = param_normal(TG_F64, TG_SHAPE(IN, HID), &rng);
  tg_tensor *b1 = param_normal(TG_F64, TG_SHAPE(HID), &rng);
  tg_tensor *W2 = param_normal(TG_F64, TG_SHAPE(HID, OUT), &rng);
  tg_tensor *b2 = param_normal(TG_F64, TG_SHAPE(OUT), &rng);
  tg_tensor *x = tg_zeros(TG_F64, TG_SHAPE(NB, IN));
  tg_fill_normal(x, &rng, 0, 1);
  const int32_t y[NB] = {2, 0, 1};
  tg_tensor *target = tg_tensor_from(TG_I32, TG_SHAPE(NB), y);

  tg_tape *t = tg_tape_new();
  tg_tensor *a1 = tg_sigmoid(t, tg_add(t, tg_matmul(t, x, W1), b1));
  tg_tensor *L = tg_softmax_nll(t, tg_add(t, tg_matmul(t, a1, W2), b2), target);
  ck_assert_ptr_nonnull(L);
  ck_assert_int_eq(tg_backward(t, L), TG_OK);

  /* by hand, per sample, summed and divided by NB (the mean cost) */
  const double *w1 = W1->data, *w2 = W2->data, *xb = x->data;
  double gW1[IN * HID] = {0}, gb1[HID] = {0}, gW2[HID * OUT] = {0}, gb2[OUT] = {0};
  for (int s = 0; s < NB; s++) {
    double z1[HID], s1[HID], z2[OUT], a2[OUT], d2[OUT], d1[HID];
    for (int j = 0; j < HID; j++) {
      z1[j] = ((double *)b1->data)[j];
      for (int k = 0; k < IN; k++) z1[j] += xb[s * IN + k] * w1[k * HID + j];
      s1[j] = 1 / (1 + exp(-z1[j]));
    }
    for (int j = 0; j < OUT; j++) {
      z2[j] = ((double *)b2->data)[j];
      for (int k = 0; k < HID; k++) z2[j] += s1[k] * w2[k * OUT + j];
    }
    ref_softmax(z2, a2, 1, OUT);
    for (int j = 0; j < OUT; j++) d2[j] = a2[j] - (j == y[s]); /* BP1 */
    for (int k = 0; k < HID; k++) {                            /* BP2 */
      double back = 0;
      for (int j = 0; j < OUT; j++) back += w2[k * OUT + j] * d2[j];
      d1[k] = back * s1[k] * (1 - s1[k]);
    }
    for (int j = 0; j < OUT; j++) {
      gb2[j] += d2[j] / NB;                                        /* BP3 */
      for (int k = 0; k < HID; k++) gW2[k * OUT + j] += s1[k] * d2[j] / NB; /* BP4 */
    }
    for (int j = 0; j < HID; j++) {
      gb1[j] += d1[j] / NB;
      for (int k = 0; k < IN; k++) gW1[k * HID + j] += xb[s * IN + k] * d1[j] / NB;
    }
  }
  for (int k = 0; k < IN * HID; k++) ck_assert_double_eq_tol(((double *)W1->grad)[k], gW1[k], 1e-12);
  for (int k = 0; k < HID; k++) ck_assert_double_eq_tol(((double *)b1->grad)[k], gb1[k], 1e-12);
  for (int k = 0; k < HID * OUT; k++) ck_assert_double_eq_tol(((double *)W2->grad)[k], gW2[k], 1e-12);
  for (int k = 0; k < OUT; k++) ck_assert_double_eq_tol(((double *)b2->grad)[k], gb2[k], 1e-12);
  /* Eq. 81, dC/db_j = a_j - y_j, is dense: every output bias, the non-target
   * classes' included, gets a non-zero gradient. */
  for (int j = 0; j < OUT; j++) ck_assert_double_gt(fabs(((double *)b2->grad)[j]), 1e-6);

  tg_tape_free(t);
  tg_tensor *all[] = {W1, b1, W2, b2, x, target};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) tg_tensor_free(all[i]);
}
END_TEST

START_TEST(extreme_logits_stay_finite) {
  for (int dt = 0; dt < 2; dt++) {
    double zv[2 * 3] = {1000, -1000, 0, -1000, -1000, 1000};
    const int32_t y[2] = {1, 2};
    tg_tensor *z64 = f64_from(TG_SHAPE(2, 3), zv);
    tg_tensor *z = z64;
    if (dt == 0) {
      z = tg_zeros(TG_F32, TG_SHAPE(2, 3));
      for (int k = 0; k < 6; k++) tg_set(z, k, zv[k]);
      tg_tensor_free(z64);
    }
    tg_requires_grad(z, true);
    tg_tensor *target = tg_tensor_from(TG_I32, TG_SHAPE(2), y);
    tg_tensor *ybce = tg_zeros(z->dtype, TG_SHAPE(2, 3));
    tg_fill(ybce, 0.5);
    tg_tape *t = tg_tape_new();
    tg_tape_set_check_finite(t, true);
    tg_tensor *L = tg_softmax_nll(t, z, target);
    ck_assert_msg(L != NULL, "%s", tg_last_error());
    /* row 0 misses by 2000 nats, row 1 is right: mean loss 1000 */
    ck_assert_double_eq_tol(tg_get(L, 0), 1000.0, 1e-9);
    ck_assert_int_eq(tg_backward(t, L), TG_OK);
    tg_tensor *L2 = tg_sigmoid_bce(t, z, ybce);
    ck_assert_msg(L2 != NULL, "%s", tg_last_error());
    ck_assert_int_eq(tg_backward(t, L2), TG_OK);
    for (int k = 0; k < 6; k++) ck_assert(isfinite(tg_grad_get(z, k)));
    /* the fused softmax-NLL part of the gradient: (p - y)/N exactly */
    tg_zero_grad(z);
    tg_backward(t, L);
    const double expect[6] = {0.5, -0.5, 0, 0, 0, 0};
    for (int k = 0; k < 6; k++) ck_assert_double_eq_tol(tg_grad_get(z, k), expect[k], 1e-9);
    tg_tape_free(t);
    tg_tensor_free(z);
    tg_tensor_free(target);
    tg_tensor_free(ybce);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("losses");
  TCase *tc = tcase_create("fused vs composed");
  tcase_add_test(tc, softmax_nll_fused_equals_composed);
  tcase_add_test(tc, softmax_nll_onehot_rows_equal_indices);
  tcase_add_test(tc, sigmoid_bce_fused_equals_composed);
  tcase_add_test(tc, quadratic_fused_equals_composed);
  tcase_add_test(tc, nielsen_bp1_to_bp4);
  tcase_add_test(tc, extreme_logits_stay_finite);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
