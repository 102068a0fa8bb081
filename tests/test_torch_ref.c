/* tests/test_torch_ref.c: every op against PyTorch. tests/ref/torch_ops.txt
 * (written once by scripts/torch-ref.py, format at its top) holds, per
 * entry, an op id, its arguments and inputs, an upstream gradient G, and
 * PyTorch's output and gradients of sum(out * G) in float64. Here each
 * entry runs through the table below {op id -> tapegrad call}, then
 * tg_backward_grad with G, and the output and every gradient must match
 * elementwise within 1e-12 * (1 + |ref|). An input the op updates in place
 * (batch norm's running statistics) must also hold PyTorch's values after
 * the call.
 *
 * An op id the table does not know fails the test, and so does an op in the
 * table with no entry in the file. */
#include <stdarg.h>

#include "testutil.h"

#ifndef TOP_SRCDIR
#define TOP_SRCDIR "."
#endif
#define REF_FILE TOP_SRCDIR "/tests/ref/torch_ops.txt"
#define REF_NAME "tests/ref/torch_ops.txt"

#define REF_TOL 1e-12
#define REF_MAX_IN 8
#define REF_MAX_ARGS 8
#define REF_MAX_ARGVALS 8

/* --- the file, parsed */

typedef struct {
  bool none; /* "in none" / "grad none" */
  tg_dtype dtype;
  int ndim;
  int64_t shape[TG_MAX_DIMS];
  int64_t numel;
  double *v;
} ref_tensor;

typedef struct {
  char name[32];
  int n;
  double v[REF_MAX_ARGVALS];
} ref_arg;

typedef struct {
  int line;
  char op[48];
  char label[80];
  int n_args, n_in, n_grad;
  bool has_gout, has_out;
  ref_arg args[REF_MAX_ARGS];
  ref_tensor in[REF_MAX_IN], grad[REF_MAX_IN];
  ref_tensor gout, out;
  int n_after; /* "after K ...": input after_k[i] as the call left it */
  int after_k[REF_MAX_IN];
  ref_tensor after[REF_MAX_IN];
} ref_entry;

typedef struct {
  ref_entry *e;
  int n, cap;
  char version[64];
  char err[256]; /* the first parse error, "FILE:LINE: why" */
} ref_file;

static void ref_tensor_free(ref_tensor *t) {
  free(t->v);
  t->v = NULL;
}

static void ref_file_free(ref_file *f) {
  for (int i = 0; i < f->n; i++) {
    ref_entry *e = &f->e[i];
    for (int k = 0; k < e->n_in; k++) ref_tensor_free(&e->in[k]);
    for (int k = 0; k < e->n_grad; k++) ref_tensor_free(&e->grad[k]);
    for (int k = 0; k < e->n_after; k++) ref_tensor_free(&e->after[k]);
    ref_tensor_free(&e->gout);
    ref_tensor_free(&e->out);
  }
  free(f->e);
  f->e = NULL;
  f->n = f->cap = 0;
}

static bool parse_i64(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end) return false;
  *out = v;
  return true;
}

static bool parse_f64(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno == ERANGE && fabs(v) > 1) return false; /* overflow, not underflow */
  if (end == s || *end) return false;
  *out = v;
  return true;
}

/* A tensor from tok[0..n): NDIM DIMS.. VALUES..; NULL or a reason. */
static const char *parse_tensor(char **tok, int n, tg_dtype dtype,
                                ref_tensor *t) {
  memset(t, 0, sizeof *t);
  t->dtype = dtype;
  int64_t nd;
  if (n < 1 || !parse_i64(tok[0], &nd) || nd < 0 || nd > TG_MAX_DIMS)
    return "bad or missing NDIM";
  if (n < 1 + nd) return "fewer dimensions than NDIM";
  t->ndim = (int)nd;
  t->numel = 1;
  for (int i = 0; i < t->ndim; i++) {
    if (!parse_i64(tok[1 + i], &t->shape[i]) || t->shape[i] < 0 ||
        t->shape[i] > 1000000)
      return "bad dimension";
    t->numel *= t->shape[i];
  }
  int nv = n - 1 - t->ndim;
  if (nv != t->numel) return "the number of values is not the shape's";
  t->v = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *t->v);
  ck_assert_ptr_nonnull(t->v);
  for (int i = 0; i < nv; i++) {
    const char *s = tok[1 + t->ndim + i];
    if (dtype == TG_I32) {
      int64_t k;
      if (!parse_i64(s, &k) || k < INT32_MIN || k > INT32_MAX)
        return "bad int32 value";
      t->v[i] = (double)k;
    } else if (!parse_f64(s, &t->v[i])) {
      return "bad float value";
    }
  }
  return NULL;
}

