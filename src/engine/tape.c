/* src/engine/tape.c: the tape: an arena for op results, the node list, and the
 * reverse walk that calls each op's backward kernel. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "engine.h"

#define MIN_CHUNK ((size_t)1 << 20)

tg_tape *tg_tape_new(void) {
  tg_tape *t = tg__calloc(1, sizeof *t);
  if (!t) {
    tg__err(TG_ENOMEM, "tg_tape_new: out of memory");
    return NULL;
  }
  t->grad_enabled = true;
  t->gen = 1;
  return t;
}

static void free_chunks(tg_tape *t) {
  for (size_t i = 0; i < t->n_chunks; i++) tg__aligned_free(t->chunks[i]);
  tg__free(t->chunks);
  tg__free(t->chunk_cap);
  t->chunks = NULL;
  t->chunk_cap = NULL;
  t->n_chunks = t->cur = t->used = 0;
}

void tg_tape_free(tg_tape *t) {
  if (!t) return;
  free_chunks(t);
  for (size_t i = 0; i < t->n_hblocks; i++) tg__free(t->headers[i]);
  tg__free(t->headers);
  tg__free(t->nodes);
  tg__prof_free(t);
  tg__free(t);
  tg__gemm_release();
}

void tg_tape_clear(tg_tape *t) {
  if (!t) return;
  /* A step that overflowed into several chunks is merged into one chunk of
   * the largest step's size (the peak: every allocation of that step end to
   * end, with none of the doubling chunks' unused tails), so from the next
   * step on the arena never grows while the steps stay as large. */
  if (t->n_chunks > 1) {
    size_t total = t->peak;
    free_chunks(t);
    char **c = tg__malloc(sizeof *c);
    size_t *cap = tg__malloc(sizeof *cap);
    char *mem = (c && cap) ? tg__aligned_alloc(total) : NULL;
    if (mem) {
      c[0] = mem;
      cap[0] = total;
      t->chunks = c;
      t->chunk_cap = cap;
      t->n_chunks = 1;
    } else {
      tg__free(c);
      tg__free(cap);
    }
  }
  t->cur = t->used = 0;
  t->in_use = 0;
  t->h_used = 0;
  t->n_nodes = 0;
  t->gen++;
}

static void note_use(tg_tape *t, size_t n) {
  t->in_use += n;
  if (t->in_use > t->peak) t->peak = t->in_use;
}

void *tg__arena_alloc(tg_tape *t, size_t n) {
  if (n > SIZE_MAX / 2) return NULL;
  n = (n + TG__ALIGN - 1) & ~(size_t)(TG__ALIGN - 1);
  if (t->n_chunks && n <= t->chunk_cap[t->cur] - t->used) {
    void *p = t->chunks[t->cur] + t->used;
    t->used += n;
    note_use(t, n);
    return p;
  }
  /* Move to the next kept chunk if it fits, else append a new one. */
  if (t->cur + 1 < t->n_chunks && n <= t->chunk_cap[t->cur + 1]) {
    t->cur++;
    t->used = n;
    note_use(t, n);
    return t->chunks[t->cur];
  }
  size_t last = t->n_chunks ? t->chunk_cap[t->n_chunks - 1] : 0;
  size_t cap = last < SIZE_MAX / 4 && last * 2 > MIN_CHUNK ? last * 2 : MIN_CHUNK;
  if (cap < n) cap = n;
  char **c = tg__realloc(t->chunks, (t->n_chunks + 1) * sizeof *c);
  if (!c) return NULL;
  t->chunks = c;
  size_t *cc = tg__realloc(t->chunk_cap, (t->n_chunks + 1) * sizeof *cc);
  if (!cc) return NULL;
  t->chunk_cap = cc;
  char *mem = tg__aligned_alloc(cap);
  if (!mem) return NULL;
  /* Chunks after cur that were too small stay behind the new one, unused
   * until the next clear merges everything. */
  t->chunks[t->n_chunks] = mem;
  t->chunk_cap[t->n_chunks] = cap;
  t->cur = t->n_chunks++;
  t->used = n;
  note_use(t, n);
  return mem;
}

bool tg_tape_set_grad(tg_tape *t, bool enabled) {
  if (!t) return false;
  bool old = t->grad_enabled;
  t->grad_enabled = enabled;
  return old;
}

bool tg_tape_set_check_finite(tg_tape *t, bool enabled) {
  if (!t) return false;
  bool old = t->check_finite;
  t->check_finite = enabled;
  return old;
}

size_t tg_tape_nodes(const tg_tape *t) { return t ? t->n_nodes : 0; }

size_t tg_tape_arena_bytes(const tg_tape *t) {
  size_t total = 0;
  if (t)
    for (size_t i = 0; i < t->n_chunks; i++) total += t->chunk_cap[i];
  return total;
}

size_t tg_tape_arena_peak(const tg_tape *t) { return t ? t->peak : 0; }

/* A tape tensor is usable only on its own tape and before its clear. */
int tg__check_alive(const char *fn, const tg_tensor *x, const char *what) {
  if (x->tape && x->gen != x->tape->gen)
    return tg__err(TG_ESTATE,
                   "%s: %s is from before the last tg_tape_clear and no longer "
                   "exists", fn, what);
  return TG_OK;
}

