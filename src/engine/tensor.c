/* src/engine/tensor.c: tensor creation, queries, element access, printing and the
 * random initialisers. */
#include <math.h>
#include <string.h>
#include <xxhash.h>

#include "engine.h"

size_t tg__dtype_size(tg_dtype d) { return d == TG_F64 ? 8 : 4; }
bool tg__is_float(tg_dtype d) { return d == TG_F32 || d == TG_F64; }

const char *tg_dtype_name(tg_dtype d) {
  switch (d) {
  case TG_F32: return "float32";
  case TG_F64: return "float64";
  case TG_I32: return "int32";
  }
  return "unknown";
}

bool tg__same_shape(const tg_tensor *a, const tg_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

void tg__rows_cols(const tg_tensor *t, int64_t *rows, int64_t *cols) {
  *cols = t->ndim ? t->shape[t->ndim - 1] : 1;
  *rows = 1;
  for (int i = 0; i + 1 < t->ndim; i++) *rows *= t->shape[i];
}

/* Every public function that takes a tensor checks it here: present, and
 * (for a tape's tensor) not from before the tape's last clear. */
static bool usable(const tg_tensor *t, const char *fn) {
  if (!t) {
    tg__err(TG_EINVAL, "%s: tensor is NULL", fn);
    return false;
  }
  return tg__check_alive(fn, t, "the tensor") == TG_OK;
}

/* Validates dtype and shape; returns the element count or -1. */
static int64_t check_shape(const char *fn, tg_dtype dtype, int ndim,
                           const int64_t *shape) {
  if (dtype != TG_F32 && dtype != TG_F64 && dtype != TG_I32) {
    tg__err(TG_EINVAL, "%s: unknown dtype %d", fn, (int)dtype);
    return -1;
  }
  if (ndim < 0 || ndim > TG_MAX_DIMS) {
    tg__err(TG_ESHAPE, "%s: ndim is %d; it must be 0 to %d", fn, ndim,
            TG_MAX_DIMS);
    return -1;
  }
  if (!shape && ndim > 0) {
    tg__err(TG_EINVAL, "%s: shape is NULL", fn);
    return -1;
  }
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) {
      tg__err(TG_ESHAPE, "%s: dimension %d is %lld; dimensions must be >= 0",
              fn, i, (long long)shape[i]);
      return -1;
    }
    if (n && shape[i] > (INT64_MAX / 8) / n) {
      tg__err(TG_ESHAPE, "%s: element count overflows", fn);
      return -1;
    }
    n *= shape[i];
  }
  return n;
}

static tg_tensor *new_owned(const char *fn, tg_dtype dtype, int ndim,
                            const int64_t *shape) {
  int64_t n = check_shape(fn, dtype, ndim, shape);
  if (n < 0) return NULL;
  tg_tensor *t = tg__calloc(1, sizeof *t);
  if (!t) {
    tg__err(TG_ENOMEM, "%s: out of memory", fn);
    return NULL;
  }
  t->data = tg__aligned_alloc((size_t)n * tg__dtype_size(dtype));
  if (!t->data) {
    tg__free(t);
    tg__err(TG_ENOMEM, "%s: out of memory for %lld elements", fn, (long long)n);
    return NULL;
  }
  t->dtype = dtype;
  t->ndim = ndim;
  if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  t->numel = n;
  t->flags = TG__OWNED;
  t->node = -1;
  return t;
}

tg_tensor *tg_zeros(tg_dtype dtype, int ndim, const int64_t *shape) {
  return new_owned("tg_zeros", dtype, ndim, shape);
}

tg_tensor *tg_ones(tg_dtype dtype, int ndim, const int64_t *shape) {
  tg_tensor *t = new_owned("tg_ones", dtype, ndim, shape);
  if (t) tg_fill(t, 1.0);
  return t;
}

tg_tensor *tg_tensor_from(tg_dtype dtype, int ndim, const int64_t *shape,
                          const void *data) {
  if (!data) {
    tg__err(TG_EINVAL, "tg_tensor_from: data is NULL");
    return NULL;
  }
  tg_tensor *t = new_owned("tg_tensor_from", dtype, ndim, shape);
  if (t) memcpy(t->data, data, (size_t)t->numel * tg__dtype_size(dtype));
  return t;
}

tg_tensor *tg_tensor_clone(const tg_tensor *src) {
  if (!usable(src, "tg_tensor_clone")) return NULL;
  return tg_tensor_from(src->dtype, src->ndim, src->shape, src->data);
}