static bool same_shape(const ref_tensor *a, const ref_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

/* One line's fields; NULL or a reason. */
static const char *parse_line(ref_file *f, ref_entry **cur, char **tok, int n,
                              int line) {
  ref_entry *e = *cur;
  const char *why;
  if (!strcmp(tok[0], "entry")) {
    if (e) return "entry inside an entry (a missing end)";
    if (n != 3) return "entry needs OP and LABEL";
    if (strlen(tok[1]) >= sizeof e->op || strlen(tok[2]) >= sizeof e->label)
      return "op id or label too long";
    if (f->n == f->cap) {
      f->cap = f->cap ? 2 * f->cap : 64;
      f->e = realloc(f->e, (size_t)f->cap * sizeof *f->e);
      ck_assert_ptr_nonnull(f->e);
    }
    e = *cur = &f->e[f->n++];
    memset(e, 0, sizeof *e);
    e->line = line;
    strcpy(e->op, tok[1]);
    strcpy(e->label, tok[2]);
    return NULL;
  }
  if (!e) return "a field outside an entry";
  if (!strcmp(tok[0], "arg")) {
    int64_t k;
    if (n < 3 || !parse_i64(tok[2], &k) || k < 0 || k != n - 3)
      return "arg needs NAME N and N values";
    if (k > REF_MAX_ARGVALS || e->n_args == REF_MAX_ARGS)
      return "too many arguments or values";
    if (strlen(tok[1]) >= sizeof e->args[0].name) return "arg name too long";
    ref_arg *a = &e->args[e->n_args++];
    strcpy(a->name, tok[1]);
    a->n = (int)k;
    for (int i = 0; i < a->n; i++)
      if (!parse_f64(tok[3 + i], &a->v[i])) return "bad arg value";
    return NULL;
  }
  if (!strcmp(tok[0], "in")) {
    if (e->has_gout || e->has_out || e->n_grad || e->n_after)
      return "in after gout/out/grad/after";
    if (e->n_in == REF_MAX_IN) return "too many inputs";
    ref_tensor *t = &e->in[e->n_in++];
    if (n == 2 && !strcmp(tok[1], "none")) {
      memset(t, 0, sizeof *t);
      t->none = true;
      return NULL;
    }
    if (n < 2) return "in needs a dtype";
    tg_dtype dt;
    if (!strcmp(tok[1], "f64")) dt = TG_F64;
    else if (!strcmp(tok[1], "i32")) dt = TG_I32;
    else return "in: dtype is not f64 or i32";
    return parse_tensor(tok + 2, n - 2, dt, t);
  }
  if (!strcmp(tok[0], "gout") || !strcmp(tok[0], "out")) {
    bool g = tok[0][0] == 'g';
    if (g ? e->has_gout : e->has_out) return "a second gout or out";
    if (g) e->has_gout = true;
    else e->has_out = true;
    return parse_tensor(tok + 1, n - 1, TG_F64, g ? &e->gout : &e->out);
  }
  if (!strcmp(tok[0], "grad")) {
    if (e->n_grad == e->n_in) return "more grad lines than inputs";
    ref_tensor *t = &e->grad[e->n_grad];
    const ref_tensor *x = &e->in[e->n_grad++];
    if (n == 2 && !strcmp(tok[1], "none")) {
      memset(t, 0, sizeof *t);
      t->none = true;
      return NULL;
    }
    if ((why = parse_tensor(tok + 1, n - 1, TG_F64, t))) return why;
    if (x->none || x->dtype != TG_F64) return "a gradient for an input that has none";
    if (!same_shape(t, x)) return "a gradient not shaped like its input";
    return NULL;
  }
  if (!strcmp(tok[0], "after")) {
    int64_t k;
    if (n < 2 || !parse_i64(tok[1], &k) || k < 0 || k >= e->n_in)
      return "after needs the index of an input";
    for (int i = 0; i < e->n_after; i++)
      if (e->after_k[i] == k) return "a second after for one input";
    const ref_tensor *x = &e->in[k];
    if (x->none || x->dtype != TG_F64) return "after for an input that is not float";
    e->after_k[e->n_after] = (int)k;
    ref_tensor *t = &e->after[e->n_after++];
    if ((why = parse_tensor(tok + 2, n - 2, TG_F64, t))) return why;
    if (!same_shape(t, x)) return "after not shaped like its input";
    return NULL;
  }
  if (!strcmp(tok[0], "end")) {
    if (!e->has_gout || !e->has_out) return "entry without gout or out";
    if (e->n_grad != e->n_in) return "not one grad line per input";
    if (!same_shape(&e->gout, &e->out)) return "gout not shaped like out";
    *cur = NULL;
    return NULL;
  }
  return "unknown field";
}

/* Reads the whole file into f; false with f->err set on the first error. */
static bool ref_file_read(ref_file *f, const char *path, const char *name) {
  memset(f, 0, sizeof *f);
  FILE *fp = fopen(path, "r");
  if (!fp) {
    snprintf(f->err, sizeof f->err, "%s: cannot open: %s", name, strerror(errno));
    return false;
  }
  char *buf = NULL;
  size_t cap = 0;
  char **tok = NULL;
  size_t tok_cap = 0;
  ref_entry *cur = NULL;
  int line = 0;
  const char *why = NULL;
  ssize_t len;
  while (!why && (len = getline(&buf, &cap, fp)) >= 0) {
    line++;
    if (len && buf[len - 1] == '\n') buf[--len] = 0;
    if (line == 1) {
      char ver[64], dt[16], extra;
      if (sscanf(buf, "tapegrad-torch-ref 1 torch %63s %15s %c", ver, dt,
                 &extra) != 2 || strcmp(dt, "float64"))
        why = "the first line is not \"tapegrad-torch-ref 1 torch VERSION float64\"";
      else
        strcpy(f->version, ver);
      continue;
    }
    int n = 0;
    char *save = NULL;
    for (char *s = strtok_r(buf, " \t\r", &save); s; s = strtok_r(NULL, " \t\r", &save)) {
      if ((size_t)n == tok_cap) {
        tok_cap = tok_cap ? 2 * tok_cap : 64;
        tok = realloc(tok, tok_cap * sizeof *tok);
        ck_assert_ptr_nonnull(tok);
      }
      tok[n++] = s;
    }
    if (!n || tok[0][0] == '#') continue;
    why = parse_line(f, &cur, tok, n, line);
  }
  if (!why && line == 0) why = "empty file";
  if (!why && cur) why = "the last entry has no end";
  if (why) snprintf(f->err, sizeof f->err, "%s:%d: %s", name, line, why);
  free(buf);
  free(tok);
  fclose(fp);
  return why == NULL;
}

/* --- the op table: each entry's inputs and arguments -> a tapegrad call */

typedef struct {
  tg_tape *t;
  tg_tensor *const *in; /* NULL where the file says "in none" */
  int n_in;
  const ref_entry *e;
  const char *missing; /* set by the arg helpers: an argument not found */
} ref_call;

static const ref_arg *find_arg(ref_call *c, const char *name, int n) {
  for (int i = 0; i < c->e->n_args; i++)
    if (!strcmp(c->e->args[i].name, name) && (n < 0 || c->e->args[i].n == n))
      return &c->e->args[i];
  if (!c->missing) c->missing = name;
  return NULL;
}

/* A one-value argument (0 when missing: the call then fails). */
static double num(ref_call *c, const char *name) {
  const ref_arg *a = find_arg(c, name, 1);
  return a ? a->v[0] : 0;
}

static int inum(ref_call *c, const char *name) { return (int)num(c, name); }

typedef tg_tensor *(*ref_fn)(ref_call *c);

#define IN0 c->in[0]
#define IN1 c->in[1]
#define IN2 c->in[2]

static tg_tensor *ref_matmul(ref_call *c) { return tg_matmul(c->t, IN0, IN1); }
static tg_tensor *ref_linear(ref_call *c) {
  return tg_linear(c->t, IN0, IN1, IN2, (tg_activation)inum(c, "act"));
}
static tg_tensor *ref_add(ref_call *c) { return tg_add(c->t, IN0, IN1); }
static tg_tensor *ref_mul(ref_call *c) { return tg_mul(c->t, IN0, IN1); }
static tg_tensor *ref_neg(ref_call *c) { return tg_neg(c->t, IN0); }
static tg_tensor *ref_scale(ref_call *c) { return tg_scale(c->t, IN0, num(c, "c")); }
static tg_tensor *ref_sigmoid(ref_call *c) { return tg_sigmoid(c->t, IN0); }
static tg_tensor *ref_relu(ref_call *c) { return tg_relu(c->t, IN0); }
static tg_tensor *ref_tanh(ref_call *c) { return tg_tanh(c->t, IN0); }
static tg_tensor *ref_exp(ref_call *c) { return tg_exp(c->t, IN0); }
static tg_tensor *ref_log(ref_call *c) { return tg_log(c->t, IN0); }
static tg_tensor *ref_softmax(ref_call *c) { return tg_softmax(c->t, IN0); }
static tg_tensor *ref_sum(ref_call *c) { return tg_sum(c->t, IN0); }
static tg_tensor *ref_sum_axis(ref_call *c) {
  return tg_sum_axis(c->t, IN0, inum(c, "axis"));
}
static tg_tensor *ref_mean(ref_call *c) { return tg_mean(c->t, IN0); }
static tg_tensor *ref_pick(ref_call *c) { return tg_pick(c->t, IN0, IN1); }
static tg_tensor *ref_softmax_nll(ref_call *c) {
  return tg_softmax_nll(c->t, IN0, IN1);
}
static tg_tensor *ref_sigmoid_bce(ref_call *c) {
  return tg_sigmoid_bce(c->t, IN0, IN1);
}
static tg_tensor *ref_quadratic(ref_call *c) {
  return tg_quadratic(c->t, IN0, IN1);
}

/* The algebra's ops, by op id and number of inputs (-1: any). */
#define REF_ALGEBRA_OPS(X)                                                   \
  X(sqrt, 1) X(abs, 1) X(square, 1) X(pow_scalar, 1) X(log1p, 1)             \
  X(softplus, 1) X(gelu, 1) X(gelu_tanh, 1) X(silu, 1) X(leaky_relu, 1)      \
  X(clamp, 1) X(add_scalar, 1)                                               \
  X(add_bcast, 2) X(sub, 2) X(mul_bcast, 2) X(div, 2) X(pow, 2)              \
  X(maximum, 2) X(minimum, 2) X(where, 3)                                    \
  X(sum_axes, 1) X(mean_axes, 1) X(max_axes, 1) X(min_axes, 1)               \
  X(logsumexp, 1) X(var, 1) X(softmax_axis, 1) X(log_softmax, 1)             \
  X(reshape, 1) X(permute, 1) X(transpose, 1) X(slice, 1) X(concat, -1)      \
  X(stack, -1) X(pad, 1) X(gather, 2)                                        \
  X(matmul_ex, 2) X(embedding, 2) X(layer_norm, 3)

/* Pooling and batch normalisation. */
#define REF_POOLNORM_OPS(X)                                                  \
  X(max_pool2d, 1) X(avg_pool2d, 1) X(global_avg_pool2d, 1) X(batch_norm, 5)

/* A list argument into out (at most REF_MAX_ARGVALS); its length. */
static int ints(ref_call *c, const char *name, int *out) {
  const ref_arg *a = find_arg(c, name, -1);
  if (!a) return 0;
  for (int i = 0; i < a->n; i++) out[i] = (int)a->v[i];
  return a->n;
}

static int i64s(ref_call *c, const char *name, int64_t *out) {
  const ref_arg *a = find_arg(c, name, -1);
  if (!a) return 0;
  for (int i = 0; i < a->n; i++) out[i] = (int64_t)a->v[i];
  return a->n;
}

static tg_tensor *ref_sqrt(ref_call *c) { return tg_sqrt(c->t, IN0); }
static tg_tensor *ref_abs(ref_call *c) { return tg_abs(c->t, IN0); }
static tg_tensor *ref_square(ref_call *c) { return tg_square(c->t, IN0); }
static tg_tensor *ref_pow_scalar(ref_call *c) {
  return tg_pow_scalar(c->t, IN0, num(c, "p"));
}
static tg_tensor *ref_log1p(ref_call *c) { return tg_log1p(c->t, IN0); }
static tg_tensor *ref_softplus(ref_call *c) { return tg_softplus(c->t, IN0); }
static tg_tensor *ref_gelu(ref_call *c) { return tg_gelu(c->t, IN0); }
static tg_tensor *ref_gelu_tanh(ref_call *c) { return tg_gelu_tanh(c->t, IN0); }
static tg_tensor *ref_silu(ref_call *c) { return tg_silu(c->t, IN0); }
static tg_tensor *ref_leaky_relu(ref_call *c) {
  return tg_leaky_relu(c->t, IN0, num(c, "slope"));
}
static tg_tensor *ref_clamp(ref_call *c) {
  return tg_clamp(c->t, IN0, num(c, "lo"), num(c, "hi"));
}
static tg_tensor *ref_add_scalar(ref_call *c) {
  return tg_add_scalar(c->t, IN0, num(c, "c"));
}
/* tg_add and tg_mul with NumPy broadcasting */
static tg_tensor *ref_add_bcast(ref_call *c) { return tg_add(c->t, IN0, IN1); }
static tg_tensor *ref_mul_bcast(ref_call *c) { return tg_mul(c->t, IN0, IN1); }
static tg_tensor *ref_sub(ref_call *c) { return tg_sub(c->t, IN0, IN1); }
static tg_tensor *ref_div(ref_call *c) { return tg_div(c->t, IN0, IN1); }
static tg_tensor *ref_pow(ref_call *c) { return tg_pow(c->t, IN0, IN1); }
static tg_tensor *ref_maximum(ref_call *c) { return tg_maximum(c->t, IN0, IN1); }
static tg_tensor *ref_minimum(ref_call *c) { return tg_minimum(c->t, IN0, IN1); }
static tg_tensor *ref_where(ref_call *c) { return tg_where(c->t, IN0, IN1, IN2); }

#define REF_REDUCE(name)                                                     \
  static tg_tensor *ref_##name(ref_call *c) {                                \
    int axes[REF_MAX_ARGVALS];                                               \
    int n = ints(c, "axes", axes);                                           \
    return tg_##name(c->t, IN0, axes, n, inum(c, "keepdim") != 0);           \
  }
