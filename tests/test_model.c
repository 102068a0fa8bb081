/* tests/test_model.c: the ops for real models against references of their
 * own: batched and transposed products against a naive triple loop,
 * embeddings with repeated indices, dropout's statistics and determinism,
 * layer normalisation against a plain C forward and a reverse pass through
 * the composed steps. The op list's generic tests (tests/test_ops.c) cover
 * gradient checks, float32 against float64 and the bad cases. */
#include "testutil.h"

/* --- batched products */

typedef struct {
  int na, nb;
  int64_t sa[4], sb[4];
  bool ta, tb;
} mm_case;

static const mm_case mm_cases[] = {
    {2, 2, {3, 4}, {4, 5}, false, false},
    {2, 2, {4, 3}, {4, 5}, true, false},
    {2, 2, {3, 4}, {5, 4}, false, true},
    {2, 2, {4, 3}, {5, 4}, true, true},
    {3, 3, {2, 3, 4}, {2, 4, 5}, false, false},
    {3, 3, {2, 4, 3}, {2, 5, 4}, true, true},
    {4, 4, {2, 3, 5, 4}, {2, 3, 4, 6}, false, false},
    {4, 4, {2, 3, 4, 5}, {2, 3, 4, 6}, true, false},
    {4, 4, {2, 3, 5, 4}, {2, 3, 6, 4}, false, true},
    {3, 2, {3, 5, 4}, {4, 6}, false, false},  /* [B,T,D] x [D,E] */
    {3, 2, {3, 4, 5}, {6, 4}, true, true},
    {2, 4, {5, 4}, {2, 3, 4, 6}, false, false},
    {3, 3, {1, 5, 4}, {3, 4, 6}, false, false}, /* [1,..] against [B,..] */
    {4, 4, {2, 1, 5, 4}, {1, 3, 6, 4}, false, true},
    {4, 4, {1, 3, 4, 5}, {2, 1, 4, 6}, true, false},
    {4, 4, {1, 1, 1, 1}, {2, 3, 1, 1}, false, false}, /* size-1 dims */
    {3, 3, {2, 1, 7}, {2, 7, 1}, false, false},
    {4, 4, {2, 2, 33, 17}, {2, 2, 33, 40}, true, false}, /* blocked GEMM */
};

/* Where element (i, j) of op(x) lies in the stored matrix, whose rows
 * hold ld elements. */
static int64_t mat_index(int64_t ld, bool tr, int64_t i, int64_t j) {
  return tr ? j * ld + i : i * ld + j;
}

/* The offset of c's batch matrix (b0, b1) in x, broadcasting. */
static int64_t batch_off(const tg_tensor *x, int64_t b0, int64_t b1) {
  int nbx = x->ndim - 2;
  int64_t msz = x->shape[x->ndim - 2] * x->shape[x->ndim - 1];
  int64_t i0 = 0, i1 = 0, s1 = nbx >= 1 ? x->shape[x->ndim - 3] : 1;
  if (nbx >= 1) i1 = s1 == 1 ? 0 : b1;
  if (nbx >= 2) i0 = x->shape[0] == 1 ? 0 : b0;
  return (i0 * s1 + i1) * msz;
}

/* The first of n values x[i] (or get(t, i) when x is NULL) farther than
 * 1e-12 relative from ref[i], or -1 (one check per array, not per element:
 * the large cases hold a million elements). */
static int64_t first_off(const double *x, const tg_tensor *t, const double *ref,
                         int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    double v = x ? x[i] : tg_grad_get(t, i);
    if (!(fabs(v - ref[i]) <= 1e-12 * (1 + fabs(ref[i])))) return i;
  }
  return -1;
}

/* c = op(a) op(b) (float64) and the gradients a and b hold after a
 * backward pass of incoming gradient g against a naive triple loop. */
