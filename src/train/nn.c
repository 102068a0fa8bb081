/* src/train/nn.c: the dense, convolution, batch normalisation and dropout
 * layers, activations by name and the minibatch iterator: the parts of a
 * training loop above the ops. */
#include <math.h>
#include <string.h>

#include "train.h"

/* --- activations */

const char *tg_activation_name(tg_activation act) {
  switch (act) {
  case TG_ACT_NONE: return "none";
  case TG_ACT_SIGMOID: return "sigmoid";
  case TG_ACT_RELU: return "relu";
  case TG_ACT_TANH: return "tanh";
  }
  return "unknown";
}

tg_tensor *tg_activate(tg_tape *t, tg_tensor *x, tg_activation act) {
  if (!x) return NULL;
  switch (act) {
  case TG_ACT_NONE:
    if (tg__check_usable("tg_activate", t, x, "x")) return NULL;
    return x;
  case TG_ACT_SIGMOID: return tg_sigmoid(t, x);
  case TG_ACT_RELU: return tg_relu(t, x);
  case TG_ACT_TANH: return tg_tanh(t, x);
  }
  tg__err(TG_EINVAL, "tg_activate: unknown activation %d", (int)act);
  return NULL;
}

/* --- dense layer */

struct tg_dense {
  tg_tensor *W, *b;
};

tg_dense *tg_dense_new(int64_t in, int64_t out, tg_dtype dtype,
                       tg_activation act, tg_rng *rng) {
  static const char fn[] = "tg_dense_new";
  if (in < 1 || out < 1) {
    tg__err(TG_ESHAPE, "%s: in is %lld and out is %lld; both must be >= 1", fn,
            (long long)in, (long long)out);
    return NULL;
  }
  if (!tg__is_float(dtype)) {
    tg__err(TG_EDTYPE, "%s: dtype is %s; it must be float32 or float64", fn,
            tg_dtype_name(dtype));
    return NULL;
  }
  if (act < TG_ACT_NONE || act > TG_ACT_TANH) {
    tg__err(TG_EINVAL, "%s: unknown activation %d", fn, (int)act);
    return NULL;
  }
  if (!rng) {
    tg__err(TG_EINVAL, "%s: rng is NULL", fn);
    return NULL;
  }
  tg_dense *d = tg__calloc(1, sizeof *d);
  if (!d) {
    tg__err(TG_ENOMEM, "%s: out of memory", fn);
    return NULL;
  }
  int64_t wshape[2] = {in, out};
  d->W = tg_zeros(dtype, 2, wshape);
  d->b = d->W ? tg_zeros(dtype, 1, &out) : NULL;
  if (!d->b) goto fail; /* tg_zeros said why */
  int rc = act == TG_ACT_RELU ? tg_init_he(d->W, rng) : tg_init_xavier(d->W, rng);
  if (rc || tg_requires_grad(d->W, true) || tg_requires_grad(d->b, true))
    goto fail;
  return d;
fail:
  tg_dense_free(d);
  return NULL;
}

void tg_dense_free(tg_dense *d) {
  if (!d) return;
  tg_tensor_free(d->W);
  tg_tensor_free(d->b);
  tg__free(d);
}

/* x against the layer, so the message names the layer's shapes rather than
 * tg_linear's view of them. */
static int check_dense_input(const char *fn, tg_tape *t, const tg_dense *d,
                             tg_tensor *x) {
  char sx[96], sw[96];
  if (!d) return tg__err(TG_EINVAL, "%s: layer is NULL", fn);
  if (!x) return TG_EINVAL; /* an earlier op failed: keep its message */
  int rc = tg__check_usable(fn, t, x, "x");
  if (rc) return rc;
  if (x->ndim != 2 || x->shape[1] != d->W->shape[0])
    return tg__err(TG_ESHAPE,
                   "%s: x is %s; the layer's W is %s, so x must be [N,%lld]",
                   fn, tg__shape_str(x, sx), tg__shape_str(d->W, sw),
                   (long long)d->W->shape[0]);
  if (x->dtype != d->W->dtype)
    return tg__err(TG_EDTYPE, "%s: x is %s; the layer is %s", fn,
                   tg_dtype_name(x->dtype), tg_dtype_name(d->W->dtype));
  return TG_OK;
}

tg_tensor *tg_dense_forward(tg_tape *t, const tg_dense *d, tg_tensor *x) {
  if (check_dense_input("tg_dense_forward", t, d, x)) return NULL;
  return tg_linear(t, x, d->W, d->b, TG_ACT_NONE);
}