REF_REDUCE(sum_axes)
REF_REDUCE(mean_axes)
REF_REDUCE(max_axes)
REF_REDUCE(min_axes)
REF_REDUCE(logsumexp)
static tg_tensor *ref_var(ref_call *c) {
  int axes[REF_MAX_ARGVALS];
  int n = ints(c, "axes", axes);
  return tg_var(c->t, IN0, axes, n, inum(c, "correction"),
                inum(c, "keepdim") != 0);
}
static tg_tensor *ref_softmax_axis(ref_call *c) {
  return tg_softmax_axis(c->t, IN0, inum(c, "axis"));
}
static tg_tensor *ref_log_softmax(ref_call *c) {
  return tg_log_softmax(c->t, IN0, inum(c, "axis"));
}

static tg_tensor *ref_reshape(ref_call *c) {
  int64_t shape[REF_MAX_ARGVALS];
  int n = i64s(c, "shape", shape);
  return tg_reshape(c->t, IN0, n, shape);
}
static tg_tensor *ref_permute(ref_call *c) {
  int perm[REF_MAX_ARGVALS];
  ints(c, "perm", perm);
  return tg_permute(c->t, IN0, perm);
}
static tg_tensor *ref_transpose(ref_call *c) {
  return tg_transpose(c->t, IN0, inum(c, "d0"), inum(c, "d1"));
}
static tg_tensor *ref_slice(ref_call *c) {
  return tg_slice(c->t, IN0, inum(c, "axis"), (int64_t)num(c, "start"),
                  (int64_t)num(c, "stop"), (int64_t)num(c, "step"));
}
static tg_tensor *ref_concat(ref_call *c) {
  return tg_concat(c->t, c->in, c->n_in, inum(c, "axis"));
}
static tg_tensor *ref_stack(ref_call *c) {
  return tg_stack(c->t, c->in, c->n_in, inum(c, "axis"));
}
static tg_tensor *ref_pad(ref_call *c) {
  int64_t before[REF_MAX_ARGVALS], after[REF_MAX_ARGVALS];
  i64s(c, "before", before);
  i64s(c, "after", after);
  return tg_pad(c->t, IN0, before, after, num(c, "value"));
}
static tg_tensor *ref_gather(ref_call *c) {
  return tg_gather(c->t, IN0, inum(c, "axis"), IN1);
}