int tg_tensor_free(tg_tensor *t) {
  if (!t) return TG_OK;
  if (t->flags & TG__GRAD_VIEW)
    return tg__err(TG_ESTATE,
                   "tg_tensor_free: the tensor is a gradient (tg_tensor_grad); "
                   "it belongs to the tensor whose gradient it is");
  if (!(t->flags & TG__OWNED))
    return tg__err(TG_ESTATE,
                   "tg_tensor_free: the tensor belongs to a tape or a "
                   "checkpoint; it is freed by tg_tape_clear, tg_tape_free or "
                   "tg_checkpoint_close");
  if (!(t->flags & TG__VIEW_OF)) tg__aligned_free(t->data);
  tg__aligned_free(t->grad);
  tg__free(t->gview);
  tg__free(t);
  return TG_OK;
}

tg_tensor *tg_rows(const tg_tensor *a, int64_t start, int64_t stop) {
  char sa[96];
  if (!a) {
    tg__err(TG_EINVAL, "tg_rows: tensor is NULL");
    return NULL;
  }
  if (a->tape) {
    tg__err(TG_ESTATE, "tg_rows: the tensor belongs to a tape; row views are "
            "of caller-owned tensors (use tg_slice on a tape)");
    return NULL;
  }
  if (a->ndim < 1) {
    tg__err(TG_ESHAPE, "tg_rows: the tensor is 0-d; it has no rows");
    return NULL;
  }
  if (start < 0 || start > stop || stop > a->shape[0]) {
    tg__err(TG_ERANGE, "tg_rows: rows [%lld, %lld) are not within the %lld "
            "rows of %s", (long long)start, (long long)stop,
            (long long)a->shape[0], tg__shape_str(a, sa));
    return NULL;
  }
  tg_tensor *v = tg__calloc(1, sizeof *v);
  if (!v) {
    tg__err(TG_ENOMEM, "tg_rows: out of memory");
    return NULL;
  }
  int64_t row = a->shape[0] ? a->numel / a->shape[0] : 0;
  v->data = (char *)a->data + (size_t)(start * row) * tg__dtype_size(a->dtype);
  v->dtype = a->dtype;
  v->ndim = a->ndim;
  memcpy(v->shape, a->shape, sizeof v->shape);
  v->shape[0] = stop - start;
  v->numel = (stop - start) * row;
  v->flags = TG__OWNED | TG__VIEW_OF;
  v->node = -1;
  return v;
}

tg_dtype tg_tensor_dtype(const tg_tensor *t) { return t ? t->dtype : TG_F32; }
int tg_tensor_ndim(const tg_tensor *t) { return t ? t->ndim : 0; }
int64_t tg_tensor_numel(const tg_tensor *t) { return t ? t->numel : 0; }

int64_t tg_tensor_dim(const tg_tensor *t, int i) {
  if (!t) return 0;
  if (i < 0) i += t->ndim;
  if (i < 0 || i >= t->ndim) return 0;
  return t->shape[i];
}

void *tg_tensor_data(tg_tensor *t) {
  return usable(t, "tg_tensor_data") ? t->data : NULL;
}
tg_tensor *tg_tensor_grad(tg_tensor *t) {
  if (!usable(t, "tg_tensor_grad") || !t->grad) return NULL;
  if (!t->gview) {
    /* A tape tensor's view lives on its tape; a caller's until it is freed. */
    tg_tensor *g = t->tape ? tg__tape_header(t->tape) : tg__calloc(1, sizeof *g);
    if (!g) {
      tg__err(TG_ENOMEM, "tg_tensor_grad: out of memory");
      return NULL;
    }
    memcpy(g->shape, t->shape, sizeof g->shape);
    g->ndim = t->ndim;
    g->numel = t->numel;
    g->dtype = t->dtype;
    g->flags = TG__GRAD_VIEW;
    g->tape = t->tape;
    g->gen = t->gen;
    g->node = -1;
    t->gview = g;
  }
  t->gview->data = t->grad;
  return t->gview;
}

static void *typed(tg_tensor *t, tg_dtype want, const char *fn) {
  if (!usable(t, fn)) return NULL;
  if (t->dtype != want) {
    tg__err(TG_EDTYPE, "%s: tensor is %s", fn, tg_dtype_name(t->dtype));
    return NULL;
  }
  return t->data;
}
float *tg_tensor_f32(tg_tensor *t) { return typed(t, TG_F32, "tg_tensor_f32"); }
double *tg_tensor_f64(tg_tensor *t) { return typed(t, TG_F64, "tg_tensor_f64"); }
int32_t *tg_tensor_i32(tg_tensor *t) { return typed(t, TG_I32, "tg_tensor_i32"); }

