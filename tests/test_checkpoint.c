/* tests/test_checkpoint.c: safetensors checkpoints and .npy files: round
 * trips, hostile files crafted byte by byte, checksums, saving that survives
 * a full disk and a kill at any moment. */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "testutil.h"

/* The whole file in a new buffer (free it); its size in *n. */
static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  rewind(f);
  unsigned char *b = malloc((size_t)len + 1);
  ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return b;
}

/* Files in test_dir() whose names start with prefix: counted, and removed
 * when rm is set. */
static int count_prefixed(const char *prefix, bool rm) {
  DIR *d = opendir(test_dir());
  ck_assert_ptr_nonnull(d);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)))
    if (!strncmp(e->d_name, prefix, strlen(prefix))) {
      n++;
      if (rm) unlink(P(e->d_name));
    }
  closedir(d);
  return n;
}

/* A safetensors file by hand: length field hlen, then the header text,
 * then dn data bytes. */
static void st_put_len(const char *name, uint64_t hlen, const char *hdr,
                       size_t hn, const void *data, size_t dn) {
  unsigned char *b = malloc(8 + hn + dn + 1);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
  memcpy(b + 8, hdr, hn);
  if (dn) memcpy(b + 8 + hn, data, dn);
  put(name, b, 8 + hn + dn);
  free(b);
}

static void st_put(const char *name, const char *json, const void *data,
                   size_t dn) {
  st_put_len(name, strlen(json), json, strlen(json), data, dn);
}

static tg_tensor *rand_tensor(tg_dtype dt, int ndim, const int64_t *shape,
                              tg_rng *rng) {
  tg_tensor *t = tg_zeros(dt, ndim, shape);
  ck_assert_ptr_nonnull(t);
  if (dt == TG_I32) {
    int32_t *v = tg_tensor_i32(t);
    for (int64_t i = 0; i < tg_tensor_numel(t); i++)
      v[i] = (int32_t)tg_rng_next(rng);
  } else {
    ck_assert_int_eq(tg_fill_normal(t, rng, 0, 1e3), TG_OK);
  }
  return t;
}

static void assert_same(tg_tensor *a, tg_tensor *b) {
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_nonnull(b);
  ck_assert_int_eq(tg_tensor_dtype(a), tg_tensor_dtype(b));
  ck_assert_int_eq(tg_tensor_ndim(a), tg_tensor_ndim(b));
  for (int i = 0; i < tg_tensor_ndim(a); i++)
    ck_assert_int_eq(tg_tensor_dim(a, i), tg_tensor_dim(b, i));
  ck_assert_uint_eq(tg_tensor_hash(a), tg_tensor_hash(b));
  size_t es = tg_tensor_dtype(a) == TG_F64 ? 8 : 4;
  ck_assert_int_eq(memcmp(tg_tensor_data(a), tg_tensor_data(b),
                          (size_t)tg_tensor_numel(a) * es), 0);
}

/* --- round trips */

START_TEST(round_trip) {
  tg_rng rng;
  tg_rng_seed(&rng, 42);
  tg_tensor *t[5] = {
      rand_tensor(TG_F32, TG_SHAPE(5), &rng),
      rand_tensor(TG_F64, TG_SHAPE(2, 3), &rng),
      rand_tensor(TG_I32, TG_SHAPE(2, 2, 2), &rng),
      rand_tensor(TG_F32, TG_SHAPE(1, 2, 3, 4), &rng),
      rand_tensor(TG_F64, TG_SHAPE(3, 1, 2, 1), &rng),
  };
  tg_tensor_f32(t[0])[1] = -0.0f;
  tg_tensor_f64(t[1])[2] = 1e-310; /* subnormal */
  tg_tensor_f32(t[3])[0] = INFINITY;
  tg_tensor_f64(t[4])[5] = NAN;
  const char *names[5] = {"layer1.W", "layer1.b", "steps", "conv/k", "é ☃"};
  const char *meta[] = {"epoch", "3", "note", "ünïcode \"quoted\"", "empty", "",
                        NULL};
  ck_assert_msg(tg_save(P("rt.safetensors"), names, t, 5, meta) == TG_OK, "%s",
                tg_last_error());

  tg_checkpoint *ck = tg_checkpoint_open(P("rt.safetensors"));
  ck_assert_msg(ck != NULL, "%s", tg_last_error());
  ck_assert(tg_checkpoint_verified(ck));
  ck_assert_int_eq(tg_checkpoint_count(ck), 5);
  for (int i = 0; i < 5; i++) {
    ck_assert_str_eq(tg_checkpoint_name(ck, i), names[i]);
    assert_same(tg_checkpoint_get(ck, names[i]), t[i]);
  }
  ck_assert_ptr_null(tg_checkpoint_name(ck, 5));
  ck_assert_ptr_null(tg_checkpoint_name(ck, -1));
  ck_assert_str_eq(tg_checkpoint_meta(ck, "epoch"), "3");
  ck_assert_str_eq(tg_checkpoint_meta(ck, "note"), "ünïcode \"quoted\"");
  ck_assert_str_eq(tg_checkpoint_meta(ck, "empty"), "");
  ck_assert_str_eq(tg_checkpoint_meta(ck, "format"), "tapegrad");
  ck_assert_str_eq(tg_checkpoint_meta(ck, "format_version"), "1");
  ck_assert_uint_eq(strlen(tg_checkpoint_meta(ck, "xxh3")), 16);
  ck_assert_ptr_null(tg_checkpoint_meta(ck, "nope"));
  ck_assert_int_eq(tg_checkpoint_meta_count(ck), 6);
  ck_assert_str_eq(tg_checkpoint_meta_key(ck, 0), "empty"); /* key order */
  ck_assert_ptr_null(tg_checkpoint_meta_key(ck, 6));

  /* the checkpoint's tensors are its own, and usable */
  tg_tensor *w = tg_checkpoint_get(ck, "layer1.W");
  ck_assert_int_eq(tg_tensor_free(w), TG_ESTATE);
  ck_assert_error_has(TG_ESTATE, "tg_checkpoint_close");
  tg_tensor *copy = tg_tensor_clone(w);
  assert_same(copy, t[0]);
  tg_tape *tape = tg_tape_new();
  tg_tensor *y = tg_add(tape, w, copy);
  ck_assert_ptr_nonnull(y);
  ck_assert_float_eq(tg_get(y, 0), 2 * tg_get(t[0], 0));
  tg_tape_free(tape);
  tg_tensor_free(copy);
  ck_assert_ptr_null(tg_checkpoint_get(ck, "layer2.W"));
  ck_assert_error_has(TG_EINVAL, "tg_checkpoint_get", P("rt.safetensors"),
                      "no tensor named \"layer2.W\"");
  tg_checkpoint_close(ck);

  /* into a model's tensors, by name, in any order */
  tg_tensor *u[5];
  for (int i = 0; i < 5; i++) {
    u[i] = tg_zeros(tg_tensor_dtype(t[i]), tg_tensor_ndim(t[i]),
                    (int64_t[]){tg_tensor_dim(t[i], 0), tg_tensor_dim(t[i], 1),
                                tg_tensor_dim(t[i], 2), tg_tensor_dim(t[i], 3)});
  }
  tg_requires_grad(u[0], true);
  const char *rev[3] = {names[3], names[0], names[2]};
  tg_tensor *urev[3] = {u[3], u[0], u[2]};
  ck_assert_msg(tg_load_into(P("rt.safetensors"), rev, urev, 3) == TG_OK, "%s",
                tg_last_error());
  assert_same(u[0], t[0]);
  assert_same(u[2], t[2]);
  assert_same(u[3], t[3]);
  ck_assert(tg_tensor_requires_grad(u[0]));
  ck_assert_double_eq(tg_get(u[1], 0), 0); /* not asked for */
  for (int i = 0; i < 5; i++) {
    tg_tensor_free(t[i]);
    tg_tensor_free(u[i]);
  }
}
END_TEST

START_TEST(layout) {
  tg_tensor *a = tg_ones(TG_F32, TG_SHAPE(3));
  const char *n = "a";
  ck_assert_int_eq(tg_save(P("lay.st"), &n, &a, 1, NULL), TG_OK);
  size_t len;
  unsigned char *b = slurp(P("lay.st"), &len);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
  ck_assert_uint_eq((8 + hlen) % 8, 0); /* data aligned */
  ck_assert_uint_eq(len, 8 + hlen + 12);
  ck_assert_int_eq(b[8], '{');
  char *hdr = strndup((char *)b + 8, (size_t)hlen);
  ck_assert_ptr_nonnull(strstr(hdr, "\"format\":\"tapegrad\""));
  ck_assert_ptr_nonnull(strstr(hdr, "\"format_version\":\"1\""));
  ck_assert_ptr_nonnull(
      strstr(hdr, "\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}"));
  float one = 1.0f;
  ck_assert_int_eq(memcmp(b + 8 + hlen, &one, 4), 0); /* little-endian host */
  /* the checksum is XXH3-64 of the data section */
  char want[17];
  snprintf(want, sizeof want, "%016llx",
           (unsigned long long)XXH3_64bits(b + 8 + hlen, 12));
  ck_assert_ptr_nonnull(strstr(hdr, want));
  free(hdr);
  free(b);
  tg_tensor_free(a);

  /* no tensors at all is a valid file */
  ck_assert_int_eq(tg_save(P("none.st"), NULL, NULL, 0, NULL), TG_OK);
  tg_checkpoint *ck = tg_checkpoint_open(P("none.st"));
  ck_assert_ptr_nonnull(ck);
  ck_assert_int_eq(tg_checkpoint_count(ck), 0);
  ck_assert(tg_checkpoint_verified(ck));
  tg_checkpoint_close(ck);
  ck_assert_int_eq(tg_load_into(P("none.st"), NULL, NULL, 0), TG_OK);
}
END_TEST