static void check_naive(int ci, bool ta, bool tb, const tg_tensor *a,
                        const tg_tensor *b, const tg_tensor *c,
                        const tg_tensor *g) {
  int na = a->ndim, nb = b->ndim, nc = c->ndim;
  int64_t M = a->shape[na - (ta ? 1 : 2)], K = a->shape[na - (ta ? 2 : 1)];
  int64_t N = b->shape[nb - (tb ? 2 : 1)];
  ck_assert_int_eq(nc, (na > nb ? na : nb));
  ck_assert_int_eq(c->shape[nc - 2], M);
  ck_assert_int_eq(c->shape[nc - 1], N);
  int64_t B0 = nc == 4 ? c->shape[0] : 1, B1 = nc >= 3 ? c->shape[nc - 3] : 1;
  double *ra = calloc((size_t)a->numel, sizeof(double));
  double *rb = calloc((size_t)b->numel, sizeof(double));
  double *rc = calloc((size_t)c->numel, sizeof(double));
  ck_assert(ra && rb && rc);
  const double *A = a->data, *Bd = b->data, *C = c->data, *G = g->data;
  int64_t lda = a->shape[na - 1], ldb = b->shape[nb - 1];
  for (int64_t b0 = 0; b0 < B0; b0++)
    for (int64_t b1 = 0; b1 < B1; b1++) {
      int64_t oa = batch_off(a, b0, b1), ob = batch_off(b, b0, b1);
      int64_t oc = (b0 * B1 + b1) * M * N;
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
          double s = 0, gij = G[oc + i * N + j];
          for (int64_t k = 0; k < K; k++) {
            int64_t ia = oa + mat_index(lda, ta, i, k);
            int64_t ib = ob + mat_index(ldb, tb, k, j);
            s += A[ia] * Bd[ib];
            ra[ia] += gij * Bd[ib];
            rb[ib] += gij * A[ia];
          }
          rc[oc + i * N + j] = s;
        }
    }
  int64_t i = first_off(C, NULL, rc, c->numel);
  ck_assert_msg(i < 0, "case %d c[%lld]: %.17g, naive %.17g", ci,
                (long long)i, i < 0 ? 0 : C[i], i < 0 ? 0 : rc[i]);
  i = first_off(NULL, a, ra, a->numel);
  ck_assert_msg(i < 0, "case %d da[%lld]: %.17g, naive %.17g", ci,
                (long long)i, i < 0 ? 0 : tg_grad_get(a, i), i < 0 ? 0 : ra[i]);
  i = first_off(NULL, b, rb, b->numel);
  ck_assert_msg(i < 0, "case %d db[%lld]: %.17g, naive %.17g", ci,
                (long long)i, i < 0 ? 0 : tg_grad_get(b, i), i < 0 ? 0 : rb[i]);
  free(ra);
  free(rb);
  free(rc);
}

START_TEST(batched_matmul_matches_naive_loop) {
  const mm_case *mc = &mm_cases[_i];
  tg_rng rng;
  tg_rng_seed(&rng, 100 + (uint64_t)_i);
  tg_tensor *a = param_normal(TG_F64, mc->na, mc->sa, &rng);
  tg_tensor *b = param_normal(TG_F64, mc->nb, mc->sb, &rng);
  tg_tape *t = tg_tape_new();
  tg_tensor *c = tg_matmul_ex(t, a, b, mc->ta, mc->tb);
  ck_assert_msg(c, "%s", tg_last_error());
  tg_tensor *g = tg_zeros(TG_F64, c->ndim, c->shape);
  tg_fill_normal(g, &rng, 0, 1);
  ck_assert_int_eq(tg_backward_grad(t, c, g), TG_OK);
  check_naive(_i, mc->ta, mc->tb, a, b, c, g);
  /* without transposes, tg_matmul is the same product */
  if (!mc->ta && !mc->tb) {
    tg_tensor *c2 = tg_matmul(t, a, b);
    ck_assert_msg(c2, "%s", tg_last_error());
    ck_assert(tg__same_shape(c, c2));
    ck_assert_mem_eq(c->data, c2->data, (size_t)c->numel * sizeof(double));
  }
  tg_tape_free(t);
  tg_tensor_free(a);
  tg_tensor_free(b);
  tg_tensor_free(g);
}
END_TEST

/* Batches of products each too small for the GEMM to thread itself, with
 * enough of them to go over threads: attention's q k^T and att v, and
 * operands broadcast over the batch, whose gradient sums over its items. */
static const mm_case mm_par_cases[] = {
    {4, 4, {4, 4, 128, 32}, {4, 4, 128, 32}, false, true},  /* q k^T */
    {4, 4, {4, 4, 128, 128}, {4, 4, 128, 32}, false, false}, /* att v */
    {3, 2, {16, 128, 32}, {32, 128}, false, false},  /* [B,T,D] x W */
    {3, 2, {16, 32, 128}, {128, 32}, true, true},
    {2, 3, {128, 32}, {16, 128, 32}, false, true},   /* W x [B,..]^T */
    {4, 4, {4, 1, 128, 64}, {1, 4, 64, 64}, false, true},
    {4, 4, {1, 4, 64, 128}, {4, 1, 64, 64}, true, false},
};

/* One forward and backward pass of case mc on nt threads: c, da and db
 * written one after another to out. */
