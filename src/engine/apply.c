/* src/engine/apply.c: the door every op goes through. It does once what
 * every op needs: NULL propagation, liveness, dtype checks, the op's shape
 * rule, the result and its node, the forward kernel, the finite check. */
#include <string.h>

#include "engine.h"

const char *tg__fn_of(const tg_opdef *op, char *buf, size_t n) {
  if (op->api) return op->api;
  snprintf(buf, n, "tg_%s", op->name);
  return buf;
}

static const char *in_name(const tg_opdef *op, int k) {
  static const char *const abc[TG__MAX_IN] = {"a", "b", "c"};
  return op->in_names[k] ? op->in_names[k] : abc[k];
}

/* Every input of the dtype its flags ask: int32 where flagged, else float,
 * all floats of one dtype. */
static int check_dtypes(const char *fn, const tg_opdef *op,
                        tg_tensor *const *in) {
  int first = -1;
  for (int k = 0; k < op->n_in; k++) {
    const tg_tensor *x = in[k];
    if (!x) continue; /* optional */
    if (op->flags & TG__IN_INT(k)) {
      if (x->dtype != TG_I32)
        return tg__err(TG_EDTYPE, "%s: %s is %s; it must be int32", fn,
                       in_name(op, k), tg_dtype_name(x->dtype));
      continue;
    }
    if (!tg__is_float(x->dtype))
      return tg__err(TG_EDTYPE, "%s: %s is %s; it must be float32 or float64",
                     fn, in_name(op, k), tg_dtype_name(x->dtype));
    if (first < 0)
      first = k;
    else if (x->dtype != in[first]->dtype)
      return tg__err(TG_EDTYPE, "%s: dtypes differ: %s is %s, %s is %s", fn,
                     in_name(op, first), tg_dtype_name(in[first]->dtype),
                     in_name(op, k), tg_dtype_name(x->dtype));
  }
  return TG_OK;
}

tg_tensor *tg__apply(tg_tape *t, const tg_opdef *op, tg_tensor *const *in,
                     const tg_opargs *args) {
  char buf[64];
  const char *fn = tg__fn_of(op, buf, sizeof buf);
  /* A NULL required input is an earlier op's failure: keep its message. */
  for (int k = 0; k < op->n_in; k++)
    if (!in[k] && !(op->flags & TG__IN_OPT(k))) return NULL;
  const char *names[TG__MAX_IN];
  for (int k = 0; k < op->n_in; k++) names[k] = in_name(op, k);
  if (tg__check_inputs(fn, t, in, names, op->n_in) || check_dtypes(fn, op, in))
    return NULL;
  static const tg_opargs none;
  if (!args) args = &none;
  tg_outshape os = {.dtype = TG_F32};
  for (int k = 0; k < op->n_in; k++)
    if (in[k] && !(op->flags & TG__IN_INT(k))) {
      os.dtype = in[k]->dtype;
      break;
    }
  if (op->rule(fn, in, args, &os)) return NULL;
  tg_tensor *y = tg__emit(t, op, os.dtype, os.ndim, os.shape, in, op->n_in);
  if (!y) return NULL;
  tg_node own, *n = tg__node_of(y);
  if (!n) {
    memset(&own, 0, sizeof own);
    own.op = op;
    for (int k = 0; k < op->n_in; k++) own.in[k] = in[k];
    own.out = y;
    n = &own;
  }
  n->args = *args;
  if (op->forward(t, n)) return NULL;
  return tg__done(t, y, fn);
}
