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

/* Input k's name in messages: the op's, or a, b, c, d, e; a variadic op's
 * inputs are named by index. */
static const char *in_name(const tg_opdef *op, int k, char *buf, size_t n) {
  static const char *const abc[TG__MAX_IN] = {"a", "b", "c", "d", "e"};
  if (op->n_in == TG__VARIADIC) {
    snprintf(buf, n, "%s[%d]", op->in_names[0] ? op->in_names[0] : "inputs", k);
    return buf;
  }
  return op->in_names[k] ? op->in_names[k] : abc[k];
}

static unsigned in_flags(const tg_opdef *op, int k) {
  return k < 8 ? op->flags & (TG__IN_INT(k) | TG__IN_OPT(k) | TG__IN_NODIFF(k)) : 0;
}

/* Every input of the dtype its flags ask: int32 where flagged, else float,
 * all floats of one dtype. */
static int check_dtypes(const char *fn, const tg_opdef *op,
                        tg_tensor *const *in, int n) {
  char b1[48], b2[48];
  int first = -1;
  for (int k = 0; k < n; k++) {
    const tg_tensor *x = in[k];
    if (!x) continue; /* optional */
    if (in_flags(op, k) & TG__IN_INT(k)) {
      if (x->dtype != TG_I32)
        return tg__err(TG_EDTYPE, "%s: %s is %s; it must be int32", fn,
                       in_name(op, k, b1, sizeof b1), tg_dtype_name(x->dtype));
      continue;
    }
    if (!tg__is_float(x->dtype))
      return tg__err(TG_EDTYPE, "%s: %s is %s; it must be float32 or float64",
                     fn, in_name(op, k, b1, sizeof b1), tg_dtype_name(x->dtype));
    if (first < 0)
      first = k;
    else if (x->dtype != in[first]->dtype)
      return tg__err(TG_EDTYPE, "%s: dtypes differ: %s is %s, %s is %s", fn,
                     in_name(op, first, b1, sizeof b1),
                     tg_dtype_name(in[first]->dtype),
                     in_name(op, k, b2, sizeof b2), tg_dtype_name(x->dtype));
  }
  return TG_OK;
}

tg_tensor *tg__apply_n(tg_tape *t, const tg_opdef *op, tg_tensor *const *in,
                       int n, const tg_opargs *args) {
  char buf[64], nb[48];
  const char *fn = tg__fn_of(op, buf, sizeof buf);
  if (op->n_in == TG__VARIADIC ? n < 1 || !in : n != op->n_in) {
    tg__err(TG_EINVAL, "%s: %d inputs given; it takes %s", fn, n,
            op->n_in == TG__VARIADIC ? "at least 1" : "a fixed number");
    return NULL;
  }
  /* A NULL required input is an earlier op's failure: keep its message. */
  for (int k = 0; k < n; k++)
    if (!in[k] && !(in_flags(op, k) & TG__IN_OPT(k))) return NULL;
  if (!t) {
    tg__err(TG_EINVAL, "%s: tape is NULL", fn);
    return NULL;
  }
  for (int k = 0; k < n; k++)
    if (in[k] && tg__check_usable(fn, t, in[k], in_name(op, k, nb, sizeof nb)))
      return NULL;
  if (check_dtypes(fn, op, in, n)) return NULL;
  tg_opargs a = args ? *args : (tg_opargs){0};
  a.n_in = n;
  args = &a;
  tg_outshape os = {.dtype = TG_F32};
  for (int k = 0; k < n; k++)
    if (in[k] && !(in_flags(op, k) & TG__IN_INT(k))) {
      os.dtype = in[k]->dtype;
      break;
    }
  if (op->rule(fn, in, args, &os)) return NULL;
  int slot = 0;
  if (t->profile && (slot = tg__prof_slot(t, op, fn)) < 0) return NULL;
  tg_tensor *y = tg__emit(t, op, os.dtype, os.ndim, os.shape, in, n);
  if (!y) return NULL;
  tg_node own, *nd = tg__node_of(y);
  if (!nd) {
    memset(&own, 0, sizeof own);
    own.op = op;
    own.in = (tg_tensor **)in;
    own.n_in = n;
    own.out = y;
    nd = &own;
  }
  nd->args = *args;
  nd->prof = slot;
  if (slot ? tg__prof_forward(t, nd, slot) : op->forward(t, nd)) return NULL;
  return tg__done(t, y, fn);
}