static tg_tensor *ref_matmul_ex(ref_call *c) {
  return tg_matmul_ex(c->t, IN0, IN1, inum(c, "ta") != 0, inum(c, "tb") != 0);
}
static tg_tensor *ref_embedding(ref_call *c) {
  return tg_embedding(c->t, IN0, IN1);
}
static tg_tensor *ref_layer_norm(ref_call *c) {
  return tg_layer_norm(c->t, IN0, IN1, IN2, num(c, "eps"));
}

/* Convolutions and pooling, by op id and number of inputs. */
#define REF_CONV_OPS(X) X(conv2d, 3)

/* An argument of two values (height, width), as ints into out[0..1]. */
static void pair(ref_call *c, const char *name, int *out) {
  const ref_arg *a = find_arg(c, name, 2);
  out[0] = a ? (int)a->v[0] : 0;
  out[1] = a ? (int)a->v[1] : 0;
}

static tg_tensor *ref_conv2d(ref_call *c) {
  int st[2], pad[2], dil[2];
  pair(c, "stride", st);
  pair(c, "padding", pad);
  pair(c, "dilation", dil);
  return tg_conv2d(c->t, IN0, IN1, IN2, st[0], st[1], pad[0], pad[1], dil[0],
                   dil[1], inum(c, "groups"));
}