/* Files from other tools: no checksum, JSON order unlike data order,
 * padding, unknown keys. */
START_TEST(foreign_files) {
  float d[4] = {1, 2, 3, 4};
  st_put("foreign.st",
         "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
         "\"a\":{\"data_offsets\":[0,8],\"shape\":[2,1],\"dtype\":\"F32\","
         "\"extra\":[1.5,2e3]},\"__metadata__\":{\"format\":\"pt\"}}    ",
         d, sizeof d);
  tg_checkpoint *ck = tg_checkpoint_open(P("foreign.st"));
  ck_assert_msg(ck != NULL, "%s", tg_last_error());
  ck_assert(!tg_checkpoint_verified(ck));
  ck_assert_int_eq(tg_checkpoint_count(ck), 2);
  ck_assert_str_eq(tg_checkpoint_name(ck, 0), "a");
  ck_assert_str_eq(tg_checkpoint_name(ck, 1), "b");
  tg_tensor *b = tg_checkpoint_get(ck, "b");
  ck_assert_int_eq(tg_tensor_ndim(b), 1);
  ck_assert_float_eq(tg_tensor_f32(b)[0], 3);
  ck_assert_int_eq(tg_tensor_dim(tg_checkpoint_get(ck, "a"), 1), 1);
  ck_assert_str_eq(tg_checkpoint_meta(ck, "format"), "pt");
  tg_checkpoint_close(ck);

  /* no __metadata__ at all */
  st_put("bare.st", "{\"x\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         d, 4);
  ck = tg_checkpoint_open(P("bare.st"));
  ck_assert_ptr_nonnull(ck);
  ck_assert_int_eq(tg_checkpoint_meta_count(ck), 0);
  tg_checkpoint_close(ck);
}
END_TEST

START_TEST(load_into_mismatch) {
  tg_tensor *w = tg_ones(TG_F32, TG_SHAPE(2, 3));
  tg_tensor *b = tg_ones(TG_F64, TG_SHAPE(3));
  const char *names[2] = {"w", "b"};
  tg_tensor *src[2] = {w, b};
  ck_assert_int_eq(tg_save(P("mm.st"), names, src, 2, NULL), TG_OK);

  tg_tensor *w2 = tg_zeros(TG_F32, TG_SHAPE(2, 3));
  tg_fill(w2, 7);
  tg_tensor *bad_shape = tg_zeros(TG_F64, TG_SHAPE(3, 1));
  tg_tensor *bad_dtype = tg_zeros(TG_F32, TG_SHAPE(3));
  tg_tensor *dst[2] = {w2, bad_shape};
  /* w would fit, b does not: nothing is written */
  ck_assert_int_eq(tg_load_into(P("mm.st"), names, dst, 2), TG_ESHAPE);
  ck_assert_error_has(TG_ESHAPE, "tg_load_into", P("mm.st"),
                      "tensor \"b\" is [3] in the file but the target is [3,1]");
  ck_assert_double_eq(tg_get(w2, 0), 7);
  dst[1] = bad_dtype;
  ck_assert_int_eq(tg_load_into(P("mm.st"), names, dst, 2), TG_EDTYPE);
  ck_assert_error_has(TG_EDTYPE, "tensor \"b\" is float64 [3] in the file but "
                      "the target is float32 [3]");
  ck_assert_double_eq(tg_get(w2, 0), 7);
  const char *missing[2] = {"w", "c"};
  dst[1] = b;
  ck_assert_int_eq(tg_load_into(P("mm.st"), missing, dst, 2), TG_EFORMAT);
  ck_assert_error_has(TG_EFORMAT, P("mm.st"), "no tensor named \"c\"");
  ck_assert_double_eq(tg_get(w2, 0), 7);

  /* bad arguments */
  const char *twice[2] = {"w", "w"};
  ck_assert_int_eq(tg_load_into(P("mm.st"), twice, dst, 2), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "the name \"w\" is given twice");
  ck_assert_int_eq(tg_load_into(NULL, names, dst, 2), TG_EINVAL);
  ck_assert_int_eq(tg_load_into(P("mm.st"), NULL, dst, 2), TG_EINVAL);
  ck_assert_int_eq(tg_load_into(P("mm.st"), names, dst, -1), TG_EINVAL);
  dst[1] = NULL;
  ck_assert_int_eq(tg_load_into(P("mm.st"), names, dst, 2), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tensors[1] is NULL");
  ck_assert_int_eq(tg_load_into(P("missing.st"), names, src, 2), TG_EIO);
  ck_assert_error_has(TG_EIO, "tg_load_into", P("missing.st"), "cannot open",
                      "No such file");
  ck_assert_double_eq(tg_get(w2, 0), 7);
  tg_tensor_free(w);
  tg_tensor_free(b);
  tg_tensor_free(w2);
  tg_tensor_free(bad_shape);
  tg_tensor_free(bad_dtype);
}
END_TEST

START_TEST(save_errors) {
  tg_tensor *a = tg_ones(TG_F32, TG_SHAPE(2));
  tg_tensor *t2[2] = {a, a};
  const char *ok = "a";
  const char *dup[2] = {"a", "a"};
  ck_assert_int_eq(tg_save(NULL, &ok, &a, 1, NULL), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_save", "path is NULL");
  ck_assert_int_eq(tg_save(P("e.st"), dup, t2, 2, NULL), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_save", "\"a\" is given twice");
  const char *empty = "";
  ck_assert_int_eq(tg_save(P("e.st"), &empty, &a, 1, NULL), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "names[0] is empty");
  const char *md = "__metadata__";
  ck_assert_int_eq(tg_save(P("e.st"), &md, &a, 1, NULL), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "reserved");
  const char *latin1 = "caf\xe9";
  ck_assert_int_eq(tg_save(P("e.st"), &latin1, &a, 1, NULL), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "not valid UTF-8");
  tg_tensor *none = NULL;
  ck_assert_int_eq(tg_save(P("e.st"), &ok, &none, 1, NULL), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tensors[0] is NULL");
  ck_assert_int_eq(tg_save(P("e.st"), &ok, &a, -1, NULL), TG_EINVAL);
  const char *odd[] = {"k", NULL, NULL};
  ck_assert_int_eq(tg_save(P("e.st"), &ok, &a, 1, odd), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "key \"k\" has no value");
  const char *res[] = {"xxh3", "0", NULL};
  ck_assert_int_eq(tg_save(P("e.st"), &ok, &a, 1, res), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "\"xxh3\" is reserved");
  const char *twice[] = {"k", "1", "k", "2", NULL};
  ck_assert_int_eq(tg_save(P("e.st"), &ok, &a, 1, twice), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "\"k\" is given twice");
  ck_assert_int_eq(count_prefixed("e.st", false), 0);

  /* I/O: no such folder; a folder where the file should be */
  ck_assert_int_eq(tg_save(P("nodir/x.st"), &ok, &a, 1, NULL), TG_EIO);
  ck_assert_error_has(TG_EIO, "tg_save", "cannot create a temporary file",
                      "No such file");
  mkdir(P("adir"), 0700);
  ck_assert_int_eq(tg_save(P("adir"), &ok, &a, 1, NULL), TG_EIO);
  ck_assert_error_has(TG_EIO, "tg_save", P("adir"), "cannot rename",
                      "the file was not replaced");
  ck_assert_int_eq(count_prefixed("adir.", false), 0);
  rmdir(P("adir"));
  tg_tensor_free(a);
}
END_TEST

START_TEST(checksum_mismatch) {
  tg_rng rng;
  tg_rng_seed(&rng, 7);
  tg_tensor *a = rand_tensor(TG_F32, TG_SHAPE(4, 4), &rng);
  const char *n = "a";
  ck_assert_int_eq(tg_save(P("sum.st"), &n, &a, 1, NULL), TG_OK);
  size_t len;
  unsigned char *b = slurp(P("sum.st"), &len);
  b[len - 5] ^= 0x10; /* one bit of the data */
  put("sum-bad.st", b, len);
  ck_assert_ptr_null(tg_checkpoint_open(P("sum-bad.st")));
  ck_assert_error_has(TG_ECHECKSUM, "tg_checkpoint_open", P("sum-bad.st"),
                      "checksum mismatch", "the file is corrupt");
  tg_tensor *dst = tg_zeros(TG_F32, TG_SHAPE(4, 4));
  ck_assert_int_eq(tg_load_into(P("sum-bad.st"), &n, &dst, 1), TG_ECHECKSUM);
  ck_assert_error_has(TG_ECHECKSUM, "tg_load_into", P("sum-bad.st"));
  ck_assert_double_eq(tg_get(dst, 15), 0);
  free(b);
  tg_tensor_free(a);
  tg_tensor_free(dst);
}
END_TEST

/* --- hostile files: each is refused with a message, by both loaders, and
 * the target is left as it was. */

#define A(dt, shape, off)                                                     \
  "{\"a\":{\"dtype\":" dt ",\"shape\":" shape ",\"data_offsets\":" off "}}"
#define AB(aoff, boff)                                                        \
  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" aoff "},"      \
  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" boff "}}"

static const struct {
  const char *label, *json;
  size_t dn;
  const char *frag;
} bad[] = {
    {"array", "[1,2]", 0, "does not start with '{'"},
    {"cut-json", "{\"a\":", 0, "not valid JSON"},
    {"after-json", "{}  x", 0, "text after its JSON object"},
    {"two-objects", "{}{}", 0, "text after its JSON object"},
    {"entry-number", "{\"a\":1}", 0, "the entry is a number, not an object"},
    {"dtype-missing", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "dtype is missing"},
    {"dtype-number", A("4", "[2]", "[0,8]"), 8, "dtype is a number"},
    {"dtype-bf16", A("\"BF16\"", "[2]", "[0,4]"), 4,
     "dtype \"BF16\" is not supported"},
    {"dtype-lower", A("\"f32\"", "[2]", "[0,8]"), 8, "dtype \"f32\""},
    {"shape-missing", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8,
     "shape is missing"},
    {"shape-object", A("\"F32\"", "{}", "[0,8]"), 8, "shape is an object"},
    {"shape-5d", A("\"F32\"", "[1,1,1,1,1]", "[0,4]"), 4, "5 dimensions"},
    {"shape-negative", A("\"F32\"", "[-2]", "[0,8]"), 8,
     "shape element 0 is not a non-negative integer"},
    {"shape-fraction", A("\"F32\"", "[2,1.5]", "[0,12]"), 12, "shape element 1"},
    {"shape-string", A("\"F32\"", "[\"2\"]", "[0,8]"), 8, "shape element 0"},
    {"shape-null", A("\"F32\"", "[null]", "[0,8]"), 8, "shape element 0"},
    {"shape-overflow", A("\"F32\"", "[4294967296,4294967296,4294967296]", "[0,8]"),
     8, "overflows"},
    {"shape-huge", A("\"F32\"", "[1e300]", "[0,8]"), 8, "shape element 0"},
    {"shape-2^53+", A("\"F32\"", "[9007199254740994]", "[0,8]"), 8,
     "shape element 0"},
    {"offsets-missing", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8,
     "data_offsets must be an array of two"},
    {"offsets-one", A("\"F32\"", "[2]", "[8]"), 8, "data_offsets must be"},
    {"offsets-three", A("\"F32\"", "[2]", "[0,8,8]"), 8, "data_offsets must be"},
    {"offsets-negative", A("\"F32\"", "[2]", "[-8,0]"), 8, "data_offsets must be"},
    {"offsets-fraction", A("\"F32\"", "[2]", "[0,7.5]"), 8, "data_offsets must be"},
    {"offsets-u64max", A("\"F32\"", "[2]", "[0,18446744073709551615]"), 8,
     "data_offsets must be"},
    {"offsets-reversed", A("\"F32\"", "[2]", "[8,0]"), 8, "end before they begin"},
    {"offsets-past-end", A("\"F32\"", "[2]", "[0,8]"), 4,
     "run past the end of the 4-byte data section"},
    {"size-mismatch", A("\"F32\"", "[3]", "[0,8]"), 8,
     "span 8 bytes, but F32 [3] needs 12"},
    {"size-mismatch-f64", A("\"F64\"", "[2]", "[0,8]"), 8,
     "span 8 bytes, but F64 [2] needs 16"},
    {"overlap", AB("[0,8]", "[4,12]"), 12, "overlap"},
    {"same-place", AB("[0,8]", "[0,8]"), 8, "overlap"},
    {"gap", AB("[0,8]", "[12,20]"), 20,
     "a gap of 4 bytes in the data section between tensors \"a\" and \"b\""},
    {"gap-start", A("\"F32\"", "[2]", "[4,12]"), 12,
     "a gap of 4 bytes at the start of the data section"},
    {"trailing", A("\"F32\"", "[2]", "[0,8]"), 12,
     "holds 12 bytes but the tensors cover 8: 4 bytes of trailing data"},
    {"no-tensors-trailing", "{}", 4, "4 bytes of trailing data"},
    {"duplicate", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
     16, "tensor name \"a\" appears twice"},
    {"meta-array", "{\"__metadata__\":[1]}", 0, "__metadata__ is an array"},
    {"meta-number", "{\"__metadata__\":{\"k\":1}}", 0,
     "value of \"k\" is a number; values must be strings"},
    {"meta-null", "{\"__metadata__\":{\"k\":null}}", 0, "value of \"k\" is null"},
    {"meta-nested", "{\"__metadata__\":{\"k\":{}}}", 0, "value of \"k\" is an object"},
    {"meta-twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0,
     "two __metadata__"},
    {"meta-key-twice", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0,
     "key \"k\" appears twice"},
    {"tapegrad-v2",
     "{\"__metadata__\":{\"format\":\"tapegrad\",\"format_version\":\"2\","
     "\"xxh3\":\"2d06800538d394c2\"}}",
     0, "format_version is \"2\"; this tapegrad reads version 1"},
    {"tapegrad-no-version",
     "{\"__metadata__\":{\"format\":\"tapegrad\",\"xxh3\":\"2d06800538d394c2\"}}",
     0, "format_version is missing"},
    {"tapegrad-no-sum",
     "{\"__metadata__\":{\"format\":\"tapegrad\",\"format_version\":\"1\"}}", 0,
     "without its xxh3 checksum"},
    {"sum-not-hex", "{\"__metadata__\":{\"xxh3\":\"XYZ\"}}", 0,
     "xxh3 \"XYZ\" is not 16 lowercase hex digits"},
    {"sum-upper", "{\"__metadata__\":{\"xxh3\":\"2D06800538D394C2\"}}", 0,
     "not 16 lowercase hex digits"},
    {"latin1", "{\"caf\xe9\":1}", 0, "not valid UTF-8 text (byte 0xe9 at offset 5)"},
    {"overlong", "{\"\xc0\xaf\":1}", 0, "not valid UTF-8"},
    {"surrogate", "{\"\xed\xa0\x80\":1}", 0, "not valid UTF-8"},
    {"past-10ffff", "{\"\xf4\x90\x80\x80\":1}", 0, "not valid UTF-8"},
    {"cut-utf8", "{\"a\":1}\xe2\x82", 0, "not valid UTF-8"},
    /* what cJSON alone accepts */
    {"shape-4.0", A("\"F32\"", "[4.0]", "[0,16]"), 16,
     "shape element 0 is written 4.0"},
    {"shape-1e1", A("\"F32\"", "[1e1]", "[0,40]"), 40,
     "shape element 0 is written 1e1"},
    {"shape-2E0", A("\"F32\"", "[1,2E0]", "[0,8]"), 8, "shape element 1 is written 2E0"},
    {"offsets-8.0", A("\"F32\"", "[2]", "[0,8.0]"), 8,
     "data_offsets element 1 is written 8.0"},
    {"offsets-0e0", A("\"F32\"", "[2]", "[0e0,8]"), 8,
     "data_offsets element 0 is written 0e0"},
    {"dtype-twice", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"dtype\":\"F32\","
     "\"data_offsets\":[0,8]}}", 8, "tensor \"a\": the key \"dtype\" appears twice"},
    {"shape-twice", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],"
     "\"shape\":[1,2]}}", 8, "the key \"shape\" appears twice"},
    {"raw-tab-in-name", "{\"a\tb\":{\"dtype\":\"F32\",\"shape\":[2],"
     "\"data_offsets\":[0,8]}}", 8, "raw control character 0x09 inside a JSON string"},
    {"raw-newline-in-meta", "{\"__metadata__\":{\"k\":\"x\ny\"}}", 0,
     "raw control character 0x0a inside a JSON string"},
    {"control-between-tokens", "{\x01\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
     "\"data_offsets\":[0,8]}}", 8, "control character 0x01 between JSON tokens"},
    {"nul-in-name", "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[2],"
     "\"data_offsets\":[0,8]}}", 8, "escaped NUL (\\u0000) inside a JSON string"},
    {"nul-in-meta", "{\"__metadata__\":{\"k\":\"x\\u0000\"}}", 0, "escaped NUL"},
    {"bad-u-escape", "{\"__metadata__\":{\"k\":\"t\\uegrad\"}}", 0,
     "malformed \\u escape"},
};

/* Both loaders refuse the file with status and fragment, and a target
 * tensor "a" keeps its value. */
static void assert_refused(const char *name, int status, const char *frag) {
  tg_checkpoint *ck = tg_checkpoint_open(P(name));
  ck_assert_msg(ck == NULL, "%s: loaded", name);
  ck_assert_msg(tg_last_status() == status && strstr(tg_last_error(), frag) &&
                    strstr(tg_last_error(), P(name)),
                "%s: status %s, message \"%s\" lacks \"%s\"", name,
                tg_status_name(tg_last_status()), tg_last_error(), frag);
  tg_tensor *a = tg_zeros(TG_F32, TG_SHAPE(2));
  tg_fill(a, 7);
  const char *n = "a";
  ck_assert_int_eq(tg_load_into(P(name), &n, &a, 1), status);
  ck_assert_msg(strstr(tg_last_error(), "tg_load_into") && strstr(tg_last_error(), frag),
                "%s: message \"%s\"", name, tg_last_error());
  ck_assert_double_eq(tg_get(a, 0), 7);
  tg_tensor_free(a);
}

START_TEST(hostile_headers) {
  static const unsigned char zeros[64];
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    st_put(bad[i].label, bad[i].json, zeros, bad[i].dn);
    assert_refused(bad[i].label, TG_EFORMAT, bad[i].frag);
  }
}
END_TEST

START_TEST(hostile_lengths) {
  static const unsigned char zeros[64];
  const char *j = A("\"F32\"", "[2]", "[0,8]");
  put("empty.st", "", 0);
  assert_refused("empty.st", TG_EFORMAT, "the file is 0 bytes: too short");
  put("seven.st", "\x02\0\0\0\0\0\0", 7);
  assert_refused("seven.st", TG_EFORMAT, "the file is 7 bytes");
  st_put_len("longer.st", 1000, j, strlen(j), zeros, 8);
  assert_refused("longer.st", TG_EFORMAT,
                 "the header length 1000 is larger than the 62 bytes that follow");
  st_put_len("huge.st", (uint64_t)1 << 62, j, strlen(j), zeros, 8);
  assert_refused("huge.st", TG_EFORMAT, "larger than the limit of 100000000 bytes");
  st_put_len("u64max.st", UINT64_MAX, j, strlen(j), zeros, 8);
  assert_refused("u64max.st", TG_EFORMAT, "larger than the limit");
  st_put_len("zero.st", 0, "", 0, zeros, 8);
  assert_refused("zero.st", TG_EFORMAT, "the header length 0 is too short");
  /* the header length cuts the JSON short */
  st_put_len("cut.st", strlen(j) - 3, j, strlen(j), zeros, 8);
  assert_refused("cut.st", TG_EFORMAT, "not valid JSON");
  /* a NUL inside the header */
  st_put_len("nul.st", 8, "{\"a\"\0:1}", 8, zeros, 0);
  assert_refused("nul.st", TG_EFORMAT, "not valid UTF-8 text (byte 0x00 at offset 4)");
  /* nesting deeper than the JSON parser allows */
  size_t depth = 5000;
  char *deep = malloc(2 * depth + 8);
  size_t k = 0;
  deep[k++] = '{';
  memcpy(deep + k, "\"a\":", 4);
  k += 4;
  for (size_t i = 0; i < depth; i++) deep[k++] = '[';
  for (size_t i = 0; i < depth; i++) deep[k++] = ']';
  deep[k++] = '}';
  deep[k] = '\0';
  st_put("deep.st", deep, NULL, 0);
  free(deep);
  assert_refused("deep.st", TG_EFORMAT, "not valid JSON");

  /* a good file cut short by one byte, and with one byte added */
  tg_tensor *a = tg_ones(TG_F32, TG_SHAPE(2));
  const char *n = "a";
  ck_assert_int_eq(tg_save(P("good.st"), &n, &a, 1, NULL), TG_OK);
  size_t len;
  unsigned char *b = slurp(P("good.st"), &len);
  put("trunc.st", b, len - 1);
  assert_refused("trunc.st", TG_EFORMAT, "run past the end of the 7-byte data section");
  b = realloc(b, len + 1);
  b[len] = 0;
  put("extra.st", b, len + 1);
  assert_refused("extra.st", TG_EFORMAT, "1 bytes of trailing data");
  put("hdronly.st", b, 20);
  assert_refused("hdronly.st", TG_EFORMAT, "larger than the 12 bytes that follow");
  free(b);
  tg_tensor_free(a);

  /* not files */
  ck_assert_ptr_null(tg_checkpoint_open(P("no-such.st")));
  ck_assert_error_has(TG_EIO, "tg_checkpoint_open", "cannot open", "No such file");
  ck_assert_ptr_null(tg_checkpoint_open(test_dir()));
  ck_assert_error_has(TG_EIO, "Is a directory");
  ck_assert_ptr_null(tg_checkpoint_open(NULL));
  ck_assert_error_has(TG_EINVAL, "path is NULL");
}
END_TEST

/* cJSON's allocations go through tg_set_allocator's functions: a header
 * with 200 more JSON values (in a key tapegrad ignores) costs at least 200
 * more allocations to open, and every one is freed. */
START_TEST(json_uses_allocator) {
  static const float d[2] = {1, 2};
  char big[2048];
  int k = snprintf(big, sizeof big, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                   "\"data_offsets\":[0,8],\"extra\":[0");
  for (int i = 1; i < 200; i++) k += snprintf(big + k, sizeof big - (size_t)k, ",%d", i);
  snprintf(big + k, sizeof big - (size_t)k, "]}}");
  st_put("small.st", A("\"F32\"", "[2]", "[0,8]"), d, sizeof d);
  st_put("big.st", big, d, sizeof d);
  long n[2];
  const char *files[2] = {"small.st", "big.st"};
  for (int i = 0; i < 2; i++) {
    counting_allocator(true);
    tg_checkpoint *ck = tg_checkpoint_open(P(files[i]));
    bool ok = ck != NULL;
    tg_checkpoint_close(ck);
    n[i] = *test_allocs();
    long frees = *test_frees();
    counting_allocator(false);
    ck_assert_msg(ok, "%s", tg_last_error());
    ck_assert_int_gt(n[i], 0);
    ck_assert_int_eq(n[i], frees);
  }
  ck_assert_msg(n[1] >= n[0] + 200, "small header: %ld allocations, big: %ld",
                n[0], n[1]);
  /* and saving: building and printing the header */
  tg_tensor *a = tg_ones(TG_F32, TG_SHAPE(2));
  const char *name = "a";
  counting_allocator(true);
  int rc = tg_save(P("counted.st"), &name, &a, 1, NULL);
  long saves = *test_allocs(), frees = *test_frees();
  counting_allocator(false);
  ck_assert_int_eq(rc, TG_OK);
  ck_assert_int_eq(saves, frees);
  ck_assert_int_ge(saves, 10); /* the JSON tree's nodes, not just the buffers */
  tg_tensor_free(a);
}
END_TEST

/* --- what is not a regular file */

/* The last error is TG_EIO naming fn and path and saying why. */
static int refused_as(const char *fn, const char *path, const char *why) {
  if (tg_last_status() == TG_EIO && strstr(tg_last_error(), fn) &&
      strstr(tg_last_error(), path) && strstr(tg_last_error(), why))
    return 0;
  fprintf(stderr, "%s: status %s, message \"%s\"\n", fn,
          tg_status_name(tg_last_status()), tg_last_error());
  return 1;
}

static int load_fifo(void) {
  const char *p = P("fifo");
  int bad = 0;
  tg_checkpoint *ck = tg_checkpoint_open(p);
  bad += ck != NULL || refused_as("tg_checkpoint_open", p, "not a regular file");
  tg_checkpoint_close(ck);
  tg_tensor *a = tg_zeros(TG_F32, TG_SHAPE(2));
  const char *n = "a";
  bad += tg_load_into(p, &n, &a, 1) != TG_EIO ||
         refused_as("tg_load_into", p, "not a regular file (a FIFO)");
  tg_tensor_free(a);
  tg_tensor *t = tg_npy_load(p);
  bad += t != NULL || refused_as("tg_npy_load", p, "not a regular file");
  tg_tensor_free(t);
  return bad;
}

/* A FIFO with no writer: opening it the usual way would wait forever. */
START_TEST(load_fifo_refused) {
  ck_assert_int_eq(mkfifo(P("fifo"), 0600), 0);
  in_child_with_alarm("loading a FIFO", load_fifo);
  struct stat st;
  ck_assert_int_eq(lstat(P("fifo"), &st), 0);
  ck_assert(S_ISFIFO(st.st_mode));
  unlink(P("fifo"));
}
END_TEST

static int save_onto(const char *name, const char *why) {
  tg_tensor *a = tg_ones(TG_F32, TG_SHAPE(2));
  const char *n = "a";
  const char *p = P(name);
  int bad = tg_save(p, &n, &a, 1, NULL) != TG_EIO ||
            refused_as("tg_save", p, why);
  bad += tg_npy_save(p, a) != TG_EIO || refused_as("tg_npy_save", p, why);
  tg_tensor_free(a);
  char prefix[256];
  snprintf(prefix, sizeof prefix, "%s.", name);
  return bad + (count_prefixed(prefix, false) != 0);
}

static int save_fifo(void) { return save_onto("out-fifo", "is not a regular file"); }
static int save_null(void) { return save_onto("null-link", "is not a regular file"); }

/* Saving never replaces what is not a regular file: a FIFO, a link to a
 * character device (/dev/null, which is never written to here), or a file
 * whose owner may not write it. */
START_TEST(save_onto_non_regular) {
  struct stat st;
  ck_assert_int_eq(mkfifo(P("out-fifo"), 0600), 0);
  in_child_with_alarm("saving onto a FIFO", save_fifo);
  ck_assert_int_eq(lstat(P("out-fifo"), &st), 0);
  ck_assert(S_ISFIFO(st.st_mode));
  unlink(P("out-fifo"));

  ck_assert_int_eq(symlink("/dev/null", P("null-link")), 0);
  in_child_with_alarm("saving onto a link to /dev/null", save_null);
  ck_assert_int_eq(lstat(P("null-link"), &st), 0);
  ck_assert(S_ISLNK(st.st_mode));
  ck_assert_int_eq(stat("/dev/null", &st), 0);
  ck_assert(S_ISCHR(st.st_mode));
  unlink(P("null-link"));

  /* read-only by its mode bits, which root could otherwise ignore */
  tg_tensor *a = tg_ones(TG_F32, TG_SHAPE(3)), *b = tg_zeros(TG_F32, TG_SHAPE(3));
  const char *n = "a";
  ck_assert_int_eq(tg_save(P("ro.st"), &n, &a, 1, NULL), TG_OK);
  ck_assert_int_eq(tg_npy_save(P("ro.npy"), a), TG_OK);
  ck_assert_int_eq(chmod(P("ro.st"), 0444), 0);
  ck_assert_int_eq(chmod(P("ro.npy"), 0444), 0);
  size_t l0, l1, m0, m1;
  unsigned char *st0 = slurp(P("ro.st"), &l0), *np0 = slurp(P("ro.npy"), &m0);
  ck_assert_int_eq(tg_save(P("ro.st"), &n, &b, 1, NULL), TG_EIO);
  ck_assert_error_has(TG_EIO, "tg_save", P("ro.st"), "is read-only");
  ck_assert_int_eq(tg_npy_save(P("ro.npy"), b), TG_EIO);
  ck_assert_error_has(TG_EIO, "tg_npy_save", P("ro.npy"), "is read-only");
  unsigned char *st1 = slurp(P("ro.st"), &l1), *np1 = slurp(P("ro.npy"), &m1);
  ck_assert_uint_eq(l0, l1);
  ck_assert_uint_eq(m0, m1);
  ck_assert_int_eq(memcmp(st0, st1, l0), 0);
  ck_assert_int_eq(memcmp(np0, np1, m0), 0);
  ck_assert_int_eq(stat(P("ro.st"), &st), 0);
  ck_assert_int_eq(st.st_mode & 0777, 0444);
  ck_assert_int_eq(count_prefixed("ro.", false), 2);
  free(st0);
  free(st1);
  free(np0);
  free(np1);
  tg_tensor_free(a);
  tg_tensor_free(b);
}
END_TEST

/* An allocator that fails the fail_at-th allocation (counting from 1). */
static long fail_at, n_alloc;
static void *fail_malloc(size_t n) { return ++n_alloc == fail_at ? NULL : malloc(n); }
static void *fail_realloc(void *p, size_t n) {
  return ++n_alloc == fail_at ? NULL : realloc(p, n);
}
static void *fail_calloc(size_t c, size_t n) {
  return ++n_alloc == fail_at ? NULL : calloc(c, n);
}

/* Whatever allocation fails, the status says what is on disk: TG_OK when
 * the new file is in place, an error when the old one still is. */
START_TEST(save_alloc_failure) {
  tg_tensor *old = tg_ones(TG_F32, TG_SHAPE(4)), *nu = tg_zeros(TG_F32, TG_SHAPE(4));
  tg_fill(nu, 5);
  const char *n = "w";
  long k;
  for (k = 1; k < 1000; k++) {
    ck_assert_int_eq(tg_save(P("af.st"), &n, &old, 1, NULL), TG_OK);
    ck_assert_int_eq(tg_npy_save(P("af.npy"), old), TG_OK);
    n_alloc = 0;
    fail_at = k;
    ck_assert_int_eq(tg_set_allocator(fail_malloc, fail_realloc, fail_calloc, free),
                     TG_OK);
    int rc = tg_save(P("af.st"), &n, &nu, 1, NULL);
    long st_allocs = n_alloc;
    n_alloc = 0;
    int rc2 = tg_npy_save(P("af.npy"), nu);
    long npy_allocs = n_alloc;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", tg_last_error());
    tg_set_allocator(malloc, realloc, calloc, free);
    tg_tensor *back = tg_zeros(TG_F32, TG_SHAPE(4));
    ck_assert_int_eq(tg_load_into(P("af.st"), &n, &back, 1), TG_OK);
    bool is_new = tg_get(back, 0) == 5;
    ck_assert_msg((rc == TG_OK) == is_new, "allocation %ld: tg_save returned %s "
                  "but the %s file is on disk", k, tg_status_name(rc),
                  is_new ? "new" : "old");
    if (rc) ck_assert_int_eq(rc, TG_ENOMEM);
    tg_tensor_free(back);
    back = tg_npy_load(P("af.npy"));
    ck_assert_ptr_nonnull(back);
    is_new = tg_get(back, 0) == 5;
    ck_assert_msg((rc2 == TG_OK) == is_new, "allocation %ld: tg_npy_save "
                  "returned %s (%s) but the %s file is on disk", k,
                  tg_status_name(rc2), msg, is_new ? "new" : "old");
    tg_tensor_free(back);
    ck_assert_int_eq(count_prefixed("af.st.", false), 0);
    ck_assert_int_eq(count_prefixed("af.npy.", false), 0);
    if (st_allocs < k && npy_allocs < k) {
      ck_assert_int_eq(rc, TG_OK); /* no allocation failed */
      ck_assert_int_eq(rc2, TG_OK);
      break;
    }
  }
  ck_assert_int_gt(k, 2);
  ck_assert_int_lt(k, 1000);
  tg_tensor_free(old);
  tg_tensor_free(nu);
}
END_TEST

/* --- saving safely */

/* A full disk, as a file size limit: write() fails with EFBIG. In a child
 * process, so the limit stays there. The old checkpoint survives whole and
 * no temporary file is left. */
START_TEST(save_full_disk) {
  tg_tensor *old = tg_ones(TG_F32, TG_SHAPE(16));
  const char *n = "w";
  ck_assert_int_eq(tg_save(P("full.st"), &n, &old, 1, NULL), TG_OK);
  size_t len0;
  unsigned char *before = slurp(P("full.st"), &len0);
  ck_assert_int_eq(tg_npy_save(P("full.npy"), old), TG_OK);

  tg_tensor *big = tg_zeros(TG_F32, TG_SHAPE(256, 1024)); /* 1 MiB */
  tg_fill(big, 2);
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {64 * 1024, 64 * 1024};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(2);
    int rc = tg_save(P("full.st"), &n, &big, 1, NULL);
    bool ok = rc == TG_EIO && strstr(tg_last_error(), "tg_save") &&
              strstr(tg_last_error(), "write failed: File too large") &&
              strstr(tg_last_error(), "the file was not replaced");
    if (!ok) fprintf(stderr, "child: %d %s\n", rc, tg_last_error());
    rc = tg_npy_save(P("full.npy"), big);
    bool ok2 = rc == TG_EIO && strstr(tg_last_error(), "tg_npy_save") &&
               strstr(tg_last_error(), "File too large");
    if (!ok2) fprintf(stderr, "child: %d %s\n", rc, tg_last_error());
    /* nothing left allocated, for a leak checker watching the child */
    free(before);
    tg_tensor_free(old);
    tg_tensor_free(big);
    _exit(ok && ok2 ? 0 : 1);
  }
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  ck_assert(WIFEXITED(st));
  ck_assert_int_eq(WEXITSTATUS(st), 0);

  size_t len1;
  unsigned char *after = slurp(P("full.st"), &len1);
  ck_assert_uint_eq(len0, len1);
  ck_assert_int_eq(memcmp(before, after, len0), 0);
  ck_assert_int_eq(count_prefixed("full.st.", false), 0);
  ck_assert_int_eq(count_prefixed("full.npy.", false), 0);
  tg_tensor *npy = tg_npy_load(P("full.npy"));
  assert_same(npy, old);
  tg_tensor_free(npy);
  tg_tensor *back = tg_zeros(TG_F32, TG_SHAPE(16));
  ck_assert_int_eq(tg_load_into(P("full.st"), &n, &back, 1), TG_OK);
  ck_assert_double_eq(tg_get(back, 15), 1);

  /* and without the limit the same save goes through */
  ck_assert_int_eq(tg_save(P("full.st"), &n, &big, 1, NULL), TG_OK);
  tg_checkpoint *ck = tg_checkpoint_open(P("full.st"));
  ck_assert_ptr_nonnull(ck);
  ck_assert_double_eq(tg_get(tg_checkpoint_get(ck, "w"), 0), 2);
  tg_checkpoint_close(ck);
  free(before);
  free(after);
  tg_tensor_free(old);
  tg_tensor_free(big);
  tg_tensor_free(back);
}
END_TEST