tg_tensor *tg_dense_act(tg_tape *t, const tg_dense *d, tg_tensor *x,
                        tg_activation act) {
  static const char fn[] = "tg_dense_act";
  if (check_dense_input(fn, t, d, x)) return NULL;
  if (act < TG_ACT_NONE || act > TG_ACT_TANH) {
    tg__err(TG_EINVAL, "%s: unknown activation %d", fn, (int)act);
    return NULL;
  }
  return tg_linear(t, x, d->W, d->b, act);
}

tg_tensor *tg_dense_weight(const tg_dense *d) { return d ? d->W : NULL; }
tg_tensor *tg_dense_bias(const tg_dense *d) { return d ? d->b : NULL; }

int tg_dense_params(const tg_dense *d, tg_tensor **out) {
  if (!d || !out) return 0;
  out[0] = d->W;
  out[1] = d->b;
  return 2;
}

/* --- 2-D convolution layer */

struct tg_conv {
  tg_tensor *W, *b;
  tg_conv_spec spec; /* defaults resolved */
};

tg_conv *tg_conv_new(const tg_conv_spec *spec, tg_dtype dtype, tg_rng *rng) {
  static const char fn[] = "tg_conv_new";
  if (!spec || !rng) {
    tg__err(TG_EINVAL, "%s: %s is NULL", fn, spec ? "rng" : "spec");
    return NULL;
  }
  tg_conv_spec s = *spec;
  if (s.in < 1 || s.out < 1 || s.kh < 1 || s.kw < 1) {
    tg__err(TG_ESHAPE, "%s: in %lld, out %lld, kernel %lldx%lld; each must "
            "be >= 1", fn, (long long)s.in, (long long)s.out,
            (long long)s.kh, (long long)s.kw);
    return NULL;
  }
  if (s.stride_h < 0 || s.stride_w < 0 || s.pad_h < 0 || s.pad_w < 0 ||
      s.dil_h < 0 || s.dil_w < 0 || s.groups < 0) {
    tg__err(TG_EINVAL, "%s: stride %dx%d, padding %dx%d, dilation %dx%d, "
            "groups %d; none may be negative", fn, s.stride_h, s.stride_w,
            s.pad_h, s.pad_w, s.dil_h, s.dil_w, s.groups);
    return NULL;
  }
  int *one[] = {&s.stride_h, &s.stride_w, &s.dil_h, &s.dil_w, &s.groups};
  for (size_t i = 0; i < sizeof one / sizeof *one; i++)
    if (*one[i] == 0) *one[i] = 1;
  if (s.in % s.groups || s.out % s.groups) {
    tg__err(TG_ESHAPE, "%s: in %lld and out %lld must both divide by groups "
            "%d", fn, (long long)s.in, (long long)s.out, s.groups);
    return NULL;
  }
  if (!tg__is_float(dtype)) {
    tg__err(TG_EDTYPE, "%s: dtype is %s; it must be float32 or float64", fn,
            tg_dtype_name(dtype));
    return NULL;
  }
  tg_conv *c = tg__calloc(1, sizeof *c);
  if (!c) {
    tg__err(TG_ENOMEM, "%s: out of memory", fn);
    return NULL;
  }
  c->spec = s;
  int64_t wshape[4] = {s.out, s.in / s.groups, s.kh, s.kw};
  c->W = tg_zeros(dtype, 4, wshape);
  c->b = c->W ? tg_zeros(dtype, 1, &s.out) : NULL;
  if (!c->b) goto fail; /* tg_zeros said why */
  /* He normal: tg_init_he reads fans from a 2-D weight, so the fan-in of a
   * kernel is written out here */
  double fan_in = (double)(s.in / s.groups) * (double)s.kh * (double)s.kw;
  if (tg_fill_normal(c->W, rng, 0.0, sqrt(2.0 / fan_in)) ||
      tg_requires_grad(c->W, true) || tg_requires_grad(c->b, true))
    goto fail;
  return c;
fail:
  tg_conv_free(c);
  return NULL;
}

void tg_conv_free(tg_conv *c) {
  if (!c) return;
  tg_tensor_free(c->W);
  tg_tensor_free(c->b);
  tg__free(c);
}