static int check_live(const char *fn, const tg_tape *t, const tg_tensor *x,
                      const char *what) {
  if (x->tape && x->tape != t)
    return tg__err(TG_ESTATE, "%s: %s was made on another tape", fn, what);
  return tg__check_alive(fn, x, what);
}

int tg__check_usable(const char *fn, const tg_tape *t, const tg_tensor *x,
                     const char *what) {
  if (!t) return tg__err(TG_EINVAL, "%s: tape is NULL", fn);
  return check_live(fn, t, x, what);
}

/* The next tensor header: headers live in blocks of their own that the tape
 * keeps, reused in the same order after every clear. */
static tg_tensor *new_header(tg_tape *t) {
  size_t b = t->h_used / TG__HBLOCK;
  if (b == t->n_hblocks) {
    tg_tensor **h = tg__realloc(t->headers, (b + 1) * sizeof *h);
    if (!h) return NULL;
    t->headers = h;
    if (!(h[b] = tg__calloc(TG__HBLOCK, sizeof **h))) return NULL;
    t->n_hblocks++;
  }
  return &t->headers[b][t->h_used++ % TG__HBLOCK];
}

tg_tensor *tg__tape_header(tg_tape *t) {
  tg_tensor *h = new_header(t);
  if (h) memset(h, 0, sizeof *h);
  return h;
}

tg_tensor *tg_const(tg_tape *t, tg_dtype dtype, double value) {
  if (!t) {
    tg__err(TG_EINVAL, "tg_const: tape is NULL");
    return NULL;
  }
  if (!tg__is_float(dtype)) {
    tg__err(TG_EDTYPE, "tg_const: dtype is %s; it must be float32 or float64",
            tg_dtype_name(dtype));
    return NULL;
  }
  tg_tensor *c = tg__tape_header(t);
  void *data = c ? tg__arena_alloc(t, tg__dtype_size(dtype)) : NULL;
  if (!data) {
    tg__err(TG_ENOMEM, "tg_const: out of memory");
    return NULL;
  }
  c->data = data;
  c->dtype = dtype;
  c->numel = 1;
  c->tape = t;
  c->gen = t->gen;
  c->node = -1;
  if (dtype == TG_F32)
    *(float *)data = (float)value;
  else
    *(double *)data = value;
  return c;
}

tg_tensor *tg__emit(tg_tape *t, const tg_opdef *op, tg_dtype dtype, int ndim,
                    const int64_t *shape, tg_tensor *const *in, int n_in) {
  char fb[64];
  const char *fn = tg__fn_of(op, fb, sizeof fb);
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    if (numel && shape[i] > (INT64_MAX / 8) / numel) {
      char sa[96], sb[96] = "";
      tg__shape_str(in[0], sa);
      if (n_in > 1 && in[1]) tg__shape_str(in[1], sb);
      tg__err(TG_ESHAPE, "%s: the result would have too many elements (inputs %s%s%s)",
              fn, sa, *sb ? " and " : "", sb);
      return NULL;
    }
    numel *= shape[i];
  }
  tg_tensor *out = new_header(t);
  bool view = op->flags & TG__OP_VIEW;
  void *data = out && !view
                   ? tg__arena_alloc(t, (size_t)numel * tg__dtype_size(dtype))
                   : NULL;
  if (!out || (!data && !view)) {
    tg__err(TG_ENOMEM, "%s: out of memory for the result", fn);
    return NULL;
  }
  memset(out, 0, sizeof *out);
  out->data = data;
  out->dtype = dtype;
  out->ndim = ndim;
  memcpy(out->shape, shape, (size_t)ndim * sizeof *shape);
  out->numel = numel;
  out->tape = t;
  out->gen = t->gen;
  out->node = -1;

  bool needs = false;
  for (int i = 0; i < n_in; i++)
    if (in[i] && (in[i]->flags & TG__NEEDS_GRAD) &&
        !(i < 8 && (op->flags & (TG__IN_INT(i) | TG__IN_NODIFF(i)))))
      needs = true;
  if (!t->grad_enabled || !needs) return out;

  if (t->n_nodes == t->cap_nodes) {
    size_t cap = t->cap_nodes ? t->cap_nodes * 2 : 64;
    tg_node *nodes = tg__realloc(t->nodes, cap * sizeof *nodes);
    if (!nodes) {
      tg__err(TG_ENOMEM, "%s: out of memory for the tape", fn);
      return NULL;
    }
    t->nodes = nodes;
    t->cap_nodes = cap;
  }
  tg_tensor **ins = tg__arena_alloc(t, (size_t)n_in * sizeof *ins);
  if (!ins) {
    tg__err(TG_ENOMEM, "%s: out of memory for the tape", fn);
    return NULL;
  }
  memcpy(ins, in, (size_t)n_in * sizeof *ins);
  tg_node *nd = &t->nodes[t->n_nodes];
  memset(nd, 0, sizeof *nd);
  nd->op = op;
  nd->in = ins;
  nd->n_in = n_in;
  nd->out = out;
  out->node = (int64_t)t->n_nodes++;
  out->flags |= TG__NEEDS_GRAD;
  return out;
}