/* A replaced file keeps its permission bits. */
START_TEST(save_keeps_mode) {
  tg_tensor *a = tg_ones(TG_I32, TG_SHAPE(2));
  const char *n = "a";
  ck_assert_int_eq(tg_save(P("mode.st"), &n, &a, 1, NULL), TG_OK);
  struct stat st;
  ck_assert_int_eq(stat(P("mode.st"), &st), 0);
  ck_assert_int_eq(st.st_mode & 0777, 0644);
  chmod(P("mode.st"), 0600);
  ck_assert_int_eq(tg_save(P("mode.st"), &n, &a, 1, NULL), TG_OK);
  ck_assert_int_eq(stat(P("mode.st"), &st), 0);
  ck_assert_int_eq(st.st_mode & 0777, 0600);
  tg_tensor_free(a);
}
END_TEST

/* The content a writer child saves as version v: every element of every
 * tensor derived from v, so a torn file would show. */
static void fill_version(tg_tensor **t, int n, long v) {
  for (int i = 0; i < n; i++) tg_fill(t[i], (double)(v % 100000) + i);
}

static void kill_tensors(tg_tensor **t) {
  t[0] = tg_zeros(TG_F32, TG_SHAPE(640, 1024)); /* 2.5 MiB */
  t[1] = tg_zeros(TG_F64, TG_SHAPE(256, 256));  /* 0.5 MiB */
  t[2] = tg_zeros(TG_I32, TG_SHAPE(4, 5, 6, 7));
}