static void par_pass(const mm_case *mc, tg_dtype dt, int nt, uint64_t seed,
                     char *out, size_t *len) {
  ck_assert_int_eq(tg_set_num_threads(nt), TG_OK);
  tg_rng rng;
  tg_rng_seed(&rng, seed);
  tg_tensor *a = param_normal(dt, mc->na, mc->sa, &rng);
  tg_tensor *b = param_normal(dt, mc->nb, mc->sb, &rng);
  tg_tape *t = tg_tape_new();
  tg_tensor *c = tg_matmul_ex(t, a, b, mc->ta, mc->tb);
  ck_assert_msg(c, "%s", tg_last_error());
  tg_tensor *g = tg_zeros(dt, c->ndim, c->shape);
  tg_fill_normal(g, &rng, 0, 1);
  ck_assert_int_eq(tg_backward_grad(t, c, g), TG_OK);
  if (dt == TG_F64) check_naive((int)seed, mc->ta, mc->tb, a, b, c, g);
  size_t es = tg__dtype_size(dt), n = 0;
  const tg_tensor *parts[3] = {c, a, b};
  for (int k = 0; k < 3; k++) {
    const void *src = k == 0 ? c->data : tg_tensor_grad((tg_tensor *)parts[k])->data;
    size_t bytes = (size_t)parts[k]->numel * es;
    memcpy(out + n, src, bytes);
    n += bytes;
  }
  *len = n;
  tg_tape_free(t);
  tg_tensor_free(a);
  tg_tensor_free(b);
  tg_tensor_free(g);
}

/* 1, 2 and 3 threads give the same bits (3: so that the units of a
 * gradient summed over the batch would land on different threads). */
START_TEST(batched_matmul_threads_same_bits) {
  const mm_case *mc = &mm_par_cases[_i / 2];
  tg_dtype dt = _i % 2 ? TG_F64 : TG_F32;
  int64_t M = mc->sa[mc->na - (mc->ta ? 1 : 2)];
  int64_t K = mc->sa[mc->na - (mc->ta ? 2 : 1)];
  int64_t N = mc->sb[mc->nb - (mc->tb ? 2 : 1)];
  int before = tg_get_num_threads();
  tg__par_guard_enable(false);
#ifdef _OPENMP
  /* the case goes over threads: all three asked for are granted */
  ck_assert_int_eq(tg_set_num_threads(3), TG_OK);
  ck_assert_int_eq(tg__gemm_batch_threads(M, N, K, 16), 3);
#endif
  size_t cap = 3 * (size_t)(16 * 128 * 128) * sizeof(double), len[3];
  char *out[3];
  for (int k = 0; k < 3; k++) {
    out[k] = malloc(cap);
    ck_assert_ptr_nonnull(out[k]);
    par_pass(mc, dt, k + 1, 300 + (uint64_t)_i, out[k], &len[k]);
    ck_assert_uint_le(len[k], cap);
  }
  for (int k = 1; k < 3; k++) {
    ck_assert_uint_eq(len[0], len[k]);
    ck_assert_msg(!memcmp(out[0], out[k], len[0]),
                  "case %d: 1 and %d threads differ", _i, k + 1);
  }
  for (int k = 0; k < 3; k++) free(out[k]);
  tg__par_guard_enable(true);
  ck_assert_int_eq(tg_set_num_threads(before), TG_OK);
}
END_TEST

START_TEST(batched_matmul_float32) {
  /* float32 on the batched path: against float64 of the same inputs */
  const mm_case *mc = &mm_cases[_i];
  tg_rng rng;
  tg_rng_seed(&rng, 200 + (uint64_t)_i);
  tg_tensor *a = tg_zeros(TG_F32, mc->na, mc->sa), *b = tg_zeros(TG_F32, mc->nb, mc->sb);
  tg_fill_normal(a, &rng, 0, 1);
  tg_fill_normal(b, &rng, 0, 1);
  tg_tensor *a64 = tg_zeros(TG_F64, mc->na, mc->sa), *b64 = tg_zeros(TG_F64, mc->nb, mc->sb);
  for (int64_t i = 0; i < a->numel; i++) tg_set(a64, i, tg_get(a, i));
  for (int64_t i = 0; i < b->numel; i++) tg_set(b64, i, tg_get(b, i));
  tg_tape *t = tg_tape_new();
  tg_tensor *c = tg_matmul_ex(t, a, b, mc->ta, mc->tb);
  tg_tensor *c64 = tg_matmul_ex(t, a64, b64, mc->ta, mc->tb);
  ck_assert(c && c64);
  for (int64_t i = 0; i < c->numel; i++)
    ck_assert_double_eq_tol(tg_get(c, i), tg_get(c64, i), 1e-5 * (1 + fabs(tg_get(c64, i))));
  tg_tape_free(t);
  tg_tensor_free(a);
  tg_tensor_free(b);
  tg_tensor_free(a64);
  tg_tensor_free(b64);
}
END_TEST

