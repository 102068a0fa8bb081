/* src/base/alloc.c: every heap allocation goes through here, so a user may swap
 * the allocator (and a test may count allocations). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

static tg_malloc_fn a_malloc = malloc;
static tg_realloc_fn a_realloc = realloc;
static tg_calloc_fn a_calloc = calloc;
static tg_free_fn a_free = free;

int tg_set_allocator(tg_malloc_fn m, tg_realloc_fn r, tg_calloc_fn c,
                     tg_free_fn f) {
  if (!m || !r || !c || !f)
    return tg__err(TG_EINVAL, "tg_set_allocator: all four functions are required");
  a_malloc = m;
  a_realloc = r;
  a_calloc = c;
  a_free = f;
  return TG_OK;
}

void *tg__malloc(size_t n) { return a_malloc(n ? n : 1); }
void *tg__calloc(size_t count, size_t n) { return a_calloc(count ? count : 1, n ? n : 1); }
void *tg__realloc(void *p, size_t n) { return a_realloc(p, n ? n : 1); }
void tg__free(void *p) {
  if (p) a_free(p);
}
tg_free_fn tg__free_fn(void) { return a_free; }

/* The user's allocator may not align to 64 bytes, so over-allocate and keep
 * the original pointer just below the aligned block. */
void *tg__aligned_alloc(size_t n) {
  if (n > SIZE_MAX - TG__ALIGN - sizeof(void *)) return NULL;
  char *raw = a_calloc(1, n + TG__ALIGN + sizeof(void *));
  if (!raw) return NULL;
  uintptr_t p = ((uintptr_t)(raw + sizeof(void *)) + TG__ALIGN - 1) &
                ~(uintptr_t)(TG__ALIGN - 1);
  memcpy((char *)p - sizeof(void *), &raw, sizeof raw);
  return (void *)p;
}

void tg__aligned_free(void *p) {
  if (!p) return;
  void *raw;
  memcpy(&raw, (char *)p - sizeof(void *), sizeof raw);
  a_free(raw);
}