/* A child saves again and again with changing content; it is killed at a
 * random moment; the file on disk must always load, verify and hold one
 * whole version. */
START_TEST(kill_during_save) {
  const char *names[3] = {"emb", "proj", "steps"};
  tg_tensor *t[3];
  kill_tensors(t);
  char path[2048];
  snprintf(path, sizeof path, "%s", P("kill.st"));
  fill_version(t, 3, 0);
  ck_assert_int_eq(tg_save(path, names, t, 3, (const char *[]){"version", "0", NULL}),
                   TG_OK);
  tg_rng rng;
  tg_rng_seed(&rng, 20240607);
  int rounds = 24, advanced = 0;
  long last = 0;
  for (int r = 0; r < rounds; r++) {
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      char c = 1;
      if (write(fds[1], &c, 1) != 1) _exit(3);
      for (long k = 1;; k++) {
        long v = (r + 1) * 1000L + k;
        char vs[32];
        snprintf(vs, sizeof vs, "%ld", v);
        fill_version(t, 3, v);
        if (tg_save(path, names, t, 3, (const char *[]){"version", vs, NULL})) {
          fprintf(stderr, "writer: %s\n", tg_last_error());
          _exit(4);
        }
      }
    }
    close(fds[1]);
    char c;
    ck_assert_int_eq(read(fds[0], &c, 1), 1);
    close(fds[0]);
    struct timespec ts = {0, (long)(1 + tg_rng_below(&rng, 120)) * 1000000L};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFSIGNALED(st), "round %d: the writer exited (status %d)", r,
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1);

    tg_checkpoint *ck = tg_checkpoint_open(path);
    ck_assert_msg(ck != NULL, "round %d: %s", r, tg_last_error());
    ck_assert(tg_checkpoint_verified(ck));
    long v = atol(tg_checkpoint_meta(ck, "version"));
    for (int i = 0; i < 3; i++) {
      tg_tensor *x = tg_checkpoint_get(ck, names[i]);
      ck_assert_ptr_nonnull(x);
      double want = (double)(v % 100000) + i;
      ck_assert_double_eq(tg_get(x, 0), want);
      ck_assert_double_eq(tg_get(x, tg_tensor_numel(x) - 1), want);
    }
    tg_checkpoint_close(ck);
    if (v != last) advanced++;
    last = v;
    /* at most the one temporary file that was in flight */
    ck_assert_int_le(count_prefixed("kill.st.", true), 1);
  }
  ck_assert_int_eq(count_prefixed("kill.st.", false), 0);
  ck_assert_msg(advanced > 0, "no save finished in %d rounds", rounds);
  for (int i = 0; i < 3; i++) tg_tensor_free(t[i]);
}
END_TEST

