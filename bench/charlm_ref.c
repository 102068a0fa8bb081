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
 * Public API only.
 *
 * Usage: bench/charlm_ref --out DIR [--dtype f32|f64] [--layers N]
 *   [--heads N] [--width N] [--context N] [--batch N] [--vocab N]
 *   [--untied] [--steps K] [--lr X] [--min-lr X] [--warmup N]
 *   [--weight-decay X] [--clip X] [--seed N] [--threads N] [--text FILE] */
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
                  "[--seed N] [--threads N] [--text FILE]\n");
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

int main(int argc, char **argv) {
  charlm_config cfg = {.vocab = 256, .layers = 2, .heads = 2, .width = 32, .context = 32,
                       .tied = true, .dropout = 0, .dtype = TG_F32};
  const char *out = NULL, *text_path = NULL;
  long batch = 8, steps = 200, warmup = 20, seed = 1, threads = 0;
  double lr = 1e-3, min_lr = -1, wd = 0.1, clip = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--untied")) { cfg.tied = false; continue; }
    if (!v) return usage();
    i++;
    if (!strcmp(a, "--out")) out = v;
    else if (!strcmp(a, "--text")) text_path = v;
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
  if (!out || batch < 1 || steps < 1 || charlm_config_error(&cfg)) return usage();
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
  tg_rng init, brng;
  tg_rng_seed(&init, (uint64_t)seed);
  tg_rng_seed(&brng, (uint64_t)seed + 1);
  charlm m;
  const int64_t B = batch, T = cfg.context;
  tg_tensor *x = tg_zeros(TG_I32, TG_SHAPE(B, T)), *y = tg_zeros(TG_I32, TG_SHAPE(B * T));
  tg_tensor *all_x = tg_zeros(TG_I32, TG_SHAPE(steps, B, T));
  tg_tensor *all_y = tg_zeros(TG_I32, TG_SHAPE(steps, B * T));
  tg_tensor *losses = tg_zeros(TG_F64, TG_SHAPE(steps)), *secs = tg_zeros(TG_F64, TG_SHAPE(steps));
  tg_tape *t = tg_tape_new();
  tg_optim *opt = NULL;
  tg_tensor **grads = NULL;
  const char **gnames = NULL;
  char (*gbuf)[CHARLM_NAME_LEN + 8] = NULL;
  char path[4096];
  int rc = 1;
  if (charlm_init(&m, &cfg, &init) || !x || !y || !all_x || !all_y || !losses || !secs || !t)
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
  for (long s = 1; s <= steps; s++) {
    charlm_batch(text, n, &brng, x, y);
    memcpy(tg_tensor_i32(all_x) + (s - 1) * B * T, tg_tensor_i32(x), (size_t)(B * T) * 4);
    memcpy(tg_tensor_i32(all_y) + (s - 1) * B * T, tg_tensor_i32(y), (size_t)(B * T) * 4);
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
  }
  snprintf(path, sizeof path, "%s/batches.safetensors", out);
  if (tg_save(path, (const char *[]){"tokens", "targets"}, (tg_tensor *[]){all_x, all_y}, 2, NULL))
    goto fail;
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
  free(text);
  return rc;
}
