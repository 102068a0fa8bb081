/* ops/pick.c: y[i] = a[i, index[i]] for a[N,C] and int32 index[N]; the
 * gradient goes back to the picked entries only: da[i, index[i]] += g[i].
 * Forward keeps a copy of the checked indices, so backward never trusts the
 * caller's buffer a second time. */
#include <string.h>

#include "../src/internal.h"

static void backward(const tg_node *n) {
  void *da = tg__gin(n, 0);
  if (!da) return;
  const int32_t *idx = n->saved;
  int64_t rows = n->in[0]->shape[0], cols = n->in[0]->shape[1];
  for (int64_t r = 0; r < rows; r++) {
    if (n->out->dtype == TG_F32)
      ((float *)da)[r * cols + idx[r]] += ((const float *)n->out->grad)[r];
    else
      ((double *)da)[r * cols + idx[r]] += ((const double *)n->out->grad)[r];
  }
}

static tg_tensor *call(tg_tape *t, tg_tensor *const *in, const tg_opcase *c) {
  (void)c;
  return tg_pick(t, in[0], in[1]);
}

static const tg_opcase cases[] = {
    {.ndim = {2, 1}, .shape = {{4, 3}, {4}}, .domain = {0, TG__DOM_CLASS}, .i = 3},
    {.ndim = {2, 1}, .shape = {{1, 5}, {1}}, .domain = {0, TG__DOM_CLASS}, .i = 5},
};

const tg_opdef tg__op_pick = {"pick", 2, backward, call, cases, 2};

int tg__check_classes(const char *fn, const tg_tensor *a, const tg_tensor *index) {
  char sa[96], si[96];
  if (index->dtype != TG_I32)
    return tg__err(TG_EDTYPE, "%s: class indices must be int32, got %s", fn,
                   tg_dtype_name(index->dtype));
  if (index->ndim != 1 || index->shape[0] != a->shape[0])
    return tg__err(TG_ESHAPE,
                   "%s: class indices must be [N] for input [N,C]: input is %s, "
                   "indices are %s", fn, tg__shape_str(a, sa),
                   tg__shape_str(index, si));
  const int32_t *idx = index->data;
  for (int64_t r = 0; r < index->numel; r++)
    if (idx[r] < 0 || idx[r] >= a->shape[1])
      return tg__err(TG_ERANGE,
                     "%s: class index %d at row %lld is out of range for %lld "
                     "classes", fn, idx[r], (long long)r, (long long)a->shape[1]);
  return TG_OK;
}

tg_tensor *tg_pick(tg_tape *t, tg_tensor *a, tg_tensor *index) {
  tg_tensor *in[2] = {a, index};
  if (!a || !index) return NULL;
  if (tg__check_inputs("tg_pick", t, in, 2) ||
      tg__check_float("tg_pick", a, "a") || tg__check_2d("tg_pick", a, "a") ||
      tg__check_classes("tg_pick", a, index))
    return NULL;
  int64_t rows = a->shape[0], cols = a->shape[1];
  tg_tensor *y = tg__emit(t, &tg__op_pick, a->dtype, 1, &rows, in, 2);
  if (!y) return NULL;
  const int32_t *idx = index->data;
  tg_node *nd = tg__node_of(y);
  if (nd) {
    if (!(nd->saved = tg__arena_alloc(t, (size_t)rows * sizeof *idx))) {
      tg__err(TG_ENOMEM, "tg_pick: out of memory");
      return NULL;
    }
    memcpy(nd->saved, idx, (size_t)rows * sizeof *idx);
  }
  for (int64_t r = 0; r < rows; r++) {
    if (a->dtype == TG_F32)
      ((float *)y->data)[r] = ((const float *)a->data)[r * cols + idx[r]];
    else
      ((double *)y->data)[r] = ((const double *)a->data)[r * cols + idx[r]];
  }
  return tg__done(t, y, "tg_pick");
}
