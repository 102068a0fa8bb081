/* src/io/idx.c: the IDX format of MNIST and its kin, plain or gzip'd. Files are
 * read as if hostile: no header field is trusted with an allocation before
 * it has been checked against what the file really holds. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "io.h"

/* A gzip'd file, whose decompressed length is unknown, gets a buffer that
 * starts this small and doubles as data really arrives, so a small file
 * whose header claims billions of items fails at its end of file instead
 * of asking for the claimed amount of memory first. */
#define IDX_FIRST_CAP ((size_t)1 << 24)
#define IDX_READ_CHUNK ((size_t)1 << 20)

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

static bool mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
  if (b && a > UINT64_MAX / b) return false;
  *out = a * b;
  return true;
}

static const char *idx_type_name(unsigned t) {
  switch (t) {
  case 0x08: return "unsigned byte";
  case 0x09: return "signed byte";
  case 0x0B: return "short";
  case 0x0C: return "int";
  case 0x0D: return "float";
  case 0x0E: return "double";
  }
  return "not an IDX type";
}

/* "60000x28x28" */
static const char *dims_str(const uint32_t *d, int nd, char *buf, size_t n) {
  size_t k = 0;
  buf[0] = '\0';
  for (int i = 0; i < nd && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? "x%lu" : "%lu",
                          (unsigned long)d[i]);
  return buf;
}

/* Reads the header: magic, then one big-endian uint32 per dimension. */
static int read_header(tg__src *s, tg_dtype dtype, uint32_t *dims, int *nd,
                       uint64_t *count) {
  unsigned char h[12];
  size_t got;
  int rc = tg__src_read_some(s, h, 4, &got);
  if (rc) return rc;
  if (got < 4) {
    if (s->pos == 0)
      return tg__err(TG_EFORMAT, "%s: %s: the file is empty", s->fn, s->path);
    return tg__err(TG_EFORMAT,
                   "%s: %s: truncated header: the file ends after %llu bytes, "
                   "inside the 4-byte magic number",
                   s->fn, s->path, (unsigned long long)s->pos);
  }
  if (h[0] || h[1])
    return tg__err(TG_EFORMAT,
                   "%s: %s: not an IDX file: magic number is 0x%08lx; expected "
                   "0x00000801 (labels) or 0x00000803 (images)",
                   s->fn, s->path, (unsigned long)be32(h));
  if (h[2] != 0x08)
    return tg__err(TG_EFORMAT,
                   "%s: %s: data type byte is 0x%02x (%s); only 0x08 (unsigned "
                   "byte) is supported",
                   s->fn, s->path, h[2], idx_type_name(h[2]));
  *nd = h[3];
  if (*nd != 1 && *nd != 3)
    return tg__err(TG_EFORMAT,
                   "%s: %s: the header gives %d dimensions (magic 0x%08lx); "
                   "expected 1 (labels, 0x00000801) or 3 (images, 0x00000803)",
                   s->fn, s->path, *nd, (unsigned long)be32(h));
  if (*nd == 1 && dtype != TG_I32)
    return tg__err(TG_EDTYPE,
                   "%s: %s: a label file (IDX1) loads as int32 (TG_I32), not %s",
                   s->fn, s->path, tg_dtype_name(dtype));
  if (*nd == 3 && dtype == TG_I32)
    return tg__err(TG_EDTYPE,
                   "%s: %s: an image file (IDX3) loads as float32 or float64 "
                   "(TG_F32, TG_F64), not int32",
                   s->fn, s->path);
  size_t want = 4 * (size_t)*nd;
  rc = tg__src_read_some(s, h, want, &got);
  if (rc) return rc;
  if (got < want)
    return tg__err(TG_EFORMAT,
                   "%s: %s: truncated header: the file ends after %llu bytes, "
                   "inside the %zu-byte header of %d dimensions",
                   s->fn, s->path, (unsigned long long)s->pos, 4 + want, *nd);
  char db[64];
  for (int i = 0; i < *nd; i++) dims[i] = be32(h + 4 * i);
  for (int i = 0; i < *nd; i++)
    if (dims[i] == 0)
      return tg__err(TG_EFORMAT, "%s: %s: header dimensions %s: dimension %d is 0",
                     s->fn, s->path, dims_str(dims, *nd, db, sizeof db), i);
  /* The result holds count elements of up to 8 bytes, indexed by int64_t
   * and sized by size_t. */
  uint64_t limit = (uint64_t)INT64_MAX / 8;
  if ((uint64_t)SIZE_MAX / 8 < limit) limit = (uint64_t)SIZE_MAX / 8;
  uint64_t n = 1;
  for (int i = 0; i < *nd; i++)
    if (!mul_u64(n, dims[i], &n) || n > limit)
      return tg__err(TG_EFORMAT,
                     "%s: %s: header dimensions %s overflow: more than %llu "
                     "elements",
                     s->fn, s->path, dims_str(dims, *nd, db, sizeof db),
                     (unsigned long long)limit);
  *count = n;
  return TG_OK;
}

