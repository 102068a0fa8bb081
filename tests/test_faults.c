/* tests/test_faults.c: fault injection over a whole training job. A short
 * job (load a gzip'd data set, train a few steps with a chunk merge at a
 * clear, save a checkpoint and a .npy file, load both back) runs once to
 * count its heap allocations, then once more for each of them with the
 * allocator failing there. Every failure must come back as TG_ENOMEM with a
 * message naming a tg_ function, leave nothing allocated and no temporary
 * file behind; the sanitizer build and valgrind see any crash or bad
 * access on the way. cJSON's, zlib's and the checksum's memory go through
 * the same allocator, so their failures are among them. */
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <zlib.h>

#include "testutil.h"

/* The allocator under test: the fail_at-th call (counting from 1) fails;
 * live counts blocks not yet freed. One thread only (see main), so plain
 * counters do. */
static long n_calls, fail_at, live;

static bool fails_now(void) { return ++n_calls == fail_at; }
static void *f_malloc(size_t n) {
  if (fails_now()) return NULL;
  void *p = malloc(n);
  if (p) live++;
  return p;
}
static void *f_calloc(size_t c, size_t n) {
  if (fails_now()) return NULL;
  void *p = calloc(c, n);
  if (p) live++;
  return p;
}
static void *f_realloc(void *p, size_t n) {
  if (fails_now()) return NULL;
  void *q = realloc(p, n);
  if (q && !p) live++;
  return q;
}
static void f_free(void *p) {
  if (p) live--;
  free(p);
}

#define N_ITEMS 128
#define SIDE 8
#define HIDDEN 32
#define BATCH 32
/* A penalty over a [512, 512] float32 tensor takes the step past the
 * arena's first 1 MiB chunk at little cost (valgrind runs this too). */
#define BIG 512

static void put_gz(const char *name, const void *data, size_t n) {
  gzFile g = gzopen(P(name), "wb");
  ck_assert_ptr_nonnull(g);
  ck_assert_int_eq(gzwrite(g, data, (unsigned)n), (int)n);
  ck_assert_int_eq(gzclose(g), Z_OK);
}

static void be32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (24 - 8 * i));
}

/* data/train-{images,labels}-idx?-ubyte: images gzip'd, labels plain. */
static void write_data(void) {
  ck_assert_int_eq(mkdir(P("data"), 0700), 0);
  static unsigned char img[16 + N_ITEMS * SIDE * SIDE], lab[8 + N_ITEMS];
  be32(img, 0x803);
  be32(img + 4, N_ITEMS);
  be32(img + 8, SIDE);
  be32(img + 12, SIDE);
  be32(lab, 0x801);
  be32(lab + 4, N_ITEMS);
  for (int i = 0; i < N_ITEMS; i++) {
    lab[8 + i] = (unsigned char)(i % 10);
    for (int k = 0; k < SIDE * SIDE; k++)
      img[16 + i * SIDE * SIDE + k] = (unsigned char)((k * 7 + i * (i % 10)) & 0xff);
  }
  put_gz("data/train-images-idx3-ubyte.gz", img, sizeof img);
  put("data/train-labels-idx1-ubyte", lab, sizeof lab);
}

/* What the job saw, for the checks after it. */
typedef struct {
  const char *failed; /* the call that failed, or NULL */
  int merges;         /* clears that found more than one arena chunk */
  double loss;
} job_result;

#define TRY(call, what)  \
  do {                   \
    rc = (call);         \
    if (rc != TG_OK) {   \
      r->failed = (what); \
      goto out;          \
    }                    \
  } while (0)
#define TRY_PTR(ptr, what)                                    \
  do {                                                        \
    if (!(ptr)) {                                             \
      rc = tg_last_status() ? tg_last_status() : TG_EINVAL; \
      r->failed = (what);                                     \
      goto out;                                               \
    }                                                         \
  } while (0)

