/* examples/charlm.c: tapegrad-charlm, trains the GPT-style character model
 * of charlm.h on a text (the Brown corpus from scripts/fetch-brown, or a
 * built-in line), reports train and validation loss, and samples text from
 * it. Run with --help for the options. Under mpirun it trains
 * data-parallel (the hooks marked "dist"): each batch split into P shards,
 * the gradients averaged, rank 0 alone printing and writing. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "charlm.h"
#include "cli.h"

#define PROG "tapegrad-charlm"

typedef struct {
  charlm_config model;
  const char *data_dir, *log_path, *plot_path, *save_path, *resume_path, *prompt;
  long steps, stop_at, batch, warmup, eval_every, eval_batches, sample;
  double lr, min_lr, weight_decay, clip, temperature;
  int threads, quiet, builtin, profile;
  uint64_t seed;
} options;

typedef struct {
  double step, train, val, tokens_per_s, seconds;
} eval_row;
enum { ROW_COLS = 5 };

static void usage(FILE *f) {
  fprintf(f,
          "usage: " PROG " [options]\n"
          "model:\n"
          "  --layers N  --heads N  --width N  (default 4, 4, 128)\n"
          "  --context N                   longest sequence, in bytes (default 128)\n"
          "  --vocab N                     bytes 0..N-1 are tokens (default 256; 128 for ASCII)\n"
          "  --untied                      an output layer of its own (default: tied to wte)\n"
          "  --dropout X                   in [0, 1) (default 0)\n"
          "training (AdamW, warmup then cosine, clipping by the global norm):\n"
          "  --steps N                     (default 2000; 0 with --resume: only sample)\n"
          "  --stop-at N                   stop after step N of the run (resume it later)\n"
          "  --batch N                     sequences per step (default 32)\n"
          "  --lr X  --min-lr X            peak and final learning rate (default 1e-3, lr/10)\n"
          "  --warmup N                    steps of linear warmup (default 100, at most --steps)\n"
          "  --weight-decay X              decoupled, as AdamW (default 0.1)\n"
          "  --clip X                      largest gradient norm (default 1)\n"
          "  --eval-every N  --eval-batches N  (default 200, 20)\n"
          "  --seed N  --threads N\n"
          "data:\n"
          "  --data-dir DIR                train.txt and val.txt (default data/brown)\n"
          "  --builtin                     a short built-in text instead (for tests)\n"
          "output:\n"
          "  --log FILE.csv  --plot FILE.svg  one row / point per evaluation\n"
          "  --save FILE                   checkpoint (safetensors) at each evaluation\n"
          "  --resume FILE                 continue a run from its checkpoint, bit for bit\n"
          "  --sample N                    generate N bytes at the end\n"
          "  --prompt TEXT                 start of the sample (at most --context bytes)\n"
          "  --temperature X               >= 0; 0 picks the likeliest byte (default 1)\n"
          "  --profile                     time each op; print where a step's time and memory go\n"
          "  --quiet  --help\n");
}

static int bad(const char *what, const char *arg) {
  invalid_option(PROG, what, arg);
  usage(stderr);
  return 2;
}

/* Returns 0 to go on, -1 to stop with success (--help), or the exit status. */
static int parse_args(int argc, char **argv, options *o) {
  *o = (options){.model = {.vocab = 256, .layers = 4, .heads = 4, .width = 128,
                           .context = 128, .tied = true, .dropout = 0,
                           .dtype = TG_F32},
                 .data_dir = "data/brown", .prompt = "", .steps = 2000, .batch = 32,
                 .warmup = -1, .eval_every = 200, .eval_batches = 20, .lr = 1e-3,
                 .min_lr = -1, .weight_decay = 0.1, .clip = 1, .temperature = 1,
                 .seed = 1};
  enum { O_LAYERS = 256, O_HEADS, O_WIDTH, O_CONTEXT, O_VOCAB, O_UNTIED, O_DROPOUT,
         O_STEPS, O_STOP, O_BATCH, O_LR, O_MINLR, O_WARMUP, O_WD, O_CLIP, O_EVERY, O_EVB,
         O_SEED, O_THREADS, O_DATA, O_BUILTIN, O_LOG, O_PLOT, O_SAVE, O_RESUME,
         O_SAMPLE, O_PROMPT, O_TEMP, O_QUIET, O_PROFILE, O_HELP };
  static const struct option longopts[] = {
      {"layers", required_argument, 0, O_LAYERS}, {"heads", required_argument, 0, O_HEADS},
      {"width", required_argument, 0, O_WIDTH}, {"context", required_argument, 0, O_CONTEXT},
      {"vocab", required_argument, 0, O_VOCAB}, {"untied", no_argument, 0, O_UNTIED},
      {"dropout", required_argument, 0, O_DROPOUT}, {"steps", required_argument, 0, O_STEPS},
      {"stop-at", required_argument, 0, O_STOP},
      {"batch", required_argument, 0, O_BATCH}, {"lr", required_argument, 0, O_LR},
      {"min-lr", required_argument, 0, O_MINLR}, {"warmup", required_argument, 0, O_WARMUP},
      {"weight-decay", required_argument, 0, O_WD}, {"clip", required_argument, 0, O_CLIP},
      {"eval-every", required_argument, 0, O_EVERY},
      {"eval-batches", required_argument, 0, O_EVB}, {"seed", required_argument, 0, O_SEED},
      {"threads", required_argument, 0, O_THREADS},
      {"data-dir", required_argument, 0, O_DATA}, {"builtin", no_argument, 0, O_BUILTIN},
      {"log", required_argument, 0, O_LOG}, {"plot", required_argument, 0, O_PLOT},
      {"save", required_argument, 0, O_SAVE}, {"resume", required_argument, 0, O_RESUME},
      {"sample", required_argument, 0, O_SAMPLE}, {"prompt", required_argument, 0, O_PROMPT},
      {"temperature", required_argument, 0, O_TEMP}, {"quiet", no_argument, 0, O_QUIET},
      {"profile", no_argument, 0, O_PROFILE},
      {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
  int c;
  long v;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    const char *a = optarg;
    switch (c) {
#define INT_OPT(code, name, lo, hi, dst) \
  case code: if (parse_long(a, lo, hi, &v)) return bad(name, a); dst = v; break;
      INT_OPT(O_LAYERS, "--layers", 1, CHARLM_MAX_LAYERS, o->model.layers)
      INT_OPT(O_HEADS, "--heads", 1, 4096, o->model.heads)
      INT_OPT(O_WIDTH, "--width", 1, 1 << 16, o->model.width)
      INT_OPT(O_CONTEXT, "--context", 1, 1 << 16, o->model.context)
      INT_OPT(O_VOCAB, "--vocab", 2, 256, o->model.vocab)
      INT_OPT(O_STEPS, "--steps", 0, 1L << 40, o->steps)
      INT_OPT(O_STOP, "--stop-at", 1, 1L << 40, o->stop_at)
      INT_OPT(O_BATCH, "--batch", 1, 1 << 20, o->batch)
      INT_OPT(O_WARMUP, "--warmup", 0, 1L << 40, o->warmup)
      INT_OPT(O_EVERY, "--eval-every", 1, 1L << 40, o->eval_every)
      INT_OPT(O_EVB, "--eval-batches", 1, 1 << 20, o->eval_batches)
      INT_OPT(O_THREADS, "--threads", 1, 4096, o->threads)
      INT_OPT(O_SAMPLE, "--sample", 0, 1L << 30, o->sample)
#undef INT_OPT
    case O_SEED: if (parse_long(a, 0, LONG_MAX, &v)) return bad("--seed", a);
      o->seed = (uint64_t)v; break;
    case O_UNTIED: o->model.tied = false; break;
    case O_DROPOUT:
      if (parse_double(a, 0, 0.999, &o->model.dropout)) return bad("--dropout", a);
      break;
    case O_LR: if (parse_double(a, 1e-12, 10, &o->lr)) return bad("--lr", a); break;
    case O_MINLR: if (parse_double(a, 0, 10, &o->min_lr)) return bad("--min-lr", a); break;
    case O_WD: if (parse_double(a, 0, 100, &o->weight_decay)) return bad("--weight-decay", a); break;
    case O_CLIP: if (parse_double(a, 1e-12, 1e12, &o->clip)) return bad("--clip", a); break;
    case O_TEMP: if (parse_double(a, 0, 1e6, &o->temperature)) return bad("--temperature", a); break;
    case O_DATA: o->data_dir = a; break;
    case O_BUILTIN: o->builtin = 1; break;
    case O_LOG: o->log_path = a; break;
    case O_PLOT: o->plot_path = a; break;
    case O_SAVE: o->save_path = a; break;
    case O_RESUME: o->resume_path = a; break;
    case O_PROMPT: o->prompt = a; break;
    case O_QUIET: o->quiet = 1; break;
    case O_PROFILE: o->profile = 1; break;
    case O_HELP: usage(stdout); return -1;
    default:
      fprintf(stderr, PROG ": unknown or incomplete option '%s'\n", argv[optind - 1]);
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) return bad("argument", argv[optind]);
  const char *why = charlm_config_error(&o->model);
  if (why) {
    fprintf(stderr, PROG ": %s\n", why);
    return 2;
  }
  if (o->min_lr < 0) o->min_lr = o->lr / 10;
  if (o->min_lr > o->lr) {
    fprintf(stderr, PROG ": --min-lr %g is above --lr %g\n", o->min_lr, o->lr);
    return 2;
  }
  if (o->warmup < 0) o->warmup = o->steps < 100 ? o->steps / 10 : 100;
  if (o->warmup > o->steps) {
    fprintf(stderr, PROG ": --warmup %ld is more than --steps %ld\n", o->warmup, o->steps);
    return 2;
  }
  if (o->stop_at > o->steps) {
    fprintf(stderr, PROG ": --stop-at %ld is beyond --steps %ld\n", o->stop_at, o->steps);
    return 2;
  }
  if (o->steps == 0 && o->save_path) {
    fprintf(stderr, PROG ": --save needs steps to train (--steps 0 only samples)\n");
    return 2;
  }
  /* The prompt is checked here, before any data is read or any step taken. */
  size_t plen = strlen(o->prompt);
  if (plen > (size_t)o->model.context) {
    fprintf(stderr, PROG ": the prompt is %zu bytes, longer than the context of %d\n",
            plen, o->model.context);
    return 2;
  }
  for (size_t i = 0; i < plen; i++)
    if ((unsigned char)o->prompt[i] >= o->model.vocab) {
      fprintf(stderr, PROG ": the prompt's byte %zu is 0x%02x, outside the vocabulary "
              "of %d bytes\n", i, (unsigned char)o->prompt[i], o->model.vocab);
      return 2;
    }
  const char *outs[][2] = {{"--log", o->log_path}, {"--plot", o->plot_path},
                           {"--save", o->save_path}};
  for (int i = 0; i < 3; i++)
    if (outs[i][1] && check_output(PROG, outs[i][0], outs[i][1])) return 2;
  return 0;
}

/* --- data: any bytes; a byte outside the vocabulary is an error. */

static const char builtin_line[] =
    "a tiny transformer learns this line by heart, one byte after another. ";

static uint8_t *builtin_text(size_t *n) {
  size_t len = sizeof builtin_line - 1, reps = 64;
  uint8_t *t = malloc(len * reps);
  if (!t) return NULL;
  for (size_t r = 0; r < reps; r++) memcpy(t + r * len, builtin_line, len);
  *n = len * reps;
  return t;
}

enum { ERR_LEN = 160 };

/* Reads a whole regular file (a FIFO or device is refused unread: it could
 * block forever), checking that it has more than context bytes and that
 * every byte is a token. NULL with the message in err on error (err is
 * what every rank of a job hears of it). */
static uint8_t *load_text(const char *path, const options *o, size_t *n, char *err) {
  int fd = open(path, O_RDONLY | O_NONBLOCK);
  struct stat st;
  if (fd < 0 || fstat(fd, &st)) {
    snprintf(err, ERR_LEN, PROG ": cannot read %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(err, ERR_LEN, PROG ": %s: not a regular file", path);
    close(fd);
    return NULL;
  }
  if ((uint64_t)st.st_size <= (uint64_t)o->model.context ||
      (uint64_t)st.st_size > ((uint64_t)1 << 40)) {
    snprintf(err, ERR_LEN, PROG ": %s holds %lld bytes; it needs more than the context (%d) "
            "and at most 2^40", path, (long long)st.st_size, o->model.context);
    close(fd);
    return NULL;
  }
  size_t size = (size_t)st.st_size, got = 0;
  uint8_t *buf = malloc(size);
  if (!buf) {
    snprintf(err, ERR_LEN, PROG ": out of memory for %s (%zu bytes)", path, size);
    close(fd);
    return NULL;
  }
  while (got < size) {
    ssize_t r = read(fd, buf + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  if (got != size) {
    snprintf(err, ERR_LEN, PROG ": %s: read %zu of its %zu bytes", path, got, size);
    free(buf);
    return NULL;
  }
  for (size_t i = 0; i < size; i++)
    if (buf[i] >= o->model.vocab) {
      snprintf(err, ERR_LEN, PROG ": %s: byte %zu is 0x%02x, outside the vocabulary of %d "
              "bytes (see --vocab)", path, i, buf[i], o->model.vocab);
      free(buf);
      return NULL;
    }
  *n = size;
  return buf;
}

static void progress(long step, long steps, double tok_per_s, double eta) {
  char label[64];
  snprintf(label, sizeof label, "step %ld/%ld", step, steps);
  tg_progress(stderr, label, step, steps, tok_per_s, "tokens", eta);
}

/* This rank's share of the mean loss over eval_batches batches from a fixed
 * stream (the same windows at every evaluation), recording and dropout off:
 * every rank draws the whole batches into x, y and scores its shard xs, ys
 * of them (x, y themselves in one process), each batch's shard loss
 * weighed by its share of the batch, so the ranks' results sum (tg_dist_sum)
 * to the mean over the whole batches. NaN on error. */
static double evaluate(tg_tape *t, charlm *m, const uint8_t *text, size_t n,
                       long batches, uint64_t seed, tg_tensor *x, tg_tensor *y,
                       tg_tensor *xs, tg_tensor *ys) {
  tg_rng rng;
  tg_rng_seed(&rng, seed);
  bool was = tg_tape_set_grad(t, false);
  const double w = (double)tg_tensor_dim(xs, 0) / (double)tg_tensor_dim(x, 0);
  double sum = 0;
  for (long b = 0; b < batches; b++) {
    charlm_batch(text, n, &rng, x, y);
    tg_tensor *loss = charlm_loss(t, m, xs, ys, NULL, false);
    if (!loss) {
      tg_tape_set_grad(t, was);
      return NAN;
    }
    sum += tg_get(loss, 0) * w;
    tg_tape_clear(t);
  }
  tg_tape_set_grad(t, was);
  return sum / (double)batches;
}

/* --- outputs: replaced atomically (tg_textfile), so a reader never sees
 * half a file. */

static int write_csv(const char *path, const eval_row *r, int n) {
  tg_textfile *tf = tg_textfile_open(path);
  if (tf) {
    FILE *f = tg_textfile_stream(tf);
    fprintf(f, "step,train_loss,val_loss,tokens_per_s,seconds\n");
    for (int i = 0; i < n; i++)
      fprintf(f, "%.0f,%.6f,%.6f,%.0f,%.3f\n", r[i].step, r[i].train, r[i].val,
              r[i].tokens_per_s, r[i].seconds);
    if (!tg_textfile_commit(tf)) return 0;
  }
  fprintf(stderr, PROG ": cannot write %s: %s\n", path, tg_last_error());
  return -1;
}

/* Train and validation loss against the step, in nats per byte. */
static int write_svg(const char *path, const eval_row *r, int n, const char *title) {
  double *v = malloc(3 * (size_t)(n > 0 ? n : 1) * sizeof *v);
  int rc = -1;
  if (v) {
    for (int i = 0; i < n; i++) v[i] = r[i].step, v[n + i] = r[i].train, v[2 * n + i] = r[i].val;
    const tg_series loss[] = {{"train", v, v + n, n, 1}, {"validation", v, v + 2 * n, n, 1}};
    const tg_chart chart = {NULL, "step", "loss (nats per byte)", loss, 2, true};
    rc = tg_chart_svg_save(path, title, &chart, 1);
    free(v);
  }
  if (rc) fprintf(stderr, PROG ": cannot write %s: %s\n", path, tg_last_error());
  return rc ? -1 : 0;
}

/* --- checkpoints: parameters, AdamW's moments, the evaluations so far, the
 * two random streams, and the settings that must match on resume. */

#define MODEL_KEYS(X)                                                          \
  X("vocab", "%d", o->model.vocab) X("layers", "%d", o->model.layers)         \
  X("heads", "%d", o->model.heads) X("width", "%d", o->model.width)           \
  X("context", "%d", o->model.context) X("tied", "%d", (int)o->model.tied)
#define TRAIN_KEYS(X)                                                          \
  X("steps", "%ld", o->steps) X("batch", "%ld", o->batch)                     \
  X("seed", "%" PRIu64, o->seed) X("lr", "%.17g", o->lr)                      \
  X("min_lr", "%.17g", o->min_lr) X("warmup", "%ld", o->warmup)               \
  X("weight_decay", "%.17g", o->weight_decay) X("clip", "%.17g", o->clip)     \
  X("dropout", "%.17g", o->model.dropout) X("eval_every", "%ld", o->eval_every) \
  X("data", "%s", o->builtin ? "builtin" : "files")                           \
  X("train_bytes", "%zu", train_bytes)

enum { MAX_KEYS = 32, VAL_LEN = 64 };

typedef struct {
  int n;
  const char *names[3 * (5 + 12 * CHARLM_MAX_LAYERS) + 1];
  tg_tensor *tensors[3 * (5 + 12 * CHARLM_MAX_LAYERS) + 1];
  char buf[2 * (5 + 12 * CHARLM_MAX_LAYERS)][CHARLM_NAME_LEN + 8];
} saved_set;

/* Parameters under their own names, then "optim.NAME.m" and ".v". */
static void collect(const charlm *m, tg_optim *opt, saved_set *s) {
  s->n = 0;
  for (int i = 0; i < m->n_params; i++) {
    s->names[s->n] = m->name_ptrs[i];
    s->tensors[s->n++] = m->params[i];
  }
  int k = 0;
  for (int i = 0; opt && i < m->n_params; i++) {
    tg_tensor *b[2] = {NULL, NULL};
    tg_optim_state(opt, i, &b[0], &b[1]);
    for (int j = 0; j < 2; j++) {
      snprintf(s->buf[k], sizeof s->buf[k], "optim.%s.%c", m->names[i], j ? 'v' : 'm');
      s->names[s->n] = s->buf[k++];
      s->tensors[s->n++] = b[j];
    }
  }
}

static void rng_hex(const tg_rng *r, char *out, size_t cap) {
  snprintf(out, cap, "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64, r->s[0],
           r->s[1], r->s[2], r->s[3]);
}

static int rng_parse(const char *s, tg_rng *r) {
  if (!s || strlen(s) != 64) return -1;
  for (int i = 0; i < 4; i++) {
    char part[17];
    memcpy(part, s + 16 * i, 16);
    part[16] = '\0';
    char *end;
    errno = 0;
    r->s[i] = strtoull(part, &end, 16);
    if (errno || *end) return -1;
  }
  return 0;
}

static int save_checkpoint(const options *o, const charlm *m, tg_optim *opt,
                           const eval_row *rows, int n_rows, size_t train_bytes,
                           long step, const tg_rng *batch_rng, const tg_rng *drop_rng) {
  saved_set *s = malloc(sizeof *s);
  tg_tensor *hist = tg_zeros(TG_F64, TG_SHAPE(n_rows, ROW_COLS));
  int rc = -1;
  if (!s || !hist) goto out;
  memcpy(tg_tensor_f64(hist), rows, (size_t)n_rows * sizeof *rows);
  collect(m, opt, s);
  s->names[s->n] = "history";
  s->tensors[s->n] = hist;
  char vals[MAX_KEYS][VAL_LEN], rb[VAL_LEN + 8], rd[VAL_LEN + 8];
  const char *meta[2 * MAX_KEYS + 1];
  int k = 0;
#define PUT(key, fmt, v) \
  snprintf(vals[k / 2], VAL_LEN, fmt, v), meta[k++] = key, meta[k] = vals[k / 2], k++;
  MODEL_KEYS(PUT) TRAIN_KEYS(PUT) PUT("step", "%ld", step)
#undef PUT
  rng_hex(batch_rng, rb, sizeof rb);
  rng_hex(drop_rng, rd, sizeof rd);
  meta[k++] = "rng_batch", meta[k++] = rb;
  meta[k++] = "rng_dropout", meta[k++] = rd;
  meta[k] = NULL;
  rc = tg_save(o->save_path, s->names, s->tensors, s->n + 1, meta);
  if (rc) fprintf(stderr, PROG ": %s\n", tg_last_error());
out:
  free(s);
  tg_tensor_free(hist);
  return rc;
}

/* Loads a checkpoint: the model only when no steps are asked for, else the
 * whole state of a run with the same settings. Returns the step it had
 * reached (0 for a model-only load) or -1 with a message. */
static long resume(const options *o, charlm *m, tg_optim *opt, size_t train_bytes,
                   eval_row **rows, int *n_rows, int *max_rows, tg_rng *batch_rng,
                   tg_rng *drop_rng) {
  tg_checkpoint *ck = tg_checkpoint_open(o->resume_path);
  if (!ck) {
    fprintf(stderr, PROG ": %s\n", tg_last_error());
    return -1;
  }
  long step = -1;
  char want[VAL_LEN];
  saved_set *s = NULL;
#define CHECK(key, fmt, v, what)                                                  \
  snprintf(want, sizeof want, fmt, v);                                           \
  if (!tg_checkpoint_meta(ck, key) || strcmp(tg_checkpoint_meta(ck, key), want)) { \
    fprintf(stderr, PROG ": %s: %s does not match the checkpoint: saved with %s %s, " \
            "this run has %s\n", o->resume_path, what, key,                       \
            tg_checkpoint_meta(ck, key) ? tg_checkpoint_meta(ck, key) : "(none)", want); \
    goto out;                                                                     \
  }
#define CHECK_MODEL(key, fmt, v) CHECK(key, fmt, v, "the model's shape")
#define CHECK_TRAIN(key, fmt, v) CHECK(key, fmt, v, "the run's settings")
  MODEL_KEYS(CHECK_MODEL)
  s = malloc(sizeof *s);
  if (!s) goto out;
  if (o->steps == 0) { /* the model alone, to sample from */
    if (tg_load_into(o->resume_path, m->name_ptrs, m->params, m->n_params)) {
      fprintf(stderr, PROG ": %s\n", tg_last_error());
      goto out;
    }
    step = 0;
    goto out;
  }
  TRAIN_KEYS(CHECK_TRAIN)
  long saved;
  const char *st = tg_checkpoint_meta(ck, "step");
  tg_tensor *hist = tg_checkpoint_get(ck, "history");
  if (!st || parse_long(st, 1, o->steps, &saved) || !hist ||
      tg_tensor_dtype(hist) != TG_F64 || tg_tensor_ndim(hist) != 2 ||
      tg_tensor_dim(hist, 1) != ROW_COLS || tg_tensor_dim(hist, 0) > saved ||
      rng_parse(tg_checkpoint_meta(ck, "rng_batch"), batch_rng) ||
      rng_parse(tg_checkpoint_meta(ck, "rng_dropout"), drop_rng)) {
    fprintf(stderr, PROG ": %s: not a checkpoint of " PROG " (its step, history or "
            "random streams are missing or malformed)\n", o->resume_path);
    goto out;
  }
  collect(m, opt, s);
  if (tg_load_into(o->resume_path, s->names, s->tensors, s->n) ||
      tg_optim_set_steps(opt, saved)) {
    fprintf(stderr, PROG ": %s\n", tg_last_error());
    goto out;
  }
  /* one row per evaluated step, so at most the step reached, plus room */
  int need = (int)tg_tensor_dim(hist, 0);
  if (need + 2 > *max_rows) {
    eval_row *grown = realloc(*rows, (size_t)(need + 2) * sizeof **rows);
    if (!grown) {
      fprintf(stderr, PROG ": out of memory for the history\n");
      goto out;
    }
    *rows = grown;
    *max_rows = need + 2;
  }
  *n_rows = need;
  memcpy(*rows, tg_tensor_f64(hist), (size_t)need * sizeof **rows);
  step = saved;
out:
#undef CHECK
#undef CHECK_MODEL
#undef CHECK_TRAIN
  free(s);
  tg_checkpoint_close(ck);
  return step;
}

/* --- sampling: the prompt (or a newline), then n bytes, each drawn from the
 * softmax of the last position's logits divided by the temperature (the
 * likeliest byte at temperature 0), the window cut to the context. */
static int sample(charlm *m, tg_tape *t, const options *o) {
  const int ctx = m->cfg.context, V = m->cfg.vocab;
  size_t plen = strlen(o->prompt), len = 0, cap = plen + (size_t)o->sample + 1;
  int32_t *seq = malloc(cap * sizeof *seq);
  double *p = malloc((size_t)V * sizeof *p);
  if (!seq || !p) {
    free(seq);
    free(p);
    fprintf(stderr, PROG ": out of memory for the sample\n");
    return -1;
  }
  if (plen == 0) seq[len++] = V > '\n' ? '\n' : 0;
  for (size_t i = 0; i < plen; i++) seq[len++] = (unsigned char)o->prompt[i];
  fwrite(o->prompt, 1, plen, stdout);
  tg_rng rng;
  tg_rng_seed(&rng, o->seed + 3);
  bool was = tg_tape_set_grad(t, false);
  int rc = 0;
  for (long k = 0; k < o->sample; k++) {
    size_t w = len < (size_t)ctx ? len : (size_t)ctx;
    tg_tensor *x = tg_tensor_from(TG_I32, TG_SHAPE(1, (int64_t)w), seq + len - w);
    tg_tensor *z = x ? charlm_logits(t, m, x, NULL, false, NULL) : NULL;
    if (!z) {
      fprintf(stderr, PROG ": %s\n", tg_last_error());
      tg_tensor_free(x);
      rc = -1;
      break;
    }
    const int64_t row = ((int64_t)w - 1) * V;
    int best = 0;
    double mx = -INFINITY;
    for (int j = 0; j < V; j++) {
      p[j] = tg_get(z, row + j);
      if (p[j] > mx) mx = p[j], best = j;
    }
    int next = best;
    if (o->temperature > 0) {
      double sum = 0;
      for (int j = 0; j < V; j++) sum += p[j] = exp((p[j] - mx) / o->temperature);
      double u = tg_rng_uniform(&rng) * sum;
      for (next = 0; next < V - 1 && (u -= p[next]) >= 0; next++) {}
    }
    seq[len++] = next;
    putchar(next);
    tg_tensor_free(x);
    tg_tape_clear(t);
  }
  putchar('\n');
  fflush(stdout);
  tg_tape_set_grad(t, was);
  free(seq);
  free(p);
  return rc;
}

/* --- --profile: the steps after the first (the arena grows in the first),
 * their kernels timed by the tape, the optimizer's step by the clock here. */
typedef struct {
  long steps;
  double step_s, optim_s;
} step_profile;

static bool is_product(const char *op) {
  return !strcmp(op, "matmul") || !strcmp(op, "matmul_ex") || !strcmp(op, "linear");
}

static int print_profile(const tg_tape *t, const step_profile *p) {
  tg_profile_entry e[TG_PROFILE_MAX_ENTRIES];
  int n = tg_tape_profile(t, e, TG_PROFILE_MAX_ENTRIES);
  if (n < 0) return -1;
  if (!p->steps) {
    printf("profile: no step after the first to time\n");
    return 0;
  }
  printf("profile: totals over steps 2 to %ld (%ld steps)\n", p->steps + 1, p->steps);
  if (tg_tape_profile_print(t, stdout)) return -1;
  double mm = 0, att = 0, rest = 0;
  for (int i = 0; i < n; i++) {
    double s = e[i].forward_seconds + e[i].backward_seconds;
    if (is_product(e[i].op))
      mm += s;
    else if (e[i].region && !strcmp(e[i].region, "attention"))
      att += s;
    else
      rest += s;
  }
  const double all = p->step_s, outside = all - mm - att - rest - p->optim_s;
  printf("profile: step %.1f ms: matmuls %.1f%%, attention (other ops) %.1f%%, rest %.1f%%, "
         "optimizer %.1f%%, outside kernels %.1f%%\n", 1e3 * all / (double)p->steps,
         100 * mm / all, 100 * att / all, 100 * rest / all, 100 * p->optim_s / all,
         100 * outside / all);
  struct rusage ru;
  double rss = getrusage(RUSAGE_SELF, &ru) ? NAN : (double)ru.ru_maxrss / 1024; /* KiB */
  printf("profile: memory: tape arena peak %.1f MiB of %.1f MiB held; process peak RSS "
         "%.1f MiB\n", (double)tg_tape_arena_peak(t) / (1 << 20),
         (double)tg_tape_arena_bytes(t) / (1 << 20), rss);
  return 0;
}

/* --- dist: data-parallel training under mpirun. Every rank draws the same
 * batches as one process, trains on its shard, sequences [B r/P, B (r+1)/P)
 * of each, and averages the shards' gradients with tg_dist_mean_grads
 * before clipping, so every rank clips and steps with the same gradient. */

typedef struct {
  tg_dist *d;
  int rank, size;
} dist_ctx;

/* The two random streams as int32 words, so tg_dist_broadcast can copy
 * rank 0's (resumed) streams to every rank. */
static void rngs_pack(const tg_rng *a, const tg_rng *b, int32_t *w) {
  for (int i = 0; i < 4; i++) {
    w[2 * i] = (int32_t)(uint32_t)a->s[i], w[2 * i + 1] = (int32_t)(uint32_t)(a->s[i] >> 32);
    w[8 + 2 * i] = (int32_t)(uint32_t)b->s[i];
    w[8 + 2 * i + 1] = (int32_t)(uint32_t)(b->s[i] >> 32);
  }
}

static void rngs_unpack(const int32_t *w, tg_rng *a, tg_rng *b) {
  for (int i = 0; i < 4; i++) {
    a->s[i] = (uint64_t)(uint32_t)w[2 * i] | (uint64_t)(uint32_t)w[2 * i + 1] << 32;
    b->s[i] = (uint64_t)(uint32_t)w[8 + 2 * i] | (uint64_t)(uint32_t)w[8 + 2 * i + 1] << 32;
  }
}

static int run(int argc, char **argv, dist_ctx *dc);

int main(int argc, char **argv) {
  dist_ctx dc = {0};
  /* dist: one process without mpirun; under it, rank 0 alone prints */
  if (!(dc.d = tg_dist_init(&argc, &argv))) {
    fprintf(stderr, PROG ": %s\n", tg_last_error());
    return 1;
  }
  dc.rank = tg_dist_rank(dc.d), dc.size = tg_dist_size(dc.d);
  if (dc.rank > 0 && !freopen("/dev/null", "w", stdout)) return 1;
  int rc = run(argc, argv, &dc);
  if (tg_dist_finalize(dc.d)) {
    fprintf(stderr, PROG ": rank %d: %s\n", dc.rank, tg_last_error());
    if (!rc) rc = 1;
  }
  return rc;
}

static int run(int argc, char **argv, dist_ctx *dc) {
  options opts, *o = &opts;
  int rc = parse_args(argc, argv, o);
  if (rc) return rc < 0 ? 0 : rc;
  if (o->batch % dc->size) {
    fprintf(stderr, PROG ": --batch %ld does not split into %d equal shards (one per "
            "process): give a multiple of %d\n", o->batch, dc->size, dc->size);
    return 2;
  }
  if (o->threads && tg_set_num_threads(o->threads)) {
    fprintf(stderr, PROG ": %s\n", tg_last_error());
    return 2;
  }
  uint8_t *train = NULL, *val = NULL;
  size_t n_train = 0, n_val = 0;
  char err[ERR_LEN] = "";
  if (o->builtin) {
    train = builtin_text(&n_train);
    val = builtin_text(&n_val);
    if (!train || !val)
      snprintf(err, sizeof err, PROG ": out of memory");
    else if (n_train <= (size_t)o->model.context)
      snprintf(err, sizeof err, PROG ": the built-in text is %zu bytes, no longer than "
               "the context", n_train);
  } else {
    char path[4200];
    snprintf(path, sizeof path, "%s/train.txt", o->data_dir);
    train = load_text(path, o, &n_train, err);
    snprintf(path, sizeof path, "%s/val.txt", o->data_dir);
    if (train) val = load_text(path, o, &n_val, err);
  }
  /* dist: a rank that cannot read its text stops every rank, named */
  if (tg_dist_check(dc->d, *err ? TG_EIO : TG_OK, err)) {
    fprintf(stderr, "%s\n", dc->size > 1 ? tg_last_error() : err);
    if (strstr(dc->size > 1 ? tg_last_error() : err, "cannot read"))
      fprintf(stderr, "(fetch the Brown corpus with scripts/fetch-brown, or give --data-dir)\n");
    free(train);
    free(val);
    return 1;
  }
  size_t train_bytes = n_train;

  tg_rng init, batch_rng, drop_rng;
  tg_rng_seed(&init, o->seed);
  tg_rng_seed(&batch_rng, o->seed + 1);
  tg_rng_seed(&drop_rng, o->seed + 2);
  charlm m;
  int status = 1;
  bool agreed = false; /* dist: every rank knows of the failure already */
  const int64_t B = o->batch, T = o->model.context;
  /* dist: this rank's sequences [lo, hi) of each batch, as views */
  const int64_t lo = B * dc->rank / dc->size, hi = B * (dc->rank + 1) / dc->size;
  tg_tensor *x = tg_zeros(TG_I32, TG_SHAPE(B, T)), *y = tg_zeros(TG_I32, TG_SHAPE(B * T));
  tg_tensor *xs = NULL, *ys = NULL, *rng_words = NULL;
  tg_tape *t = tg_tape_new();
  tg_optim *opt = NULL;
  int max_rows = (int)(o->steps / o->eval_every + 2), n_rows = 0;
  eval_row *rows = calloc((size_t)max_rows, sizeof *rows);
  if (charlm_init(&m, &o->model, &init)) goto fail_quiet;
  if (!x || !y || !t || !rows) goto fail;
  if (dc->size > 1) {
    if (!(xs = tg_rows(x, lo, hi)) || !(ys = tg_rows(y, lo * T, hi * T))) goto fail;
    m.shard_first = lo, m.shard_of = B;
  }
  tg_tensor *xb = xs ? xs : x, *yb = ys ? ys : y;
  tg_adam_config ac = TG_ADAMW_DEFAULTS;
  ac.lr = o->lr;
  ac.weight_decay = o->weight_decay;
  if (!(opt = tg_adamw_new(m.params, m.n_params, &ac))) goto fail;

  char title[320];
  snprintf(title, sizeof title,
           "tapegrad-charlm: %d layers, %d heads, width %d, context %d, vocab %d%s, "
           "batch %ld, AdamW lr %g", m.cfg.layers, m.cfg.heads, m.cfg.width, m.cfg.context,
           m.cfg.vocab, m.cfg.tied ? " (tied)" : "", o->batch, o->lr);
  if (!o->quiet)
    printf("%s; %.3fM parameters; %s: %zu train bytes, %zu validation bytes; %ld steps "
           "(warmup %ld, lr to %g), weight decay %g, clip %g, dropout %g; %d threads, "
           "seed %" PRIu64 "\n", title, (double)charlm_numel(&m) / 1e6,
           o->builtin ? "built-in text" : o->data_dir, n_train, n_val, o->steps, o->warmup,
           o->min_lr, o->weight_decay, o->clip, m.cfg.dropout, tg_get_num_threads(), o->seed);
  if (!o->quiet && dc->size > 1)
    printf("data-parallel over %d processes: shards of %ld sequences\n", dc->size,
           o->batch / dc->size);
  long start = 0;
  if (o->resume_path) {
    /* dist: rank 0 reads the checkpoint; the broadcasts below copy it */
    if (dc->rank == 0)
      start = resume(o, &m, opt, train_bytes, &rows, &n_rows, &max_rows, &batch_rng, &drop_rng);
    double s0 = (double)start;
    if (tg_dist_check(dc->d, start < 0 ? TG_EFORMAT : TG_OK, "cannot resume from the checkpoint") ||
        tg_dist_sum(dc->d, &s0, 1)) {
      if (start >= 0) fprintf(stderr, PROG ": %s\n", tg_last_error());
      agreed = true;
      goto fail_quiet;
    }
    start = (long)s0;
    if (!o->quiet && o->steps) printf("resumed from %s at step %ld\n", o->resume_path, start);
  }
  if (dc->size > 1) { /* dist: every rank as rank 0, streams included */
    if (!(rng_words = tg_zeros(TG_I32, TG_SHAPE(16)))) goto fail;
    rngs_pack(&batch_rng, &drop_rng, tg_tensor_i32(rng_words));
    if (tg_dist_broadcast(dc->d, &rng_words, 1) || tg_dist_broadcast_optim(dc->d, opt))
      goto fail;
    rngs_unpack(tg_tensor_i32(rng_words), &batch_rng, &drop_rng);
  }
  bool tty = !o->quiet && dc->rank == 0 && tg_progress_visible(stderr);
  const uint64_t eval_seed = o->seed ^ 0x5eed5eed5eedULL;
  double t0 = now(), last_draw = 0, t_eval = t0;
  long tokens_since = 0;
  const long last = o->stop_at ? o->stop_at : o->steps;
  step_profile prof = {0};
  for (long step = start + 1; step <= last; step++) {
    if (tg_optim_set_lr(opt, tg_lr_warmup_cosine(o->lr, step, o->warmup, o->steps,
                                                 o->min_lr)))
      goto fail;
    charlm_batch(train, n_train, &batch_rng, x, y);
    /* on for the step only: evaluations are not part of it */
    if (o->profile && tg_tape_set_profile(t, true)) goto fail;
    const double s0 = o->profile ? now() : 0;
    tg_tensor *loss = charlm_loss(t, &m, xb, yb, &drop_rng, true);
    if (!loss || tg_backward(t, loss)) goto fail;
    /* dist: the whole batch's mean gradient, then clipped: the same on every rank */
    if (tg_dist_mean_grads(dc->d, m.params, m.n_params, hi - lo)) goto fail;
    const double s1 = o->profile ? now() : 0;
    double norm = tg_optim_clip_grad_norm(opt, o->clip);
    if (norm < 0) goto fail;
    if (!isfinite(tg_get(loss, 0)) || !isfinite(norm)) {
      fprintf(stderr, "\n" PROG ": step %ld: the loss is %g and the gradient norm %g; "
              "lower --lr\n", step, tg_get(loss, 0), norm);
      goto fail_quiet;
    }
    if (tg_optim_step(opt) || tg_optim_zero_grad(opt)) goto fail;
    const double s2 = o->profile ? now() : 0;
    tg_tape_clear(t);
    if (o->profile) {
      tg_tape_set_profile(t, false);
      if (step == start + 1) {
        tg_tape_profile_reset(t);
      } else {
        prof.steps++;
        prof.step_s += now() - s0;
        prof.optim_s += s2 - s1;
      }
    }
    tokens_since += B * T;
    double tn = now();
    if (tty && tn - last_draw > 0.1) {
      double rate = (double)(step - start) * (double)(B * T) / (tn - t0);
      progress(step, o->steps, rate, (double)(o->steps - step) * (tn - t0) / (double)(step - start));
      last_draw = tn;
    }
    if (step % o->eval_every == 0 || step == o->steps || step == last) {
      double secs = now() - t_eval;
      if (n_rows == max_rows) { /* runs stopped and resumed add rows */
        eval_row *grown = realloc(rows, (size_t)(2 * max_rows) * sizeof *rows);
        if (!grown) {
          fprintf(stderr, PROG ": out of memory for the history\n");
          goto fail_quiet;
        }
        rows = grown;
        max_rows *= 2;
      }
      eval_row *r = &rows[n_rows];
      r->step = (double)step;
      r->tokens_per_s = (double)tokens_since / secs;
      r->seconds = (n_rows ? rows[n_rows - 1].seconds : 0) + secs;
      /* dist: each rank scores its shards; the sum is the whole batches' mean */
      double ev[2];
      ev[0] = evaluate(t, &m, train, n_train, o->eval_batches, eval_seed, x, y, xb, yb);
      ev[1] = evaluate(t, &m, val, n_val, o->eval_batches, eval_seed + 1, x, y, xb, yb);
      if (isnan(ev[0]) || isnan(ev[1])) goto fail;
      if (tg_dist_sum(dc->d, ev, 2)) goto fail;
      r->train = ev[0], r->val = ev[1];
      n_rows++;
      if (tty) tg_progress_clear(stderr);
      if (!o->quiet)
        printf("step %6ld  train %.4f  val %.4f  lr %.3g  %.0f tokens/s\n", step, r->train,
               r->val, tg_optim_lr(opt), r->tokens_per_s);
      fflush(stdout);
      if (dc->rank == 0) {
        if (o->log_path && write_csv(o->log_path, rows, n_rows)) goto fail_quiet;
        if (o->plot_path && write_svg(o->plot_path, rows, n_rows, title)) goto fail_quiet;
        if (o->save_path && save_checkpoint(o, &m, opt, rows, n_rows, train_bytes, step,
                                            &batch_rng, &drop_rng))
          goto fail_quiet;
      }
      tokens_since = 0;
      t_eval = now();
    }
  }
  if (n_rows)
    printf("final: train %.4f  val %.4f nats per byte\n", rows[n_rows - 1].train,
           rows[n_rows - 1].val);
  if (!o->quiet) {
    printf("parameters: xxh3 %016" PRIx64 "\n", tg_tensors_hash(m.params, m.n_params));
    /* the arena keeps its high-water mark: the memory of the largest step */
    printf("tape arena: %.1f MiB\n", (double)tg_tape_arena_bytes(t) / (1 << 20));
  }
  if (o->profile && dc->rank == 0 && print_profile(t, &prof)) goto fail;
  if (o->sample && dc->rank == 0 && sample(&m, t, o)) goto fail_quiet;
  status = 0;
  goto done;
fail:
  fprintf(stderr, PROG ": %s\n", tg_last_error());
fail_quiet:
  status = 1;
  /* dist: the other ranks hear of it at their next exchange (a no-op when
   * an exchange already failed, and in one process) */
  if (!agreed)
    tg_dist_fail(dc->d, TG_EIO, *tg_last_error() ? tg_last_error() : PROG " stopped");
done:
  tg_tape_free(t);
  tg_optim_free(opt);
  charlm_free(&m);
  tg_tensor_free(xs);
  tg_tensor_free(ys);
  tg_tensor_free(rng_words);
  tg_tensor_free(x);
  tg_tensor_free(y);
  free(rows);
  free(train);
  free(val);
  return status;
}
