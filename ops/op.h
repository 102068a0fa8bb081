/* ops/op.h: the op interface, the one private header an op includes: the
 * engine's declaration of an op and its door, the kernels, and the pieces
 * ops share (ops/opsupport.c, ops/sparse.c). */
#ifndef TAPEGRAD_OP_H
#define TAPEGRAD_OP_H

#include "../src/engine/engine.h"
#include "../src/kernels/vmath.h"

/* opsupport.c: shape rules and checks shared by ops. Each returns TG_OK or
 * records a message naming fn and returns the error. */
/* The result has the shape and dtype of input 0. */
int tg__rule_same(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                  tg_outshape *out);
/* Inputs 0 and 1 have one shape; the result has it too. */
int tg__rule_same2(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                   tg_outshape *out);
/* A 0-d result, for reductions and losses. */
void tg__out_scalar(tg_outshape *out, tg_dtype dtype);
int tg__check_same(const char *fn, const tg_tensor *a, const tg_tensor *b);
int tg__check_2d(const char *fn, const tg_tensor *x, const char *what);
/* index must be int32 [N], values in [0, C), for a [N,C] (ops/pick.c). */
int tg__check_classes(const char *fn, const tg_tensor *a, const tg_tensor *index);
/* d[j] += sum over rows of g[r, j], g [rows, cols]: a bias's gradient. */
void tg__colsum_acc_f32(const float *restrict g, float *restrict d,
                        int64_t rows, int64_t cols);
void tg__colsum_acc_f64(const double *restrict g, double *restrict d,
                        int64_t rows, int64_t cols);
/* fn_tab_S[path]: the thread-door ranges fn_S_ISA (compiled by
 * TG__SIMD_EACH, void (void *, int64_t, int64_t)) by vector path. */