/* The job. Returns its status; everything it made is freed either way. */
static int job(job_result *r) {
  memset(r, 0, sizeof *r);
  tg_tensor *x = NULL, *y = NULL, *back = NULL, *big = NULL;
  tg_dense *l1 = NULL, *l2 = NULL;
  tg_optim *opt = NULL;
  tg_batcher *b = NULL;
  tg_tape *t = NULL;
  tg_checkpoint *ck = NULL;
  int rc;
  tg_clear_error();
  TRY(tg_mnist_load(P("data"), "train", &x, &y), "tg_mnist_load");
  tg_rng rng;
  tg_rng_seed(&rng, 7);
  big = tg_zeros(TG_F32, TG_SHAPE(BIG, BIG));
  TRY_PTR(big, "tg_zeros");
  TRY(tg_fill_uniform(big, &rng, -1, 1), "tg_fill_uniform");
  l1 = tg_dense_new(SIDE * SIDE, HIDDEN, TG_F32, TG_ACT_RELU, &rng);
  TRY_PTR(l1, "tg_dense_new");
  l2 = tg_dense_new(HIDDEN, 10, TG_F32, TG_ACT_NONE, &rng);
  TRY_PTR(l2, "tg_dense_new");
  tg_tensor *params[4];
  int np = tg_dense_params(l1, params);
  np += tg_dense_params(l2, params + np);
  tg_adam_config cfg = TG_ADAM_DEFAULTS;
  opt = tg_adam_new(params, np, &cfg);
  TRY_PTR(opt, "tg_adam_new");
  b = tg_batcher_new(x, y, BATCH, 3);
  TRY_PTR(b, "tg_batcher_new");
  t = tg_tape_new();
  TRY_PTR(t, "tg_tape_new");
  for (int epoch = 0; epoch < 1; epoch++) {
    TRY(tg_batcher_shuffle(b), "tg_batcher_shuffle");
    tg_tensor *bx, *by;
    int got;
    while ((got = tg_batcher_next(b, &bx, &by)) == 1) {
      tg_tensor *h = tg_dense_act(t, l1, bx, TG_ACT_RELU);
      tg_tensor *nll = tg_softmax_nll(t, tg_dense_forward(t, l2, h), by);
      tg_tensor *pen = tg_sum(t, tg_square(t, tg_scale(t, big, 1e-3)));
      tg_tensor *loss = tg_add(t, nll, pen);
      /* a NULL loss returns the failed op's status */
      TRY(tg_backward(t, loss), "forward or tg_backward");
      r->loss = tg_get(loss, 0);
      TRY(tg_optim_step(opt), "tg_optim_step");
      TRY(tg_optim_zero_grad(opt), "tg_optim_zero_grad");
      if (t->n_chunks > 1) r->merges++;
      tg_tape_clear(t);
    }
    TRY(got, "tg_batcher_next");
  }
  const char *names[6] = {"l1.W", "l1.b", "l2.W", "l2.b", "l1.W.m", "l1.W.v"};
  tg_tensor *save[6] = {params[0], params[1], params[2], params[3]};
  TRY(tg_optim_state(opt, 0, &save[4], &save[5]), "tg_optim_state");
  TRY(tg_save(P("ckpt.st"), names, save, 6,
              (const char *[]){"epoch", "2", "graph", "mlp", NULL}),
      "tg_save");
  ck = tg_checkpoint_open(P("ckpt.st"));
  TRY_PTR(ck, "tg_checkpoint_open");
  if (!tg_checkpoint_verified(ck) || !tg_checkpoint_meta(ck, "graph") ||
      tg_checkpoint_count(ck) != 6) {
    rc = TG_EFORMAT;
    r->failed = "the checkpoint read back";
    goto out;
  }
  TRY(tg_load_into(P("ckpt.st"), names, params, 4), "tg_load_into");
  TRY(tg_npy_save(P("w.npy"), params[2]), "tg_npy_save");
  back = tg_npy_load(P("w.npy"));
  TRY_PTR(back, "tg_npy_load");
  rc = TG_OK;
out:
  tg_tensor_free(back);
  tg_tensor_free(big);
  tg_checkpoint_close(ck);
  tg_tape_free(t);
  tg_batcher_free(b);
  tg_optim_free(opt);
  tg_dense_free(l1);
  tg_dense_free(l2);
  tg_tensor_free(x);
  tg_tensor_free(y);
  return rc;
}