tg_node *tg__node_of(tg_tensor *out) {
  return out->node >= 0 ? &out->tape->nodes[out->node] : NULL;
}

tg_tensor *tg__done(tg_tape *t, tg_tensor *out, const char *fn) {
  if (!t->check_finite) return out;
  for (int64_t i = 0; i < out->numel; i++) {
    double v = out->dtype == TG_F32 ? ((const float *)out->data)[i]
                                    : ((const double *)out->data)[i];
    if (!isfinite(v)) {
      char sb[96];
      tg__err(TG_ENONFINITE,
              "%s: first non-finite value on the tape: element %lld of its "
              "%s result is %g", fn, (long long)i, tg__shape_str(out, sb), v);
      return NULL;
    }
  }
  return out;
}

/* Gives x a zeroed grad for this pass; parameters keep theirs (they
 * accumulate across passes). */
static int touch_grad(tg_tape *t, tg_tensor *x) {
  if (x->flags & TG__REQ_GRAD) return TG_OK;
  size_t bytes = (size_t)x->numel * tg__dtype_size(x->dtype);
  if (!x->grad && !(x->grad = tg__arena_alloc(t, bytes)))
    return tg__err(TG_ENOMEM, "tg_backward: out of memory for gradients");
  if (x->bw_pass != t->bw_pass) {
    tg__grad_zero(x); /* the activations' grads: several MiB in a CNN step */
    x->bw_pass = t->bw_pass;
  }
  return TG_OK;
}

static int backward(tg_tape *t, tg_tensor *out, const tg_tensor *gout,
                    const char *fn) {
  char sb[96], sb2[96];
  if (!t) return tg__err(TG_EINVAL, "%s: tape is NULL", fn);
  /* A NULL loss usually means an op failed: keep that op's message. */
  if (!out)
    return tg_last_status() ? tg_last_status()
                            : tg__err(TG_EINVAL, "%s: output tensor is NULL", fn);
  int rc = check_live(fn, t, out, "the output");
  if (rc) return rc;
  if (!out->tape)
    return tg__err(TG_ESTATE, "%s: the output was not made by an op on this tape", fn);
  if (out->node < 0 || !(out->flags & TG__NEEDS_GRAD))
    return tg__err(TG_ESTATE,
                   "%s: the output depends on no tensor that requires grad (or "
                   "was made with recording off)", fn);
  if (gout) {
    if ((rc = tg__check_alive(fn, gout, "the output gradient"))) return rc;
    if (gout->dtype != out->dtype || !tg__same_shape(gout, out))
      return tg__err(TG_ESHAPE,
                     "%s: output gradient is %s %s, output is %s %s", fn,
                     tg_dtype_name(gout->dtype), tg__shape_str(gout, sb2),
                     tg_dtype_name(out->dtype), tg__shape_str(out, sb));
  } else if (out->numel != 1) {
    return tg__err(TG_ESHAPE,
                   "%s: the loss must have one element, got %s; use "
                   "tg_backward_grad to give the gradient of a non-scalar output",
                   fn, tg__shape_str(out, sb));
  }

  t->bw_pass++;
  if ((rc = touch_grad(t, out))) return rc;
  /* gout has out's dtype (checked above): a typed loop, not tg_get per
   * element, whose checks cost more than a whole backward pass of a
   * convolution with a large output. */
  if (!gout) {
    if (out->dtype == TG_F32)
      ((float *)out->grad)[0] += 1.0f;
    else
      ((double *)out->grad)[0] += 1.0;
  } else if (out->dtype == TG_F32) {
    float *restrict dst = out->grad;
    const float *restrict src = gout->data;
    for (int64_t i = 0; i < out->numel; i++) dst[i] += src[i];
  } else {
    double *restrict dst = out->grad;
    const double *restrict src = gout->data;
    for (int64_t i = 0; i < out->numel; i++) dst[i] += src[i];
  }

  /* Nodes after the output's cannot reach it. A node runs only if its
   * output was reached from `out` in this pass. */
  for (int64_t k = out->node; k >= 0; k--) {
    tg_node *nd = &t->nodes[k];
    if (nd->out->bw_pass != t->bw_pass) continue;
    const int slot = t->profile ? nd->prof : 0;
    const double start = slot ? tg__prof_now() : 0;
    for (int i = 0; i < nd->n_in; i++) {
      tg_tensor *x = nd->in[i];
      if (x && (x->flags & TG__NEEDS_GRAD) && (rc = touch_grad(t, x))) return rc;
    }
    nd->op->backward(nd);
    if (slot) tg__prof_backward(t, slot, start);
  }
  return TG_OK;
}

int tg_backward(tg_tape *t, tg_tensor *loss) {
  return backward(t, loss, NULL, "tg_backward");
}

int tg_backward_grad(tg_tape *t, tg_tensor *out, const tg_tensor *grad_out) {
  if (!grad_out)
    return tg__err(TG_EINVAL, "tg_backward_grad: output gradient is NULL");
  return backward(t, out, grad_out, "tg_backward_grad");
}
