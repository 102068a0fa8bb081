/* tests/test_idx.c: the IDX reader and the MNIST loader, on small files the
 * test writes itself (plain and gzip'd, good and hostile), and on the real
 * MNIST when it has been fetched into data/mnist. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"

#ifndef TOP_SRCDIR
#define TOP_SRCDIR "."
#endif

static void put_gz(const char *name, const void *data, size_t n) {
  gzFile g = gzopen(P(name), "wb");
  ck_assert_ptr_nonnull(g);
  ck_assert_int_eq(gzwrite(g, data, (unsigned)n), (int)n);
  ck_assert_int_eq(gzclose(g), Z_OK);
}

/* An IDX file in memory: magic, big-endian dims, then n data bytes. */
static size_t idx(unsigned char *out, uint32_t magic, int nd,
                  const uint32_t *dims, const unsigned char *data, size_t n) {
  size_t k = 0;
  for (int s = 24; s >= 0; s -= 8) out[k++] = (unsigned char)(magic >> s);
  for (int i = 0; i < nd; i++)
    for (int s = 24; s >= 0; s -= 8) out[k++] = (unsigned char)(dims[i] >> s);
  if (n) memcpy(out + k, data, n);
  return k + n;
}

/* Three 2x3 images and their labels. */
static const unsigned char pix[18] = {0,   1,   2,  127, 128, 254,
                                      255, 0,   17, 34,  51,  68,
                                      85,  102, 119, 136, 153, 170};
static const unsigned char lab[3] = {7, 0, 9};

static size_t good_images(unsigned char *out) {
  return idx(out, 0x803, 3, (uint32_t[]){3, 2, 3}, pix, sizeof pix);
}
static size_t good_labels(unsigned char *out) {
  return idx(out, 0x801, 1, (uint32_t[]){3}, lab, sizeof lab);
}

static void check_images(tg_tensor *x, tg_dtype dt) {
  ck_assert_ptr_nonnull(x);
  ck_assert_int_eq(tg_tensor_dtype(x), dt);
  ck_assert_int_eq(tg_tensor_ndim(x), 2);
  ck_assert_int_eq(tg_tensor_dim(x, 0), 3);
  ck_assert_int_eq(tg_tensor_dim(x, 1), 6);
  for (int i = 0; i < 18; i++) {
    if (dt == TG_F32)
      ck_assert_float_eq(tg_tensor_f32(x)[i], (float)pix[i] / 255.0f);
    else
      ck_assert_double_eq(tg_tensor_f64(x)[i], pix[i] / 255.0);
  }
  if (dt == TG_F32) {
    ck_assert_float_eq(tg_tensor_f32(x)[0], 0.0f);
    ck_assert_float_eq(tg_tensor_f32(x)[6], 1.0f);
  }
}

static void check_labels(tg_tensor *y) {
  ck_assert_ptr_nonnull(y);
  ck_assert_int_eq(tg_tensor_dtype(y), TG_I32);
  ck_assert_int_eq(tg_tensor_ndim(y), 1);
  ck_assert_int_eq(tg_tensor_dim(y, 0), 3);
  for (int i = 0; i < 3; i++) ck_assert_int_eq(tg_tensor_i32(y)[i], lab[i]);
}

START_TEST(good_plain) {
  unsigned char b[64];
  put("img", b, good_images(b));
  put("lab", b, good_labels(b));
  tg_tensor *x = tg_idx_load(P("img"), TG_F32);
  check_images(x, TG_F32);
  tg_tensor *x64 = tg_idx_load(P("img"), TG_F64);
  check_images(x64, TG_F64);
  tg_tensor *y = tg_idx_load(P("lab"), TG_I32);
  check_labels(y);
  tg_tensor_free(x);
  tg_tensor_free(x64);
  tg_tensor_free(y);

  /* tg_idx_load takes any label values; only tg_mnist_load wants digits */
  unsigned char l[3] = {0, 200, 255};
  put("lab255", b, idx(b, 0x801, 1, (uint32_t[]){3}, l, 3));
  y = tg_idx_load(P("lab255"), TG_I32);
  ck_assert_ptr_nonnull(y);
  ck_assert_int_eq(tg_tensor_i32(y)[1], 200);
  ck_assert_int_eq(tg_tensor_i32(y)[2], 255);
  tg_tensor_free(y);
}
END_TEST

