/* ops/matmul.c: matrix products, plain and batched with transposes.
 *
 * c = op(a) op(b), op(x) = x, or x with its last two dims swapped when its
 * flag (ta, tb) is set; a and b are 2-D to 4-D, op(a) [..., M, K] and op(b)
 * [..., K, N], and the leading (batch) dims broadcast with NumPy's rules:
 * c is [batch..., M, N]. Each matrix of the batch is one GEMM call whose
 * transpose flags and leading dimensions read a and b where they lie.
 *
 * Backward, per matrix (g = dc):
 *   d op(a) = g op(b)^T,  d op(b) = op(a)^T g,
 * and the stored operand's gradient is that, or its transpose when the
 * operand was transposed: da = op(b) g^T for ta, db = g^T op(a) for tb.
 * Every transpose is a GEMM flag, never a copy. A batch dim that was
 * broadcast (absent or of size 1) has its gradient summed over the batch:
 * the GEMMs accumulate (beta = 1) into the same matrix of da or db.
 * A batch of products too small to thread themselves (attention's per-head
 * [T,D] x [D,T]) is split over threads by whole matrices instead; see
 * batch_job below.
 *
 * tg_matmul (no transposes) and tg_matmul_ex are two ops of one rule and
 * one pair of kernels, so that each message names the function called. A
 * 2-D tg_matmul is exactly one GEMM each way as before, and a float32 a
 * given by the caller (data, not an op's result) that is mostly zeros goes
 * through the sparse product of src/kernels/spmm.c, its non-zeros kept for
 * backward. */
#include "op.h"

/* The layout of one call: the matrix sizes, each operand's leading
 * dimension, and where the batch's matrices lie. */
typedef struct {
  bool ta, tb;
  int64_t M, N, K, lda, ldb;
  int64_t nbatch;             /* matrices in c */
  int64_t bshape[2];          /* c's batch dims, 1 where absent */
  int64_t astr[2], bstr[2];   /* element strides per batch dim; 0 broadcast */
} layout;

static bool flag(int64_t v) { return v != 0; }

/* Batch dim d (of 2, right-aligned) of x: its size, 1 when x lacks it. */
static int64_t bdim(const tg_tensor *x, int d) {
  int k = d - (2 - (x->ndim - 2));
  return k < 0 ? 1 : x->shape[k];
}

static void make_layout(const tg_tensor *a, const tg_tensor *b, bool ta,
                        bool tb, layout *L) {
  int na = a->ndim, nb = b->ndim;
  L->ta = ta;
  L->tb = tb;
  L->M = a->shape[na - (ta ? 1 : 2)];
  L->K = a->shape[na - (ta ? 2 : 1)];
  L->N = b->shape[nb - (tb ? 2 : 1)];
  L->lda = a->shape[na - 1];
  L->ldb = b->shape[nb - 1];
  int64_t am = L->M * L->K, bm = L->K * L->N;
  L->nbatch = 1;
  for (int d = 1; d >= 0; d--) { /* innermost batch dim first */
    int64_t sa = bdim(a, d), sb = bdim(b, d);
    L->bshape[d] = sa > sb ? sa : sb;
    L->astr[d] = sa == 1 ? 0 : am;
    L->bstr[d] = sb == 1 ? 0 : bm;
    am *= sa;
    bm *= sb;
    L->nbatch *= L->bshape[d];
  }
}

/* The offsets of matrix i of c in a and b. */
static void offsets(const layout *L, int64_t i, int64_t *oa, int64_t *ob) {
  int64_t i1 = i % L->bshape[1], i0 = i / L->bshape[1];
  *oa = i0 * L->astr[0] + i1 * L->astr[1];
  *ob = i0 * L->bstr[0] + i1 * L->bstr[1];
}

/* How many matrices the operand of batch strides str holds (a broadcast
 * dim, stride 0, counts once). */
static int64_t nmat(const layout *L, const int64_t *str) {
  return (str[0] ? L->bshape[0] : 1) * (str[1] ? L->bshape[1] : 1);
}