START_TEST(batched_matmul_refuses_bad_shapes) {
  tg_tape *t = tg_tape_new();
  tg_tensor *a = tg_zeros(TG_F64, TG_SHAPE(2, 3, 4));
  tg_tensor *b = tg_zeros(TG_F64, TG_SHAPE(2, 5, 6));
  tg_tensor *b3 = tg_zeros(TG_F64, TG_SHAPE(3, 4, 6));
  tg_tensor *v = tg_zeros(TG_F64, TG_SHAPE(4));
  tg_tensor *s = tg_zeros(TG_F64, 0, NULL);
  ck_assert_ptr_null(tg_matmul_ex(t, a, b, false, false));
  ck_assert_error_has(TG_ESHAPE, "tg_matmul_ex", "inner dimensions differ",
                      "[2,3,4]", "[2,5,6]");
  ck_assert_ptr_null(tg_matmul_ex(t, a, b, true, false)); /* K 3 vs 5 */
  ck_assert_error_has(TG_ESHAPE, "inner dimensions differ", "(transposed)");
  ck_assert_ptr_null(tg_matmul_ex(t, a, b3, false, false));
  ck_assert_error_has(TG_ESHAPE, "tg_matmul_ex", "do not broadcast", "[2,3,4]",
                      "[3,4,6]");
  ck_assert_ptr_null(tg_matmul(t, a, b3));
  ck_assert_error_has(TG_ESHAPE, "tg_matmul:", "do not broadcast");
  ck_assert_ptr_null(tg_matmul_ex(t, a, v, false, false));
  ck_assert_error_has(TG_ESHAPE, "tg_matmul_ex", "1-D", "[4]");
  ck_assert_ptr_null(tg_matmul(t, v, v));
  ck_assert_error_has(TG_ESHAPE, "tg_matmul", "1-D");
  ck_assert_ptr_null(tg_matmul_ex(t, s, a, false, false));
  ck_assert_error_has(TG_ESHAPE, "0-d");
  /* a 5-D operand cannot exist */
  ck_assert_ptr_null(tg_zeros(TG_F64, 5, (const int64_t[]){1, 1, 1, 1, 1}));
  ck_assert_int_eq(tg_last_status(), TG_ESHAPE);
  ck_assert_int_eq(tg_tape_nodes(t), 0);
  /* a NULL operand: NULL, the earlier message kept */
  tg_clear_error();
  ck_assert_ptr_null(tg_matmul_ex(t, NULL, a, true, true));
  ck_assert_int_eq(tg_last_status(), TG_OK);
  tg_tape_free(t);
  tg_tensor_free(a);
  tg_tensor_free(b);
  tg_tensor_free(b3);
  tg_tensor_free(v);
  tg_tensor_free(s);
}
END_TEST

/* --- embeddings */

START_TEST(embedding_repeated_indices) {
  const int64_t V = 4, D = 3;
  tg_tensor *table = tg_zeros(TG_F64, TG_SHAPE(V, D));
  for (int64_t i = 0; i < table->numel; i++) tg_set(table, i, 10.0 * (double)(i / D) + (double)(i % D));
  tg_requires_grad(table, true);
  const int32_t ix[6] = {2, 0, 2, 2, 3, 0};
  tg_tensor *index = tg_tensor_from(TG_I32, TG_SHAPE(2, 3), ix);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_embedding(t, table, index);
  ck_assert_msg(y, "%s", tg_last_error());
  ck_assert_int_eq(y->ndim, 3);
  ck_assert_int_eq(y->shape[0], 2);
  ck_assert_int_eq(y->shape[1], 3);
  ck_assert_int_eq(y->shape[2], D);
  for (int64_t p = 0; p < 6; p++)
    for (int64_t j = 0; j < D; j++)
      ck_assert_double_eq(tg_get(y, p * D + j), 10.0 * ix[p] + (double)j);
  /* the caller may overwrite index at once: backward uses the copy */
  ((int32_t *)index->data)[0] = 1;
  tg_tensor *g = tg_zeros(TG_F64, y->ndim, y->shape);
  for (int64_t i = 0; i < g->numel; i++) tg_set(g, i, (double)(i + 1));
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  double want[4][3] = {{0}};
  for (int64_t p = 0; p < 6; p++)
    for (int64_t j = 0; j < D; j++) want[ix[p]][j] += (double)(p * D + j + 1);
  for (int64_t r = 0; r < V; r++)
    for (int64_t j = 0; j < D; j++)
      ck_assert_double_eq(tg_grad_get(table, r * D + j), want[r][j]);
  ck_assert_double_eq(want[1][0], 0); /* row 1 was never picked */
  ck_assert_double_eq(want[2][0], 1 + 7 + 10);
  /* a 0-d index gives one row */
  int32_t one = 3;
  tg_tensor *i0 = tg_tensor_from(TG_I32, 0, NULL, &one);
  tg_tensor *y0 = tg_embedding(t, table, i0);
  ck_assert_msg(y0, "%s", tg_last_error());
  ck_assert_int_eq(y0->ndim, 1);
  ck_assert_double_eq(tg_get(y0, 2), 32);
  tg_tape_free(t);
  tg_tensor_free(table);
  tg_tensor_free(index);
  tg_tensor_free(g);
  tg_tensor_free(i0);
}
END_TEST