#define REF_POOL(name)                                                       \
  static tg_tensor *ref_##name(ref_call *c) {                                \
    return tg_##name(c->t, IN0, inum(c, "kh"), inum(c, "kw"),                \
                     inum(c, "stride_h"), inum(c, "stride_w"),               \
                     inum(c, "pad_h"), inum(c, "pad_w"));                    \
  }
REF_POOL(max_pool2d)
REF_POOL(avg_pool2d)
static tg_tensor *ref_global_avg_pool2d(ref_call *c) {
  return tg_global_avg_pool2d(c->t, IN0);
}
/* x, gamma, beta, running_mean, running_var */
static tg_tensor *ref_batch_norm(ref_call *c) {
  return tg_batch_norm(c->t, IN0, IN1, IN2, c->in[3], c->in[4],
                       inum(c, "training") != 0, num(c, "momentum"),
                       num(c, "eps"));
}

typedef struct {
  const char *id;
  ref_fn fn;
  int n_in; /* -1: any number (a variadic op) */
} ref_op;

#define REF_ROW(id, n) {#id, ref_##id, n},
static const ref_op OPS[] = {
    {"matmul", ref_matmul, 2},
    {"linear", ref_linear, 3},
    {"add", ref_add, 2},
    {"mul", ref_mul, 2},
    {"neg", ref_neg, 1},
    {"scale", ref_scale, 1},
    {"sigmoid", ref_sigmoid, 1},
    {"relu", ref_relu, 1},
    {"tanh", ref_tanh, 1},
    {"exp", ref_exp, 1},
    {"log", ref_log, 1},
    {"softmax", ref_softmax, 1},
    {"sum", ref_sum, 1},
    {"sum_axis", ref_sum_axis, 1},
    {"mean", ref_mean, 1},
    {"pick", ref_pick, 2},
    {"softmax_nll", ref_softmax_nll, 2},
    {"sigmoid_bce", ref_sigmoid_bce, 2},
    {"quadratic", ref_quadratic, 2},
    REF_ALGEBRA_OPS(REF_ROW)
    REF_CONV_OPS(REF_ROW)
    REF_POOLNORM_OPS(REF_ROW)
};
#define N_OPS (int)(sizeof OPS / sizeof *OPS)