START_TEST(good_gzip) {
  unsigned char b[64];
  put_gz("img.gz", b, good_images(b));
  put_gz("lab.gz", b, good_labels(b));
  put_gz("img-no-suffix", b, good_images(b)); /* found by magic, not name */
  tg_tensor *x = tg_idx_load(P("img.gz"), TG_F32);
  check_images(x, TG_F32);
  tg_tensor *x64 = tg_idx_load(P("img-no-suffix"), TG_F64);
  check_images(x64, TG_F64);
  tg_tensor *y = tg_idx_load(P("lab.gz"), TG_I32);
  check_labels(y);
  tg_tensor_free(x);
  tg_tensor_free(x64);
  tg_tensor_free(y);
}
END_TEST

START_TEST(header_errors) {
  unsigned char b[64];
  put("magic", b, idx(b, 0x12340803, 3, (uint32_t[]){3, 2, 3}, pix, 18));
  ck_assert_ptr_null(tg_idx_load(P("magic"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, "tg_idx_load", P("magic"), "not an IDX file",
                      "0x12340803", "0x00000801", "0x00000803");

  put("type", b, idx(b, 0x0D03, 3, (uint32_t[]){3, 2, 3}, pix, 18));
  ck_assert_ptr_null(tg_idx_load(P("type"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, P("type"), "data type byte is 0x0d", "float",
                      "only 0x08 (unsigned byte)");

  put("ndim", b, idx(b, 0x802, 2, (uint32_t[]){3, 6}, pix, 18));
  ck_assert_ptr_null(tg_idx_load(P("ndim"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, P("ndim"), "2 dimensions", "0x00000802",
                      "expected 1", "or 3");

  put("zero", b, idx(b, 0x803, 3, (uint32_t[]){0, 28, 28}, NULL, 0));
  ck_assert_ptr_null(tg_idx_load(P("zero"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, P("zero"), "0x28x28", "dimension 0 is 0");
  put("zero2", b, idx(b, 0x803, 3, (uint32_t[]){5, 28, 0}, NULL, 0));
  ck_assert_ptr_null(tg_idx_load(P("zero2"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, "5x28x0", "dimension 2 is 0");
  put("zerolab", b, idx(b, 0x801, 1, (uint32_t[]){0}, NULL, 0));
  ck_assert_ptr_null(tg_idx_load(P("zerolab"), TG_I32));
  ck_assert_error_has(TG_EFORMAT, P("zerolab"), "dimension 0 is 0");

  uint32_t big = 0xFFFFFFFFu;
  put("overflow", b, idx(b, 0x803, 3, (uint32_t[]){big, big, big}, pix, 18));
  ck_assert_ptr_null(tg_idx_load(P("overflow"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, P("overflow"),
                      "4294967295x4294967295x4294967295 overflow");
  /* no uint64 overflow, but past what a tensor can index (2^60) */
  put("overflow2", b,
      idx(b, 0x803, 3, (uint32_t[]){big, big, 1u << 28}, pix, 18));
  ck_assert_ptr_null(tg_idx_load(P("overflow2"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, "overflow", "more than");

  /* headers cut short */
  put("empty", b, 0);
  ck_assert_ptr_null(tg_idx_load(P("empty"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, P("empty"), "the file is empty");
  good_images(b);
  put("short3", b, 3);
  ck_assert_ptr_null(tg_idx_load(P("short3"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, P("short3"), "truncated header", "after 3 bytes");
  put("short10", b, 10);
  ck_assert_ptr_null(tg_idx_load(P("short10"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, P("short10"), "truncated header",
                      "after 10 bytes", "16-byte header");
  put_gz("short10.gz", b, 10);
  ck_assert_ptr_null(tg_idx_load(P("short10.gz"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, P("short10.gz"), "truncated header",
                      "after 10 bytes");
}
END_TEST

START_TEST(dtype_errors) {
  unsigned char b[64];
  put("img", b, good_images(b));
  put("lab", b, good_labels(b));
  ck_assert_ptr_null(tg_idx_load(P("lab"), TG_F32));
  ck_assert_error_has(TG_EDTYPE, P("lab"), "label file (IDX1)", "int32",
                      "not float32");
  ck_assert_ptr_null(tg_idx_load(P("img"), TG_I32));
  ck_assert_error_has(TG_EDTYPE, P("img"), "image file (IDX3)", "float32",
                      "not int32");
  ck_assert_ptr_null(tg_idx_load(P("img"), (tg_dtype)7));
  ck_assert_error_has(TG_EINVAL, "tg_idx_load", "unknown dtype 7");
  ck_assert_ptr_null(tg_idx_load(NULL, TG_F32));
  ck_assert_error_has(TG_EINVAL, "tg_idx_load", "path is NULL");
}
END_TEST

START_TEST(size_errors_plain) {
  /* the header promises a full MNIST training set; the file holds 1200 */
  static unsigned char b[16 + 1200];
  static unsigned char zeros[1200];
  put("liar", b, idx(b, 0x803, 3, (uint32_t[]){60000, 28, 28}, zeros, 1200));
  ck_assert_ptr_null(tg_idx_load(P("liar"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, "tg_idx_load", P("liar"),
                      "header promises 60000x28x28 = 47040000 data bytes",
                      "the file holds 1200");

  /* one data byte short: truncated */
  put("trunc", b, good_images(b) - 1);
  ck_assert_ptr_null(tg_idx_load(P("trunc"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, P("trunc"), "3x2x3 = 18 data bytes",
                      "holds 17");
  put("trunclab", b, good_labels(b) - 2);
  ck_assert_ptr_null(tg_idx_load(P("trunclab"), TG_I32));
  ck_assert_error_has(TG_EFORMAT, P("trunclab"), "promises 3 data bytes",
                      "holds 1");

  /* bytes after the data */
  size_t n = good_images(b);
  memcpy(b + n, "xyz", 3);
  put("trail", b, n + 3);
  ck_assert_ptr_null(tg_idx_load(P("trail"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, P("trail"), "3 bytes of trailing data",
                      "3x2x3 = 18 data bytes");
}
END_TEST

/* An allocator that remembers the largest single request, to show that a
 * lying gzip'd header does not buy a huge allocation. */
static size_t biggest;
static void *big_malloc(size_t n) {
  if (n > biggest) biggest = n;
  return malloc(n);
}
static void *big_realloc(void *p, size_t n) {
  if (n > biggest) biggest = n;
  return realloc(p, n);
}
static void *big_calloc(size_t c, size_t n) {
  if (n && c > SIZE_MAX / n) return NULL;
  if (c * n > biggest) biggest = c * n;
  return calloc(c, n);
}

START_TEST(size_errors_gzip) {
  static unsigned char b[16 + 1200];
  static unsigned char zeros[1200];
  put_gz("liar.gz", b,
         idx(b, 0x803, 3, (uint32_t[]){60000, 28, 28}, zeros, 1200));
  /* labels claiming 4e9 items in a file of a few dozen bytes */
  put_gz("huge.gz", b, idx(b, 0x801, 1, (uint32_t[]){4000000000u}, lab, 3));

  biggest = 0;
  ck_assert_int_eq(tg_set_allocator(big_malloc, big_realloc, big_calloc, free),
                   TG_OK);
  tg_tensor *x = tg_idx_load(P("liar.gz"), TG_F32);
  tg_tensor *y = tg_idx_load(P("huge.gz"), TG_I32);
  int y_status = tg_last_status();
  char y_msg[512];
  snprintf(y_msg, sizeof y_msg, "%s", tg_last_error());
  tg_set_allocator(malloc, realloc, calloc, free);
  ck_assert_ptr_null(x);
  ck_assert_ptr_null(y);
  ck_assert_int_eq(y_status, TG_EFORMAT);
  ck_assert_msg(strstr(y_msg, "header promises 4000000000 data bytes") &&
                    strstr(y_msg, "decompressed file holds only 3"),
                "message: %s", y_msg);
  ck_assert_msg(biggest <= ((size_t)1 << 24), "largest allocation %zu bytes",
                biggest);

  tg_idx_load(P("liar.gz"), TG_F32);
  ck_assert_error_has(TG_EFORMAT, P("liar.gz"),
                      "header promises 60000x28x28 = 47040000 data bytes",
                      "decompressed file holds only 1200");

  /* trailing data inside the gzip stream */
  size_t n = good_labels(b);
  memcpy(b + n, "xyzw", 4);
  put_gz("trail.gz", b, n + 4);
  ck_assert_ptr_null(tg_idx_load(P("trail.gz"), TG_I32));
  ck_assert_error_has(TG_EFORMAT, P("trail.gz"), "4 bytes of trailing data",
                      "after the 3 data bytes");
}
END_TEST

/* zlib's memory comes from tg_set_allocator's functions too: a gzip'd
 * load makes the allocations of a plain one plus the reader's and
 * inflate's own (its state and window), and frees all of them. */
START_TEST(gzip_uses_allocator) {
  unsigned char b[64];
  put("alloc-plain", b, good_images(b));
  put_gz("alloc.gz", b, good_images(b));
  long n[2];
  const char *files[2] = {"alloc-plain", "alloc.gz"};
  for (int i = 0; i < 2; i++) {
    counting_allocator(true);
    tg_tensor *x = tg_idx_load(P(files[i]), TG_F32);
    tg_tensor_free(x);
    n[i] = *test_allocs();
    long frees = *test_frees();
    counting_allocator(false);
    ck_assert_ptr_nonnull(x);
    ck_assert_int_eq(n[i], frees);
  }
  ck_assert_msg(n[1] >= n[0] + 3, "plain: %ld allocations, gzip'd: %ld", n[0],
                n[1]);
}
END_TEST

/* gzip members one after another read as one stream (as gzip -c a b
 * writes them); other bytes after the last member are refused. */
START_TEST(gzip_members) {
  unsigned char b[64], z1[256], z2[256], all[600];
  size_t n = good_images(b);
  put_gz("m1.gz", b, 10);
  put_gz("m2.gz", b + 10, n - 10);
  FILE *f = fopen(P("m1.gz"), "rb");
  size_t n1 = fread(z1, 1, sizeof z1, f);
  fclose(f);
  f = fopen(P("m2.gz"), "rb");
  size_t n2 = fread(z2, 1, sizeof z2, f);
  fclose(f);
  memcpy(all, z1, n1);
  memcpy(all + n1, z2, n2);
  put("members.gz", all, n1 + n2);
  tg_tensor *x = tg_idx_load(P("members.gz"), TG_F32);
  check_images(x, TG_F32);
  tg_tensor_free(x);
  memcpy(all + n1 + n2, "junk", 4);
  put("junk-after.gz", all, n1 + n2 + 4);
  ck_assert_ptr_null(tg_idx_load(P("junk-after.gz"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, P("junk-after.gz"),
                      "bytes after the end of the gzip stream");
}
END_TEST

/* The compressed bytes of a gzip'd good image file. */
static size_t gz_bytes(unsigned char *out, size_t cap) {
  unsigned char b[64];
  put_gz("tmp.gz", b, good_images(b));
  FILE *f = fopen(P("tmp.gz"), "rb");
  ck_assert_ptr_nonnull(f);
  size_t n = fread(out, 1, cap, f);
  fclose(f);
  ck_assert_uint_lt(n, cap);
  return n;
}

START_TEST(broken_gzip) {
  unsigned char z[256];
  size_t n = gz_bytes(z, sizeof z);
  /* cut inside the deflate data */
  put("cut.gz", z, n - 12);
  ck_assert_ptr_null(tg_idx_load(P("cut.gz"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, P("cut.gz"), "gzip stream is truncated");
  /* a bad CRC at the end */
  z[n - 8] ^= 0xFF;
  put("crc.gz", z, n);
  ck_assert_ptr_null(tg_idx_load(P("crc.gz"), TG_F32));
  ck_assert_error_has(TG_EFORMAT, P("crc.gz"), "corrupt gzip data");
  /* a gzip magic and nothing else that makes sense */
  unsigned char junk[] = {0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff,
                          0xff, 0xff};
  put("junk.gz", junk, sizeof junk);
  ck_assert_ptr_null(tg_idx_load(P("junk.gz"), TG_F32));
  ck_assert_int_eq(tg_last_status(), TG_EFORMAT);
  ck_assert_msg(strstr(tg_last_error(), "gzip") || strstr(tg_last_error(), "header"),
                "message: %s", tg_last_error());
}
END_TEST

START_TEST(io_errors) {
  ck_assert_ptr_null(tg_idx_load(P("no-such-file"), TG_F32));
  ck_assert_error_has(TG_EIO, "tg_idx_load", P("no-such-file"), "cannot open",
                      "No such file or directory");
  ck_assert_ptr_null(tg_idx_load(test_dir(), TG_F32));
  ck_assert_error_has(TG_EIO, test_dir(), "Is a directory");
}
END_TEST

/* The loaders on FIFOs without a writer, which a plain open() would wait
 * on forever: in a child with an alarm, so a loader that blocks fails the
 * test instead of hanging the suite. Returns the number of failed checks
 * (Check's assertions belong to the test's own process). */
static int load_fifos(void) {
  int bad = 0;
  tg_tensor *t = tg_idx_load(P("fifo"), TG_F32);
  if (t || tg_last_status() != TG_EIO ||
      !strstr(tg_last_error(), "tg_idx_load") ||
      !strstr(tg_last_error(), P("fifo")) ||
      !strstr(tg_last_error(), "not a regular file (a FIFO)")) {
    fprintf(stderr, "tg_idx_load: %s\n", tg_last_error());
    bad++;
  }
  tg_tensor_free(t);
  tg_tensor *x = NULL, *y = NULL;
  int rc = tg_mnist_load(P("fifos"), "train", &x, &y);
  if (rc != TG_EIO || x || y || !strstr(tg_last_error(), "tg_mnist_load") ||
      !strstr(tg_last_error(), "train-images-idx3-ubyte") ||
      !strstr(tg_last_error(), "not a regular file")) {
    fprintf(stderr, "tg_mnist_load: %s\n", tg_last_error());
    bad++;
  }
  return bad;
}

START_TEST(fifo_refused) {
  ck_assert_int_eq(mkfifo(P("fifo"), 0600), 0);
  ck_assert_int_eq(mkdir(P("fifos"), 0700), 0);
  ck_assert_int_eq(mkfifo(P("fifos/train-images-idx3-ubyte"), 0600), 0);
  ck_assert_int_eq(mkfifo(P("fifos/train-labels-idx1-ubyte"), 0600), 0);
  in_child_with_alarm("loading FIFOs", load_fifos);
  unlink(P("fifos/train-images-idx3-ubyte"));
  unlink(P("fifos/train-labels-idx1-ubyte"));
  rmdir(P("fifos"));
  unlink(P("fifo"));
}
END_TEST

/* Writes a split of a small MNIST-like set into sub/: n images of 2x2 and
 * the given labels; gz chooses which files are gzip'd (bit 0 images, bit 1
 * labels). */
static void put_split(const char *sub, const char *split, uint32_t n_img,
                      const unsigned char *labels, uint32_t n_lab, int gz) {
  static unsigned char b[1024];
  unsigned char px[4 * 16];
  for (size_t i = 0; i < sizeof px; i++) px[i] = (unsigned char)(i * 4);
  char name[256];
  mkdir(P(sub), 0700);
  size_t n = idx(b, 0x803, 3, (uint32_t[]){n_img, 2, 2}, px, 4 * n_img);
  snprintf(name, sizeof name, "%s/%s-images-idx3-ubyte%s", sub, split,
           gz & 1 ? ".gz" : "");
  (gz & 1 ? put_gz : put)(name, b, n);
  n = idx(b, 0x801, 1, (uint32_t[]){n_lab}, labels, n_lab);
  snprintf(name, sizeof name, "%s/%s-labels-idx1-ubyte%s", sub, split,
           gz & 2 ? ".gz" : "");
  (gz & 2 ? put_gz : put)(name, b, n);
}

static void remove_sub(const char *sub) {
  const char *names[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
  char p[2048];
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/%s", P(sub), names[i]);
    unlink(p);
    strcat(p, ".gz");
    unlink(p);
  }
  rmdir(P(sub));
}

START_TEST(mnist_good) {
  const unsigned char l[4] = {3, 9, 0, 5};
  put_split("good", "train", 4, l, 4, 2); /* labels gzip'd */
  put_split("good", "t10k", 3, l, 3, 3);  /* both gzip'd */
  tg_tensor *x = NULL, *y = NULL;
  ck_assert_int_eq(tg_mnist_load(P("good"), "train", &x, &y), TG_OK);
  ck_assert_int_eq(tg_tensor_dtype(x), TG_F32);
  ck_assert_int_eq(tg_tensor_dim(x, 0), 4);
  ck_assert_int_eq(tg_tensor_dim(x, 1), 4);
  ck_assert_float_eq(tg_tensor_f32(x)[5], 20.0f / 255.0f);
  ck_assert_int_eq(tg_tensor_dim(y, 0), 4);
  ck_assert_int_eq(tg_tensor_i32(y)[1], 9);
  tg_tensor_free(x);
  tg_tensor_free(y);
  ck_assert_int_eq(tg_mnist_load(P("good"), "t10k", &x, &y), TG_OK);
  ck_assert_int_eq(tg_tensor_dim(x, 0), 3);
  ck_assert_int_eq(tg_tensor_i32(y)[2], 0);
  tg_tensor_free(x);
  tg_tensor_free(y);
  remove_sub("good");
}
END_TEST

START_TEST(mnist_errors) {
  tg_tensor *x = (tg_tensor *)&x, *y = (tg_tensor *)&y; /* must become NULL */
  const unsigned char bad[4] = {3, 9, 10, 5};
  put_split("bad", "train", 4, bad, 4, 0);
  ck_assert_int_eq(tg_mnist_load(P("bad"), "train", &x, &y), TG_EFORMAT);
  ck_assert_error_has(TG_EFORMAT, "tg_mnist_load", "train-labels-idx1-ubyte",
                      "label 10 at index 2", "0..9");
  ck_assert_ptr_null(x);
  ck_assert_ptr_null(y);
  remove_sub("bad");

  const unsigned char l[4] = {3, 9, 0, 5};
  put_split("count", "t10k", 3, l, 4, 1);
  x = (tg_tensor *)&x;
  ck_assert_int_eq(tg_mnist_load(P("count"), "t10k", &x, &y), TG_EFORMAT);
  ck_assert_error_has(TG_EFORMAT, "tg_mnist_load", "holds 3 images",
                      "holds 4 labels", "t10k-images-idx3-ubyte.gz");
  ck_assert_ptr_null(x);
  ck_assert_ptr_null(y);

  /* t10k is there, train is not */
  ck_assert_int_eq(tg_mnist_load(P("count"), "train", &x, &y), TG_EIO);
  ck_assert_error_has(TG_EIO, "tg_mnist_load", "found neither",
                      "train-images-idx3-ubyte nor", "train-images-idx3-ubyte.gz");
  remove_sub("count");

  /* a broken labels file: the images already loaded are freed */
  put_split("brokenlab", "train", 2, l, 2, 0);
  unsigned char b[64];
  put("brokenlab/train-labels-idx1-ubyte", b,
      idx(b, 0x801, 1, (uint32_t[]){5}, l, 2));
  ck_assert_int_eq(tg_mnist_load(P("brokenlab"), "train", &x, &y), TG_EFORMAT);
  ck_assert_error_has(TG_EFORMAT, "tg_mnist_load: tg_idx_load",
                      "train-labels-idx1-ubyte", "header promises 5");
  ck_assert_ptr_null(x);
  ck_assert_ptr_null(y);
  /* images and labels swapped */
  put("brokenlab/train-labels-idx1-ubyte", b, good_images(b));
  ck_assert_int_eq(tg_mnist_load(P("brokenlab"), "train", &x, &y), TG_EDTYPE);
  ck_assert_error_has(TG_EDTYPE, "tg_mnist_load", "image file (IDX3)");
  remove_sub("brokenlab");

  ck_assert_int_eq(tg_mnist_load(P("nowhere"), "train", &x, &y), TG_EIO);
  ck_assert_error_has(TG_EIO, "found neither", "No such file or directory");
  ck_assert_int_eq(tg_mnist_load(test_dir(), "test", &x, &y), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "split is \"test\"", "\"train\" or \"t10k\"");
  ck_assert_int_eq(tg_mnist_load(NULL, "train", &x, &y), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "dir is NULL");
  ck_assert_int_eq(tg_mnist_load(test_dir(), "train", NULL, &y), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "images is NULL");
  ck_assert_ptr_null(y);
}
END_TEST

/* The real MNIST, when scripts/fetch-mnist has put it in data/mnist. */
START_TEST(real_mnist) {
  const char *d = TOP_SRCDIR "/data/mnist";
  struct stat st;
  if (stat(TOP_SRCDIR "/data/mnist/train-images-idx3-ubyte", &st) != 0) {
    printf("test_idx: SKIP real_mnist: %s/train-images-idx3-ubyte is absent "
           "(scripts/fetch-mnist fetches it)\n", d);
    return;
  }
  static const int64_t counts[2][10] = {
      {5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949},
      {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}};
  const char *splits[2] = {"train", "t10k"};
  const int64_t n[2] = {60000, 10000};
  for (int s = 0; s < 2; s++) {
    tg_tensor *x, *y;
    ck_assert_msg(tg_mnist_load(d, splits[s], &x, &y) == TG_OK, "%s",
                  tg_last_error());
    ck_assert_int_eq(tg_tensor_ndim(x), 2);
    ck_assert_int_eq(tg_tensor_dim(x, 0), n[s]);
    ck_assert_int_eq(tg_tensor_dim(x, 1), 784);
    ck_assert_int_eq(tg_tensor_ndim(y), 1);
    ck_assert_int_eq(tg_tensor_dim(y, 0), n[s]);
    int64_t seen[10] = {0};
    const int32_t *lv = tg_tensor_i32(y);
    for (int64_t i = 0; i < n[s]; i++) {
      ck_assert_int_ge(lv[i], 0);
      ck_assert_int_le(lv[i], 9);
      seen[lv[i]]++;
    }
    for (int c = 0; c < 10; c++) ck_assert_int_eq(seen[c], counts[s][c]);
    const float *px = tg_tensor_f32(x);
    double sum = 0, lo = 1, hi = 0;
    for (int64_t i = 0; i < tg_tensor_numel(x); i++) {
      sum += px[i];
      if (px[i] < lo) lo = px[i];
      if (px[i] > hi) hi = px[i];
    }
    ck_assert_double_eq(lo, 0.0);
    ck_assert_double_eq(hi, 1.0);
    double mean = sum / (double)tg_tensor_numel(x);
    if (s == 0) ck_assert_double_eq_tol(mean, 0.1307, 0.001);
    else ck_assert_double_eq_tol(mean, 0.1325, 0.001);
    tg_tensor_free(x);
    tg_tensor_free(y);
  }
}
END_TEST

int main(void) {
  make_dir("test_idx");
  Suite *s = suite_create("idx");
  TCase *tc = tcase_create("small files");
  tcase_add_test(tc, good_plain);
  tcase_add_test(tc, good_gzip);
  tcase_add_test(tc, header_errors);
  tcase_add_test(tc, dtype_errors);
  tcase_add_test(tc, size_errors_plain);
  tcase_add_test(tc, size_errors_gzip);
  tcase_add_test(tc, broken_gzip);
  tcase_add_test(tc, gzip_uses_allocator);
  tcase_add_test(tc, gzip_members);
  tcase_add_test(tc, io_errors);
  tcase_add_test(tc, fifo_refused);
  tcase_add_test(tc, mnist_good);
  tcase_add_test(tc, mnist_errors);
  suite_add_tcase(s, tc);
  TCase *real = tcase_create("real MNIST");
  tcase_set_timeout(real, 300);
  tcase_add_test(real, real_mnist);
  suite_add_tcase(s, real);
  int rc = run_suite(s);
  remove_tree(test_dir());
  return rc;
}