/* Matrix j of the operand of strides str: its offset, and the items of c
 * it was used for, i0 in [*lo0, *hi0) by i1 in [*lo1, *hi1) (all of a
 * batch dim where it was broadcast). */
static int64_t mat_items(const layout *L, const int64_t *str, int64_t j,
                         int64_t *lo, int64_t *hi) {
  int64_t d1 = str[1] ? L->bshape[1] : 1, j0 = j / d1, j1 = j % d1;
  int64_t jj[2] = {j0, j1};
  for (int d = 0; d < 2; d++) {
    lo[d] = str[d] ? jj[d] : 0;
    hi[d] = str[d] ? jj[d] + 1 : L->bshape[d];
  }
  return j0 * str[0] + j1 * str[1];
}

/* The batch goes over threads (tg__gemm_batch_threads) only when each
 * product is too small to thread itself; each thread then computes whole
 * matrices of the result with the one-thread GEMM. Forward, a unit is a
 * matrix of c. Backward, a unit is a matrix of da or of db, and it is
 * summed by its thread over the items that use it in increasing order,
 * the same GEMMs in the same order as on one thread: a broadcast
 * operand's gradient (a weight [K,N] against a batch of inputs) is one
 * unit, summed on one thread while the others take the rest. So the bits
 * never depend on the thread count. Each thread takes a run of units of
 * about equal work (the items they sum), fixed by the shapes. */
typedef struct {
  const layout *L;
  bool f32;
  const void *a, *b, *g;
  void *c, *da, *db;
  int64_t nunit, nda, ndb; /* units: da's matrices, then db's */
  int64_t wa, wb, work;     /* items each unit of da, of db sums; all */
  bool pair;                /* unit u is matrix u of da and of db */
} batch_job;

#define GEMM_f32 tg__sgemm
#define GEMM_f64 tg__dgemm
#define KERNELS(T, S)                                                        \
  static void fwd_##S(const layout *L, const T *a, const T *b, T *c,         \
                      int64_t i) {                                           \
    int64_t M = L->M, N = L->N, K = L->K, oa, ob;                            \
    offsets(L, i, &oa, &ob);                                                 \
    GEMM_##S(L->ta, L->tb, M, N, K, 1, a + oa, L->lda, b + ob, L->ldb, 0,    \
             c + i * M * N, N);                                              \
  }                                                                          \
  /* da (stored [M,K], or [K,M] for ta) += the items' g op(b)^T (or op(b)  \
   * g^T), for matrix j of a. */                                             \
  static void bwd_a_##S(const layout *L, const T *b, const T *g, T *da,      \
                        int64_t j) {                                         \
    int64_t M = L->M, N = L->N, K = L->K, lo[2], hi[2];                      \
    int64_t oa = mat_items(L, L->astr, j, lo, hi);                           \
    for (int64_t i0 = lo[0]; i0 < hi[0]; i0++)                               \
      for (int64_t i1 = lo[1]; i1 < hi[1]; i1++) {                           \
        int64_t i = i0 * L->bshape[1] + i1, ob = i0 * L->bstr[0] +           \
                                                 i1 * L->bstr[1];            \
        const T *gi = g + i * M * N;                                         \
        if (!L->ta)                                                          \
          GEMM_##S(false, !L->tb, M, K, N, 1, gi, N, b + ob, L->ldb, 1,      \
                   da + oa, K);                                              \
        else                                                                 \
          GEMM_##S(L->tb, true, K, M, N, 1, b + ob, L->ldb, gi, N, 1,        \
                   da + oa, M);                                              \
      }                                                                      \
  }                                                                          \
  /* db (stored [K,N], or [N,K] for tb) += the items' op(a)^T g (or g^T    \
   * op(a)), for matrix j of b. */                                           \
  static void bwd_b_##S(const layout *L, const T *a, const T *g, T *db,      \
                        int64_t j) {                                         \
    int64_t M = L->M, N = L->N, K = L->K, lo[2], hi[2];                      \
    int64_t ob = mat_items(L, L->bstr, j, lo, hi);                           \
    for (int64_t i0 = lo[0]; i0 < hi[0]; i0++)                               \
      for (int64_t i1 = lo[1]; i1 < hi[1]; i1++) {                           \
        int64_t i = i0 * L->bshape[1] + i1, oa = i0 * L->astr[0] +           \
                                                 i1 * L->astr[1];            \
        const T *gi = g + i * M * N;                                         \
        if (!L->tb)                                                          \
          GEMM_##S(!L->ta, false, K, N, M, 1, a + oa, L->lda, gi, N, 1,      \
                   db + ob, N);                                              \
        else                                                                 \
          GEMM_##S(true, L->ta, N, K, M, 1, gi, N, a + oa, L->lda, 1,        \
                   db + ob, K);                                              \
      }                                                                      \
  }
