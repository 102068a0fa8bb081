/* bench/charlm_ref.c: tapegrad's side of bench/compare_charlm.py. Builds the
 * model of examples/charlm.h from a seed, trains it with AdamW, the
 * warmup-cosine schedule and clipping (dropout off), and writes what
 * PyTorch must reproduce, as safetensors files in DIR:
 *   init.safetensors     the initial parameters, under the model's names
 *   batches.safetensors  "tokens" int32 [K,B,T] and "targets" [K,B*T]
 *   step1.safetensors    "loss" float64 [1] and "grad.NAME" for every
 *                        parameter: the first step's, before clipping
 *   run.safetensors      "loss" float64 [K] (each step's, before its
 *                        update) and "seconds" float64 [K] (each step's
 *                        wall time: forward, backward, clip, update)
 * With --val FILE (the long run of compare_charlm.py --long) it keeps no
 * batches: it writes instead
 *   offsets.safetensors  "train" int32 [K,B], the offset of every window
 *                        it trained on, and "val" int32 [E,B], those of the
 *                        validation windows (E = --eval-batches)
 *   val.safetensors      "step" and "loss" float64 [R]: the validation
 *                        loss at step 0, every --eval-every steps and the
 *                        last, computed as tapegrad-charlm computes it
 * and prints each evaluation as a line "val STEP LOSS TRAIN_SECONDS".
 * Public API only.
 *
 * Usage: bench/charlm_ref --out DIR [--dtype f32|f64] [--layers N]
 *   [--heads N] [--width N] [--context N] [--batch N] [--vocab N]
 *   [--untied] [--steps K] [--lr X] [--min-lr X] [--warmup N]
 *   [--weight-decay X] [--clip X] [--seed N] [--threads N] [--text FILE]
 *   [--val FILE [--eval-every N] [--eval-batches N]] */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "charlm.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int usage(void) {
  fprintf(stderr, "usage: charlm_ref --out DIR [--dtype f32|f64] [--layers N] [--heads N] "
                  "[--width N] [--context N] [--batch N] [--vocab N] [--untied] [--steps K] "
                  "[--lr X] [--min-lr X] [--warmup N] [--weight-decay X] [--clip X] "
                  "[--seed N] [--threads N] [--text FILE] "
                  "[--val FILE [--eval-every N] [--eval-batches N]]\n");
  return 2;
}

/* The text: a file (bytes at or above the vocabulary are folded into it,
 * which is fine for a comparison), or a built-in line. */
static uint8_t *read_text(const char *path, int vocab, size_t *n) {
  static const char line[] = "to be or not to be, that is the question; ";
  uint8_t *buf = NULL;
  if (!path) {
    size_t len = sizeof line - 1, reps = 200;
    if (!(buf = malloc(len * reps))) return NULL;
    for (size_t r = 0; r < reps; r++) memcpy(buf + r * len, line, len);
    *n = len * reps;
    return buf;
  }
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 20, len = 0, got;
  buf = malloc(cap);
  while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
    len += got;
    if (len == cap) {
      uint8_t *nb = realloc(buf, cap *= 2);
      if (!nb) free(buf);
      buf = nb;
    }
  }
  fclose(f);
  for (size_t i = 0; buf && i < len; i++) buf[i] = (uint8_t)(buf[i] % vocab);
  *n = len;
  return buf;
}

/* tapegrad-charlm's evaluate(): the mean of the losses of `batches` batches
 * drawn from a stream seeded afresh each time, so every evaluation sees the
 * same windows. Their offsets go to offs [batches*B] when it is not NULL.
 * NaN on error. */