#define TG__RANGE_TABLE(fn, S)                                 \
  static const tg__range_fn fn##_tab_##S[TG__SIMD_NPATHS] = \
      TG__SIMD_TABLE(fn##_##S);
/* The fewest rows of n elements a thread takes in a row-split op: rows
 * holding TG__PAR_ELEMS elements, at least 1. */
static inline int64_t tg__par_rows(int64_t n) {
  return n > 0 && TG__PAR_ELEMS / n > 0 ? TG__PAR_ELEMS / n : 1;
}
/* The sum of x[0, n) in 8 running partial sums (element i goes to sum i
 * mod 8), added pairwise at the end: a fixed order, the same on every
 * machine, which the compiler can keep in vector registers (a single
 * running sum is one long chain of dependent adds). */
float tg__rowsum_f32(const float *x, int64_t n);
double tg__rowsum_f64(const double *x, int64_t n);

/* Broadcasting (NumPy's rule), for the elementwise binary ops and where.
 * Shapes are aligned from the right; in each position every input has the
 * size, 1, or no dimension there, and the result takes the size that is not
 * 1 (a 0 against a 1 gives 0: an empty result). */
#define TG__BC_MAX 3 /* inputs of a broadcast op (where has three) */
/* The result's shape for n inputs named names[k]; TG_ESHAPE naming fn and
 * every input's shape when they do not broadcast. */
int tg__bcast_shape(const char *fn, const char *const *names,
                    tg_tensor *const *in, int n, tg_outshape *out);
/* The shape rule of a binary op of inputs a and b. */
int tg__rule_bcast2(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                    tg_outshape *out);

/* How to walk the result and find each input's element: the result's
 * shape with its size-1 dimensions dropped and neighbouring dimensions
 * merged wherever every input is contiguous across them, and per input its
 * stride in elements along each (0 where it is broadcast). After merging,
 * the last dimension's stride is 1 or 0 for every input, so the kernels run
 * one contiguous (or stride-0: a scalar) inner loop of len elements per
 * row, and step rows with tg__bcast_next. Equal shapes give one row of all
 * the elements; [N,C] with [C] gives N rows of C. */
typedef struct {
  int n, ndim; /* ndim >= 1 */
  int64_t shape[TG_MAX_DIMS];
  int64_t st[TG__BC_MAX][TG_MAX_DIMS];
  int64_t rows, len;       /* the product of the outer dimensions; the last */
  int64_t inner[TG__BC_MAX]; /* st[k][ndim - 1]: 1, or 0 when broadcast */
} tg__bcast;
void tg__bcast_plan(tg__bcast *p, const tg_tensor *out, tg_tensor *const *in,
                    int n);
/* Advances the row odometer idx (zeroed at the start) and the inputs'
 * offsets off (zeroed too) to the next row. */
static inline void tg__bcast_next(const tg__bcast *p, int64_t *idx,
                                  int64_t *off) {
  for (int d = p->ndim - 2; d >= 0; d--) {
    for (int k = 0; k < p->n; k++) off[k] += p->st[k][d];
    if (++idx[d] < p->shape[d]) return;
    idx[d] = 0;
    for (int k = 0; k < p->n; k++) off[k] -= p->st[k][d] * p->shape[d];
  }
}

/* The body of a broadcasting binary op z = F(x, y) of inputs a and b:
 * kernels for both dtypes, forward and backward. Before expanding
 * TG__BINARY_OP(), define BIN_F(x, y), the value, and BIN_DA(x, y, z, g) and
 * BIN_DB(x, y, z, g), the contributions to da and db of one element of the
 * result z with incoming gradient g. Where an input is broadcast its
 * gradient is the sum of those contributions over the elements it was
 * broadcast to. BIN_SIMD(x) is x for ops of plain arithmetic (the loops are
 * asked to vectorise), empty for ones that call libm per element. */
#ifdef _OPENMP
#define TG__PRAGMA_(x) _Pragma(#x)
#define TG__SIMD_SUM(v) TG__PRAGMA_(omp simd reduction(+ : v))
#else
#define TG__SIMD_SUM(v)
#endif
#define TG__BIN_SIMD_ON(x) x
#define TG__BIN_SIMD_OFF(x)

/* The loops of one row, once per vector path (TG__SIMD_EACH): every
 * branch but the sums where an input is one element, whose vectorised
 * order of addition would depend on the vector's width (those stay in
 * the generic bin_bwa/bin_bwb below). a and b advance by sa and sb (1, or
 * 0: one element; never both 0 on a row of more than one element). */
#define TG__BIN_ROWS(ISA, T, S)                                               \
  TG__TARGET_##ISA static void bin_fwd_##S##_##ISA(                          \
      const T *restrict a, int64_t sa, const T *restrict b, int64_t sb,      \
      T *restrict z, int64_t n) {                                            \
    if (sa && sb) {                                                          \
      BIN_SIMD(TG__SIMD)                                                     \
      for (int64_t i = 0; i < n; i++) z[i] = BIN_F(a[i], b[i]);              \
    } else if (sa) {                                                         \
      const T y = b[0];                                                      \
      BIN_SIMD(TG__SIMD)                                                     \
      for (int64_t i = 0; i < n; i++) z[i] = BIN_F(a[i], y);                 \
    } else {                                                                 \
      const T x = a[0];                                                      \
      BIN_SIMD(TG__SIMD)                                                     \
      for (int64_t i = 0; i < n; i++) z[i] = BIN_F(x, b[i]);                 \
    }                                                                        \
  }                                                                          \
  /* da (stride 1, like a) += BIN_DA over one row, a not broadcast. */       \
  TG__TARGET_##ISA static void bin_bwa_##S##_##ISA(                          \
      const T *restrict a, const T *restrict b, int64_t sb,                  \
      const T *restrict z, const T *restrict g, T *restrict da, int64_t n) { \
    (void)a;                                                                 \
    (void)b;                                                                 \
    (void)z;                                                                 \
    if (sb) {                                                                \
      BIN_SIMD(TG__SIMD)                                                     \
      for (int64_t i = 0; i < n; i++)                                        \
        da[i] += BIN_DA(a[i], b[i], z[i], g[i]);                             \
    } else {                                                                 \
      const T y = b[0];                                                      \
      (void)y;                                                               \
      BIN_SIMD(TG__SIMD)                                                     \
      for (int64_t i = 0; i < n; i++) da[i] += BIN_DA(a[i], y, z[i], g[i]);  \
    }                                                                        \
  }                                                                          \
  TG__TARGET_##ISA static void bin_bwb_##S##_##ISA(                          \
      const T *restrict a, int64_t sa, const T *restrict b,                  \
      const T *restrict z, const T *restrict g, T *restrict db, int64_t n) { \
    (void)a;                                                                 \
    (void)b;                                                                 \
    (void)z;                                                                 \
    if (sa) {                                                                \
      BIN_SIMD(TG__SIMD)                                                     \
      for (int64_t i = 0; i < n; i++)                                        \
        db[i] += BIN_DB(a[i], b[i], z[i], g[i]);                             \
    } else {                                                                 \
      const T x = a[0];                                                      \
      (void)x;                                                               \
      BIN_SIMD(TG__SIMD)                                                     \
      for (int64_t i = 0; i < n; i++) db[i] += BIN_DB(x, b[i], z[i], g[i]);  \
    }                                                                        \
  }