TG__BOTH(KERNELS)
#undef KERNELS

static void run_unit(const batch_job *j, int64_t u) {
  const layout *L = j->L;
  if (!j->g) { /* forward: unit u is matrix u of c */
    if (j->f32)
      fwd_f32(L, j->a, j->b, j->c, u);
    else
      fwd_f64(L, j->a, j->b, j->c, u);
  } else if (j->pair) { /* da and db of item u, while g's matrix is hot */
    if (j->f32) {
      bwd_a_f32(L, j->b, j->g, j->da, u);
      bwd_b_f32(L, j->a, j->g, j->db, u);
    } else {
      bwd_a_f64(L, j->b, j->g, j->da, u);
      bwd_b_f64(L, j->a, j->g, j->db, u);
    }
  } else if (u < j->nda) {
    if (j->f32)
      bwd_a_f32(L, j->b, j->g, j->da, u);
    else
      bwd_a_f64(L, j->b, j->g, j->da, u);
  } else if (j->f32) {
    bwd_b_f32(L, j->a, j->g, j->db, u - j->nda);
  } else {
    bwd_b_f64(L, j->a, j->g, j->db, u - j->nda);
  }
}

/* Thread t of nt runs the units whose work starts in its share. */
static void batch_part(void *p, int t, int nt) {
  const batch_job *j = p;
  int64_t w0 = j->work * t / nt, w1 = j->work * (t + 1) / nt;
  for (int64_t u = 0; u < j->nunit; u++) {
    int64_t w = u < j->nda ? u * j->wa : j->nda * j->wa + (u - j->nda) * j->wb;
    if (w >= w0 && w < w1) run_unit(j, u);
  }
}

static void run_batch(batch_job *j) {
  const layout *L = j->L;
  if (!j->g) { /* c's matrices, counted as db's by batch_part */
    j->nunit = L->nbatch;
    j->nda = 0;
    j->wb = 1;
    j->work = L->nbatch;
  } else {
    /* a matrix of da sums nbatch / nda items, one of db nbatch / ndb */
    j->nda = j->da ? nmat(L, L->astr) : 0;
    j->ndb = j->db ? nmat(L, L->bstr) : 0;
    j->nunit = j->nda + j->ndb;
    j->wa = j->nda ? L->nbatch / j->nda : 0;
    j->wb = j->ndb ? L->nbatch / j->ndb : 0;
    j->work = j->nda * j->wa + j->ndb * j->wb;
    /* Nothing broadcast: item i's da and db together, reading g_i once
     * from memory rather than twice. */
    j->pair = j->nda == L->nbatch && j->ndb == L->nbatch;
    if (j->pair) {
      j->nunit = L->nbatch;
      j->nda = 0;
      j->wb = 2;
    }
  }
  int nt = tg__gemm_batch_threads(L->M, L->N, L->K, j->work);
  if (nt > j->nunit) nt = (int)j->nunit;
  tg__par_run(nt, batch_part, j);
}