static double evaluate(tg_tape *t, charlm *m, const uint8_t *text, size_t n, long batches,
                       uint64_t seed, tg_tensor *x, tg_tensor *y, int32_t *offs) {
  const int64_t B = tg_tensor_dim(x, 0), T = tg_tensor_dim(x, 1);
  tg_rng rng;
  tg_rng_seed(&rng, seed);
  bool was = tg_tape_set_grad(t, false);
  double sum = 0;
  for (long b = 0; b < batches; b++) {
    tg_rng peek = rng; /* charlm_batch's draws, one per window */
    for (int64_t i = 0; offs && i < B; i++)
      offs[b * B + i] = (int32_t)tg_rng_below(&peek, (uint64_t)(n - (size_t)T));
    charlm_batch(text, n, &rng, x, y);
    tg_tensor *loss = charlm_loss(t, m, x, y, NULL, false);
    if (!loss) {
      tg_tape_set_grad(t, was);
      return NAN;
    }
    sum += tg_get(loss, 0);
    tg_tape_clear(t);
  }
  tg_tape_set_grad(t, was);
  return sum / (double)batches;
}

int main(int argc, char **argv) {
  charlm_config cfg = {.vocab = 256, .layers = 2, .heads = 2, .width = 32, .context = 32,
                       .tied = true, .dropout = 0, .dtype = TG_F32};
  const char *out = NULL, *text_path = NULL, *val_path = NULL;
  long batch = 8, steps = 200, warmup = 20, seed = 1, threads = 0;
  long eval_every = 200, eval_batches = 20;
  double lr = 1e-3, min_lr = -1, wd = 0.1, clip = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--untied")) { cfg.tied = false; continue; }
    if (!v) return usage();
    i++;
    if (!strcmp(a, "--out")) out = v;
    else if (!strcmp(a, "--text")) text_path = v;
    else if (!strcmp(a, "--val")) val_path = v;
    else if (!strcmp(a, "--eval-every")) eval_every = atol(v);
    else if (!strcmp(a, "--eval-batches")) eval_batches = atol(v);
    else if (!strcmp(a, "--dtype")) cfg.dtype = !strcmp(v, "f64") ? TG_F64 : TG_F32;
    else if (!strcmp(a, "--layers")) cfg.layers = atoi(v);
    else if (!strcmp(a, "--heads")) cfg.heads = atoi(v);
    else if (!strcmp(a, "--width")) cfg.width = atoi(v);
    else if (!strcmp(a, "--context")) cfg.context = atoi(v);
    else if (!strcmp(a, "--vocab")) cfg.vocab = atoi(v);
    else if (!strcmp(a, "--batch")) batch = atol(v);
    else if (!strcmp(a, "--steps")) steps = atol(v);
    else if (!strcmp(a, "--warmup")) warmup = atol(v);
    else if (!strcmp(a, "--seed")) seed = atol(v);
    else if (!strcmp(a, "--threads")) threads = atol(v);
    else if (!strcmp(a, "--lr")) lr = atof(v);
    else if (!strcmp(a, "--min-lr")) min_lr = atof(v);
    else if (!strcmp(a, "--weight-decay")) wd = atof(v);
    else if (!strcmp(a, "--clip")) clip = atof(v);
    else return usage();
  }
  if (!out || batch < 1 || steps < 1 || eval_every < 1 || eval_batches < 1 ||
      charlm_config_error(&cfg))
    return usage();
  if (min_lr < 0) min_lr = lr / 10;
  if (warmup > steps) warmup = steps;
  if (threads > 0 && tg_set_num_threads((int)threads)) return usage();
  size_t n = 0;
  uint8_t *text = read_text(text_path, cfg.vocab, &n);
  if (!text || n <= (size_t)cfg.context) {
    fprintf(stderr, "charlm_ref: cannot read a text longer than the context\n");
    free(text);
    return 1;
  }
  /* offsets are stored as int32 */
  size_t n_val = 0;
  uint8_t *val = val_path ? read_text(val_path, cfg.vocab, &n_val) : NULL;
  if (val_path && (!val || n_val <= (size_t)cfg.context || n_val > INT32_MAX ||
                   n > INT32_MAX)) {
    fprintf(stderr, "charlm_ref: cannot read a validation text longer than the context "
            "(and texts under 2^31 bytes)\n");
    free(text);
    free(val);
    return 1;
  }
  const bool long_run = val != NULL;
  tg_rng init, brng;
  tg_rng_seed(&init, (uint64_t)seed);
  tg_rng_seed(&brng, (uint64_t)seed + 1);
  charlm m;
  const int64_t B = batch, T = cfg.context;
  tg_tensor *x = tg_zeros(TG_I32, TG_SHAPE(B, T)), *y = tg_zeros(TG_I32, TG_SHAPE(B * T));
  /* The long run keeps only offsets: its batches would take 8KBT bytes. */
  tg_tensor *all_x, *all_y;
  if (long_run) {
    all_x = tg_zeros(TG_I32, TG_SHAPE(steps, B));
    all_y = tg_zeros(TG_I32, TG_SHAPE(eval_batches, B));
  } else {
    all_x = tg_zeros(TG_I32, TG_SHAPE(steps, B, T));
    all_y = tg_zeros(TG_I32, TG_SHAPE(steps, B * T));
  }
  const long n_evals = long_run ? steps / eval_every + 2 : 1;
  tg_tensor *ev_step = tg_zeros(TG_F64, TG_SHAPE(n_evals));
  tg_tensor *ev_loss = tg_zeros(TG_F64, TG_SHAPE(n_evals));
  long n_ev = 0;
  double trained = 0;
  const uint64_t eval_seed = (uint64_t)seed ^ 0x5eed5eed5eedULL; /* as tapegrad-charlm */
  tg_tensor *losses = tg_zeros(TG_F64, TG_SHAPE(steps)), *secs = tg_zeros(TG_F64, TG_SHAPE(steps));
  tg_tape *t = tg_tape_new();
  tg_optim *opt = NULL;
  tg_tensor **grads = NULL;
  const char **gnames = NULL;
  char (*gbuf)[CHARLM_NAME_LEN + 8] = NULL;
  char path[4096];
  int rc = 1;
  if (charlm_init(&m, &cfg, &init) || !x || !y || !all_x || !all_y || !losses || !secs ||
      !ev_step || !ev_loss || !t)
    goto fail;
  snprintf(path, sizeof path, "%s/init.safetensors", out);
  if (tg_save(path, m.name_ptrs, m.params, m.n_params, NULL)) goto fail;
  tg_adam_config ac = TG_ADAMW_DEFAULTS;
  ac.lr = lr;
  ac.weight_decay = wd;
  if (!(opt = tg_adamw_new(m.params, m.n_params, &ac))) goto fail;
  grads = calloc((size_t)m.n_params + 1, sizeof *grads);
  gnames = calloc((size_t)m.n_params + 1, sizeof *gnames);
  gbuf = calloc((size_t)m.n_params, sizeof *gbuf);
  if (!grads || !gnames || !gbuf) goto fail;
  for (long s = 0; s <= steps; s++) {
    if (s == 0) goto eval; /* the untrained model's loss too */
    if (long_run) {
      tg_rng peek = brng; /* charlm_batch's draws, one per window */
      for (int64_t i = 0; i < B; i++)
        tg_tensor_i32(all_x)[(s - 1) * B + i] =
            (int32_t)tg_rng_below(&peek, (uint64_t)(n - (size_t)T));
    }
    charlm_batch(text, n, &brng, x, y);
    if (!long_run) {
      memcpy(tg_tensor_i32(all_x) + (s - 1) * B * T, tg_tensor_i32(x), (size_t)(B * T) * 4);
      memcpy(tg_tensor_i32(all_y) + (s - 1) * B * T, tg_tensor_i32(y), (size_t)(B * T) * 4);
    }
    double t0 = now();
    if (tg_optim_set_lr(opt, tg_lr_warmup_cosine(lr, s, warmup, steps, min_lr))) goto fail;
    tg_tensor *loss = charlm_loss(t, &m, x, y, NULL, false);
    if (!loss || tg_backward(t, loss)) goto fail;
    if (s == 1) { /* the gradients before clipping */
      tg_tensor *l = tg_zeros(TG_F64, TG_SHAPE(1));
      tg_set(l, 0, tg_get(loss, 0));
      for (int i = 0; i < m.n_params; i++) {
        snprintf(gbuf[i], sizeof gbuf[i], "grad.%s", m.names[i]);
        gnames[i] = gbuf[i];
        grads[i] = tg_tensor_grad(m.params[i]);
      }
      gnames[m.n_params] = "loss";
      grads[m.n_params] = l;
      snprintf(path, sizeof path, "%s/step1.safetensors", out);
      int bad = !l || tg_save(path, gnames, grads, m.n_params + 1, NULL);
      tg_tensor_free(l);
      if (bad) goto fail;
    }
    tg_set(losses, s - 1, tg_get(loss, 0));
    if (tg_optim_clip_grad_norm(opt, clip) < 0 || tg_optim_step(opt) ||
        tg_optim_zero_grad(opt))
      goto fail;
    tg_tape_clear(t);
    tg_set(secs, s - 1, now() - t0);
    trained += now() - t0;
  eval:
    if (long_run && (s % eval_every == 0 || s == steps)) {
      /* the validation text's stream: tapegrad-charlm's eval_seed + 1 */
      double v = evaluate(t, &m, val, n_val, eval_batches, eval_seed + 1, x, y,
                          n_ev ? NULL : tg_tensor_i32(all_y));
      if (isnan(v)) goto fail;
      tg_set(ev_step, n_ev, (double)s);
      tg_set(ev_loss, n_ev++, v);
      printf("val %ld %.9g %.3f\n", s, v, trained);
      fflush(stdout);
    }
  }
  if (long_run) {
    snprintf(path, sizeof path, "%s/offsets.safetensors", out);
    if (tg_save(path, (const char *[]){"train", "val"}, (tg_tensor *[]){all_x, all_y}, 2, NULL))
      goto fail;
    tg_tensor *ev[2] = {tg_tensor_from(TG_F64, TG_SHAPE(n_ev), tg_tensor_f64(ev_step)),
                        tg_tensor_from(TG_F64, TG_SHAPE(n_ev), tg_tensor_f64(ev_loss))};
    snprintf(path, sizeof path, "%s/val.safetensors", out);
    int bad = !ev[0] || !ev[1] ||
              tg_save(path, (const char *[]){"step", "loss"}, ev, 2, NULL);
    tg_tensor_free(ev[0]);
    tg_tensor_free(ev[1]);
    if (bad) goto fail;
  } else {
    snprintf(path, sizeof path, "%s/batches.safetensors", out);
    if (tg_save(path, (const char *[]){"tokens", "targets"}, (tg_tensor *[]){all_x, all_y}, 2,
                NULL))
      goto fail;
  }
  snprintf(path, sizeof path, "%s/run.safetensors", out);
  if (tg_save(path, (const char *[]){"loss", "seconds"}, (tg_tensor *[]){losses, secs}, 2, NULL))
    goto fail;
  rc = 0;
  goto done;
fail:
  fprintf(stderr, "charlm_ref: %s\n", tg_last_error());
done:
  free(grads);
  free(gnames);
  free(gbuf);
  tg_optim_free(opt);
  tg_tape_free(t);
  charlm_free(&m);
  tg_tensor_free(x);
  tg_tensor_free(y);
  tg_tensor_free(all_x);
  tg_tensor_free(all_y);
  tg_tensor_free(losses);
  tg_tensor_free(secs);
  tg_tensor_free(ev_step);
  tg_tensor_free(ev_loss);
  free(text);
  free(val);
  return rc;
}
