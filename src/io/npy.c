/* src/io/npy.c: NumPy .npy files, one array each. The header is a Python dict
 * literal; a small parser here accepts what NumPy writes (keys in any order,
 * either quote, optional trailing commas, either byte order, C or Fortran
 * order) and refuses everything else with a message saying where. */
#include <stdarg.h>
#include <string.h>

#include "io.h"

#define NPY_MAGIC "\x93NUMPY"
/* NumPy itself refuses headers above 10000 bytes unless told otherwise; a
 * header for at most 4 dimensions is far smaller still. */
#define NPY_MAX_HEADER 65536u

typedef struct {
  const char *fn, *path;
  const char *start, *p, *end; /* the header text */
} npy_lex;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int nerr(const char *fn, const char *path, int status, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return tg__err(status, "%s: %s: %s", fn, path, msg);
}

/* A header error, with where it happened. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int herr(const npy_lex *x, const char *fmt, ...) {
  char msg[320];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return tg__err(TG_EFORMAT, "%s: %s: bad header at byte %zu: %s", x->fn,
                 x->path, (size_t)(x->p - x->start), msg);
}

static void skip_ws(npy_lex *x) {
  while (x->p < x->end &&
         (*x->p == ' ' || *x->p == '\t' || *x->p == '\n' || *x->p == '\r'))
    x->p++;
}

static bool lit(npy_lex *x, const char *s) {
  size_t n = strlen(s);
  if ((size_t)(x->end - x->p) < n || memcmp(x->p, s, n) != 0) return false;
  x->p += n;
  return true;
}

/* What is at x->p, for messages: "'x'" or "the end of the header". */
static const char *here(const npy_lex *x, char *buf, size_t n) {
  if (x->p >= x->end) return "the end of the header";
  unsigned char c = (unsigned char)*x->p;
  if (c >= 0x20 && c < 0x7F) snprintf(buf, n, "'%c'", c);
  else snprintf(buf, n, "byte 0x%02x", c);
  return buf;
}

/* A quoted string without escapes, into out (cap bytes). */
static int parse_str(npy_lex *x, char *out, size_t cap, const char *what) {
  char hb[16];
  if (x->p >= x->end || (*x->p != '\'' && *x->p != '"'))
    return herr(x, "expected a quoted string for %s, found %s", what,
                here(x, hb, sizeof hb));
  char q = *x->p++;
  size_t n = 0;
  while (x->p < x->end && *x->p != q) {
    unsigned char c = (unsigned char)*x->p;
    if (c == '\\' || c < 0x20 || c >= 0x7F)
      return herr(x, "unexpected %s in %s", here(x, hb, sizeof hb), what);
    if (n + 1 >= cap) return herr(x, "%s is too long", what);
    out[n++] = (char)c;
    x->p++;
  }
  if (x->p >= x->end) return herr(x, "unterminated string in %s", what);
  x->p++;
  out[n] = '\0';
  return TG_OK;
}

typedef struct {
  tg_dtype dtype;
  bool big_endian, fortran;
  int ndim;
  int64_t shape[TG_MAX_DIMS];
  int64_t numel;
} npy_info;

/* '<' or '>' then the type; '|' and '=' are not what NumPy writes for
 * these multi-byte types. */
static int parse_descr(npy_lex *x, npy_info *info) {
  char d[32];
  if (x->p < x->end && *x->p == '[')
    return herr(x, "descr is a list: structured dtypes are not supported");
  int rc = parse_str(x, d, sizeof d, "descr");
  if (rc) return rc;
  if ((d[0] == '<' || d[0] == '>') && !strcmp(d + 1, "f4")) info->dtype = TG_F32;
  else if ((d[0] == '<' || d[0] == '>') && !strcmp(d + 1, "f8")) info->dtype = TG_F64;
  else if ((d[0] == '<' || d[0] == '>') && !strcmp(d + 1, "i4")) info->dtype = TG_I32;
  else
    return herr(x, "descr '%s' is not supported; tapegrad reads '<f4' or '>f4' "
                "(float32), '<f8' or '>f8' (float64) and '<i4' or '>i4' (int32)",
                d);
  info->big_endian = d[0] == '>';
  return TG_OK;
}

static int parse_shape(npy_lex *x, npy_info *info) {
  char hb[16];
  if (!lit(x, "("))
    return herr(x, "expected a tuple '(' for shape, found %s", here(x, hb, sizeof hb));
  int nd = 0;
  bool comma = false;
  info->numel = 1;
  for (;;) {
    skip_ws(x);
    if (lit(x, ")")) break;
    if (x->p < x->end && *x->p == '-')
      return herr(x, "shape dimension %d is negative", nd);
    if (x->p >= x->end || *x->p < '0' || *x->p > '9')
      return herr(x, "expected an integer in shape, found %s", here(x, hb, sizeof hb));
    uint64_t v = 0;
    while (x->p < x->end && *x->p >= '0' && *x->p <= '9') {
      v = v * 10 + (uint64_t)(*x->p++ - '0');
      if (v > (uint64_t)INT64_MAX / 8)
        return herr(x, "shape dimension %d is too large", nd);
    }
    if (nd == TG_MAX_DIMS)
      return herr(x, "shape has more than %d dimensions", TG_MAX_DIMS);
    if (info->numel && v > (uint64_t)(INT64_MAX / 8 / info->numel))
      return herr(x, "the shape's element count overflows");
    info->shape[nd++] = (int64_t)v;
    info->numel *= (int64_t)v;
    skip_ws(x);
    comma = lit(x, ",");
    if (!comma) {
      skip_ws(x);
      if (!lit(x, ")"))
        return herr(x, "expected ',' or ')' in shape, found %s",
                    here(x, hb, sizeof hb));
      break;
    }
  }
  if (nd == 1 && !comma)
    return herr(x, "shape (%lld) is not a tuple; a 1-d shape is written (%lld,)",
                (long long)info->shape[0], (long long)info->shape[0]);
  info->ndim = nd;
  return TG_OK;
}

