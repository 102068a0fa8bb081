/* ops/where.c: z = mask ? a : b elementwise, for an int32 mask (non-zero
 * picks a), with mask, a and b broadcast together by NumPy's rule.
 * da += g where the mask is set, db += g where it is not, each summed over
 * the elements its input was broadcast to; the mask gets no gradient. */
#include "op.h"

/* One row of the broadcast walk; sm, sa and sb are 1 or 0 (broadcast). */
#define KERNELS(T, S)                                                        \
  static void where_row_##S(const int32_t *restrict m, int64_t sm,           \
                            const T *restrict a, int64_t sa,                 \
                            const T *restrict b, int64_t sb, T *restrict z,  \
                            int64_t n) {                                     \
    for (int64_t i = 0; i < n; i++) z[i] = m[i * sm] ? a[i * sa] : b[i * sb]; \
  }                                                                          \
  /* d (stride sd) += g where (mask != 0) == set. */                         \
  static void where_acc_##S(const int32_t *restrict m, int64_t sm,           \
                            const T *restrict g, T *restrict d, int64_t sd,  \
                            bool set, int64_t n) {                           \
    if (sd) {                                                                \
      for (int64_t i = 0; i < n; i++)                                        \
        d[i] += (m[i * sm] != 0) == set ? g[i] : 0;                          \
    } else {                                                                 \
      T s = 0;                                                               \
      for (int64_t i = 0; i < n; i++) s += (m[i * sm] != 0) == set ? g[i] : 0; \
      d[0] += s;                                                             \
    }                                                                        \
  }                                                                          \
  static void where_fwd_##S(const tg__bcast *p, const int32_t *m,            \
                            const T *a, const T *b, T *z) {                  \
    int64_t idx[TG_MAX_DIMS] = {0}, off[TG__BC_MAX] = {0};                   \
    for (int64_t r = 0; r < p->rows; r++) {                                  \
      where_row_##S(m + off[0], p->inner[0], a + off[1], p->inner[1],        \
                    b + off[2], p->inner[2], z + r * p->len, p->len);        \
      tg__bcast_next(p, idx, off);                                           \
    }                                                                        \
  }                                                                          \
  static void where_bwd_##S(const tg__bcast *p, const int32_t *m,            \
                            const T *g, T *da, T *db) {                      \
    int64_t idx[TG_MAX_DIMS] = {0}, off[TG__BC_MAX] = {0};                   \
    for (int64_t r = 0; r < p->rows; r++) {                                  \
      const T *gr = g + r * p->len;                                          \
      if (da)                                                                \
        where_acc_##S(m + off[0], p->inner[0], gr, da + off[1], p->inner[1], \
                      true, p->len);                                         \
      if (db)                                                                \
        where_acc_##S(m + off[0], p->inner[0], gr, db + off[2], p->inner[2], \
                      false, p->len);                                        \
      tg__bcast_next(p, idx, off);                                           \
    }                                                                        \
  }
TG__BOTH(KERNELS)

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  (void)a;
  static const char *const names[] = {"mask", "a", "b"};
  return tg__bcast_shape(fn, names, in, 3, out);
}

static int forward(tg_tape *t, tg_node *n) {
  (void)t;
  tg__bcast p;
  tg__bcast_plan(&p, n->out, n->in, 3);
  if (n->out->dtype == TG_F32)
    where_fwd_f32(&p, n->in[0]->data, n->in[1]->data, n->in[2]->data,
                  n->out->data);
  else
    where_fwd_f64(&p, n->in[0]->data, n->in[1]->data, n->in[2]->data,
                  n->out->data);
  return TG_OK;
}

static void backward(const tg_node *n) {
  void *da = tg__gin(n, 1), *db = tg__gin(n, 2);
  if (!da && !db) return;
  tg__bcast p;
  tg__bcast_plan(&p, n->out, n->in, 3);
  if (n->out->dtype == TG_F32)
    where_bwd_f32(&p, n->in[0]->data, n->out->grad, da, db);
  else
    where_bwd_f64(&p, n->in[0]->data, n->out->grad, da, db);
}

#define M TG__DOM_CLASS
static const tg_opcase cases[] = {
    {.ndim = {2, 2, 2}, .shape = {{3, 4}, {3, 4}, {3, 4}}, .domain = {M},
     .classes = 2},
    {.ndim = {1, 2, 0}, .shape = {{3}, {4, 3}, {0}}, .domain = {M},
     .classes = 2},
    {.ndim = {2, 2, 2}, .shape = {{4, 1}, {1, 3}, {4, 3}}, .domain = {M},
     .classes = 2},
    {.ndim = {3, 2, 1}, .shape = {{2, 1, 3}, {4, 1}, {3}}, .domain = {M},
     .classes = 2},
    {.ndim = {3, 1, 1}, .shape = {{2, 3, 4}, {1}, {4}}, .domain = {M},
     .classes = 2},
    {.ndim = {0, 2, 2}, .shape = {{0}, {2, 3}, {2, 1}}, .domain = {M},
     .classes = 2},
    {.ndim = {0, 0, 0}, .domain = {M}, .classes = 2},
    {.ndim = {2, 3, 1}, .shape = {{1, 1}, {1, 2, 1}, {1}}, .domain = {M},
     .classes = 2},
    {.ndim = {1, 2, 1}, .shape = {{2}, {2, 3}, {3}}, .domain = {M},
     .classes = 2, .status = TG_ESHAPE,
     .msg = "shapes do not broadcast: mask is [2], a is [2,3], b is [3]"},
    {.ndim = {2, 2, 1}, .shape = {{2, 3}, {2, 3}, {2}}, .domain = {M},
     .classes = 2, .status = TG_ESHAPE, .msg = "b is [2]"},
};
#undef M

const tg_opdef tg__op_where = {.name = "where", .n_in = 3,
                               .in_names = {"mask", "a", "b"},
                               .flags = TG__IN_INT(0), .rule = rule,
                               .forward = forward, .backward = backward,
                               TG__CASES(cases)};

tg_tensor *tg_where(tg_tape *t, tg_tensor *mask, tg_tensor *a, tg_tensor *b) {
  return TG__APPLY(t, where, NULL, mask, a, b);
}