static const ref_op *find_op(const char *id) {
  for (int i = 0; i < N_OPS; i++)
    if (!strcmp(OPS[i].id, id)) return &OPS[i];
  return NULL;
}


/* --- running an entry */

/* Failure messages, one per line; the test prints them all. */
typedef struct {
  char *buf;
  size_t len, cap;
  int n;
} ref_msgs;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void logf_(ref_msgs *l, const ref_entry *e, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char line[768];
  int k = snprintf(line, sizeof line, "%s:%d: %s %s: %s\n", REF_NAME, e->line,
                   e->op, e->label, msg);
  if (k < 0) return;
  size_t need = l->len + (size_t)k + 1;
  if (need > l->cap) {
    l->cap = need * 2;
    l->buf = realloc(l->buf, l->cap);
    ck_assert_ptr_nonnull(l->buf);
  }
  memcpy(l->buf + l->len, line, (size_t)k + 1);
  l->len += (size_t)k;
  l->n++;
}

static tg_tensor *make_tensor(const ref_tensor *r) {
  tg_tensor *x = tg_zeros(r->dtype, r->ndim, r->shape);
  ck_assert_msg(x != NULL, "tg_zeros: %s", tg_last_error());
  for (int64_t i = 0; i < r->numel; i++)
    ck_assert_int_eq(tg_set(x, i, r->v[i]), TG_OK);
  return x;
}

static bool close_enough(double got, double want) {
  return fabs(got - want) <= REF_TOL * (1 + fabs(want)); /* false for NaN */
}

static char *shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "",
                          (long long)shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

/* Compares tensor x (tapegrad's) with r; logs the worst element. */
static bool compare(ref_msgs *l, const ref_entry *e, const char *what,
                    tg_tensor *x, const ref_tensor *r) {
  char s1[64], s2[64];
  if (tg_tensor_dtype(x) != TG_F64) {
    logf_(l, e, "%s is %s, not float64", what, tg_dtype_name(tg_tensor_dtype(x)));
    return false;
  }
  int64_t shape[TG_MAX_DIMS] = {0};
  int nd = tg_tensor_ndim(x);
  for (int i = 0; i < nd; i++) shape[i] = tg_tensor_dim(x, i);
  bool same = nd == r->ndim;
  for (int i = 0; same && i < nd; i++) same = shape[i] == r->shape[i];
  if (!same) {
    logf_(l, e, "%s is %s, PyTorch's %s", what, shape_str(s1, sizeof s1, nd, shape),
          shape_str(s2, sizeof s2, r->ndim, r->shape));
    return false;
  }
  const double *v = tg_tensor_f64(x);
  int64_t worst = -1, bad = 0;
  double worst_err = 0;
  for (int64_t i = 0; i < r->numel; i++) {
    if (close_enough(v[i], r->v[i])) continue;
    bad++;
    double err = fabs(v[i] - r->v[i]) / (1 + fabs(r->v[i]));
    if (worst < 0 || !(err <= worst_err)) worst = i, worst_err = err;
  }
  if (bad) {
    logf_(l, e, "%s: %lld of %lld elements off; worst [%lld] = %.17g, PyTorch "
          "%.17g (error %.3g x (1 + |ref|), tolerance %g)", what, (long long)bad,
          (long long)r->numel, (long long)worst, v[worst], r->v[worst], worst_err,
          REF_TOL);
    return false;
  }
  return true;
}