START_TEST(embedding_refuses_bad_indices) {
  tg_tensor *table = tg_zeros(TG_F32, TG_SHAPE(5, 2));
  tg_requires_grad(table, true);
  const int32_t bad[4] = {0, 4, 5, 1}, neg[2] = {1, -1};
  tg_tensor *ib = tg_tensor_from(TG_I32, TG_SHAPE(2, 2), bad);
  tg_tensor *in = tg_tensor_from(TG_I32, TG_SHAPE(2), neg);
  tg_tensor *fl = tg_zeros(TG_F32, TG_SHAPE(2));
  tg_tape *t = tg_tape_new();
  ck_assert_ptr_null(tg_embedding(t, table, ib));
  ck_assert_error_has(TG_ERANGE, "tg_embedding", "index[1,0] is 5", "[0, 5)");
  ck_assert_ptr_null(tg_embedding(t, table, in));
  ck_assert_error_has(TG_ERANGE, "index[1] is -1");
  ck_assert_ptr_null(tg_embedding(t, table, fl));
  ck_assert_error_has(TG_EDTYPE, "tg_embedding", "index", "int32");
  ck_assert_int_eq(tg_tape_nodes(t), 0);
  tg_tape_free(t);
  tg_tensor_free(table);
  tg_tensor_free(ib);
  tg_tensor_free(in);
  tg_tensor_free(fl);
}
END_TEST

/* --- dropout */

#define DROP_N ((int64_t)1 << 20)

START_TEST(dropout_statistics) {
  const double p = 0.3;
  tg_rng data;
  tg_rng_seed(&data, 9);
  tg_tensor *a = tg_zeros(TG_F64, TG_SHAPE(DROP_N));
  tg_fill_uniform(a, &data, 0.5, 1.5);
  tg_requires_grad(a, true);
  tg_rng rng;
  tg_rng_seed(&rng, 1234);
  tg_tape *t = tg_tape_new();
  tg_tensor *y = tg_dropout(t, a, p, &rng, true);
  ck_assert_msg(y && y != a, "%s", tg_last_error());
  double sa = 0, sy = 0;
  int64_t zeros = 0;
  for (int64_t i = 0; i < DROP_N; i++) {
    double ai = tg_get(a, i), yi = tg_get(y, i);
    sa += ai;
    sy += yi;
    if (yi == 0)
      zeros++;
    else
      ck_assert_double_eq_tol(yi, ai / (1 - p), 1e-15);
  }
  double frac = (double)zeros / (double)DROP_N, ma = sa / DROP_N, my = sy / DROP_N;
  printf("dropout p=%g n=%lld seed 1234: zero fraction %.6f, mean a %.6f, "
         "mean y %.6f\n", p, (long long)DROP_N, frac, ma, my);
  /* the zero count is binomial: sd sqrt(n p (1-p)) / n = 4.5e-4, so these
   * bounds are 10 sd; at this fixed seed they hold or fail for good */
  ck_assert_double_eq_tol(frac, p, 0.0045);
  ck_assert_double_eq_tol(my, ma, 0.01);
  /* backward: dx = g * m / (1-p) */
  tg_tensor *g = tg_ones(TG_F64, TG_SHAPE(DROP_N));
  ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
  for (int64_t i = 0; i < DROP_N; i += 997)
    ck_assert_double_eq_tol(tg_grad_get(a, i), tg_get(y, i) / tg_get(a, i), 1e-14);
  tg_tape_free(t);
  tg_tensor_free(a);
  tg_tensor_free(g);
}
END_TEST

START_TEST(dropout_same_seed_same_mask) {
  tg_tensor *a = tg_ones(TG_F32, TG_SHAPE(7, 9));
  tg_rng r1, r2, r3;
  tg_rng_seed(&r1, 5);
  tg_rng_seed(&r2, 5);
  tg_rng_seed(&r3, 6);
  tg_tape *t = tg_tape_new();
  tg_tensor *y1 = tg_dropout(t, a, 0.5, &r1, true);
  tg_tensor *y2 = tg_dropout(t, a, 0.5, &r2, true);
  tg_tensor *y3 = tg_dropout(t, a, 0.5, &r3, true);
  tg_tensor *y4 = tg_dropout(t, a, 0.5, &r1, true); /* r1 advanced */
  ck_assert(y1 && y2 && y3 && y4);
  ck_assert_mem_eq(y1->data, y2->data, 63 * sizeof(float));
  ck_assert(memcmp(y1->data, y3->data, 63 * sizeof(float)) != 0);
  ck_assert(memcmp(y1->data, y4->data, 63 * sizeof(float)) != 0);
  tg_tape_free(t);
  tg_tensor_free(a);
}
END_TEST