/* Reads exactly n data bytes into a new buffer, and checks that nothing
 * follows them. */
static int read_data(tg__src *s, const uint32_t *dims, int nd, uint64_t n,
                     unsigned char **out) {
  /* "60000x28x28 = 47040000" for images, "60000" for labels */
  char db[96];
  dims_str(dims, nd, db, sizeof db);
  if (nd > 1) {
    size_t k = strlen(db);
    snprintf(db + k, sizeof db - k, " = %llu", (unsigned long long)n);
  }
  uint64_t hdr = s->pos;
  bool sized = !s->gz; /* a plain file or memory, whose size is known */
  if (sized) {
    uint64_t avail = s->size > hdr ? s->size - hdr : 0;
    if (avail < n)
      return tg__err(TG_EFORMAT,
                     "%s: %s: header promises %s data bytes but the file "
                     "holds %llu after its %llu-byte header",
                     s->fn, s->path, db,
                     (unsigned long long)avail, (unsigned long long)hdr);
    if (avail > n)
      return tg__err(TG_EFORMAT,
                     "%s: %s: %llu byte%s of trailing data after the %s data "
                     "bytes the header promises",
                     s->fn, s->path, (unsigned long long)(avail - n),
                     avail - n == 1 ? "" : "s", db);
  }
  size_t cap = (size_t)n;
  if (!sized && cap > IDX_FIRST_CAP) cap = IDX_FIRST_CAP;
  unsigned char *buf = tg__malloc(cap);
  if (!buf)
    return tg__err(TG_ENOMEM, "%s: %s: out of memory for %zu bytes", s->fn,
                   s->path, cap);
  size_t len = 0;
  int rc = TG_OK;
  while (len < n) {
    if (len == cap) {
      size_t ncap = cap > (size_t)n / 2 ? (size_t)n : 2 * cap;
      unsigned char *nb = tg__realloc(buf, ncap);
      if (!nb) {
        rc = tg__err(TG_ENOMEM, "%s: %s: out of memory for %zu bytes", s->fn,
                     s->path, ncap);
        break;
      }
      buf = nb;
      cap = ncap;
    }
    size_t want = cap - len, got;
    if (want > IDX_READ_CHUNK) want = IDX_READ_CHUNK;
    if ((rc = tg__src_read_some(s, buf + len, want, &got))) break;
    len += got;
    if (got < want) {
      if (len < n)
        rc = tg__err(TG_EFORMAT,
                     "%s: %s: header promises %s data bytes but the %s holds "
                     "only %llu after its %llu-byte header",
                     s->fn, s->path, db,
                     s->gzipped ? "decompressed file" : "file",
                     (unsigned long long)len, (unsigned long long)hdr);
      break;
    }
  }
  if (!rc && !sized) {
    unsigned char extra[4096];
    uint64_t more = 0;
    size_t got;
    /* Count what follows, up to a point, so the message can say how much. */
    do {
      if ((rc = tg__src_read_some(s, extra, sizeof extra, &got))) break;
      more += got;
    } while (got == sizeof extra && more < ((uint64_t)1 << 24));
    if (!rc && more)
      rc = tg__err(TG_EFORMAT,
                   "%s: %s: %s%llu byte%s of trailing data after the %s data "
                   "bytes the header promises",
                   s->fn, s->path, got == sizeof extra ? "at least " : "",
                   (unsigned long long)more, more == 1 ? "" : "s", db);
  }
  if (rc) {
    tg__free(buf);
    return rc;
  }
  *out = buf;
  return TG_OK;
}

static tg_tensor *load(tg__src *s, tg_dtype dtype);

tg_tensor *tg_idx_load(const char *path, tg_dtype dtype) {
  if (!path) {
    tg__err(TG_EINVAL, "tg_idx_load: path is NULL");
    return NULL;
  }
  if (dtype != TG_F32 && dtype != TG_F64 && dtype != TG_I32) {
    tg__err(TG_EINVAL, "tg_idx_load: %s: unknown dtype %d", path, (int)dtype);
    return NULL;
  }
  tg__src s;
  if (tg__src_open_stream(&s, "tg_idx_load", path)) return NULL;
  tg_tensor *t = load(&s, dtype);
  tg__src_close(&s);
  return t;
}

tg_tensor *tg__idx_parse(const void *buf, size_t len, tg_dtype dtype) {
  if (dtype != TG_F32 && dtype != TG_F64 && dtype != TG_I32) {
    tg__err(TG_EINVAL, "tg_idx_load: <memory>: unknown dtype %d", (int)dtype);
    return NULL;
  }
  tg__src s;
  tg__src_mem(&s, "tg_idx_load", "<memory>", buf, len);
  return load(&s, dtype);
}