/* The temporary files of P(target) in test_dir(): counted, and the first
 * one's name copied to first (when given). */
static int count_tmps(const char *target, char *first, size_t n) {
  char prefix[256];
  snprintf(prefix, sizeof prefix, "%s.tg-tmp.", target);
  DIR *d = opendir(test_dir());
  ck_assert_ptr_nonnull(d);
  struct dirent *e;
  int k = 0;
  while ((e = readdir(d)))
    if (!strncmp(e->d_name, prefix, strlen(prefix))) {
      if (k++ == 0 && first) snprintf(first, n, "%s", e->d_name);
    }
  closedir(d);
  return k;
}

static bool exists(const char *name) {
  struct stat st;
  return lstat(P(name), &st) == 0;
}

/* A save removes what killed saves of the same target left, and nothing
 * else: not the temporary file of a save still under way (in another
 * process, or in this one as another thread would hold it), not files of
 * other targets whose names look alike. */
START_TEST(stale_temps_removed) {
  tg_tensor *a = tg_ones(TG_F32, TG_SHAPE(8));
  const char *n = "a";
  ck_assert_int_eq(tg_save(P("tmp.st"), &n, &a, 1, NULL), TG_OK);
  ck_assert_int_eq(count_tmps("tmp.st", NULL, 0), 0);

  /* A writer that dies mid-save, three times over. */
  for (int i = 0; i < 3; i++) {
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
      tg_tensor_free(a); /* (for a leak checker watching the child) */
      tg__afile w;
      if (tg__afile_open(&w, "writer", P("tmp.st"))) _exit(3);
      tg__afile_write(&w, "half a file", 11);
      if (tg__afile_write(&w, "", 0)) _exit(4);
      kill(getpid(), SIGKILL);
      _exit(5);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    /* each writer removed the one before it had left */
    ck_assert_int_eq(count_tmps("tmp.st", NULL, 0), 1);
  }
  char name[256];
  ck_assert_int_eq(count_tmps("tmp.st", name, sizeof name), 1);
  char pidpart[32];
  snprintf(pidpart, sizeof pidpart, ".tg-tmp.%ld.", (long)getpid());
  ck_assert_msg(strstr(name, ".tg-tmp.") && !strstr(name, pidpart),
                "%s: not named after its writer", name);

  /* two more, as writers long gone would have left them */
  put("tmp.st.tg-tmp.1.AbCd12", "x", 1);
  put("tmp.st.tg-tmp.4242424242.zzzzzz", "x", 1);

  /* Look-alikes of other targets, or not made by a save at all. */
  const char *alike[] = {
      "tmp.st.tg-tmp.12.abcdef.st", "tmp.st.tg-tmp..abcdef",
      "tmp.st.tg-tmp.12.abcde",     "tmp.st.tg-tmp.x2.abcdef",
      "xtmp.st.tg-tmp.12.abcdef",   "tmp.s.tg-tmp.12.abcdef",
      "tmp.st.abc123",              "tmp.st.tg-tmp.12.abc-ef",
  };
  for (size_t i = 0; i < sizeof alike / sizeof *alike; i++) put(alike[i], "x", 1);
  put("victim", "keep me", 7);
  ck_assert_int_eq(symlink("victim", P("tmp.st.tg-tmp.7.linkto")), 0);
  ck_assert_int_eq(mkdir(P("tmp.st.tg-tmp.8.folder"), 0700), 0);

  /* A save under way in another process: it holds its temporary file
   * while the parent saves, then finishes. */
  int go[2], ready[2];
  ck_assert_int_eq(pipe(go), 0);
  ck_assert_int_eq(pipe(ready), 0);
  fflush(NULL);
  pid_t live = fork();
  ck_assert_int_ge(live, 0);
  if (live == 0) {
    tg_tensor_free(a);
    close(go[1]);
    close(ready[0]);
    tg__afile w;
    if (tg__afile_open(&w, "writer", P("live.st"))) _exit(3);
    char c = 1;
    if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1) _exit(4);
    tg__afile_write(&w, "live", 4);
    _exit(tg__afile_commit(&w) ? 5 : 0);
  }
  close(go[0]);
  close(ready[1]);
  char c;
  ck_assert_int_eq(read(ready[0], &c, 1), 1);
  /* the five look-alikes that share the prefix, the link, the folder */
  const int odd = 5 + 2;
  ck_assert_int_eq(count_tmps("tmp.st", NULL, 0), 3 + odd);
  ck_assert_int_eq(tg_save(P("live.st"), &n, &a, 1, NULL), TG_OK);
  ck_assert_int_eq(count_tmps("live.st", NULL, 0), 1); /* the child's */
  ck_assert_int_eq(tg_save(P("tmp.st"), &n, &a, 1, NULL), TG_OK);
  ck_assert_int_eq(count_tmps("tmp.st", NULL, 0), odd);

  /* and one in this process, as another thread would hold it */
  tg__afile mine;
  ck_assert_int_eq(tg__afile_open(&mine, "mine", P("tmp.st")), TG_OK);
  char mine_name[256];
  snprintf(mine_name, sizeof mine_name, "%s", strrchr(mine.tmp, '/') + 1);
  put("tmp.st.tg-tmp.1.AbCd12", "x", 1);
  ck_assert_int_eq(count_tmps("tmp.st", NULL, 0), odd + 2);
  ck_assert_int_eq(tg_npy_save(P("tmp.st"), a), TG_OK);
  ck_assert_int_eq(count_tmps("tmp.st", NULL, 0), odd + 1);
  ck_assert(exists(mine_name));
  ck_assert(exists("tmp.st.tg-tmp.7.linkto"));
  ck_assert(exists("tmp.st.tg-tmp.8.folder"));
  for (size_t i = 0; i < sizeof alike / sizeof *alike; i++)
    ck_assert_msg(exists(alike[i]), "%s was removed", alike[i]);
  size_t vlen;
  unsigned char *v = slurp(P("victim"), &vlen);
  ck_assert_uint_eq(vlen, 7);
  free(v);

  /* Both live saves finish, their files never taken from under them. */
  ck_assert_int_eq(write(go[1], &c, 1), 1);
  close(go[1]);
  close(ready[0]);
  int st;
  ck_assert_int_eq(waitpid(live, &st, 0), live);
  ck_assert(WIFEXITED(st));
  ck_assert_int_eq(WEXITSTATUS(st), 0);
  size_t llen;
  unsigned char *l = slurp(P("live.st"), &llen);
  ck_assert_uint_eq(llen, 4);
  ck_assert_int_eq(memcmp(l, "live", 4), 0);
  free(l);
  ck_assert_int_eq(count_tmps("live.st", NULL, 0), 0);
  ck_assert_int_eq(tg__afile_write(&mine, "mine", 4), TG_OK);
  ck_assert_int_eq(tg__afile_commit(&mine), TG_OK);
  ck_assert_int_eq(count_tmps("tmp.st", NULL, 0), odd);

  unlink(P("tmp.st.tg-tmp.7.linkto"));
  rmdir(P("tmp.st.tg-tmp.8.folder"));
  for (size_t i = 0; i < sizeof alike / sizeof *alike; i++) unlink(P(alike[i]));
  unlink(P("victim"));
  tg_tensor_free(a);
}
END_TEST