tg_tensor *tg_conv_forward(tg_tape *t, const tg_conv *c, tg_tensor *x) {
  static const char fn[] = "tg_conv_forward";
  char sx[96], sw[96];
  if (!c) {
    tg__err(TG_EINVAL, "%s: layer is NULL", fn);
    return NULL;
  }
  if (!x) return NULL; /* an earlier op failed: keep its message */
  if (tg__check_usable(fn, t, x, "x")) return NULL;
  if (x->ndim != 4 || x->shape[1] != c->spec.in) {
    tg__err(TG_ESHAPE, "%s: x is %s; the layer's W is %s, so x must be "
            "[N,%lld,H,W]", fn, tg__shape_str(x, sx), tg__shape_str(c->W, sw),
            (long long)c->spec.in);
    return NULL;
  }
  if (x->dtype != c->W->dtype) {
    tg__err(TG_EDTYPE, "%s: x is %s; the layer is %s", fn,
            tg_dtype_name(x->dtype), tg_dtype_name(c->W->dtype));
    return NULL;
  }
  const tg_conv_spec *s = &c->spec;
  return tg_conv2d(t, x, c->W, c->b, s->stride_h, s->stride_w, s->pad_h,
                   s->pad_w, s->dil_h, s->dil_w, s->groups);
}

tg_tensor *tg_conv_weight(const tg_conv *c) { return c ? c->W : NULL; }
tg_tensor *tg_conv_bias(const tg_conv *c) { return c ? c->b : NULL; }
const tg_conv_spec *tg_conv_get_spec(const tg_conv *c) {
  return c ? &c->spec : NULL;
}

int tg_conv_params(const tg_conv *c, tg_tensor **out) {
  if (!c || !out) return 0;
  out[0] = c->W;
  out[1] = c->b;
  return 2;
}

/* --- batch normalisation layer */

struct tg_batch_norm_layer {
  tg_tensor *gamma, *beta, *mean, *var;
  double momentum, eps;
  bool training;
};

tg_batch_norm_layer *tg_batch_norm_layer_new(int64_t C, tg_dtype dtype) {
  static const char fn[] = "tg_batch_norm_layer_new";
  if (C < 1) {
    tg__err(TG_ESHAPE, "%s: C is %lld; it must be >= 1", fn, (long long)C);
    return NULL;
  }
  if (!tg__is_float(dtype)) {
    tg__err(TG_EDTYPE, "%s: dtype is %s; it must be float32 or float64", fn,
            tg_dtype_name(dtype));
    return NULL;
  }
  tg_batch_norm_layer *l = tg__calloc(1, sizeof *l);
  if (!l) {
    tg__err(TG_ENOMEM, "%s: out of memory", fn);
    return NULL;
  }
  l->momentum = TG_BATCH_NORM_MOMENTUM;
  l->eps = TG_BATCH_NORM_EPS;
  l->training = true;
  if (!(l->gamma = tg_ones(dtype, 1, &C)) || !(l->beta = tg_zeros(dtype, 1, &C)) ||
      !(l->mean = tg_zeros(dtype, 1, &C)) || !(l->var = tg_ones(dtype, 1, &C)) ||
      tg_requires_grad(l->gamma, true) || tg_requires_grad(l->beta, true)) {
    tg_batch_norm_layer_free(l); /* tg_ones or tg_zeros said why */
    return NULL;
  }
  return l;
}

void tg_batch_norm_layer_free(tg_batch_norm_layer *l) {
  if (!l) return;
  tg_tensor_free(l->gamma);
  tg_tensor_free(l->beta);
  tg_tensor_free(l->mean);
  tg_tensor_free(l->var);
  tg__free(l);
}

int tg_batch_norm_layer_configure(tg_batch_norm_layer *l, double momentum,
                                  double eps) {
  static const char fn[] = "tg_batch_norm_layer_configure";
  if (!l) return tg__err(TG_EINVAL, "%s: layer is NULL", fn);
  if (!(momentum >= 0 && momentum <= 1))
    return tg__err(TG_EINVAL, "%s: momentum is %g; it must be in [0, 1]", fn,
                   momentum);
  if (!(eps > 0 && isfinite(eps)))
    return tg__err(TG_EINVAL, "%s: eps is %g; it must be > 0 and finite", fn,
                   eps);
  l->momentum = momentum;
  l->eps = eps;
  return TG_OK;
}