/* Files in test_dir() that a save left half-done. */
static int temp_files(void) {
  DIR *d = opendir(test_dir());
  ck_assert_ptr_nonnull(d);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d))) n += strstr(e->d_name, ".tg-tmp.") != NULL;
  closedir(d);
  return n;
}

static int run(long fail) {
  n_calls = live = 0;
  fail_at = fail;
  ck_assert_int_eq(tg_set_allocator(f_malloc, f_realloc, f_calloc, f_free), TG_OK);
  job_result r;
  int rc = job(&r);
  long leaked = live;
  tg_set_allocator(malloc, realloc, calloc, free);
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", tg_last_error());
  ck_assert_msg(leaked == 0, "allocation %ld failing: %ld blocks left allocated "
                "(status %s, %s: %s)", fail, leaked, tg_status_name(rc),
                r.failed ? r.failed : "-", msg);
  ck_assert_msg(temp_files() == 0, "allocation %ld failing: a temporary file "
                "was left", fail);
  if (rc != TG_OK) {
    ck_assert_msg(fail > 0, "no allocation failed, but %s returned %s: %s",
                  r.failed, tg_status_name(rc), msg);
    ck_assert_msg(rc == TG_ENOMEM && strstr(msg, "tg_"),
                  "allocation %ld failing: %s returned %s with message \"%s\"",
                  fail, r.failed, tg_status_name(rc), msg);
    ck_assert_msg(tg_last_status() == TG_ENOMEM, "allocation %ld failing: "
                  "last status %s", fail, tg_status_name(tg_last_status()));
  } else {
    ck_assert_msg(isfinite(r.loss), "allocation %ld failing: loss %g", fail,
                  r.loss);
  }
  return rc;
}

START_TEST(every_allocation_fails_cleanly) {
  write_data();
  /* once without a failure: the allocation points, and a check that the
   * job does what it is meant to */
  job_result r;
  n_calls = live = 0;
  fail_at = 0;
  ck_assert_int_eq(tg_set_allocator(f_malloc, f_realloc, f_calloc, f_free), TG_OK);
  int rc = job(&r);
  long total = n_calls;
  tg_set_allocator(malloc, realloc, calloc, free);
  ck_assert_msg(rc == TG_OK, "%s: %s", r.failed, tg_last_error());
  ck_assert_int_eq(live, 0);
  ck_assert_int_ge(r.merges, 1);
  ck_assert(isfinite(r.loss));
  ck_assert_int_gt(total, 50);
  long failed = 0;
  for (long k = 1; k <= total; k++) {
    if (run(k) != TG_OK) failed++;
    ck_assert_msg(n_calls >= k, "allocation %ld was never reached (%ld calls)",
                  k, n_calls);
  }
  /* A few are absorbed by design: a clear whose merge of the chunks finds
   * no memory keeps none (the next step grows the arena again), and a
   * product without its packing buffer falls back to the plain loops. The
   * rest must surface. */
  ck_assert_msg(failed > total / 2, "%ld of %ld failures surfaced", failed, total);
  fprintf(stderr, "test_faults: %ld allocation points, %ld failures surfaced\n",
              total, failed);
  /* and the same job runs again with a working allocator */
  ck_assert_int_eq(run(0), TG_OK);
}
END_TEST

int main(void) {
  /* The kernels' worker threads keep packing buffers of their own until
   * they end; one thread keeps every allocation on this one. */
  tg_set_num_threads(1);
  make_dir("test_faults");
  Suite *s = suite_create("faults");
  TCase *tc = tcase_create("allocation failures");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, every_allocation_fails_cleanly);
  suite_add_tcase(s, tc);
  int rc = run_suite(s);
  remove_tree(test_dir());
  return rc;
}