static int parse_header(npy_lex *x, npy_info *info) {
  char hb[16], key[32];
  bool seen[3] = {false, false, false};
  int rc;
  skip_ws(x);
  if (!lit(x, "{"))
    return herr(x, "expected a dict '{', found %s", here(x, hb, sizeof hb));
  for (;;) {
    skip_ws(x);
    if (lit(x, "}")) break;
    if ((rc = parse_str(x, key, sizeof key, "a key"))) return rc;
    int k = !strcmp(key, "descr") ? 0 : !strcmp(key, "fortran_order") ? 1
          : !strcmp(key, "shape") ? 2 : -1;
    if (k < 0) return herr(x, "unknown key '%s'", key);
    if (seen[k]) return herr(x, "key '%s' appears twice", key);
    seen[k] = true;
    skip_ws(x);
    if (!lit(x, ":"))
      return herr(x, "expected ':' after '%s', found %s", key, here(x, hb, sizeof hb));
    skip_ws(x);
    if (k == 0) rc = parse_descr(x, info);
    else if (k == 2) rc = parse_shape(x, info);
    else if (lit(x, "True"))
      info->fortran = true;
    else if (!lit(x, "False"))
      rc = herr(x, "fortran_order must be True or False, found %s",
                here(x, hb, sizeof hb));
    if (rc) return rc;
    skip_ws(x);
    if (lit(x, ",")) continue;
    skip_ws(x);
    if (lit(x, "}")) break;
    return herr(x, "expected ',' or '}', found %s", here(x, hb, sizeof hb));
  }
  skip_ws(x);
  if (x->p < x->end)
    return herr(x, "unexpected %s after the dict", here(x, hb, sizeof hb));
  static const char *const names[3] = {"descr", "fortran_order", "shape"};
  for (int k = 0; k < 3; k++)
    if (!seen[k]) return herr(x, "the key '%s' is missing", names[k]);
  return TG_OK;
}

/* Copies column-major src into row-major dst: element (i0, ..., ik) is at
 * i0 + d0 * (i1 + d1 * (...)) in src. dst is walked in order while src's
 * offset follows along by its strides. */
static void from_fortran(void *dst, const unsigned char *src, int nd,
                         const int64_t *shape, size_t es) {
  int64_t stride[TG_MAX_DIMS], idx[TG_MAX_DIMS] = {0}, numel = 1;
  for (int k = 0; k < nd; k++) {
    stride[k] = numel;
    numel *= shape[k];
  }
  unsigned char *d = dst;
  int64_t off = 0;
  for (int64_t i = 0; i < numel; i++, d += es) {
    memcpy(d, src + (size_t)off * es, es);
    for (int k = nd - 1; k >= 0; k--) { /* the last index runs fastest */
      off += stride[k];
      if (++idx[k] < shape[k]) break;
      off -= stride[k] * shape[k];
      idx[k] = 0;
    }
  }
}