START_TEST(dropout_eval_and_errors) {
  tg_tensor *a = tg_ones(TG_F64, TG_SHAPE(3, 4));
  tg_requires_grad(a, true);
  tg_rng rng;
  tg_rng_seed(&rng, 1);
  tg_tape *t = tg_tape_new();
  ck_assert_ptr_eq(tg_dropout(t, a, 0.5, &rng, false), a);
  ck_assert_ptr_eq(tg_dropout(t, a, 0.5, NULL, false), a);
  ck_assert_ptr_eq(tg_dropout(t, a, 0.0, NULL, true), a);
  ck_assert_int_eq(tg_tape_nodes(t), 0);
  ck_assert_ptr_null(tg_dropout(t, a, 0.5, NULL, true));
  ck_assert_error_has(TG_EINVAL, "tg_dropout", "rng is NULL");
  const double bad[] = {-0.5, 1.0, 2.0, NAN};
  for (int k = 0; k < 4; k++)
    for (int training = 0; training < 2; training++) {
      ck_assert_ptr_null(tg_dropout(t, a, bad[k], &rng, training));
      ck_assert_error_has(TG_EINVAL, "tg_dropout", "p is", "[0, 1)");
    }
  ck_assert_int_eq(tg_tape_nodes(t), 0);
  tg_tape_free(t);
  tg_tensor_free(a);
}
END_TEST

/* The gradient through the public form, the generator re-seeded at each
 * call so every call of the check draws one mask. */
static tg_tensor *dropout_loss(tg_tape *t, tg_tensor *const *p, void *ctx) {
  (void)ctx;
  tg_rng rng;
  tg_rng_seed(&rng, 77);
  return tg_sum(t, tg_mul(t, tg_dropout(t, p[0], 0.4, &rng, true), p[1]));
}

START_TEST(dropout_gradcheck_public) {
  tg_rng rng;
  tg_rng_seed(&rng, 3);
  tg_tensor *p[2] = {param_normal(TG_F64, TG_SHAPE(4, 5), &rng),
                     param_normal(TG_F64, TG_SHAPE(4, 5), &rng)};
  tg_gradcheck_result res;
  ck_assert_int_eq(tg_gradcheck(dropout_loss, NULL, p, 2, 1e-6, &res), TG_OK);
  ck_assert_double_le(res.max_rel_err, 1e-6);
  tg_tensor_free(p[0]);
  tg_tensor_free(p[1]);
}
END_TEST

/* --- layer normalisation */

/* The composed graph mu -> c = x - mu -> var -> rstd -> xh -> y, forward
 * and then backward through each step in turn (not the closed form). */
static void ln_reference(const double *x, const double *w, const double *b,
                         const double *g, int64_t rows, int64_t D, double eps,
                         double *y, double *dx, double *dw, double *db) {
  double *c = malloc((size_t)D * sizeof *c), *dc = malloc((size_t)D * sizeof *dc);
  for (int64_t r = 0; r < rows; r++) {
    const double *xr = x + r * D, *gr = g + r * D;
    double mu = 0, var = 0;
    for (int64_t j = 0; j < D; j++) mu += xr[j];
    mu /= (double)D;
    for (int64_t j = 0; j < D; j++) {
      c[j] = xr[j] - mu;
      var += c[j] * c[j];
    }
    var /= (double)D;
    double rstd = 1 / sqrt(var + eps);
    for (int64_t j = 0; j < D; j++)
      y[r * D + j] = c[j] * rstd * (w ? w[j] : 1) + (b ? b[j] : 0);
    /* y_j = xh_j w_j + b_j: dxh_j = g_j w_j */
    double drstd = 0;
    for (int64_t j = 0; j < D; j++) {
      double dxh = gr[j] * (w ? w[j] : 1);
      if (dw) dw[j] += gr[j] * c[j] * rstd;
      if (db) db[j] += gr[j];
      dc[j] = dxh * rstd; /* xh_j = c_j rstd */
      drstd += dxh * c[j];
    }
    /* rstd = (var + eps)^(-1/2) */
    double dvar = drstd * -0.5 * rstd * rstd * rstd;
    /* var = (1/D) sum c_j^2 */
    for (int64_t j = 0; j < D; j++) dc[j] += dvar * 2 * c[j] / (double)D;
    /* c_j = x_j - mu, mu = (1/D) sum x_j */
    double dmu = 0;
    for (int64_t j = 0; j < D; j++) dmu -= dc[j];
    for (int64_t j = 0; j < D; j++) dx[r * D + j] += dc[j] + dmu / (double)D;
  }
  free(c);
  free(dc);
}

static const int64_t ln_shapes[][4] = {
    /* ndim, dims... */
    {2, 7, 16}, {3, 2, 3, 5}, {1, 9}, {2, 4, 1}, {2, 3, 64}};