/* A job for tg__par_range over the one contiguous row of equal shapes. */
typedef struct {
  const void *a, *b, *z, *g;
  void *da, *db;
  int path;
} tg__bin_job;
/* Elements per thread from which an equal-shape binary op is split: a
 * pass over memory, like an optimizer's. */
#define TG__BIN_PAR_MIN TG__PAR_ELEMS

#define TG__BIN_KERNELS(T, S)                                                 \
  TG__SIMD_EACH(TG__BIN_ROWS, T, S)                                          \
  static void (*const bin_fwd_tab_##S[TG__SIMD_NPATHS])(                     \
      const T *restrict, int64_t, const T *restrict, int64_t, T *restrict,   \
      int64_t) = TG__SIMD_TABLE(bin_fwd_##S);                                \
  static void (*const bin_bwa_tab_##S[TG__SIMD_NPATHS])(                     \
      const T *restrict, const T *restrict, int64_t, const T *restrict,      \
      const T *restrict, T *restrict, int64_t) = TG__SIMD_TABLE(bin_bwa_##S); \
  static void (*const bin_bwb_tab_##S[TG__SIMD_NPATHS])(                     \
      const T *restrict, int64_t, const T *restrict, const T *restrict,      \
      const T *restrict, T *restrict, int64_t) = TG__SIMD_TABLE(bin_bwb_##S); \
  /* da (stride sa, like a) += BIN_DA over one row: a sum where a is one    \
   * element. */                                                             \
  static void bin_bwa_##S(int path, const T *restrict a, int64_t sa,         \
                          const T *restrict b, int64_t sb,                   \
                          const T *restrict z, const T *restrict g,          \
                          T *restrict da, int64_t n) {                       \
    if (sa) {                                                                \
      bin_bwa_tab_##S[path](a, b, sb, z, g, da, n);                          \
      return;                                                                \
    }                                                                        \
    const T x = a[0];                                                        \
    T s = 0;                                                                 \
    (void)x;                                                                 \
    (void)z;                                                                 \
    BIN_SIMD(TG__SIMD_SUM(s))                                                \
    for (int64_t i = 0; i < n; i++) s += BIN_DA(x, b[i], z[i], g[i]);        \
    da[0] += s;                                                              \
  }                                                                          \
  static void bin_bwb_##S(int path, const T *restrict a, int64_t sa,         \
                          const T *restrict b, int64_t sb,                   \
                          const T *restrict z, const T *restrict g,          \
                          T *restrict db, int64_t n) {                       \
    if (sb) {                                                                \
      bin_bwb_tab_##S[path](a, sa, b, z, g, db, n);                          \
      return;                                                                \
    }                                                                        \
    const T y = b[0];                                                        \
    T s = 0;                                                                 \
    (void)y;                                                                 \
    (void)z;                                                                 \
    BIN_SIMD(TG__SIMD_SUM(s))                                                \
    for (int64_t i = 0; i < n; i++) s += BIN_DB(a[i], y, z[i], g[i]);        \
    db[0] += s;                                                              \
  }                                                                          \
  static void bin_fwd_range_##S(void *p, int64_t i0, int64_t i1) {           \
    const tg__bin_job *j = p;                                                \
    bin_fwd_tab_##S[j->path]((const T *)j->a + i0, 1, (const T *)j->b + i0,  \
                             1, (T *)j->z + i0, i1 - i0);                    \
  }                                                                          \
  static void bin_bwd_range_##S(void *p, int64_t i0, int64_t i1) {           \
    const tg__bin_job *j = p;                                                \
    const T *a = (const T *)j->a + i0, *b = (const T *)j->b + i0,            \
            *z = (const T *)j->z + i0, *g = (const T *)j->g + i0;            \
    if (j->da)                                                               \
      bin_bwa_tab_##S[j->path](a, b, 1, z, g, (T *)j->da + i0, i1 - i0);     \
    if (j->db)                                                               \
      bin_bwb_tab_##S[j->path](a, 1, b, z, g, (T *)j->db + i0, i1 - i0);     \
  }                                                                          \
  static void bin_forward_##S(const tg__bcast *p, const T *a, const T *b,    \
                              T *z, int path) {                              \
    if (p->rows == 1 && p->inner[0] && p->inner[1]) {                        \
      tg__bin_job j = {.a = a, .b = b, .z = z, .path = path};                \
      tg__par_range(p->len, TG__BIN_PAR_MIN, bin_fwd_range_##S, &j);         \
      return;                                                                \
    }                                                                        \
    int64_t idx[TG_MAX_DIMS] = {0}, off[TG__BC_MAX] = {0};                   \
    for (int64_t r = 0; r < p->rows; r++) {                                  \
      bin_fwd_tab_##S[path](a + off[0], p->inner[0], b + off[1],             \
                            p->inner[1], z + r * p->len, p->len);            \
      tg__bcast_next(p, idx, off);                                           \
    }                                                                        \
  }                                                                          \
  static void bin_backward_##S(const tg__bcast *p, const T *a, const T *b,   \
                               const T *z, const T *g, T *da, T *db,         \
                               int path) {                                   \
    if (p->rows == 1 && p->inner[0] && p->inner[1]) {                        \
      tg__bin_job j = {.a = a, .b = b, .z = z, .g = g, .da = da, .db = db,   \
                       .path = path};                                        \
      tg__par_range(p->len, TG__BIN_PAR_MIN, bin_bwd_range_##S, &j);         \
      return;                                                                \
    }                                                                        \
    int64_t idx[TG_MAX_DIMS] = {0}, off[TG__BC_MAX] = {0};                   \
    for (int64_t r = 0; r < p->rows; r++) {                                  \
      const int64_t o = r * p->len;                                          \
      if (da)                                                                \
        bin_bwa_##S(path, a + off[0], p->inner[0], b + off[1], p->inner[1],  \
                    z + o, g + o, da + off[0], p->len);                      \
      if (db)                                                                \
        bin_bwb_##S(path, a + off[0], p->inner[0], b + off[1], p->inner[1],  \
                    z + o, g + o, db + off[1], p->len);                      \
      tg__bcast_next(p, idx, off);                                           \
    }                                                                        \
  }