/* Runs one entry of a known op; false (and a message) when it differs. */
static bool run_entry(ref_msgs *l, const ref_entry *e, const ref_op *op) {
  if (op->n_in >= 0 && e->n_in != op->n_in) {
    logf_(l, e, "%d inputs; the op takes %d", e->n_in, op->n_in);
    return false;
  }
  tg_tensor *in[REF_MAX_IN] = {0};
  for (int k = 0; k < e->n_in; k++) {
    if (e->in[k].none) continue;
    in[k] = make_tensor(&e->in[k]);
    if (e->in[k].dtype == TG_F64) ck_assert_int_eq(tg_requires_grad(in[k], true), TG_OK);
  }
  tg_tape *t = tg_tape_new();
  ck_assert_ptr_nonnull(t);
  ref_call c = {.t = t, .in = in, .n_in = e->n_in, .e = e};
  tg_tensor *out = op->fn(&c);
  bool ok = true;
  tg_tensor *g = NULL;
  if (c.missing) {
    logf_(l, e, "no argument \"%s\" (of the expected length)", c.missing);
    ok = false;
  } else if (!out) {
    logf_(l, e, "the op failed: %s", tg_last_error());
    ok = false;
  } else {
    ok = compare(l, e, "out", out, &e->out);
    for (int i = 0; i < e->n_after; i++) {
      char what[48];
      snprintf(what, sizeof what, "input %d after the call", e->after_k[i]);
      ok = compare(l, e, what, in[e->after_k[i]], &e->after[i]) && ok;
    }
  }
  if (ok) {
    g = make_tensor(&e->gout);
    int rc = tg_backward_grad(t, out, g);
    if (rc != TG_OK) {
      logf_(l, e, "tg_backward_grad: %s", tg_last_error());
      ok = false;
    }
  }
  for (int k = 0; ok && k < e->n_in; k++) {
    char what[32];
    snprintf(what, sizeof what, "grad of input %d", k);
    if (!in[k] || e->in[k].dtype != TG_F64) continue;
    tg_tensor *gr = tg_tensor_grad(in[k]);
    if (e->grad[k].none) { /* PyTorch: no gradient; tapegrad's must be 0 */
      for (int64_t i = 0; gr && i < tg_tensor_numel(gr); i++)
        if (tg_get(gr, i) != 0) {
          logf_(l, e, "%s: PyTorch has none, tapegrad's [%lld] = %.17g", what,
                (long long)i, tg_get(gr, i));
          ok = false;
          break;
        }
      continue;
    }
    if (!gr) {
      logf_(l, e, "%s: tapegrad computed none", what);
      ok = false;
      continue;
    }
    ok = compare(l, e, what, gr, &e->grad[k]) && ok;
  }
  tg_tape_free(t);
  tg_tensor_free(g);
  for (int k = 0; k < e->n_in; k++) tg_tensor_free(in[k]);
  return ok;
}

static void read_or_fail(ref_file *f) {
  if (!ref_file_read(f, REF_FILE, REF_NAME)) {
    ref_file_free(f);
    ck_abort_msg("%s", f->err);
  }
}

START_TEST(test_ops_match_torch) {
  ref_file f;
  read_or_fail(&f);
  ref_msgs l = {0};
  int passed = 0, failed = 0;
  for (int i = 0; i < f.n; i++) {
    const ref_entry *e = &f.e[i];
    const ref_op *op = find_op(e->op);
    if (!op) {
      logf_(&l, e, "unknown op id (not in the table of tests/test_torch_ref.c)");
      failed++;
      continue;
    }
    if (run_entry(&l, e, op)) passed++;
    else failed++;
  }
  printf("%s (torch %s): %d entries passed, %d failed", REF_NAME, f.version,
         passed, failed);
  printf("\n");
  if (l.n) fputs(l.buf, stderr);
  fflush(stdout);
  char first[512] = "";
  if (l.buf) {
    size_t k = strcspn(l.buf, "\n");
    snprintf(first, sizeof first, "%.*s", (int)k, l.buf);
  }
  free(l.buf);
  ref_file_free(&f);
  ck_assert_msg(failed == 0, "%d of %d entries differ from PyTorch; first: %s",
                failed, passed + failed, first);
  ck_assert_int_gt(passed, 0);
}
END_TEST

