/* src/idx.c: the IDX format of MNIST and its kin, plain or gzip'd. Files are
 * read as if hostile: no header field is trusted with an allocation before
 * it has been checked against what the file really holds. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "internal.h"

/* A stream whose length is unknown (gzip, a pipe) gets a buffer that starts
 * this small and doubles as data really arrives, so a small file whose
 * header claims billions of items fails at its end of file instead of
 * asking for the claimed amount of memory first. */
#define IDX_FIRST_CAP ((size_t)1 << 24)
#define IDX_READ_CHUNK ((size_t)1 << 20)

typedef struct {
  const char *fn; /* the public function, for messages */
  const char *path;
  FILE *f;        /* a plain regular file */
  gzFile gz;      /* anything else: gzip, or a stream read transparently */
  const unsigned char *mem; /* or a plain file's bytes in memory (fuzzing) */
  bool gzipped;
  bool sized;     /* a plain regular file, whose size is known */
  uint64_t size;
  uint64_t pos;   /* bytes (decompressed) consumed so far */
} idx_src;

static int io_err(const idx_src *s, const char *what, int errnum) {
  char eb[128];
  return tg__err(TG_EIO, "%s: %s: %s: %s", s->fn, s->path, what,
                 tg__errstr(errnum, eb, sizeof eb));
}

static void src_close(idx_src *s) {
  if (s->f) fclose(s->f);
  if (s->gz) gzclose(s->gz);
  s->f = NULL;
  s->gz = NULL;
}

static int src_open(idx_src *s) {
  s->f = fopen(s->path, "rb");
  if (!s->f) return io_err(s, "cannot open", errno);
  struct stat st;
  if (fstat(fileno(s->f), &st) != 0) {
    int rc = io_err(s, "cannot stat", errno);
    src_close(s);
    return rc;
  }
  if (S_ISDIR(st.st_mode)) {
    src_close(s);
    return io_err(s, "cannot read", EISDIR);
  }
  if (S_ISREG(st.st_mode)) {
    unsigned char m[2];
    size_t got = fread(m, 1, 2, s->f);
    if (ferror(s->f)) {
      int rc = io_err(s, "read failed", errno);
      src_close(s);
      return rc;
    }
    s->gzipped = got == 2 && m[0] == 0x1f && m[1] == 0x8b;
    if (!s->gzipped) {
      rewind(s->f);
      s->sized = true;
      s->size = (uint64_t)st.st_size;
      return TG_OK;
    }
  }
  /* gzip, or a stream that cannot be sized (a pipe): zlib reads both, plain
   * data transparently. The FILE goes first, since closing it may move the
   * shared offset; a gzip'd regular file is then read again from byte 0. */
  int fd = dup(fileno(s->f));
  if (fd < 0) {
    int rc = io_err(s, "cannot duplicate descriptor", errno);
    src_close(s);
    return rc;
  }
  fclose(s->f);
  s->f = NULL;
  if (s->gzipped && lseek(fd, 0, SEEK_SET) < 0) {
    int rc = io_err(s, "cannot seek", errno);
    close(fd);
    return rc;
  }
  s->gz = gzdopen(fd, "rb");
  if (!s->gz) {
    close(fd);
    return tg__err(TG_ENOMEM, "%s: %s: out of memory for the gzip reader",
                   s->fn, s->path);
  }
  gzbuffer(s->gz, 1u << 17);
  return TG_OK;
}

/* Reads up to n bytes; *got < n only at a clean end of file. A read error,
 * corrupt gzip data or a gzip stream cut short is an error. */
static int src_read(idx_src *s, void *buf, size_t n, size_t *got) {
  size_t done = 0;
  if (s->mem) {
    done = n < s->size - s->pos ? n : (size_t)(s->size - s->pos);
    memcpy(buf, s->mem + s->pos, done);
  } else if (s->f) {
    done = fread(buf, 1, n, s->f);
    if (done < n && ferror(s->f)) return io_err(s, "read failed", errno);
  } else {
    while (done < n) {
      size_t want = n - done;
      if (want > IDX_READ_CHUNK) want = IDX_READ_CHUNK;
      int r = gzread(s->gz, (char *)buf + done, (unsigned)want);
      int zerr = Z_OK;
      const char *zmsg = r <= 0 ? gzerror(s->gz, &zerr) : "";
      /* A stream cut short reads as a short read, then as end of file with
       * Z_BUF_ERROR set (zlib allows reading on, for growing files). */
      if (r < 0 || zerr == Z_BUF_ERROR) {
        if (zerr == Z_ERRNO) return io_err(s, "read failed", errno);
        if (zerr == Z_BUF_ERROR)
          return tg__err(TG_EFORMAT,
                         "%s: %s: the gzip stream is truncated (%s) after %llu "
                         "decompressed bytes",
                         s->fn, s->path, zmsg,
                         (unsigned long long)(s->pos + done));
        return tg__err(TG_EFORMAT, "%s: %s: corrupt gzip data: %s", s->fn,
                       s->path, zmsg);
      }
      if (r == 0) break;
      done += (size_t)r;
    }
  }
  s->pos += done;
  *got = done;
  return TG_OK;
}

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
static int read_header(idx_src *s, tg_dtype dtype, uint32_t *dims, int *nd,
                       uint64_t *count) {
  unsigned char h[12];
  size_t got;
  int rc = src_read(s, h, 4, &got);
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
  rc = src_read(s, h, want, &got);
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
static int read_data(idx_src *s, const uint32_t *dims, int nd, uint64_t n,
                     unsigned char **out) {
  /* "60000x28x28 = 47040000" for images, "60000" for labels */
  char db[96];
  dims_str(dims, nd, db, sizeof db);
  if (nd > 1) {
    size_t k = strlen(db);
    snprintf(db + k, sizeof db - k, " = %llu", (unsigned long long)n);
  }
  uint64_t hdr = s->pos;
  if (s->sized) {
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
  if (!s->sized && cap > IDX_FIRST_CAP) cap = IDX_FIRST_CAP;
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
    if ((rc = src_read(s, buf + len, want, &got))) break;
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
  if (!rc && !s->sized) {
    unsigned char extra[4096];
    uint64_t more = 0;
    size_t got;
    /* Count what follows, up to a point, so the message can say how much. */
    do {
      if ((rc = src_read(s, extra, sizeof extra, &got))) break;
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

static tg_tensor *load(idx_src *s, tg_dtype dtype);

tg_tensor *tg_idx_load(const char *path, tg_dtype dtype) {
  if (!path) {
    tg__err(TG_EINVAL, "tg_idx_load: path is NULL");
    return NULL;
  }
  if (dtype != TG_F32 && dtype != TG_F64 && dtype != TG_I32) {
    tg__err(TG_EINVAL, "tg_idx_load: %s: unknown dtype %d", path, (int)dtype);
    return NULL;
  }
  idx_src s = {.fn = "tg_idx_load", .path = path};
  if (src_open(&s)) return NULL;
  tg_tensor *t = load(&s, dtype);
  src_close(&s);
  return t;
}

tg_tensor *tg__idx_parse(const void *buf, size_t len, tg_dtype dtype) {
  if (dtype != TG_F32 && dtype != TG_F64 && dtype != TG_I32) {
    tg__err(TG_EINVAL, "tg_idx_load: <memory>: unknown dtype %d", (int)dtype);
    return NULL;
  }
  idx_src s = {.fn = "tg_idx_load", .path = "<memory>", .mem = buf,
               .sized = true, .size = len};
  return load(&s, dtype);
}

/* Header, data and conversion, from an open source. */
static tg_tensor *load(idx_src *s, tg_dtype dtype) {
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