#define TG__BINARY_OP()                                                       \
  TG__BOTH(TG__BIN_KERNELS)                                                  \
  static int bin_forward(tg_tape *t, tg_node *n) {                           \
    (void)t;                                                                 \
    char fn_[48];                                                            \
    int rc = tg__simd_check(tg__fn_of(n->op, fn_, sizeof fn_));              \
    if (rc) return rc;                                                       \
    tg__bcast p;                                                             \
    tg__bcast_plan(&p, n->out, n->in, 2);                                    \
    int path = tg__simd_path();                                              \
    if (n->out->dtype == TG_F32)                                             \
      bin_forward_f32(&p, n->in[0]->data, n->in[1]->data, n->out->data,      \
                      path);                                                 \
    else                                                                     \
      bin_forward_f64(&p, n->in[0]->data, n->in[1]->data, n->out->data,      \
                      path);                                                 \
    return TG_OK;                                                            \
  }                                                                          \
  static void bin_backward(const tg_node *n) {                               \
    void *da = tg__gin(n, 0), *db = tg__gin(n, 1);                           \
    if (!da && !db) return;                                                  \
    tg__bcast p;                                                             \
    tg__bcast_plan(&p, n->out, n->in, 2);                                    \
    const tg_tensor *z = n->out;                                             \
    int path = tg__simd_path();                                              \
    if (z->dtype == TG_F32)                                                  \
      bin_backward_f32(&p, n->in[0]->data, n->in[1]->data, z->data, z->grad, \
                       da, db, path);                                        \
    else                                                                     \
      bin_backward_f64(&p, n->in[0]->data, n->in[1]->data, z->data, z->grad, \
                       da, db, path);                                        \
  }