/* --- .npy */

/* A .npy file by hand: version, header text (padded as given), data. */
static void npy_put(const char *name, int major, const char *hdr,
                    const void *data, size_t dn) {
  size_t hn = strlen(hdr), ln = major == 1 ? 2 : 4;
  unsigned char *b = malloc(8 + ln + hn + dn + 1);
  memcpy(b, "\x93NUMPY", 6);
  b[6] = (unsigned char)major;
  b[7] = 0;
  for (size_t i = 0; i < ln; i++) b[8 + i] = (unsigned char)(hn >> (8 * i));
  memcpy(b + 8 + ln, hdr, hn);
  if (dn) memcpy(b + 8 + ln + hn, data, dn);
  put(name, b, 8 + ln + hn + dn);
  free(b);
}

/* 0-d tensors and zero-size dimensions go through both formats and come
 * back with their shapes; the files hold what NumPy and safetensors write
 * for them (shape () and [], a (2, 0) array with no data). */
START_TEST(zero_dims_round_trip) {
  tg_rng rng;
  tg_rng_seed(&rng, 9);
  tg_tensor *t[4] = {
      rand_tensor(TG_F64, 0, NULL, &rng),
      rand_tensor(TG_F32, TG_SHAPE(2, 0), &rng),
      rand_tensor(TG_I32, TG_SHAPE(0), &rng),
      rand_tensor(TG_F32, 0, NULL, &rng),
  };
  ck_assert_int_eq(tg_tensor_ndim(t[0]), 0);
  ck_assert_int_eq(tg_tensor_numel(t[0]), 1);
  ck_assert_int_eq(tg_tensor_numel(t[1]), 0);
  const char *names[4] = {"scalar", "empty", "none", "f32 scalar"};
  ck_assert_msg(tg_save(P("zd.safetensors"), names, t, 4, NULL) == TG_OK, "%s",
                tg_last_error());
  tg_checkpoint *ck = tg_checkpoint_open(P("zd.safetensors"));
  ck_assert_msg(ck != NULL, "%s", tg_last_error());
  for (int i = 0; i < 4; i++) {
    tg_tensor *u = tg_checkpoint_get(ck, names[i]);
    ck_assert_int_eq(tg_tensor_ndim(u), tg_tensor_ndim(t[i]));
    assert_same(u, t[i]);
  }
  tg_checkpoint_close(ck);
  tg_tensor *back = tg_zeros(TG_F64, 0, NULL);
  ck_assert_int_eq(tg_load_into(P("zd.safetensors"), names, &back, 1), TG_OK);
  ck_assert_double_eq(tg_get(back, 0), tg_get(t[0], 0));
  tg_tensor_free(back);
  for (int i = 0; i < 4; i++) {
    ck_assert_msg(tg_npy_save(P("zd.npy"), t[i]) == TG_OK, "%s", tg_last_error());
    tg_tensor *u = tg_npy_load(P("zd.npy"));
    ck_assert_msg(u != NULL, "%s", tg_last_error());
    ck_assert_int_eq(tg_tensor_ndim(u), tg_tensor_ndim(t[i]));
    assert_same(u, t[i]);
    tg_tensor_free(u);
  }
  size_t len;
  unsigned char *b = slurp(P("zd.npy"), &len);
  ck_assert_ptr_nonnull(strstr((const char *)b + 10, "'shape': (), }"));
  free(b);
  ck_assert_int_eq(tg_npy_save(P("zd.npy"), t[1]), TG_OK);
  b = slurp(P("zd.npy"), &len);
  ck_assert_ptr_nonnull(strstr((const char *)b + 10, "'shape': (2, 0), }"));
  ck_assert_uint_eq(len, 128); /* the header alone */
  free(b);
  for (int i = 0; i < 4; i++) tg_tensor_free(t[i]);
}
END_TEST