static tg_tensor *parse(tg__src *s) {
  const char *fn = s->fn, *path = s->path;
  unsigned char pre[12];
  if (s->size < 10) {
    nerr(fn, path, TG_EFORMAT, "the file is %llu bytes: too short for a .npy "
         "file", (unsigned long long)s->size);
    return NULL;
  }
  if (tg__src_read(s, pre, 8)) return NULL;
  if (memcmp(pre, NPY_MAGIC, 6) != 0) {
    nerr(fn, path, TG_EFORMAT, "not a .npy file: it does not start with "
         "\"\\x93NUMPY\"");
    return NULL;
  }
  unsigned major = pre[6], minor = pre[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0) {
    nerr(fn, path, TG_EFORMAT, "format version %u.%u is not supported (1.0, "
         "2.0 and 3.0 are)", major, minor);
    return NULL;
  }
  size_t lsize = major == 1 ? 2 : 4;
  if (s->size < 8 + lsize) {
    nerr(fn, path, TG_EFORMAT, "the file ends inside its header length");
    return NULL;
  }
  if (tg__src_read(s, pre + 8, lsize)) return NULL;
  uint64_t hlen = pre[8] | (uint64_t)pre[9] << 8;
  if (lsize == 4) hlen |= (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
  uint64_t after = s->size - 8 - lsize;
  if (hlen > NPY_MAX_HEADER) {
    nerr(fn, path, TG_EFORMAT, "the header length %llu is larger than the "
         "limit of %u bytes", (unsigned long long)hlen, NPY_MAX_HEADER);
    return NULL;
  }
  if (hlen > after) {
    nerr(fn, path, TG_EFORMAT, "the header length %llu is larger than the %llu "
         "bytes that follow it", (unsigned long long)hlen,
         (unsigned long long)after);
    return NULL;
  }
  char *text = tg__malloc((size_t)hlen);
  if (!text) {
    nerr(fn, path, TG_ENOMEM, "out of memory");
    return NULL;
  }
  if (tg__src_read(s, text, (size_t)hlen)) {
    tg__free(text);
    return NULL;
  }
  npy_lex x = {fn, path, text, text, text + hlen};
  npy_info info = {0};
  int rc = parse_header(&x, &info);
  tg__free(text);
  if (rc) return NULL;

  size_t es = tg__dtype_size(info.dtype);
  uint64_t need = (uint64_t)info.numel * es, have = s->size - s->pos;
  char sb[96];
  tg_tensor probe = {.ndim = info.ndim};
  memcpy(probe.shape, info.shape, sizeof info.shape);
  tg__shape_str(&probe, sb);
  if (have != need) {
    if (have < need)
      nerr(fn, path, TG_EFORMAT, "truncated: %s %s needs %llu data bytes but "
           "the file holds %llu after its header", tg_dtype_name(info.dtype),
           sb, (unsigned long long)need, (unsigned long long)have);
    else
      nerr(fn, path, TG_EFORMAT, "%llu bytes of trailing data after the %llu "
           "data bytes of %s %s", (unsigned long long)(have - need),
           (unsigned long long)need, tg_dtype_name(info.dtype), sb);
    return NULL;
  }
  tg_tensor *t = tg_zeros(info.dtype, info.ndim, info.shape);
  if (!t) {
    nerr(fn, path, TG_ENOMEM, "out of memory for %s %s",
         tg_dtype_name(info.dtype), sb);
    return NULL;
  }
  /* Fortran order (column-major) of 2 or more dimensions is read aside and
   * transposed; 0-d and 1-d data is the same in either order. */
  bool transpose = info.fortran && info.ndim > 1 && need > 0;
  unsigned char *raw = transpose ? tg__malloc((size_t)need) : t->data;
  if (!raw) {
    tg_tensor_free(t);
    nerr(fn, path, TG_ENOMEM, "out of memory for %s %s",
         tg_dtype_name(info.dtype), sb);
    return NULL;
  }
  if (tg__src_read(s, raw, (size_t)need)) {
    if (transpose) tg__free(raw);
    tg_tensor_free(t);
    return NULL;
  }
  if (info.big_endian == tg__host_le()) tg__bswap(raw, (size_t)t->numel, es);
  if (transpose) {
    from_fortran(t->data, raw, info.ndim, info.shape, es);
    tg__free(raw);
  }
  return t;
}

tg_tensor *tg_npy_load(const char *path) {
  if (!path) {
    tg__err(TG_EINVAL, "tg_npy_load: path is NULL");
    return NULL;
  }
  tg__src s;
  if (tg__src_open(&s, "tg_npy_load", path)) return NULL;
  tg_tensor *t = parse(&s);
  tg__src_close(&s);
  return t;
}

tg_tensor *tg__npy_parse(const void *buf, size_t len) {
  tg__src s;
  tg__src_mem(&s, "tg_npy_load", "<memory>", buf, len);
  return parse(&s);
}

int tg_npy_save(const char *path, const tg_tensor *t) {
  if (!path || !t)
    return tg__err(TG_EINVAL, "tg_npy_save: %s is NULL", !path ? "path" : "tensor");
  static const char *const descr[] = {"<f4", "<f8", "<i4"};
  char h[256];
  int n = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, "
                   "'shape': (", descr[t->dtype]);
  for (int i = 0; i < t->ndim; i++)
    n += snprintf(h + n, sizeof h - (size_t)n, "%lld,%s", (long long)t->shape[i],
                  i + 1 < t->ndim ? " " : "");
  if (t->ndim > 1) n--; /* NumPy writes (2, 3) but (5,) */
  n += snprintf(h + n, sizeof h - (size_t)n, "), }");
  /* Spaces and a newline pad the whole preamble to a multiple of 64 bytes,
   * as NumPy does, so the data is aligned. */
  size_t hlen = (size_t)n + 1;
  hlen += (64 - (10 + hlen) % 64) % 64;
  memset(h + n, ' ', hlen - (size_t)n - 1);
  h[hlen - 1] = '\n';
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                           (unsigned char)hlen, (unsigned char)(hlen >> 8)};
  tg__afile a;
  if (tg__afile_open(&a, "tg_npy_save", path)) return a.rc;
  tg__afile_write(&a, pre, sizeof pre);
  tg__afile_write(&a, h, hlen);
  size_t es = tg__dtype_size(t->dtype);
  tg__afile_write_le(&a, t->data, (size_t)t->numel * es, es);
  return tg__afile_commit(&a);
}