/* The test cases every binary op shares: equal shapes, [N,C] with [C] and
 * the other way round, [N,1] with [1,C], general broadcasts, 0-d operands
 * on either side and on both, size-1 dimensions, and shapes that do not
 * broadcast. da and db are the inputs' test domains. */
#define TG__BIN_CASES(da, db)                                                 \
  {.ndim = {2, 2}, .shape = {{3, 4}, {3, 4}}, .domain = {da, db}},           \
  {.ndim = {2, 1}, .shape = {{4, 3}, {3}}, .domain = {da, db}},              \
  {.ndim = {1, 2}, .shape = {{3}, {4, 3}}, .domain = {da, db}},              \
  {.ndim = {2, 2}, .shape = {{4, 1}, {1, 3}}, .domain = {da, db}},           \
  {.ndim = {3, 2}, .shape = {{2, 1, 3}, {4, 1}}, .domain = {da, db}},        \
  {.ndim = {4, 3}, .shape = {{2, 3, 1, 2}, {3, 4, 1}}, .domain = {da, db}},  \
  {.ndim = {0, 2}, .shape = {{0}, {2, 3}}, .domain = {da, db}},              \
  {.ndim = {2, 0}, .shape = {{2, 3}, {0}}, .domain = {da, db}},              \
  {.ndim = {0, 0}, .domain = {da, db}},                                      \
  {.ndim = {3, 4}, .shape = {{1, 3, 1}, {2, 1, 1, 1}}, .domain = {da, db}},  \
  {.ndim = {2, 1}, .shape = {{1, 1}, {1}}, .domain = {da, db}},              \
  {.ndim = {2, 1}, .shape = {{2, 3}, {4}}, .domain = {da, db},               \
   .status = TG_ESHAPE,                                                      \
   .msg = "shapes do not broadcast: a is [2,3], b is [4]"},                  \
  {.ndim = {2, 2}, .shape = {{2, 3}, {3, 2}}, .domain = {da, db},            \
   .status = TG_ESHAPE, .msg = "a is [2,3], b is [3,2]"},                    \
  {.ndim = {3, 2}, .shape = {{2, 1, 3}, {2, 2}}, .domain = {da, db},         \
   .status = TG_ESHAPE, .msg = "a is [2,1,3], b is [2,2]"}

/* sparse.c: for an op whose left operand is a: a's sparse form in t's
 * arena when a is a caller-owned float32 [M,K] matrix (data, not an op's
 * result) that is mostly zeros; NULL otherwise, and the op runs the dense
 * product. by_col adds the by-column copy, which only the weight gradient
 * reads: ask for it when backward will need it. */
tg__sparse *tg__spmm_of(tg_tape *t, const tg_tensor *a, bool by_col);

/* oplist.c: every op, from ops/ops.def. */
#define TG_OP(name) extern const tg_opdef tg__op_##name;
#include "ops.def"
#undef TG_OP
extern const tg_opdef *const tg__ops[];
extern const int tg__n_ops;

/* A public constructor's body: applies op to the listed inputs. */
#define TG__APPLY(t, op, args, ...)                                         \
  tg__apply((t), &tg__op_##op, (tg_tensor *const[]){__VA_ARGS__}, (args))

#endif