tg_tensor *tg_batch_norm_layer_forward(tg_tape *t, tg_batch_norm_layer *l,
                                       tg_tensor *x) {
  static const char fn[] = "tg_batch_norm_layer_forward";
  char sx[96];
  if (!l) {
    tg__err(TG_EINVAL, "%s: layer is NULL", fn);
    return NULL;
  }
  if (!x) return NULL; /* an earlier op failed: keep its message */
  if (tg__check_usable(fn, t, x, "x")) return NULL;
  int64_t C = l->gamma->shape[0];
  if ((x->ndim != 2 && x->ndim != 4) || x->shape[1] != C) {
    tg__err(TG_ESHAPE, "%s: x is %s; the layer has %lld channels, so x must "
            "be [N,%lld] or [N,%lld,H,W]", fn, tg__shape_str(x, sx),
            (long long)C, (long long)C, (long long)C);
    return NULL;
  }
  if (x->dtype != l->gamma->dtype) {
    tg__err(TG_EDTYPE, "%s: x is %s; the layer is %s", fn,
            tg_dtype_name(x->dtype), tg_dtype_name(l->gamma->dtype));
    return NULL;
  }
  return tg_batch_norm(t, x, l->gamma, l->beta, l->mean, l->var, l->training,
                       l->momentum, l->eps);
}

void tg_batch_norm_layer_set_training(tg_batch_norm_layer *l, bool training) {
  if (l) l->training = training;
}

bool tg_batch_norm_layer_training(const tg_batch_norm_layer *l) {
  return l && l->training;
}

int tg_batch_norm_layer_params(const tg_batch_norm_layer *l, tg_tensor **out) {
  if (!l || !out) return 0;
  out[0] = l->gamma;
  out[1] = l->beta;
  return 2;
}

int tg_batch_norm_layer_buffers(const tg_batch_norm_layer *l,
                                tg_tensor **out) {
  if (!l || !out) return 0;
  out[0] = l->mean;
  out[1] = l->var;
  return 2;
}

/* --- dropout layer */

struct tg_dropout_layer {
  double p;
  tg_rng rng;
  bool training;
};

tg_dropout_layer *tg_dropout_layer_new(double p, uint64_t seed) {
  if (!(p >= 0 && p < 1)) {
    tg__err(TG_EINVAL, "tg_dropout_layer_new: p is %g; it must be in [0, 1)", p);
    return NULL;
  }
  tg_dropout_layer *l = tg__calloc(1, sizeof *l);
  if (!l) {
    tg__err(TG_ENOMEM, "tg_dropout_layer_new: out of memory");
    return NULL;
  }
  l->p = p;
  l->training = true;
  tg_rng_seed(&l->rng, seed);
  return l;
}

void tg_dropout_layer_free(tg_dropout_layer *l) { tg__free(l); }

tg_tensor *tg_dropout_layer_forward(tg_tape *t, tg_dropout_layer *l,
                                    tg_tensor *x) {
  if (!l) {
    tg__err(TG_EINVAL, "tg_dropout_layer_forward: layer is NULL");
    return NULL;
  }
  return tg_dropout(t, x, l->p, &l->rng, l->training);
}

void tg_dropout_layer_set_training(tg_dropout_layer *l, bool training) {
  if (l) l->training = training;
}

bool tg_dropout_layer_training(const tg_dropout_layer *l) {
  return l && l->training;
}

void tg_dropout_layer_seed(tg_dropout_layer *l, uint64_t seed) {
  if (l) tg_rng_seed(&l->rng, seed);
}

/* --- minibatch iterator */

struct tg_batcher {
  const tg_tensor *images, *labels; /* borrowed */
  int64_t n, d, batch;
  int64_t pos;       /* next position in perm */
  int64_t *perm;     /* this epoch's order */
  tg_rng rng;
  tg_tensor *x, *y;  /* full batches */
  tg_tensor *xr, *yr; /* the smaller last batch, NULL when none */
};

static int check_source(const char *fn, const tg_tensor *x, const char *what) {
  if (!x) return tg__err(TG_EINVAL, "%s: %s is NULL", fn, what);
  if (x->tape)
    return tg__err(TG_ESTATE,
                   "%s: %s was made by an op on a tape and would vanish at its "
                   "clear; pass a caller-owned tensor (tg_tensor_clone it)",
                   fn, what);
  return TG_OK;
}

