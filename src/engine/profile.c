/* src/engine/profile.c: the tape's profiler: time per (region, op) of the
 * forward kernels the door runs and the backward kernels tg_backward runs.
 * An op is known by its declaration (its name is only printed). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

/* Twice the entries, so that linear probing stays short. */
#define HASH_SLOTS (2 * TG_PROFILE_MAX_ENTRIES)

typedef struct {
  const tg_opdef *op;
  int region; /* 1 + index in the tape's regions, 0 for none */
  long long fwd_calls, bwd_calls;
  double fwd_s, bwd_s;
} prof_entry;

struct tg__prof {
  prof_entry e[TG_PROFILE_MAX_ENTRIES];
  int n;
  short slot[HASH_SLOTS]; /* 1 + index in e, 0: free */
};

double tg__prof_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int tg_tape_set_profile(tg_tape *t, bool enabled) {
  if (!t) return tg__err(TG_EINVAL, "tg_tape_set_profile: tape is NULL");
  if (enabled && !t->prof && !(t->prof = tg__calloc(1, sizeof *t->prof)))
    return tg__err(TG_ENOMEM, "tg_tape_set_profile: out of memory for the table "
                              "(%zu bytes)", sizeof *t->prof);
  t->profile = enabled;
  return TG_OK;
}

void tg__prof_free(tg_tape *t) {
  tg__free(t->prof);
  t->prof = NULL;
}

int tg_tape_region(tg_tape *t, const char *label) {
  if (!t) return tg__err(TG_EINVAL, "tg_tape_region: tape is NULL");
  t->region = 0;
  if (!label) return TG_OK;
  for (int i = 0; i < t->n_regions; i++)
    if (!strcmp(t->regions[i], label)) {
      t->region = i + 1;
      return TG_OK;
    }
  if (t->n_regions == TG_PROFILE_MAX_REGIONS)
    return tg__err(TG_ERANGE,
                   "tg_tape_region: region \"%s\" would be the tape's %dth "
                   "distinct label; it holds at most %d (the region is now none)",
                   label, TG_PROFILE_MAX_REGIONS + 1, TG_PROFILE_MAX_REGIONS);
  t->regions[t->n_regions++] = label;
  t->region = t->n_regions;
  return TG_OK;
}

int tg__prof_slot(tg_tape *t, const tg_opdef *op, const char *fn) {
  struct tg__prof *p = t->prof;
  uintptr_t h = ((uintptr_t)op >> 4) * 0x9E3779B1u + (uintptr_t)t->region * 0x85EBCA6Bu;
  size_t k = (h ^ (h >> 15)) % HASH_SLOTS;
  for (; p->slot[k]; k = (k + 1) % HASH_SLOTS) {
    const prof_entry *e = &p->e[p->slot[k] - 1];
    if (e->op == op && e->region == t->region) return p->slot[k];
  }
  if (p->n == TG_PROFILE_MAX_ENTRIES)
    return tg__err(TG_ERANGE,
                   "%s: the tape's profile already holds %d (region, op) pairs, "
                   "its most; this op in region %s would be one more", fn,
                   TG_PROFILE_MAX_ENTRIES,
                   t->region ? t->regions[t->region - 1] : "(none)");
  /* k is the free slot the probe stopped at */
  p->e[p->n] = (prof_entry){.op = op, .region = t->region};
  p->slot[k] = (short)++p->n;
  return p->n;
}

int tg__prof_forward(tg_tape *t, tg_node *n, int slot) {
  double t0 = tg__prof_now();
  int rc = n->op->forward(t, n);
  prof_entry *e = &t->prof->e[slot - 1];
  e->fwd_s += tg__prof_now() - t0;
  e->fwd_calls++;
  return rc;
}

void tg__prof_backward(tg_tape *t, int slot, double start) {
  prof_entry *e = &t->prof->e[slot - 1];
  e->bwd_s += tg__prof_now() - start;
  e->bwd_calls++;
}

void tg_tape_profile_reset(tg_tape *t) {
  if (!t || !t->prof) return;
  for (int i = 0; i < t->prof->n; i++) {
    prof_entry *e = &t->prof->e[i];
    e->fwd_calls = e->bwd_calls = 0;
    e->fwd_s = e->bwd_s = 0;
  }
}

static void to_public(const tg_tape *t, const prof_entry *e, tg_profile_entry *o) {
  o->region = e->region ? t->regions[e->region - 1] : NULL;
  o->op = e->op->name;
  o->forward_calls = e->fwd_calls;
  o->backward_calls = e->bwd_calls;
  o->forward_seconds = e->fwd_s;
  o->backward_seconds = e->bwd_s;
}

int tg_tape_profile(const tg_tape *t, tg_profile_entry *out, int cap) {
  if (!t) return tg__err(TG_EINVAL, "tg_tape_profile: tape is NULL");
  if (cap < 0 || (cap > 0 && !out))
    return tg__err(TG_EINVAL, "tg_tape_profile: room for %d entries at %s", cap,
                   out ? "out" : "a NULL out");
  int n = 0;
  for (int i = 0; t->prof && i < t->prof->n; i++) {
    const prof_entry *e = &t->prof->e[i];
    if (!e->fwd_calls && !e->bwd_calls) continue;
    if (n < cap) to_public(t, e, &out[n]);
    n++;
  }
  return n;
}

static double total_of(const tg_profile_entry *e) {
  return e->forward_seconds + e->backward_seconds;
}

static int by_total(const void *a, const void *b) {
  double x = total_of(a), y = total_of(b);
  return (x < y) - (x > y);
}

int tg_tape_profile_print(const tg_tape *t, FILE *f) {
  if (!t || !f)
    return tg__err(TG_EINVAL, "tg_tape_profile_print: %s is NULL", t ? "f" : "tape");
  tg_profile_entry e[TG_PROFILE_MAX_ENTRIES];
  int n = tg_tape_profile(t, e, TG_PROFILE_MAX_ENTRIES);
  qsort(e, (size_t)n, sizeof *e, by_total);
  double all = 0;
  for (int i = 0; i < n; i++) all += total_of(&e[i]);
  int rc = fprintf(f, "%-16s %-18s %9s %11s %9s %11s %7s\n", "region", "op",
                   "fwd calls", "fwd ms", "bwd calls", "bwd ms", "share");
  for (int i = 0; rc >= 0 && i < n; i++)
    rc = fprintf(f, "%-16s %-18s %9lld %11.2f %9lld %11.2f %6.1f%%\n",
                 e[i].region ? e[i].region : "-", e[i].op, e[i].forward_calls,
                 1e3 * e[i].forward_seconds, e[i].backward_calls,
                 1e3 * e[i].backward_seconds,
                 all > 0 ? 100 * total_of(&e[i]) / all : 0.0);
  if (rc >= 0) rc = fprintf(f, "%-35s %33.2f ms timed in kernels\n", "total", 1e3 * all);
  if (rc < 0 || fflush(f))
    return tg__err(TG_EIO, "tg_tape_profile_print: writing the table failed");
  return TG_OK;
}