/* Every op in the table has an entry: removing one from the file (or adding
 * an op to the table without regenerating the file) fails here. */
START_TEST(test_every_op_has_entries) {
  ref_file f;
  read_or_fail(&f);
  char missing[1024] = "";
  int n_missing = 0;
  for (int i = 0; i < N_OPS; i++) {
    int count = 0;
    for (int j = 0; j < f.n; j++) count += !strcmp(f.e[j].op, OPS[i].id);
    if (count) continue;
    n_missing++;
    size_t k = strlen(missing);
    snprintf(missing + k, sizeof missing - k, "%s%s", k ? ", " : "", OPS[i].id);
  }
  ref_file_free(&f);
  ck_assert_msg(n_missing == 0, "%s has no entry for %d op(s) of the table: %s",
                REF_NAME, n_missing, missing);
}
END_TEST

/* The reader itself: a malformed file fails naming its line. */
START_TEST(test_parse_errors_name_the_line) {
  static const struct {
    const char *text, *want;
  } cases[] = {
      {"tapegrad-torch-ref 1 torch 2.0 float64\nentry neg x\nin f64 1 2 1\n",
       ":3: the number of values"},
      {"tapegrad-torch-ref 1 torch 2.0 float64\n# c\n\nentry neg x\nin f64 1 1 1\n"
       "gout 1 1 1\nout 1 1 -1\nend\n",
       ":8: not one grad line per input"},
      {"tapegrad-torch-ref 1 torch 2.0 float64\nentry neg x\nin f64 1 1 1x\n",
       ":3: bad float value"},
      {"tapegrad-torch-ref 1 torch 2.0 float64\nentry neg x\nin f64 1 1 1\n"
       "gout 1 1 1\nout 1 1 -1\ngrad 1 1 -1\n",
       ":6: the last entry has no end"},
      {"tapegrad-torch-ref 1 torch 2.0 float64\nentry neg x\nin f64 1 1 1\n"
       "after 1 1 1 2\n",
       ":4: after needs the index of an input"},
      {"tapegrad-torch-ref 1 torch 2.0 float64\nentry neg x\nin f64 1 1 1\n"
       "after 0 1 2 2 3\n",
       ":4: after not shaped like its input"},
      {"tapegrad 1\n", ":1: the first line"},
      {"tapegrad-torch-ref 1 torch 2.0 float64\nbogus\n", ":2: a field outside"},
  };
  char path[] = "torch_ref_XXXXXX";
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    size_t n = strlen(cases[i].text);
    ck_assert_int_eq(write(fd, cases[i].text, n), (ssize_t)n);
    close(fd);
    ref_file f;
    bool ok = ref_file_read(&f, path, "ref.txt");
    unlink(path);
    ref_file_free(&f);
    ck_assert_msg(!ok, "case %zu parsed", i);
    ck_assert_msg(strstr(f.err, cases[i].want) != NULL,
                  "case %zu: \"%s\" lacks \"%s\"", i, f.err, cases[i].want);
    strcpy(path, "torch_ref_XXXXXX");
  }
  /* and a well-formed one reads */
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  const char *good = "tapegrad-torch-ref 1 torch 2.0 float64\nentry pick x\n"
                     "arg k 2 1 -2.5\nin f64 2 1 2 1 2\nin i32 1 1 1\n"
                     "gout 1 1 0.5\nout 1 1 2\ngrad 2 1 2 0 0.5\ngrad none\nend\n";
  ck_assert_int_eq(write(fd, good, strlen(good)), (ssize_t)strlen(good));
  close(fd);
  ref_file f;
  bool ok = ref_file_read(&f, path, "ref.txt");
  unlink(path);
  ck_assert_msg(ok, "%s", f.err);
  ck_assert_int_eq(f.n, 1);
  ck_assert_str_eq(f.version, "2.0");
  ck_assert_int_eq(f.e[0].n_in, 2);
  ck_assert(f.e[0].grad[1].none);
  ck_assert(f.e[0].args[0].v[1] == -2.5);
  ref_file_free(&f);
}
END_TEST

int main(void) {
  Suite *s = suite_create("torch_ref");
  TCase *tc = tcase_create("torch_ref");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_ops_match_torch);
  tcase_add_test(tc, test_every_op_has_entries);
  tcase_add_test(tc, test_parse_errors_name_the_line);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