/* Header, data and conversion, from an open source. */
static tg_tensor *load(tg__src *s, tg_dtype dtype) {
  const char *path = s->path;
  uint32_t dims[3];
  int nd = 0;
  uint64_t n = 0;
  unsigned char *bytes = NULL;
  int rc = read_header(s, dtype, dims, &nd, &n);
  if (!rc) rc = read_data(s, dims, nd, n, &bytes);
  if (rc) return NULL;

  int64_t shape[2] = {(int64_t)dims[0], (int64_t)(n / dims[0])};
  tg_tensor *t = tg_zeros(dtype, nd == 1 ? 1 : 2, shape);
  if (!t) {
    tg__free(bytes);
    tg__err(TG_ENOMEM, "tg_idx_load: %s: out of memory for %llu elements",
            path, (unsigned long long)n);
    return NULL;
  }
  if (dtype == TG_I32) {
    int32_t *y = t->data;
    for (uint64_t i = 0; i < n; i++) y[i] = bytes[i];
  } else if (dtype == TG_F32) {
    float *y = t->data;
    for (uint64_t i = 0; i < n; i++) y[i] = (float)bytes[i] / 255.0f;
  } else {
    double *y = t->data;
    for (uint64_t i = 0; i < n; i++) y[i] = bytes[i] / 255.0;
  }
  tg__free(bytes);
  return t;
}

/* The path of "<dir>/<name>" or, failing that, "<dir>/<name>.gz", in a new
 * buffer; NULL with a message when neither exists. */
static char *find_file(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 8;
  char *p = tg__malloc(n);
  if (!p) {
    tg__err(TG_ENOMEM, "tg_mnist_load: out of memory");
    return NULL;
  }
  struct stat st;
  snprintf(p, n, "%s/%s", dir, name);
  if (stat(p, &st) == 0) return p;
  snprintf(p, n, "%s/%s.gz", dir, name);
  if (stat(p, &st) == 0) return p;
  int e = errno;
  char eb[128];
  tg__err(TG_EIO, "tg_mnist_load: found neither %s/%s nor %s/%s.gz: %s", dir,
          name, dir, name, tg__errstr(e, eb, sizeof eb));
  tg__free(p);
  return NULL;
}

/* Re-records the last message (from tg_idx_load) under tg_mnist_load. */
static int rewrap(void) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s", tg_last_error());
  return tg__err(tg_last_status(), "tg_mnist_load: %s", msg);
}

int tg_mnist_load(const char *dir, const char *split, tg_tensor **images,
                  tg_tensor **labels) {
  if (images) *images = NULL;
  if (labels) *labels = NULL;
  if (!dir || !split || !images || !labels)
    return tg__err(TG_EINVAL, "tg_mnist_load: %s is NULL",
                   !dir ? "dir" : !split ? "split" : !images ? "images" : "labels");
  if (strcmp(split, "train") != 0 && strcmp(split, "t10k") != 0)
    return tg__err(TG_EINVAL,
                   "tg_mnist_load: split is \"%s\"; it must be \"train\" or \"t10k\"",
                   split);
  char name[32];
  snprintf(name, sizeof name, "%s-images-idx3-ubyte", split);
  char *ipath = find_file(dir, name);
  if (!ipath) return tg_last_status();
  snprintf(name, sizeof name, "%s-labels-idx1-ubyte", split);
  char *lpath = find_file(dir, name);
  if (!lpath) {
    tg__free(ipath);
    return tg_last_status();
  }

  int rc = TG_OK;
  tg_tensor *x = NULL, *y = NULL;
  if (!(x = tg_idx_load(ipath, TG_F32)) || !(y = tg_idx_load(lpath, TG_I32))) {
    rc = rewrap();
  } else if (x->shape[0] != y->shape[0]) {
    rc = tg__err(TG_EFORMAT,
                 "tg_mnist_load: %s holds %lld images but %s holds %lld labels",
                 ipath, (long long)x->shape[0], lpath, (long long)y->shape[0]);
  } else {
    const int32_t *v = y->data;
    for (int64_t i = 0; i < y->numel; i++)
      if (v[i] > 9) {
        rc = tg__err(TG_EFORMAT,
                     "tg_mnist_load: %s: label %d at index %lld is not a digit "
                     "0..9",
                     lpath, (int)v[i], (long long)i);
        break;
      }
  }
  tg__free(ipath);
  tg__free(lpath);
  if (rc) {
    tg_tensor_free(x);
    tg_tensor_free(y);
    return rc;
  }
  *images = x;
  *labels = y;
  return TG_OK;
}