START_TEST(npy_round_trip) {
  tg_rng rng;
  tg_rng_seed(&rng, 3);
  tg_tensor *t[6] = {
      rand_tensor(TG_F32, TG_SHAPE(7), &rng),
      rand_tensor(TG_F64, TG_SHAPE(2, 3), &rng),
      rand_tensor(TG_I32, TG_SHAPE(2, 1, 3), &rng),
      rand_tensor(TG_F32, TG_SHAPE(2, 3, 4, 5), &rng),
      rand_tensor(TG_F64, TG_SHAPE(1), &rng),
      rand_tensor(TG_I32, TG_SHAPE(3, 4), &rng),
  };
  for (int i = 0; i < 6; i++) {
    char name[32];
    snprintf(name, sizeof name, "t%d.npy", i);
    ck_assert_msg(tg_npy_save(P(name), t[i]) == TG_OK, "%s", tg_last_error());
    tg_tensor *u = tg_npy_load(P(name));
    ck_assert_msg(u != NULL, "%s", tg_last_error());
    assert_same(u, t[i]);
    tg_tensor_free(u);
    size_t len;
    unsigned char *b = slurp(P(name), &len);
    size_t hlen = b[8] | (size_t)b[9] << 8;
    ck_assert_uint_eq((10 + hlen) % 64, 0);
    ck_assert_int_eq(b[9 + hlen], '\n');
    free(b);
  }
  /* the header is what NumPy writes */
  size_t len;
  unsigned char *b = slurp(P("t1.npy"), &len);
  static const char h1[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '<f8', "
                           "'fortran_order': False, 'shape': (2, 3), }   ";
  ck_assert_int_eq(memcmp(b, h1, sizeof h1 - 1), 0);
  free(b);
  b = slurp(P("t0.npy"), &len);
  const char *h0 = "{'descr': '<f4', 'fortran_order': False, 'shape': (7,), }";
  ck_assert_int_eq(memcmp(b + 10, h0, strlen(h0)), 0);
  free(b);
  for (int i = 0; i < 6; i++) tg_tensor_free(t[i]);

  /* files NumPy could have written: versions 2.0 and 3.0, other key order,
   * double quotes, no trailing comma, no padding */
  float d[6] = {1, 2, 3, 4, 5, 6};
  npy_put("v2.npy", 2, "{\"shape\": (3, 2), \"fortran_order\": False, "
          "\"descr\": \"<f4\"}\n", d, sizeof d);
  npy_put("v3.npy", 3, "{'descr':'<f4','fortran_order':False,'shape':(6,),}", d,
          sizeof d);
  tg_tensor *u = tg_npy_load(P("v2.npy"));
  ck_assert_msg(u != NULL, "%s", tg_last_error());
  ck_assert_int_eq(tg_tensor_dim(u, 0), 3);
  ck_assert_float_eq(tg_tensor_f32(u)[5], 6);
  tg_tensor_free(u);
  u = tg_npy_load(P("v3.npy"));
  ck_assert_msg(u != NULL, "%s", tg_last_error());
  ck_assert_int_eq(tg_tensor_ndim(u), 1);
  tg_tensor_free(u);

  ck_assert_int_eq(tg_npy_save(NULL, u), TG_EINVAL);
  ck_assert_int_eq(tg_npy_save(P("x.npy"), NULL), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_npy_save", "tensor is NULL");
  ck_assert_ptr_null(tg_npy_load(NULL));
  ck_assert_ptr_null(tg_npy_load(P("none.npy")));
  ck_assert_error_has(TG_EIO, "tg_npy_load", P("none.npy"), "No such file");
}
END_TEST

/* Element i of a tensor as a double, whatever its dtype. */
static double elem(tg_tensor *t, int64_t i) { return tg_get(t, i); }

/* What NumPy writes for big-endian arrays ('>f4', '>f8', '>i4') and for
 * Fortran order, byte for byte: each loads in the host's byte order and in
 * row-major order. */
START_TEST(npy_byte_order_and_fortran) {
  static const unsigned char bf4[] = {0x3f, 0x80, 0, 0, 0x40, 0, 0, 0,
                                      0xc0, 0x40, 0, 0};
  npy_put("be-f4.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }",
          bf4, sizeof bf4);
  static const unsigned char bf8[] = {0x3f, 0xe0, 0, 0, 0, 0, 0, 0,
                                      0xc0, 0x59, 0, 0, 0, 0, 0, 0};
  npy_put("be-f8.npy", 1, "{'descr': '>f8', 'fortran_order': False, 'shape': (2, 1), }",
          bf8, sizeof bf8);
  static const unsigned char bi4[] = {0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe,
                                      0x7f, 0xff, 0xff, 0xff};
  npy_put("be-i4.npy", 1, "{'descr': '>i4', 'fortran_order': False, 'shape': (3,), }",
          bi4, sizeof bi4);
  tg_tensor *t = tg_npy_load(P("be-f4.npy"));
  ck_assert_msg(t != NULL, "%s", tg_last_error());
  ck_assert_int_eq(tg_tensor_dtype(t), TG_F32);
  ck_assert_float_eq(tg_tensor_f32(t)[0], 1);
  ck_assert_float_eq(tg_tensor_f32(t)[1], 2);
  ck_assert_float_eq(tg_tensor_f32(t)[2], -3);
  tg_tensor_free(t);
  t = tg_npy_load(P("be-f8.npy"));
  ck_assert_msg(t != NULL, "%s", tg_last_error());
  ck_assert_int_eq(tg_tensor_dtype(t), TG_F64);
  ck_assert_int_eq(tg_tensor_dim(t, 0), 2);
  ck_assert_double_eq(tg_tensor_f64(t)[0], 0.5);
  ck_assert_double_eq(tg_tensor_f64(t)[1], -100);
  tg_tensor_free(t);
  t = tg_npy_load(P("be-i4.npy"));
  ck_assert_msg(t != NULL, "%s", tg_last_error());
  ck_assert_int_eq(tg_tensor_i32(t)[0], 1);
  ck_assert_int_eq(tg_tensor_i32(t)[1], -2);
  ck_assert_int_eq(tg_tensor_i32(t)[2], INT32_MAX);
  tg_tensor_free(t);

  /* [[0, 1, 2], [3, 4, 5]] stored column by column */
  static const unsigned char f2[] = {0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0,
                                     4, 0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0};
  npy_put("f-2d.npy", 1, "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }",
          f2, sizeof f2);
  t = tg_npy_load(P("f-2d.npy"));
  ck_assert_msg(t != NULL, "%s", tg_last_error());
  ck_assert_int_eq(tg_tensor_dim(t, 0), 2);
  ck_assert_int_eq(tg_tensor_dim(t, 1), 3);
  for (int i = 0; i < 6; i++) ck_assert_int_eq(tg_tensor_i32(t)[i], i);
  tg_tensor_free(t);

  /* 3-d and 4-d, one big-endian: element (i, j, k, l) is 1000i + 100j +
   * 10k + l, written with the first index running fastest */
  static const int64_t shp[2][4] = {{2, 3, 2, 1}, {2, 1, 3, 2}};
  static const char *const hdr[2] = {
      "{'descr': '>f8', 'fortran_order': True, 'shape': (2, 3, 2), }",
      "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 1, 3, 2), }"};
  for (int c = 0; c < 2; c++) {
    const int64_t *d = shp[c];
    size_t es = c == 0 ? 8 : 4, n = (size_t)(d[0] * d[1] * d[2] * d[3]), at = 0;
    unsigned char buf[24 * 8];
    for (int64_t l = 0; l < d[3]; l++)
      for (int64_t k = 0; k < d[2]; k++)
        for (int64_t j = 0; j < d[1]; j++)
          for (int64_t i = 0; i < d[0]; i++, at += es) {
            double v = (double)(1000 * i + 100 * j + 10 * k + l);
            if (c == 0) {
              uint64_t u;
              memcpy(&u, &v, 8);
              for (int b = 0; b < 8; b++) buf[at + (size_t)b] = (unsigned char)(u >> (56 - 8 * b));
            } else {
              float f = (float)v;
              uint32_t u;
              memcpy(&u, &f, 4);
              for (int b = 0; b < 4; b++) buf[at + (size_t)b] = (unsigned char)(u >> (8 * b));
            }
          }
    npy_put("f-nd.npy", 1, hdr[c], buf, n * es);
    t = tg_npy_load(P("f-nd.npy"));
    ck_assert_msg(t != NULL, "%s", tg_last_error());
    ck_assert_int_eq(tg_tensor_ndim(t), c == 0 ? 3 : 4);
    int64_t r = 0;
    for (int64_t i = 0; i < d[0]; i++)
      for (int64_t j = 0; j < d[1]; j++)
        for (int64_t k = 0; k < d[2]; k++)
          for (int64_t l = 0; l < d[3]; l++, r++)
            ck_assert_double_eq(elem(t, r), (double)(1000 * i + 100 * j + 10 * k + l));
    tg_tensor_free(t);
  }

  /* 1-d and zero-size Fortran arrays: nothing to transpose */
  npy_put("f-1d.npy", 1, "{'descr': '<i4', 'fortran_order': True, 'shape': (3,), }",
          f2, 12);
  t = tg_npy_load(P("f-1d.npy"));
  ck_assert_msg(t != NULL, "%s", tg_last_error());
  ck_assert_int_eq(tg_tensor_i32(t)[1], 3);
  tg_tensor_free(t);
  npy_put("f-empty.npy", 1, "{'descr': '>f4', 'fortran_order': True, 'shape': (2, 0), }",
          NULL, 0);
  t = tg_npy_load(P("f-empty.npy"));
  ck_assert_msg(t != NULL, "%s", tg_last_error());
  ck_assert_int_eq(tg_tensor_numel(t), 0);
  ck_assert_int_eq(tg_tensor_dim(t, 0), 2);
  tg_tensor_free(t);
}
END_TEST

static const struct {
  const char *label;
  int major;
  const char *hdr;
  size_t dn;
  const char *frag;
} bad_npy[] = {
    {"big-f16", 1, "{'descr': '>f2', 'fortran_order': False, 'shape': (2,), }", 4,
     "descr '>f2' is not supported"},
    {"native-f4", 1, "{'descr': '=f4', 'fortran_order': False, 'shape': (2,), }", 8,
     "descr '=f4' is not supported"},
    {"f16", 1, "{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", 4,
     "descr '<f2' is not supported"},
    {"i64", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", 16,
     "descr '<i8' is not supported"},
    {"u8", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", 2,
     "descr '|u1'"},
    {"structured", 1, "{'descr': [('a', '<f4')], 'fortran_order': False, "
     "'shape': (2,), }", 8, "structured dtypes are not supported"},
    {"fortran-junk", 1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }", 8,
     "fortran_order must be True or False"},
    {"five-dims", 1, "{'descr': '<f4', 'fortran_order': False, "
     "'shape': (1, 1, 1, 1, 1), }", 4, "more than 4 dimensions"},
    {"negative", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 8,
     "dimension 0 is negative"},
    {"no-comma", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", 8,
     "shape (2) is not a tuple"},
    {"fraction", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,), }", 8,
     "expected ',' or ')' in shape, found '.'"},
    {"list-shape", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': [2], }", 8,
     "expected a tuple '(' for shape"},
    {"huge-dim", 1, "{'descr': '<f4', 'fortran_order': False, "
     "'shape': (99999999999999999999,), }", 8, "dimension 0 is too large"},
    {"overflow", 1, "{'descr': '<f4', 'fortran_order': False, "
     "'shape': (4294967296, 4294967296), }", 8, "element count overflows"},
    {"missing-key", 1, "{'descr': '<f4', 'shape': (2,), }", 8,
     "the key 'fortran_order' is missing"},
    {"unknown-key", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), "
     "'x': 1}", 8, "unknown key 'x'"},
    {"dup-key", 1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
     "'shape': (2,)}", 8, "key 'descr' appears twice"},
    {"not-dict", 1, "['descr', '<f4']", 8, "expected a dict '{', found '['"},
    {"after-dict", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", 8,
     "unexpected 'x' after the dict"},
    {"unterminated", 1, "{'descr': '<f4", 8, "unterminated string"},
    {"escape", 1, "{'descr': '<f\\4', 'fortran_order': False, 'shape': (2,)}", 8,
     "unexpected '\\' in descr"},
    {"non-ascii", 1, "{'descr': '<f4', 'fortran_order': False, 'sh\xc3\xa4pe': (2,)}",
     8, "unexpected byte 0xc3 in a key"},
    {"no-colon", 1, "{'descr' '<f4'}", 8, "expected ':' after 'descr'"},
    {"no-close", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", 8,
     "expected ',' or '}', found the end of the header"},
    {"truncated", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }",
     20, "truncated: float32 [3,2] needs 24 data bytes but the file holds 20"},
    {"trailing", 3, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", 12,
     "4 bytes of trailing data after the 8 data bytes of int32 [2]"},
    {"empty-data", 2, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", 0,
     "needs 8 data bytes but the file holds 0"},
};