static double load(const void *buf, tg_dtype d, int64_t i) {
  switch (d) {
  case TG_F32: return ((const float *)buf)[i];
  case TG_F64: return ((const double *)buf)[i];
  case TG_I32: return ((const int32_t *)buf)[i];
  }
  return 0;
}

static void store(void *buf, tg_dtype d, int64_t i, double v) {
  switch (d) {
  case TG_F32: ((float *)buf)[i] = (float)v; break;
  case TG_F64: ((double *)buf)[i] = v; break;
  case TG_I32: ((int32_t *)buf)[i] = (int32_t)v; break;
  }
}

static bool in_range(const tg_tensor *t, int64_t i, const char *fn) {
  if (!usable(t, fn)) return false;
  if (i < 0 || i >= t->numel) {
    tg__err(TG_ERANGE, "%s: index %lld is out of range for %lld elements", fn,
            (long long)i, (long long)t->numel);
    return false;
  }
  return true;
}

double tg_get(const tg_tensor *t, int64_t i) {
  return in_range(t, i, "tg_get") ? load(t->data, t->dtype, i) : 0.0;
}

double tg_grad_get(const tg_tensor *t, int64_t i) {
  if (!in_range(t, i, "tg_grad_get")) return 0.0;
  if (!t->grad) {
    tg__err(TG_ESTATE, "tg_grad_get: the tensor has no gradient");
    return 0.0;
  }
  return load(t->grad, t->dtype, i);
}

/* An int32 element takes a value only if it is a number in range: the
 * conversion of anything else is undefined. */
static int check_i32(const tg_tensor *t, double v, const char *fn) {
  if (t->dtype == TG_I32 && (v != v || v < INT32_MIN || v > INT32_MAX))
    return tg__err(TG_ERANGE, "%s: %g does not fit in int32", fn, v);
  return TG_OK;
}

int tg_set(tg_tensor *t, int64_t i, double v) {
  if (!in_range(t, i, "tg_set")) return tg_last_status();
  int rc = check_i32(t, v, "tg_set");
  if (rc) return rc;
  store(t->data, t->dtype, i, v);
  return TG_OK;
}

int tg_fill(tg_tensor *t, double v) {
  if (!usable(t, "tg_fill")) return tg_last_status();
  int rc = check_i32(t, v, "tg_fill");
  if (rc) return rc;
  for (int64_t i = 0; i < t->numel; i++) store(t->data, t->dtype, i, v);
  return TG_OK;
}

uint64_t tg_tensor_hash(const tg_tensor *t) {
  if (!usable(t, "tg_tensor_hash")) return 0;
  int64_t head[1 + TG_MAX_DIMS] = {(int64_t)t->dtype};
  memcpy(head + 1, t->shape, (size_t)t->ndim * sizeof *head);
  uint64_t seed = XXH3_64bits(head, (size_t)(1 + t->ndim) * sizeof *head);
  return XXH3_64bits_withSeed(t->data, (size_t)t->numel * tg__dtype_size(t->dtype), seed);
}

int tg_tensor_print(FILE *f, const tg_tensor *t, const char *name) {
  if (!f) return tg__err(TG_EINVAL, "tg_tensor_print: file is NULL");
  if (!usable(t, "tg_tensor_print")) return tg_last_status();
  char sb[96];
  fprintf(f, "%s %s %s\n", name ? name : "tensor", tg__shape_str(t, sb),
          tg_dtype_name(t->dtype));
  int64_t rows, cols;
  tg__rows_cols(t, &rows, &cols);
  for (int64_t r = 0; r < rows; r++) {
    fputs("  ", f);
    for (int64_t c = 0; c < cols; c++) {
      double v = load(t->data, t->dtype, r * cols + c);
      if (t->dtype == TG_I32)
        fprintf(f, "%s%d", c ? " " : "", (int)v);
      else
        fprintf(f, "%s% .6f", c ? " " : "", v);
    }
    fputc('\n', f);
  }
  return ferror(f) ? tg__err(TG_EIO, "tg_tensor_print: write failed") : TG_OK;
}

