/* ops/pick.c: y[i] = a[i, index[i]] for a[N,C] and int32 index[N]; the
 * gradient goes back to the picked entries only: da[i, index[i]] += g[i].
 * Forward keeps a copy of the checked indices, so backward never trusts the
 * caller's buffer a second time. */
#include <string.h>

#include "op.h"

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

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  (void)a;
  int rc = tg__check_2d(fn, in[0], "a");
  if (!rc) rc = tg__check_classes(fn, in[0], in[1]);
  out->ndim = 1;
  out->shape[0] = in[0]->shape[0];
  return rc;
}

static int forward(tg_tape *t, tg_node *n) {
  const tg_tensor *a = n->in[0];
  int64_t rows = a->shape[0], cols = a->shape[1];
  const int32_t *idx = n->in[1]->data;
  if (tg__recorded(n)) {
    if (!(n->saved = tg__arena_alloc(t, (size_t)rows * sizeof *idx)))
      return tg__err(TG_ENOMEM, "tg_pick: out of memory");
    memcpy(n->saved, idx, (size_t)rows * sizeof *idx);
  }
  for (int64_t r = 0; r < rows; r++) {
    if (a->dtype == TG_F32)
      ((float *)n->out->data)[r] = ((const float *)a->data)[r * cols + idx[r]];
    else
      ((double *)n->out->data)[r] = ((const double *)a->data)[r * cols + idx[r]];
  }
  return TG_OK;
}

static const tg_opcase cases[] = {
    {.ndim = {2, 1}, .shape = {{4, 3}, {4}}, .domain = {0, TG__DOM_CLASS}, .classes = 3},
    {.ndim = {2, 1}, .shape = {{1, 5}, {1}}, .domain = {0, TG__DOM_CLASS}, .classes = 5},
};

const tg_opdef tg__op_pick = {.name = "pick", .n_in = 2,
                              .in_names = {"a", "index"},
                              .flags = TG__IN_INT(1), .rule = rule,
                              .forward = forward, .backward = backward,
                              TG__CASES(cases)};

tg_tensor *tg_pick(tg_tape *t, tg_tensor *a, tg_tensor *index) {
  return TG__APPLY(t, pick, NULL, a, index);
}