START_TEST(npy_hostile) {
  static const unsigned char zeros[64];
  for (size_t i = 0; i < sizeof bad_npy / sizeof *bad_npy; i++) {
    npy_put(bad_npy[i].label, bad_npy[i].major, bad_npy[i].hdr, zeros,
            bad_npy[i].dn);
    tg_tensor *t = tg_npy_load(P(bad_npy[i].label));
    ck_assert_msg(t == NULL, "%s: loaded", bad_npy[i].label);
    ck_assert_msg(tg_last_status() == TG_EFORMAT &&
                      strstr(tg_last_error(), bad_npy[i].frag) &&
                      strstr(tg_last_error(), P(bad_npy[i].label)) &&
                      strstr(tg_last_error(), "tg_npy_load"),
                  "%s: status %s, message \"%s\" lacks \"%s\"", bad_npy[i].label,
                  tg_status_name(tg_last_status()), tg_last_error(),
                  bad_npy[i].frag);
  }

  put("empty.npy", "", 0);
  ck_assert_ptr_null(tg_npy_load(P("empty.npy")));
  ck_assert_error_has(TG_EFORMAT, "the file is 0 bytes");
  put("magic.npy", "\x93NUMPZ\x01\x00\x00\x00", 10);
  ck_assert_ptr_null(tg_npy_load(P("magic.npy")));
  ck_assert_error_has(TG_EFORMAT, "not a .npy file");
  put("v4.npy", "\x93NUMPY\x04\x00\x00\x00", 10);
  ck_assert_ptr_null(tg_npy_load(P("v4.npy")));
  ck_assert_error_has(TG_EFORMAT, "format version 4.0 is not supported");
  put("v1.1.npy", "\x93NUMPY\x01\x01\x00\x00", 10);
  ck_assert_ptr_null(tg_npy_load(P("v1.1.npy")));
  ck_assert_error_has(TG_EFORMAT, "format version 1.1");
  put("v2short.npy", "\x93NUMPY\x02\x00\x00\x00", 10);
  ck_assert_ptr_null(tg_npy_load(P("v2short.npy")));
  ck_assert_error_has(TG_EFORMAT, "ends inside its header length");
  put("hlen.npy", "\x93NUMPY\x01\x00\xff\x00{}", 12);
  ck_assert_ptr_null(tg_npy_load(P("hlen.npy")));
  ck_assert_error_has(TG_EFORMAT, "header length 255 is larger than the 2 bytes");
  put("hlen4g.npy", "\x93NUMPY\x02\x00\xff\xff\xff\xff{}", 14);
  ck_assert_ptr_null(tg_npy_load(P("hlen4g.npy")));
  ck_assert_error_has(TG_EFORMAT, "header length 4294967295 is larger than the "
                      "limit of 65536 bytes");
  put("nohdr.npy", "\x93NUMPY\x01\x00\x00\x00", 10);
  ck_assert_ptr_null(tg_npy_load(P("nohdr.npy")));
  ck_assert_error_has(TG_EFORMAT, "bad header at byte 0",
                      "expected a dict '{', found the end of the header");
}
END_TEST

int main(void) {
  make_dir("test_checkpoint");
  Suite *s = suite_create("checkpoint");
  TCase *tc = tcase_create("safetensors");
  tcase_add_test(tc, round_trip);
  tcase_add_test(tc, layout);
  tcase_add_test(tc, foreign_files);
  tcase_add_test(tc, load_into_mismatch);
  tcase_add_test(tc, save_errors);
  tcase_add_test(tc, checksum_mismatch);
  tcase_add_test(tc, hostile_headers);
  tcase_add_test(tc, hostile_lengths);
  tcase_add_test(tc, load_fifo_refused);
  tcase_add_test(tc, json_uses_allocator);
  suite_add_tcase(s, tc);
  TCase *npy = tcase_create("npy");
  tcase_add_test(npy, npy_round_trip);
  tcase_add_test(npy, zero_dims_round_trip);
  tcase_add_test(npy, npy_hostile);
  tcase_add_test(npy, npy_byte_order_and_fortran);
  suite_add_tcase(s, npy);
  TCase *safe = tcase_create("saving safely");
  tcase_set_timeout(safe, 120);
  tcase_add_test(safe, save_full_disk);
  tcase_add_test(safe, save_keeps_mode);
  tcase_add_test(safe, save_onto_non_regular);
  tcase_add_test(safe, save_alloc_failure);
  tcase_add_test(safe, kill_during_save);
  tcase_add_test(safe, stale_temps_removed);
  suite_add_tcase(s, safe);
  int rc = run_suite(s);
  remove_tree(test_dir());
  return rc;
}