int tg_requires_grad(tg_tensor *t, bool on) {
  if (!t) return tg__err(TG_EINVAL, "tg_requires_grad: tensor is NULL");
  if (on && !tg__is_float(t->dtype))
    return tg__err(TG_EDTYPE,
                   "tg_requires_grad: only float tensors have gradients; this "
                   "one is %s", tg_dtype_name(t->dtype));
  if (!on) {
    t->flags &= ~(unsigned)(TG__REQ_GRAD | TG__NEEDS_GRAD);
    return TG_OK;
  }
  if (!(t->flags & TG__OWNED))
    return tg__err(TG_ESTATE,
                   "tg_requires_grad: the tensor was made by an op on a tape; "
                   "parameters are caller-owned tensors (tg_zeros, tg_tensor_from)");
  if (!t->grad) {
    t->grad = tg__aligned_alloc((size_t)t->numel * tg__dtype_size(t->dtype));
    if (!t->grad) return tg__err(TG_ENOMEM, "tg_requires_grad: out of memory");
  }
  t->flags |= TG__REQ_GRAD | TG__NEEDS_GRAD;
  return TG_OK;
}

bool tg_tensor_requires_grad(const tg_tensor *t) {
  return t && (t->flags & TG__REQ_GRAD);
}

static void zero_range(void *ctx, int64_t i0, int64_t i1) {
  tg_tensor *t = ctx;
  size_t es = tg__dtype_size(t->dtype);
  memset((char *)t->grad + (size_t)i0 * es, 0, (size_t)(i1 - i0) * es);
}

void tg__grad_zero(tg_tensor *t) {
  tg__par_range(t->numel, TG__PAR_ELEMS, zero_range, t);
}

int tg_zero_grad(tg_tensor *t) {
  if (!usable(t, "tg_zero_grad")) return tg_last_status();
  if (t->grad) tg__grad_zero(t);
  return TG_OK;
}

static int check_fill(const tg_tensor *t, tg_rng *rng, const char *fn) {
  if (!rng) return tg__err(TG_EINVAL, "%s: rng is NULL", fn);
  if (!usable(t, fn)) return tg_last_status();
  if (!tg__is_float(t->dtype))
    return tg__err(TG_EDTYPE, "%s: tensor is %s; it must be float", fn,
                   tg_dtype_name(t->dtype));
  return TG_OK;
}

int tg_fill_uniform(tg_tensor *t, tg_rng *rng, double lo, double hi) {
  int rc = check_fill(t, rng, "tg_fill_uniform");
  if (rc) return rc;
  if (!(lo <= hi))
    return tg__err(TG_EINVAL, "tg_fill_uniform: lo %g > hi %g", lo, hi);
  for (int64_t i = 0; i < t->numel; i++)
    store(t->data, t->dtype, i, lo + (hi - lo) * tg_rng_uniform(rng));
  return TG_OK;
}

int tg_fill_normal(tg_tensor *t, tg_rng *rng, double mean, double std) {
  int rc = check_fill(t, rng, "tg_fill_normal");
  if (rc) return rc;
  if (!(std >= 0))
    return tg__err(TG_EINVAL, "tg_fill_normal: std %g is negative", std);
  for (int64_t i = 0; i < t->numel; i++)
    store(t->data, t->dtype, i, mean + std * tg_rng_normal(rng));
  return TG_OK;
}

static int fans(const tg_tensor *w, const char *fn, double *in, double *out) {
  if (w->ndim != 2) {
    char sb[96];
    return tg__err(TG_ESHAPE, "%s: weight must be 2-D [fan_in,fan_out], got %s",
                   fn, tg__shape_str(w, sb));
  }
  *in = (double)w->shape[0];
  *out = (double)w->shape[1];
  return TG_OK;
}

int tg_init_xavier(tg_tensor *w, tg_rng *rng) {
  double in = 0, out = 0;
  int rc = check_fill(w, rng, "tg_init_xavier");
  if (rc || (rc = fans(w, "tg_init_xavier", &in, &out))) return rc;
  double a = sqrt(6.0 / (in + out));
  return tg_fill_uniform(w, rng, -a, a);
}

int tg_init_he(tg_tensor *w, tg_rng *rng) {
  double in = 0, out = 0;
  int rc = check_fill(w, rng, "tg_init_he");
  if (rc || (rc = fans(w, "tg_init_he", &in, &out))) return rc;
  return tg_fill_normal(w, rng, 0.0, sqrt(2.0 / in));
}

const char *tg__shape_str(const tg_tensor *t, char *buf) {
  int n = 0;
  buf[n++] = '[';
  for (int i = 0; i < t->ndim; i++)
    n += snprintf(buf + n, 96 - (size_t)n, i ? ",%lld" : "%lld",
                  (long long)t->shape[i]);
  snprintf(buf + n, 96 - (size_t)n, "]");
  return buf;
}
