/* ops/sparse.c: the sparse form of an op's left operand, built in the tape's
 * arena for the kernels of src/kernels/spmm.c. */
#include <string.h>

#include "op.h"

tg__sparse *tg__spmm_of(tg_tape *t, const tg_tensor *a, bool by_col) {
  if (a->tape || a->dtype != TG_F32 || a->ndim != 2 || !tg__spmm_enabled())
    return NULL;
  int64_t M = a->shape[0], K = a->shape[1];
  if ((double)M * (double)K > 2147483647.0) return NULL; /* int32 indices */
  int64_t nnz = tg__spmm_nnz(a->data, M, K);
  if (nnz < 0) return NULL;
  /* Room for as many non-zeros as the sparse path ever takes, not this
   * batch's count: the arena's use per step then depends on the shapes
   * alone, and a later batch with more non-zeros never makes it grow (a
   * steady state allocates nothing). */
  size_t nz = (size_t)tg__spmm_max_nnz(M, K) + TG__SPMM_SLACK;
  tg__sparse *s = tg__arena_alloc(t, sizeof *s);
  if (!s) return NULL;
  memset(s, 0, sizeof *s);
  s->rowptr = tg__arena_alloc(t, (size_t)(M + 1) * sizeof(int32_t));
  s->colidx = tg__arena_alloc(t, nz * sizeof(int32_t));
  s->val = tg__arena_alloc(t, nz * sizeof(float));
  if (by_col) {
    s->colptr = tg__arena_alloc(t, (size_t)(K + 1) * sizeof(int32_t));
    s->rowidx = tg__arena_alloc(t, nz * sizeof(int32_t));
    s->cval = tg__arena_alloc(t, nz * sizeof(float));
  }
  if (!s->rowptr || !s->colidx || !s->val ||
      (by_col && (!s->colptr || !s->rowidx || !s->cval)))
    return NULL; /* the dense product needs no memory */
  tg__spmm_build(s, a->data, M, K, by_col);
  return s;
}