START_TEST(layer_norm_matches_reference) {
  const int64_t *sh = ln_shapes[_i];
  int nd = (int)sh[0];
  const int64_t *shape = sh + 1;
  int64_t D = shape[nd - 1];
  tg_rng rng;
  tg_rng_seed(&rng, 300 + (uint64_t)_i);
  tg_tensor *x = param_normal(TG_F64, nd, shape, &rng);
  tg_tensor *w = param_normal(TG_F64, TG_SHAPE(D), &rng);
  tg_tensor *b = param_normal(TG_F64, TG_SHAPE(D), &rng);
  for (int64_t i = 0; i < x->numel; i++) tg_set(x, i, 3 + 2 * tg_get(x, i));
  for (int form = 0; form < 4; form++) { /* with/without w and b */
    tg_tensor *wf = form & 1 ? w : NULL, *bf = form & 2 ? b : NULL;
    double eps = form == 3 ? 1e-3 : 1e-5;
    tg_tensor *g = tg_zeros(TG_F64, nd, shape);
    tg_fill_normal(g, &rng, 0, 1);
    tg_tape *t = tg_tape_new();
    tg_tensor *y = tg_layer_norm(t, x, wf, bf, eps);
    ck_assert_msg(y, "%s", tg_last_error());
    ck_assert_int_eq(tg_backward_grad(t, y, g), TG_OK);
    int64_t rows = x->numel / D;
    double *ry = malloc((size_t)x->numel * sizeof(double));
    double *rdx = calloc((size_t)x->numel, sizeof(double));
    double *rdw = calloc((size_t)D, sizeof(double)), *rdb = calloc((size_t)D, sizeof(double));
    ln_reference(x->data, wf ? wf->data : NULL, bf ? bf->data : NULL, g->data,
                 rows, D, eps, ry, rdx, rdw, rdb);
    for (int64_t i = 0; i < x->numel; i++) {
      ck_assert_msg(fabs(tg_get(y, i) - ry[i]) <= 1e-12 * (1 + fabs(ry[i])),
                    "y[%lld] %.17g ref %.17g", (long long)i, tg_get(y, i), ry[i]);
      ck_assert_msg(fabs(tg_grad_get(x, i) - rdx[i]) <= 1e-12 * (1 + fabs(rdx[i])),
                    "dx[%lld] %.17g ref %.17g", (long long)i, tg_grad_get(x, i), rdx[i]);
    }
    for (int64_t j = 0; j < D; j++) {
      if (wf)
        ck_assert_msg(fabs(tg_grad_get(w, j) - rdw[j]) <= 1e-12 * (1 + fabs(rdw[j])),
                      "dw[%lld] %.17g ref %.17g", (long long)j, tg_grad_get(w, j), rdw[j]);
      if (bf)
        ck_assert_msg(fabs(tg_grad_get(b, j) - rdb[j]) <= 1e-12 * (1 + fabs(rdb[j])),
                      "db[%lld] %.17g ref %.17g", (long long)j, tg_grad_get(b, j), rdb[j]);
    }
    tg_zero_grad(x);
    tg_zero_grad(w);
    tg_zero_grad(b);
    free(ry);
    free(rdx);
    free(rdw);
    free(rdb);
    tg_tape_free(t);
    tg_tensor_free(g);
  }
  tg_tensor_free(x);
  tg_tensor_free(w);
  tg_tensor_free(b);
}
END_TEST

/* Each row of the output has mean 0 and variance 1 - eps / (var + eps)
 * (that is, 1 up to eps), for w = 1 and b = 0 and for w, b left out. */
START_TEST(layer_norm_rows_standardised) {
  tg_rng rng;
  tg_rng_seed(&rng, 11);
  const int64_t R = 6, D = 50;
  for (int dt = 0; dt < 2; dt++) {
    tg_dtype d = dt ? TG_F32 : TG_F64;
    tg_tensor *x = tg_zeros(d, TG_SHAPE(2, R / 2, D));
    tg_fill_normal(x, &rng, 5, 3);
    tg_tensor *w = tg_ones(d, TG_SHAPE(D)), *b = tg_zeros(d, TG_SHAPE(D));
    tg_tape *t = tg_tape_new();
    for (int with = 0; with < 2; with++) {
      tg_tensor *y = tg_layer_norm(t, x, with ? w : NULL, with ? b : NULL, 1e-9);
      ck_assert_msg(y, "%s", tg_last_error());
      for (int64_t r = 0; r < R; r++) {
        double m = 0, v = 0;
        for (int64_t j = 0; j < D; j++) m += tg_get(y, r * D + j);
        m /= D;
        for (int64_t j = 0; j < D; j++) v += pow(tg_get(y, r * D + j) - m, 2);
        v /= D;
        ck_assert_double_eq_tol(m, 0, dt ? 1e-6 : 1e-14);
        ck_assert_double_eq_tol(v, 1, dt ? 1e-5 : 1e-8);
      }
    }
    tg_tape_free(t);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(b);
  }
}
END_TEST