static void backward(const tg_node *n) {
  const tg_tensor *a = n->in[0], *b = n->in[1], *c = n->out;
  layout L;
  make_layout(a, b, flag(n->args.i[0]), flag(n->args.i[1]), &L);
  void *da = tg__gin(n, 0), *db = tg__gin(n, 1);
  const tg__sparse *sa = n->saved; /* only for a 2-D product, no transposes */
  if (c->dtype == TG_F32) {
    if (db && sa) {
      tg__spmm_tn_f32(sa, c->grad, L.N, db);
      db = NULL;
    }
  }
  batch_job j = {.L = &L, .f32 = c->dtype == TG_F32, .a = a->data,
                 .b = b->data, .g = c->grad, .da = da, .db = db};
  run_batch(&j);
}

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *args,
                tg_outshape *out) {
  const tg_tensor *x = in[0], *y = in[1];
  bool ta = flag(args->i[0]), tb = flag(args->i[1]);
  char sa[96], sb[96];
  if (x->ndim < 2 || y->ndim < 2)
    return tg__err(TG_ESHAPE,
                   "%s: operands must be 2-D to %d-D (a 1-D or 0-d operand is "
                   "refused: make it [1,K] or [K,1]): a is %s, b is %s",
                   fn, TG_MAX_DIMS, tg__shape_str(x, sa), tg__shape_str(y, sb));
  int64_t ka = x->shape[x->ndim - (ta ? 2 : 1)];
  int64_t kb = y->shape[y->ndim - (tb ? 1 : 2)];
  if (ka != kb)
    return tg__err(TG_ESHAPE,
                   "%s: inner dimensions differ: a is %s%s, b is %s%s", fn,
                   tg__shape_str(x, sa), ta ? " (transposed)" : "",
                   tg__shape_str(y, sb), tb ? " (transposed)" : "");
  int nbo = (x->ndim > y->ndim ? x->ndim : y->ndim) - 2;
  for (int d = 2 - nbo; d < 2; d++) {
    int64_t p = bdim(x, d), q = bdim(y, d);
    if (p != q && p != 1 && q != 1)
      return tg__err(TG_ESHAPE,
                     "%s: batch dimensions do not broadcast: a is %s, b is %s",
                     fn, tg__shape_str(x, sa), tg__shape_str(y, sb));
    out->shape[d - (2 - nbo)] = p > q ? p : q;
  }
  out->ndim = nbo + 2;
  out->shape[nbo] = x->shape[x->ndim - (ta ? 1 : 2)];
  out->shape[nbo + 1] = y->shape[y->ndim - (tb ? 2 : 1)];
  return TG_OK;
}

static int forward(tg_tape *t, tg_node *n) {
  const tg_tensor *a = n->in[0], *b = n->in[1];
  layout L;
  make_layout(a, b, flag(n->args.i[0]), flag(n->args.i[1]), &L);
  if (a->ndim == 2 && b->ndim == 2 && !L.ta && !L.tb) {
    /* The by-column copy of a only when backward will need it: c
     * recorded, b needing a gradient. */
    bool by_col = tg__recorded(n) && (b->flags & TG__NEEDS_GRAD);
    tg__sparse *sp = tg__spmm_of(t, a, by_col);
    if (by_col) n->saved = sp;
    if (sp) {
      tg__spmm_f32(sp, b->data, NULL, L.N, n->out->data);
      return TG_OK;
    }
  }
  batch_job j = {.L = &L, .f32 = a->dtype == TG_F32, .a = a->data,
                 .b = b->data, .c = n->out->data};
  run_batch(&j);
  return TG_OK;
}

#define BAD(na, nb, sa, sb, frag)                                            \
  {.ndim = {na, nb}, .shape = {sa, sb}, .status = TG_ESHAPE, .msg = frag}
#define SH(...) {__VA_ARGS__}