tg_batcher *tg_batcher_new(const tg_tensor *images, const tg_tensor *labels,
                           int64_t batch_size, uint64_t seed) {
  static const char fn[] = "tg_batcher_new";
  char si[96], sl[96];
  if (check_source(fn, images, "images") || check_source(fn, labels, "labels"))
    return NULL;
  if (images->ndim != 2 || !tg__is_float(images->dtype)) {
    tg__err(images->ndim != 2 ? TG_ESHAPE : TG_EDTYPE,
            "%s: images is %s %s; it must be a 2-D [N,D] float32 or float64 "
            "tensor", fn, tg_dtype_name(images->dtype),
            tg__shape_str(images, si));
    return NULL;
  }
  if (labels->dtype != TG_I32 || labels->ndim != 1 ||
      labels->shape[0] != images->shape[0]) {
    tg__err(labels->dtype != TG_I32 ? TG_EDTYPE : TG_ESHAPE,
            "%s: labels is %s %s; for images %s it must be int32 [%lld]", fn,
            tg_dtype_name(labels->dtype), tg__shape_str(labels, sl),
            tg__shape_str(images, si), (long long)images->shape[0]);
    return NULL;
  }
  if (batch_size < 1) {
    tg__err(TG_EINVAL, "%s: batch_size is %lld; it must be at least 1", fn,
            (long long)batch_size);
    return NULL;
  }
  const int32_t *lab = labels->data;
  for (int64_t i = 0; i < labels->numel; i++)
    if (lab[i] < 0) {
      tg__err(TG_ERANGE, "%s: labels[%lld] is %d; classes must be >= 0", fn,
              (long long)i, (int)lab[i]);
      return NULL;
    }

  tg_batcher *b = tg__calloc(1, sizeof *b);
  if (!b) goto oom;
  b->images = images;
  b->labels = labels;
  b->n = images->shape[0];
  b->d = images->shape[1];
  b->batch = batch_size < b->n ? batch_size : b->n;
  tg_rng_seed(&b->rng, seed);
  b->perm = tg__malloc((size_t)b->n * sizeof *b->perm);
  if (!b->perm) goto oom;
  for (int64_t i = 0; i < b->n; i++) b->perm[i] = i;
  int64_t rem = b->n % b->batch;
  int64_t xs[2] = {b->batch, b->d}, xrs[2] = {rem, b->d};
  if (!(b->x = tg_zeros(images->dtype, 2, xs)) ||
      !(b->y = tg_zeros(TG_I32, 1, &b->batch)))
    goto fail;
  if (rem && (!(b->xr = tg_zeros(images->dtype, 2, xrs)) ||
              !(b->yr = tg_zeros(TG_I32, 1, &rem))))
    goto fail;
  return b;
oom:
  tg__err(TG_ENOMEM, "%s: out of memory", fn);
fail:
  tg_batcher_free(b);
  return NULL;
}

void tg_batcher_free(tg_batcher *b) {
  if (!b) return;
  tg__free(b->perm);
  tg_tensor_free(b->x);
  tg_tensor_free(b->y);
  tg_tensor_free(b->xr);
  tg_tensor_free(b->yr);
  tg__free(b);
}

int tg_batcher_shuffle(tg_batcher *b) {
  if (!b) return tg__err(TG_EINVAL, "tg_batcher_shuffle: batcher is NULL");
  /* From the identity each time, so an epoch's order depends only on the
   * seed and the number of shuffles before it. */
  for (int64_t i = 0; i < b->n; i++) b->perm[i] = i;
  for (int64_t i = b->n - 1; i > 0; i--) {
    int64_t j = (int64_t)tg_rng_below(&b->rng, (uint64_t)i + 1);
    int64_t tmp = b->perm[i];
    b->perm[i] = b->perm[j];
    b->perm[j] = tmp;
  }
  b->pos = 0;
  return TG_OK;
}

int tg_batcher_rewind(tg_batcher *b) {
  if (!b) return tg__err(TG_EINVAL, "tg_batcher_rewind: batcher is NULL");
  b->pos = 0;
  return TG_OK;
}

int tg_batcher_next(tg_batcher *b, tg_tensor **x, tg_tensor **y) {
  if (!b || !x || !y)
    return tg__err(TG_EINVAL, "tg_batcher_next: NULL argument");
  if (b->pos >= b->n) {
    b->pos = 0;
    return 0;
  }
  int64_t rows = b->n - b->pos < b->batch ? b->n - b->pos : b->batch;
  tg_tensor *bx = rows == b->batch ? b->x : b->xr;
  tg_tensor *by = rows == b->batch ? b->y : b->yr;
  size_t row_bytes = (size_t)b->d * tg__dtype_size(b->images->dtype);
  const char *src = b->images->data;
  const int32_t *lab = b->labels->data;
  char *dst = bx->data;
  int32_t *ydst = by->data;
  for (int64_t r = 0; r < rows; r++) {
    int64_t k = b->perm[b->pos + r];
    memcpy(dst + (size_t)r * row_bytes, src + (size_t)k * row_bytes, row_bytes);
    ydst[r] = lab[k];
  }
  b->pos += rows;
  *x = bx;
  *y = by;
  return 1;
}

int64_t tg_batcher_batches(const tg_batcher *b) {
  return b ? (b->n + b->batch - 1) / b->batch : 0;
}