START_TEST(layer_norm_refuses_bad_eps) {
  tg_tensor *x = tg_ones(TG_F64, TG_SHAPE(2, 3));
  tg_tape *t = tg_tape_new();
  const double bad[] = {0, -1, NAN, INFINITY};
  for (int k = 0; k < 4; k++) {
    ck_assert_ptr_null(tg_layer_norm(t, x, NULL, NULL, bad[k]));
    ck_assert_error_has(TG_EINVAL, "tg_layer_norm", "eps is", "> 0 and finite");
  }
  tg_tape_free(t);
  tg_tensor_free(x);
}
END_TEST

/* The fused layer norm against the same layer composed from library ops,
 * y = (x - mean) / sqrt(var + eps) * w + b over the last axis with the
 * biased variance: values and all three gradients to 1e-12 in float64. */
START_TEST(layer_norm_matches_composed_ops) {
  tg_rng rng;
  tg_rng_seed(&rng, 77);
  const int64_t R = 5, D = 7;
  const double eps = 1e-5;
  tg_tensor *x = param_normal(TG_F64, TG_SHAPE(R, D), &rng);
  tg_tensor *w = param_normal(TG_F64, TG_SHAPE(D), &rng);
  tg_tensor *b = param_normal(TG_F64, TG_SHAPE(D), &rng);
  tg_tensor *g = tg_zeros(TG_F64, TG_SHAPE(R, D));
  tg_fill_normal(g, &rng, 0, 1);
  tg_tensor *p[3] = {x, w, b};
  double ref[3][64];
  tg_tape *t = tg_tape_new();
  const int last = -1;
  tg_tensor *mu = tg_mean_axes(t, x, &last, 1, true);
  tg_tensor *xc = tg_sub(t, x, mu);
  tg_tensor *var = tg_var(t, x, &last, 1, 0, true);
  tg_tensor *yc = tg_add(t, tg_mul(t, tg_div(t, xc, tg_sqrt(t, tg_add_scalar(t, var, eps))), w), b);
  tg_tensor *yf = tg_layer_norm(t, x, w, b, eps);
  ck_assert_msg(yc && yf, "%s", tg_last_error());
  for (int64_t i = 0; i < R * D; i++)
    ck_assert_double_eq_tol(tg_get(yf, i), tg_get(yc, i), 1e-12);
  ck_assert_int_eq(tg_backward_grad(t, yc, g), TG_OK);
  for (int k = 0; k < 3; k++) {
    for (int64_t i = 0; i < tg_tensor_numel(p[k]); i++) ref[k][i] = tg_grad_get(p[k], i);
    tg_zero_grad(p[k]);
  }
  ck_assert_int_eq(tg_backward_grad(t, yf, g), TG_OK);
  for (int k = 0; k < 3; k++)
    for (int64_t i = 0; i < tg_tensor_numel(p[k]); i++)
      ck_assert_msg(fabs(tg_grad_get(p[k], i) - ref[k][i]) <= 1e-12 * (1 + fabs(ref[k][i])),
                    "input %d element %lld: fused %.17g, composed %.17g", k,
                    (long long)i, tg_grad_get(p[k], i), ref[k][i]);
  tg_tape_free(t);
  for (int k = 0; k < 3; k++) tg_tensor_free(p[k]);
  tg_tensor_free(g);
}
END_TEST

int main(void) {
  Suite *s = suite_create("model");
  TCase *tc = tcase_create("model ops");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, batched_matmul_matches_naive_loop, 0,
                      (int)(sizeof mm_cases / sizeof *mm_cases));
  tcase_add_loop_test(tc, batched_matmul_float32, 0,
                      (int)(sizeof mm_cases / sizeof *mm_cases));
  tcase_add_loop_test(tc, batched_matmul_threads_same_bits, 0,
                      2 * (int)(sizeof mm_par_cases / sizeof *mm_par_cases));
  tcase_add_test(tc, batched_matmul_refuses_bad_shapes);
  tcase_add_test(tc, embedding_repeated_indices);
  tcase_add_test(tc, embedding_refuses_bad_indices);
  tcase_add_test(tc, dropout_statistics);
  tcase_add_test(tc, dropout_same_seed_same_mask);
  tcase_add_test(tc, dropout_eval_and_errors);
  tcase_add_test(tc, dropout_gradcheck_public);
  tcase_add_loop_test(tc, layer_norm_matches_reference, 0,
                      (int)(sizeof ln_shapes / sizeof *ln_shapes));
  tcase_add_test(tc, layer_norm_rows_standardised);
  tcase_add_test(tc, layer_norm_matches_composed_ops);
  tcase_add_test(tc, layer_norm_refuses_bad_eps);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