static const tg_opcase cases[] = {
    {.ndim = {2, 2}, .shape = {{3, 4}, {4, 5}}},
    {.ndim = {2, 2}, .shape = {{1, 6}, {6, 1}}},
    {.ndim = {2, 2}, .shape = {{5, 1}, {1, 3}}},
    {.ndim = {3, 3}, .shape = {{2, 3, 4}, {2, 4, 2}}},
    {.ndim = {3, 2}, .shape = {{2, 3, 4}, {4, 5}}},
    {.ndim = {4, 3}, .shape = {{2, 1, 3, 2}, {3, 2, 4}}},
    BAD(2, 2, SH(3, 4), SH(5, 2), "inner dimensions differ"),
    BAD(1, 2, SH(4), SH(4, 2), "1-D"),
    BAD(3, 3, SH(2, 3, 4), SH(3, 4, 2), "do not broadcast"),
};

/* args i[0], i[1]: the transpose flags ta, tb. */
#define EX(ta, tb, na, nb, sa, sb)                                           \
  {.ndim = {na, nb}, .shape = {sa, sb}, .args = {.i = {ta, tb}}}
static const tg_opcase cases_ex[] = {
    EX(0, 0, 2, 2, SH(3, 4), SH(4, 5)),
    EX(1, 0, 2, 2, SH(4, 3), SH(4, 5)),
    EX(0, 1, 2, 2, SH(3, 4), SH(5, 4)),
    EX(1, 1, 2, 2, SH(4, 3), SH(5, 4)),
    EX(1, 1, 2, 2, SH(1, 1), SH(1, 1)),
    EX(0, 0, 3, 3, SH(2, 3, 4), SH(2, 4, 2)),
    EX(1, 0, 3, 3, SH(3, 4, 2), SH(3, 4, 3)),
    EX(0, 1, 4, 4, SH(2, 2, 3, 4), SH(2, 2, 2, 4)),
    EX(1, 1, 4, 4, SH(2, 1, 4, 3), SH(2, 3, 2, 4)),
    EX(0, 0, 3, 2, SH(3, 2, 4), SH(4, 3)),
    EX(0, 1, 2, 3, SH(2, 4), SH(3, 5, 4)),
    EX(0, 0, 3, 3, SH(1, 2, 3), SH(4, 3, 2)),
    EX(1, 0, 4, 3, SH(1, 3, 3, 2), SH(3, 3, 1)),
    EX(0, 0, 4, 4, SH(2, 1, 3, 4), SH(1, 3, 4, 2)),
    EX(0, 0, 4, 2, SH(1, 1, 1, 1), SH(1, 1)),
    {.ndim = {2, 2}, .shape = {{3, 4}, {3, 4}}, .args = {.i = {0, 0}},
     .status = TG_ESHAPE, .msg = "inner dimensions differ"},
    {.ndim = {2, 2}, .shape = {{3, 4}, {3, 4}}, .args = {.i = {1, 1}},
     .status = TG_ESHAPE, .msg = "inner dimensions differ"},
    {.ndim = {4, 4}, .shape = {{2, 3, 2, 2}, {2, 2, 2, 2}},
     .status = TG_ESHAPE, .msg = "do not broadcast"},
    {.ndim = {3, 1}, .shape = {{2, 3, 4}, {4}}, .status = TG_ESHAPE,
     .msg = "1-D"},
    {.ndim = {0, 2}, .shape = {{0}, {1, 1}}, .status = TG_ESHAPE,
     .msg = "0-d"},
};

const tg_opdef tg__op_matmul = {.name = "matmul", .n_in = 2, .rule = rule,
                                .forward = forward, .backward = backward,
                                TG__CASES(cases)};
const tg_opdef tg__op_matmul_ex = {.name = "matmul_ex", .n_in = 2,
                                   .rule = rule, .forward = forward,
                                   .backward = backward, TG__CASES(cases_ex)};

tg_tensor *tg_matmul(tg_tape *t, tg_tensor *a, tg_tensor *b) {
  return TG__APPLY(t, matmul, NULL, a, b);
}

tg_tensor *tg_matmul_ex(tg_tape *t, tg_tensor *a, tg_tensor *b, bool ta,
                        bool tb) {
  tg_opargs args = {.i = {ta, tb}};
  return TG__APPLY(t, matmul_ex, &args, a, b);
}
