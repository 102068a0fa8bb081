/* src/io/checkpoint.c: safetensors files: tg_save, tg_load_into and the
 * tg_checkpoint reader. The header is JSON, read and written with cJSON;
 * every number in it is checked against what the file really holds before
 * it is trusted with an allocation or a copy. */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
/* XXH3_state_t's layout, so the state lives on the stack instead of in
 * XXH3_createState's plain malloc, which tg_set_allocator would not see. */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "io.h"

/* The reference implementation refuses headers above 100 MB too. */
#define ST_MAX_HEADER ((uint64_t)100000000)
/* JSON numbers are doubles to cJSON: integers are exact up to 2^53. */
#define ST_MAX_INT ((uint64_t)1 << 53)
#define ST_FORMAT_VERSION "1"

typedef struct {
  tg_dtype dtype;
  int ndim;
  int64_t shape[TG_MAX_DIMS];
} st_info;

typedef struct {
  char *name;
  tg_tensor *t;
  uint64_t begin, end; /* within the data section */
  st_info info;        /* as the header says, before t exists */
} st_entry;

typedef struct {
  char *key, *value;
} st_meta;

struct tg_checkpoint {
  char *path;
  st_entry *e;         /* in data order */
  int n;
  st_entry **by_name;  /* sorted by name, for lookups */
  st_meta *meta;       /* sorted by key */
  int n_meta;
  bool verified;
};

typedef struct {
  const char *fn, *path;
} st_ctx;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int ferr(const st_ctx *c, int status, const char *fmt, ...) {
  char msg[448];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return tg__err(status, "%s: %s: %s", c->fn, c->path, msg);
}

/* cJSON allocates through hooks that are global to the process; tapegrad
 * installs them once (pthread_once, so two threads' first checkpoints do
 * not race) and they call the allocator current at each call, so a later
 * tg_set_allocator is followed too. Every cJSON object tapegrad makes lives
 * within one call, so none outlives a change of allocator. */
/* cJSON's parser says only that it failed: a header it could not finish
 * for want of memory would be reported as malformed. Its failed
 * allocations are counted here (per thread, as parses are) to tell. */
static _Thread_local unsigned long json_oom;
static void *json_malloc(size_t n) {
  void *p = tg__malloc(n);
  if (!p) json_oom++;
  return p;
}
static void json_free(void *p) { tg__free(p); }
static void json_hooks_install(void) {
  cJSON_Hooks h = {json_malloc, json_free};
  cJSON_InitHooks(&h);
}
static void json_hooks(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, json_hooks_install);
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = tg__malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

static const char *dtype_tag(tg_dtype d) {
  switch (d) {
  case TG_F32: return "F32";
  case TG_F64: return "F64";
  case TG_I32: return "I32";
  }
  return "?";
}

static bool dtype_from_tag(const char *s, tg_dtype *d) {
  if (!strcmp(s, "F32")) *d = TG_F32;
  else if (!strcmp(s, "F64")) *d = TG_F64;
  else if (!strcmp(s, "I32")) *d = TG_I32;
  else return false;
  return true;
}

static const char *dims_str(int nd, const int64_t *shape, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < nd && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld",
                          (long long)shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

static void free_ck_tensor(tg_tensor *t) {
  if (!t) return;
  t->flags |= TG__OWNED;
  tg_tensor_free(t);
}

void tg_checkpoint_close(tg_checkpoint *ck) {
  if (!ck) return;
  for (int i = 0; i < ck->n; i++) {
    tg__free(ck->e[i].name);
    free_ck_tensor(ck->e[i].t);
  }
  for (int i = 0; i < ck->n_meta; i++) {
    tg__free(ck->meta[i].key);
    tg__free(ck->meta[i].value);
  }
  tg__free(ck->e);
  tg__free(ck->by_name);
  tg__free(ck->meta);
  tg__free(ck->path);
  tg__free(ck);
}

/* --- parsing the header */

/* A JSON number that is a non-negative integer a double holds exactly. */
static bool json_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v)) return false;
  double d = v->valuedouble;
  if (!isfinite(d) || d < 0 || d != floor(d) || d > (double)ST_MAX_INT)
    return false;
  *out = (uint64_t)d;
  return true;
}

/* Human-readable JSON type, for messages. */
static const char *json_kind(const cJSON *v) {
  if (!v) return "missing";
  if (cJSON_IsString(v)) return "a string";
  if (cJSON_IsNumber(v)) return "a number";
  if (cJSON_IsArray(v)) return "an array";
  if (cJSON_IsObject(v)) return "an object";
  if (cJSON_IsBool(v)) return "a boolean";
  if (cJSON_IsNull(v)) return "null";
  return "invalid";
}

static int parse_entry(const st_ctx *c, const cJSON *item, uint64_t data_len,
                       st_entry *e) {
  st_info *info = &e->info;
  const char *nm = item->string;
  if (!cJSON_IsObject(item))
    return ferr(c, TG_EFORMAT, "tensor \"%.80s\": the entry is %s, not an object",
                nm, json_kind(item));
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
  const cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
  if (!cJSON_IsString(dt))
    return ferr(c, TG_EFORMAT, "tensor \"%.80s\": dtype is %s; it must be a string",
                nm, json_kind(dt));
  if (!dtype_from_tag(dt->valuestring, &info->dtype))
    return ferr(c, TG_EFORMAT,
                "tensor \"%.80s\": dtype \"%.40s\" is not supported (tapegrad "
                "reads F32, F64 and I32)",
                nm, dt->valuestring);
  if (!cJSON_IsArray(sh))
    return ferr(c, TG_EFORMAT, "tensor \"%.80s\": shape is %s; it must be an array",
                nm, json_kind(sh));
  int nd = cJSON_GetArraySize(sh);
  if (nd > TG_MAX_DIMS)
    return ferr(c, TG_EFORMAT,
                "tensor \"%.80s\": shape has %d dimensions; tapegrad tensors "
                "have at most %d",
                nm, nd, TG_MAX_DIMS);
  info->ndim = nd;
  int64_t numel = 1;
  int k = 0;
  const cJSON *d;
  cJSON_ArrayForEach(d, sh) {
    uint64_t v;
    if (!json_uint(d, &v))
      return ferr(c, TG_EFORMAT,
                  "tensor \"%.80s\": shape element %d is not a non-negative "
                  "integer",
                  nm, k);
    if (numel && v > (uint64_t)(INT64_MAX / 8 / numel))
      return ferr(c, TG_EFORMAT, "tensor \"%.80s\": the shape's element count "
                  "overflows", nm);
    info->shape[k++] = (int64_t)v;
    numel *= (int64_t)v;
  }
  if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
      !json_uint(off->child, &e->begin) || !json_uint(off->child->next, &e->end))
    return ferr(c, TG_EFORMAT,
                "tensor \"%.80s\": data_offsets must be an array of two "
                "non-negative integers",
                nm);
  char sb[128];
  if (e->begin > e->end)
    return ferr(c, TG_EFORMAT,
                "tensor \"%.80s\": data_offsets [%llu,%llu] end before they "
                "begin",
                nm, (unsigned long long)e->begin, (unsigned long long)e->end);
  if (e->end > data_len)
    return ferr(c, TG_EFORMAT,
                "tensor \"%.80s\": data_offsets [%llu,%llu] run past the end of "
                "the %llu-byte data section",
                nm, (unsigned long long)e->begin, (unsigned long long)e->end,
                (unsigned long long)data_len);
  uint64_t need = (uint64_t)numel * tg__dtype_size(info->dtype);
  if (e->end - e->begin != need)
    return ferr(c, TG_EFORMAT,
                "tensor \"%.80s\": data_offsets [%llu,%llu] span %llu bytes, "
                "but %s %s needs %llu",
                nm, (unsigned long long)e->begin, (unsigned long long)e->end,
                (unsigned long long)(e->end - e->begin),
                dtype_tag(info->dtype), dims_str(nd, info->shape, sb, sizeof sb),
                (unsigned long long)need);
  return TG_OK;
}

static int cmp_begin(const void *a, const void *b) {
  const st_entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp((*(st_entry *const *)a)->name, (*(st_entry *const *)b)->name);
}

static int cmp_key(const void *a, const void *b) {
  return strcmp(((const st_meta *)a)->key, ((const st_meta *)b)->key);
}

static bool is_hex16(const char *s) {
  if (strlen(s) != 16) return false;
  for (int i = 0; i < 16; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

static int parse_meta(const st_ctx *c, const cJSON *m, tg_checkpoint *ck) {
  if (!cJSON_IsObject(m))
    return ferr(c, TG_EFORMAT, "__metadata__ is %s; it must be an object of "
                "strings", json_kind(m));
  int n = cJSON_GetArraySize(m);
  ck->meta = tg__calloc((size_t)n, sizeof *ck->meta);
  if (!ck->meta) return ferr(c, TG_ENOMEM, "out of memory");
  const cJSON *v;
  cJSON_ArrayForEach(v, m) {
    if (!cJSON_IsString(v))
      return ferr(c, TG_EFORMAT,
                  "__metadata__ value of \"%.80s\" is %s; values must be strings",
                  v->string, json_kind(v));
    st_meta *p = &ck->meta[ck->n_meta];
    p->key = dup_str(v->string);
    p->value = dup_str(v->valuestring);
    ck->n_meta++;
    if (!p->key || !p->value) return ferr(c, TG_ENOMEM, "out of memory");
  }
  qsort(ck->meta, (size_t)ck->n_meta, sizeof *ck->meta, cmp_key);
  for (int i = 1; i < ck->n_meta; i++)
    if (!strcmp(ck->meta[i - 1].key, ck->meta[i].key))
      return ferr(c, TG_EFORMAT, "__metadata__ key \"%.80s\" appears twice",
                  ck->meta[i].key);
  const char *fmt = tg_checkpoint_meta(ck, "format");
  const char *ver = tg_checkpoint_meta(ck, "format_version");
  const char *sum = tg_checkpoint_meta(ck, "xxh3");
  if (fmt && !strcmp(fmt, "tapegrad")) {
    if (!ver || strcmp(ver, ST_FORMAT_VERSION) != 0)
      return ferr(c, TG_EFORMAT,
                  "format_version is %s%.20s%s; this tapegrad reads version "
                  ST_FORMAT_VERSION,
                  ver ? "\"" : "", ver ? ver : "missing", ver ? "\"" : "");
    if (!sum)
      return ferr(c, TG_EFORMAT,
                  "a tapegrad checkpoint without its xxh3 checksum in "
                  "__metadata__");
  }
  if (sum && !is_hex16(sum))
    return ferr(c, TG_EFORMAT,
                "__metadata__ xxh3 \"%.40s\" is not 16 lowercase hex digits", sum);
  return TG_OK;
}

/* --- what cJSON accepts but a safetensors header must not hold. cJSON keeps
 * neither a number's source text nor a string's length, and is lenient
 * where JSON is not, so the raw text (already parsed by cJSON, hence well
 * formed) is walked once more for: raw control characters (below 0x20)
 * inside strings and anything but the four JSON spaces between tokens; an
 * escaped NUL (\u0000), which cJSON would cut the string short at; and a
 * fraction or an exponent in the integers of shape and data_offsets ("4.0",
 * "1e1" are doubles to cJSON, equal to integers, but not integers). */
typedef struct {
  const st_ctx *c;
  const char *start, *p, *end;
} jscan;

#define JKEY 96 /* room for a key's decoded ASCII, enough to recognise ours */

static bool js_space(char ch) {
  return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static int js_ws(jscan *j) {
  while (j->p < j->end && (unsigned char)*j->p <= ' ') {
    if (!js_space(*j->p))
      return ferr(j->c, TG_EFORMAT,
                  "the header has a control character 0x%02x between JSON "
                  "tokens at byte %zu",
                  (unsigned char)*j->p, (size_t)(j->p - j->start));
    j->p++;
  }
  return TG_OK;
}

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* A string at j->p; its ASCII decoded into key (others as '?'), cut at
 * JKEY - 1 bytes. */
static int js_string(jscan *j, char *key) {
  size_t k = 0;
  j->p++; /* the opening quote */
  while (j->p < j->end && *j->p != '"') {
    unsigned char ch = (unsigned char)*j->p;
    size_t at = (size_t)(j->p - j->start);
    char out = (char)ch;
    if (ch < 0x20)
      return ferr(j->c, TG_EFORMAT,
                  "the header has a raw control character 0x%02x inside a JSON "
                  "string at byte %zu",
                  ch, at);
    if (ch == '\\' && j->p + 1 < j->end) {
      char e = *++j->p;
      if (e == 'u' && j->end - j->p > 4) {
        int v = 0;
        for (int i = 1; i <= 4; i++) {
          int h = hexval(j->p[i]);
          if (h < 0)
            return ferr(j->c, TG_EFORMAT,
                        "the header has a malformed \\u escape inside a JSON "
                        "string at byte %zu",
                        at);
          v = v << 4 | h;
        }
        if (v == 0)
          return ferr(j->c, TG_EFORMAT,
                      "the header has an escaped NUL (\\u0000) inside a JSON "
                      "string at byte %zu",
                      at);
        out = v < 0x80 ? (char)v : '?';
        j->p += 4;
      } else {
        out = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r'
            : e == 'b' ? '\b' : e == 'f' ? '\f' : e;
      }
    } else if (ch >= 0x80) {
      out = '?';
    }
    if (k + 1 < JKEY) key[k++] = out;
    j->p++;
  }
  j->p++; /* the closing quote */
  key[k] = '\0';
  return TG_OK;
}

/* A value at j->p. depth counts the enclosing containers; name is the
 * tensor (the key at depth 1), field the key at depth 2. */
static int js_value(jscan *j, int depth, const char *name, const char *field) {
  char key[JKEY];
  int rc = js_ws(j);
  if (rc || j->p >= j->end) return rc;
  char ch = *j->p;
  if (ch == '"') return js_string(j, key);
  if (ch == '{' || ch == '[') {
    bool obj = ch == '{';
    j->p++;
    for (int i = 0;; i++) {
      if ((rc = js_ws(j))) return rc;
      if (j->p >= j->end) return TG_OK;
      if (*j->p == (obj ? '}' : ']')) {
        j->p++;
        return TG_OK;
      }
      if (*j->p == ',') {
        j->p++;
        if ((rc = js_ws(j))) return rc;
      }
      if (obj) {
        if (j->p >= j->end || *j->p != '"') return TG_OK; /* cJSON checked */
        if ((rc = js_string(j, key)) || (rc = js_ws(j))) return rc;
        if (j->p < j->end && *j->p == ':') j->p++;
        rc = js_value(j, depth + 1, depth == 0 ? key : name,
                      depth == 1 ? key : field);
      } else {
        /* the integers of shape and data_offsets: an array at depth 2
         * under a tensor, not under __metadata__ */
        bool ints = depth == 2 && strcmp(name, "__metadata__") != 0 &&
                    (!strcmp(field, "shape") || !strcmp(field, "data_offsets"));
        if (ints && j->p < j->end && (*j->p == '-' || (*j->p >= '0' && *j->p <= '9'))) {
          const char *b = j->p;
          while (j->p < j->end && *j->p && strchr("+-0123456789.eE", *j->p))
            j->p++;
          if (memchr(b, '.', (size_t)(j->p - b)) || memchr(b, 'e', (size_t)(j->p - b)) ||
              memchr(b, 'E', (size_t)(j->p - b)))
            return ferr(j->c, TG_EFORMAT,
                        "tensor \"%.80s\": %s element %d is written %.*s; "
                        "%s must be integers, without a fraction or an "
                        "exponent",
                        name, field, i, (int)(j->p - b > 40 ? 40 : j->p - b), b,
                        !strcmp(field, "shape") ? "shape elements"
                                                : "data_offsets");
          rc = TG_OK;
        } else {
          rc = js_value(j, depth + 1, name, field);
        }
      }
      if (rc) return rc;
    }
  }
  /* a number, true, false or null */
  while (j->p < j->end && !js_space(*j->p) && *j->p != ',' && *j->p != '}' &&
         *j->p != ']' && (unsigned char)*j->p > ' ')
    j->p++;
  return TG_OK;
}

/* Two keys alike in one object: cJSON keeps both, and lookups would see
 * only the first. Sorted copies of the child pointers find them. */
static int cmp_item_name(const void *a, const void *b) {
  return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

static int entry_dup_keys(const st_ctx *c, const cJSON *item) {
  int n = cJSON_GetArraySize(item);
  if (n < 2) return TG_OK;
  const cJSON **v = tg__malloc((size_t)n * sizeof *v);
  if (!v) return ferr(c, TG_ENOMEM, "out of memory");
  int k = 0;
  for (const cJSON *f = item->child; f && k < n; f = f->next) v[k++] = f;
  qsort(v, (size_t)k, sizeof *v, cmp_item_name);
  int rc = TG_OK;
  for (int i = 1; i < k && !rc; i++)
    if (!strcmp(v[i - 1]->string, v[i]->string))
      rc = ferr(c, TG_EFORMAT, "tensor \"%.80s\": the key \"%.40s\" appears "
                "twice in its entry", item->string, v[i]->string);
  tg__free(v);
  return rc;
}

/* Checks the header text and builds the entries (no tensors yet). */
static int parse_header(const st_ctx *c, const char *text, size_t len,
                        uint64_t data_len, tg_checkpoint *ck) {
  size_t bad = tg__utf8_check((const unsigned char *)text, len);
  if (bad < len)
    return ferr(c, TG_EFORMAT,
                "the header is not valid UTF-8 text (byte 0x%02x at offset %zu)",
                (unsigned char)text[bad], bad);
  if (text[0] != '{')
    return ferr(c, TG_EFORMAT, "the header does not start with '{': it is not a "
                "JSON object");
  const char *end = NULL;
  unsigned long oom = json_oom;
  cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!root && json_oom != oom)
    return ferr(c, TG_ENOMEM, "out of memory while parsing the header");
  if (!root) {
    size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
    return ferr(c, TG_EFORMAT, "the header is not valid JSON (near byte %zu of "
                "%zu)", at, len);
  }
  int rc = TG_OK;
  jscan js = {c, text, text, end};
  if ((rc = js_value(&js, 0, "", ""))) goto done;
  for (const char *p = end; p < text + len; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
      rc = ferr(c, TG_EFORMAT, "the header has text after its JSON object (at "
                "byte %zu of %zu)", (size_t)(p - text), len);
      goto done;
    }
  if (!cJSON_IsObject(root)) {
    rc = ferr(c, TG_EFORMAT, "the header is not a JSON object");
    goto done;
  }
  int total = cJSON_GetArraySize(root);
  ck->e = tg__calloc((size_t)total, sizeof *ck->e);
  if (!ck->e) {
    rc = ferr(c, TG_ENOMEM, "out of memory");
    goto done;
  }
  const cJSON *item, *meta = NULL;
  cJSON_ArrayForEach(item, root) {
    if (!strcmp(item->string, "__metadata__")) {
      if (meta) {
        rc = ferr(c, TG_EFORMAT, "the header has two __metadata__ entries");
        goto done;
      }
      meta = item;
      continue;
    }
    st_entry *e = &ck->e[ck->n];
    if ((cJSON_IsObject(item) && (rc = entry_dup_keys(c, item))) ||
        (rc = parse_entry(c, item, data_len, e)))
      goto done;
    if (!(e->name = dup_str(item->string))) {
      rc = ferr(c, TG_ENOMEM, "out of memory");
      goto done;
    }
    ck->n++;
  }
  if (meta && (rc = parse_meta(c, meta, ck))) goto done;

  /* Entries in data order; lookups and the duplicate check by name. */
  qsort(ck->e, (size_t)ck->n, sizeof *ck->e, cmp_begin);
  ck->by_name = tg__malloc((size_t)ck->n * sizeof *ck->by_name);
  if (!ck->by_name) {
    rc = ferr(c, TG_ENOMEM, "out of memory");
    goto done;
  }
  for (int i = 0; i < ck->n; i++) ck->by_name[i] = &ck->e[i];
  qsort(ck->by_name, (size_t)ck->n, sizeof *ck->by_name, cmp_name);
  for (int i = 1; i < ck->n; i++)
    if (!strcmp(ck->by_name[i - 1]->name, ck->by_name[i]->name)) {
      rc = ferr(c, TG_EFORMAT, "tensor name \"%.80s\" appears twice",
                ck->by_name[i]->name);
      goto done;
    }

  /* The data section must be covered exactly: no gap, no overlap, nothing
   * after the last tensor. */
  uint64_t at = 0;
  for (int i = 0; i < ck->n; i++) {
    const st_entry *e = &ck->e[i];
    if (e->begin < at) {
      rc = ferr(c, TG_EFORMAT,
                "tensors \"%.80s\" [%llu,%llu] and \"%.80s\" [%llu,%llu] "
                "overlap",
                ck->e[i - 1].name, (unsigned long long)ck->e[i - 1].begin,
                (unsigned long long)ck->e[i - 1].end, e->name,
                (unsigned long long)e->begin, (unsigned long long)e->end);
      goto done;
    }
    if (e->begin > at) {
      if (i == 0)
        rc = ferr(c, TG_EFORMAT,
                  "a gap of %llu bytes at the start of the data section, before "
                  "tensor \"%.80s\"",
                  (unsigned long long)e->begin, e->name);
      else
        rc = ferr(c, TG_EFORMAT,
                  "a gap of %llu bytes in the data section between tensors "
                  "\"%.80s\" and \"%.80s\"",
                  (unsigned long long)(e->begin - at), ck->e[i - 1].name,
                  e->name);
      goto done;
    }
    at = e->end;
  }
  if (at != data_len)
    rc = ferr(c, TG_EFORMAT,
              "the data section holds %llu bytes but the tensors cover %llu: "
              "%llu bytes of trailing data",
              (unsigned long long)data_len, (unsigned long long)at,
              (unsigned long long)(data_len - at));
done:
  cJSON_Delete(root);
  return rc;
}

static int parse(tg__src *s, tg_checkpoint **out) {
  const st_ctx c = {s->fn, s->path};
  *out = NULL;
  if (s->size < 8)
    return ferr(&c, TG_EFORMAT,
                "the file is %llu bytes: too short for the 8-byte header length "
                "of a safetensors file",
                (unsigned long long)s->size);
  unsigned char lb[8];
  int rc = tg__src_read(s, lb, 8);
  if (rc) return rc;
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | lb[i];
  if (hlen > ST_MAX_HEADER)
    return ferr(&c, TG_EFORMAT,
                "the header length %llu is larger than the limit of %llu bytes",
                (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
  if (hlen > s->size - 8)
    return ferr(&c, TG_EFORMAT,
                "the header length %llu is larger than the %llu bytes that "
                "follow it",
                (unsigned long long)hlen, (unsigned long long)(s->size - 8));
  if (hlen < 2)
    return ferr(&c, TG_EFORMAT,
                "the header length %llu is too short for a JSON object",
                (unsigned long long)hlen);
  uint64_t data_len = s->size - 8 - hlen;

  json_hooks();
  char *text = tg__malloc((size_t)hlen);
  tg_checkpoint *ck = tg__calloc(1, sizeof *ck);
  XXH3_state_t hst, *hs = NULL;
  if (!text || !ck || !(ck->path = dup_str(s->path))) {
    rc = ferr(&c, TG_ENOMEM, "out of memory");
    goto fail;
  }
  if ((rc = tg__src_read(s, text, (size_t)hlen))) goto fail;
  if ((rc = parse_header(&c, text, (size_t)hlen, data_len, ck)))
    goto fail;

  /* The header holds together: now the data, at most the file's size. */
  const char *want = tg_checkpoint_meta(ck, "xxh3");
  if (want) {
    hs = &hst;
    XXH3_INITSTATE(hs);
    XXH3_64bits_reset(hs); /* cannot fail on a valid state */
  }
  for (int i = 0; i < ck->n; i++) {
    st_entry *e = &ck->e[i];
    e->t = tg_zeros(e->info.dtype, e->info.ndim, e->info.shape);
    if (!e->t) {
      rc = ferr(&c, TG_ENOMEM, "out of memory for tensor \"%.80s\"", e->name);
      goto fail;
    }
    e->t->flags &= ~(unsigned)TG__OWNED; /* the checkpoint frees it */
    size_t nb = (size_t)(e->end - e->begin);
    if ((rc = tg__src_read(s, e->t->data, nb))) goto fail;
    if (hs) XXH3_64bits_update(hs, e->t->data, nb);
    if (!tg__host_le())
      tg__bswap(e->t->data, (size_t)e->t->numel, tg__dtype_size(e->t->dtype));
  }
  if (hs) {
    char got[17];
    snprintf(got, sizeof got, "%016llx", (unsigned long long)XXH3_64bits_digest(hs));
    if (strcmp(got, want) != 0) {
      rc = ferr(&c, TG_ECHECKSUM,
                "checksum mismatch: the header's xxh3 is %s but the %llu data "
                "bytes hash to %s; the file is corrupt",
                want, (unsigned long long)data_len, got);
      goto fail;
    }
    ck->verified = true;
  }
  tg__free(text);
  *out = ck;
  return TG_OK;
fail:
  tg__free(text);
  tg_checkpoint_close(ck);
  return rc;
}

static tg_checkpoint *open_as(const char *fn, const char *path) {
  if (!path) {
    tg__err(TG_EINVAL, "%s: path is NULL", fn);
    return NULL;
  }
  tg__src s;
  if (tg__src_open(&s, fn, path)) return NULL;
  tg_checkpoint *ck;
  parse(&s, &ck);
  tg__src_close(&s);
  return ck;
}

tg_checkpoint *tg_checkpoint_open(const char *path) {
  return open_as("tg_checkpoint_open", path);
}

int tg__safetensors_parse(const void *buf, size_t len, tg_checkpoint **out) {
  tg__src s;
  tg__src_mem(&s, "tg_checkpoint_open", "<memory>", buf, len);
  return parse(&s, out);
}

/* --- queries */

/* Lookups search with the comparators the arrays were sorted by. */
static st_entry *find(const tg_checkpoint *ck, const char *name) {
  if (ck->n == 0) return NULL;
  st_entry key = {.name = (char *)name}, *kp = &key;
  st_entry **e = bsearch(&kp, ck->by_name, (size_t)ck->n, sizeof *ck->by_name,
                         cmp_name);
  return e ? *e : NULL;
}

int tg_checkpoint_count(const tg_checkpoint *ck) { return ck ? ck->n : 0; }

const char *tg_checkpoint_name(const tg_checkpoint *ck, int i) {
  return ck && i >= 0 && i < ck->n ? ck->e[i].name : NULL;
}

tg_tensor *tg_checkpoint_get(const tg_checkpoint *ck, const char *name) {
  if (!ck || !name) {
    tg__err(TG_EINVAL, "tg_checkpoint_get: %s is NULL", ck ? "name" : "checkpoint");
    return NULL;
  }
  st_entry *e = find(ck, name);
  if (!e) {
    tg__err(TG_EINVAL, "tg_checkpoint_get: %s: no tensor named \"%.80s\"",
            ck->path, name);
    return NULL;
  }
  return e->t;
}

const char *tg_checkpoint_meta(const tg_checkpoint *ck, const char *key) {
  if (!ck || !key || ck->n_meta == 0) return NULL;
  st_meta k = {.key = (char *)key};
  const st_meta *m = bsearch(&k, ck->meta, (size_t)ck->n_meta, sizeof *ck->meta,
                             cmp_key);
  return m ? m->value : NULL;
}

int tg_checkpoint_meta_count(const tg_checkpoint *ck) { return ck ? ck->n_meta : 0; }

const char *tg_checkpoint_meta_key(const tg_checkpoint *ck, int i) {
  return ck && i >= 0 && i < ck->n_meta ? ck->meta[i].key : NULL;
}

bool tg_checkpoint_verified(const tg_checkpoint *ck) { return ck && ck->verified; }

/* --- loading into a model */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks names[0..n-1] are non-NULL and distinct (and, if strict, non-empty
 * UTF-8 and not "__metadata__"). */
static int check_names(const char *fn, const char *what,
                       const char *const *names, int n, bool strict) {
  for (int i = 0; i < n; i++) {
    if (!names[i]) return tg__err(TG_EINVAL, "%s: %s[%d] is NULL", fn, what, i);
    if (!strict) continue;
    size_t len = strlen(names[i]);
    if (!len) return tg__err(TG_EINVAL, "%s: %s[%d] is empty", fn, what, i);
    if (tg__utf8_check((const unsigned char *)names[i], len) < len)
      return tg__err(TG_EINVAL, "%s: %s[%d] is not valid UTF-8", fn, what, i);
    if (!strcmp(names[i], "__metadata__"))
      return tg__err(TG_EINVAL, "%s: %s[%d] is \"__metadata__\", a reserved "
                     "name", fn, what, i);
  }
  if (n < 2) return TG_OK;
  const char **s = tg__malloc((size_t)n * sizeof *s);
  if (!s) return tg__err(TG_ENOMEM, "%s: out of memory", fn);
  memcpy(s, names, (size_t)n * sizeof *s);
  qsort(s, (size_t)n, sizeof *s, cmp_str);
  int rc = TG_OK;
  for (int i = 1; i < n && !rc; i++)
    if (!strcmp(s[i - 1], s[i]))
      rc = tg__err(TG_EINVAL, "%s: the name \"%.80s\" is given twice", fn, s[i]);
  tg__free(s);
  return rc;
}

/* The arguments tg_save and tg_load_into share. */
static int check_args(const char *fn, const char *path, const char *const *names,
                      tg_tensor *const *tensors, int n) {
  if (!path) return tg__err(TG_EINVAL, "%s: path is NULL", fn);
  if (n < 0) return tg__err(TG_EINVAL, "%s: n is %d", fn, n);
  if (n > 0 && (!names || !tensors))
    return tg__err(TG_EINVAL, "%s: %s is NULL", fn, !names ? "names" : "tensors");
  for (int i = 0; i < n; i++)
    if (!tensors[i])
      return tg__err(TG_EINVAL, "%s: tensors[%d] is NULL", fn, i);
  return TG_OK;
}

int tg_load_into(const char *path, const char *const *names,
                 tg_tensor *const *tensors, int n) {
  const char *fn = "tg_load_into";
  if (check_args(fn, path, names, tensors, n)) return tg_last_status();
  int rc = check_names(fn, "names", names, n, false);
  if (rc) return rc;

  tg_checkpoint *ck = open_as(fn, path);
  if (!ck) return tg_last_status();
  const st_ctx c = {fn, path};
  for (int i = 0; i < n && !rc; i++) {
    st_entry *e = find(ck, names[i]);
    char sa[128], sb[128];
    if (!e) {
      rc = ferr(&c, TG_EFORMAT, "no tensor named \"%.80s\" in the file",
                names[i]);
    } else if (e->t->dtype != tensors[i]->dtype) {
      rc = ferr(&c, TG_EDTYPE,
                "tensor \"%.80s\" is %s %s in the file but the target is %s %s",
                names[i], tg_dtype_name(e->t->dtype), tg__shape_str(e->t, sa),
                tg_dtype_name(tensors[i]->dtype),
                tg__shape_str(tensors[i], sb));
    } else if (!tg__same_shape(e->t, tensors[i])) {
      rc = ferr(&c, TG_ESHAPE,
                "tensor \"%.80s\" is %s in the file but the target is %s",
                names[i], tg__shape_str(e->t, sa), tg__shape_str(tensors[i], sb));
    }
  }
  if (!rc)
    for (int i = 0; i < n; i++) {
      const tg_tensor *src = find(ck, names[i])->t;
      memcpy(tensors[i]->data, src->data,
             (size_t)src->numel * tg__dtype_size(src->dtype));
    }
  tg_checkpoint_close(ck);
  return rc;
}

/* --- saving */

/* Feeds n bytes of elements of size elem to the hash in little-endian
 * order. */
static void hash_le(XXH3_state_t *hs, const void *p, size_t n, size_t elem) {
  if (tg__host_le()) {
    XXH3_64bits_update(hs, p, n);
    return;
  }
  unsigned char buf[4096];
  const unsigned char *b = p;
  while (n > 0) {
    size_t k = n < sizeof buf ? n : sizeof buf;
    memcpy(buf, b, k);
    tg__bswap(buf, k / elem, elem);
    XXH3_64bits_update(hs, buf, k);
    b += k;
    n -= k;
  }
}

static bool reserved_key(const char *k) {
  return !strcmp(k, "format") || !strcmp(k, "format_version") ||
         !strcmp(k, "xxh3");
}

static int check_meta_kv(const char *fn, const char *const *kv, int *pairs) {
  int m = 0;
  if (kv)
    for (; kv[2 * m]; m++) {
      const char *k = kv[2 * m], *v = kv[2 * m + 1];
      if (!v)
        return tg__err(TG_EINVAL, "%s: meta_kv: key \"%.80s\" has no value "
                       "(the list is key, value, ..., NULL)", fn, k);
      if (!*k) return tg__err(TG_EINVAL, "%s: meta_kv: an empty key", fn);
      if (reserved_key(k))
        return tg__err(TG_EINVAL, "%s: meta_kv: the key \"%s\" is reserved for "
                       "tapegrad", fn, k);
      if (tg__utf8_check((const unsigned char *)k, strlen(k)) < strlen(k) ||
          tg__utf8_check((const unsigned char *)v, strlen(v)) < strlen(v))
        return tg__err(TG_EINVAL, "%s: meta_kv: key \"%.80s\" or its value is "
                       "not valid UTF-8", fn, k);
      for (int j = 0; j < m; j++)
        if (!strcmp(kv[2 * j], k))
          return tg__err(TG_EINVAL, "%s: meta_kv: the key \"%.80s\" is given "
                         "twice", fn, k);
    }
  *pairs = m;
  return TG_OK;
}

/* The header JSON for the tensors and metadata; NULL on out of memory. */
static char *build_header(const char *const *names, tg_tensor *const *tensors,
                          int n, const char *const *kv, int pairs,
                          const char *sum) {
  cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
  if (!root || !meta || !cJSON_AddItemToObject(root, "__metadata__", meta)) {
    cJSON_Delete(root);
    cJSON_Delete(meta);
    return NULL;
  }
  bool ok = cJSON_AddStringToObject(meta, "format", "tapegrad") &&
            cJSON_AddStringToObject(meta, "format_version", ST_FORMAT_VERSION) &&
            cJSON_AddStringToObject(meta, "xxh3", sum);
  for (int i = 0; ok && i < pairs; i++)
    ok = cJSON_AddStringToObject(meta, kv[2 * i], kv[2 * i + 1]) != NULL;
  uint64_t at = 0;
  for (int i = 0; ok && i < n; i++) {
    const tg_tensor *t = tensors[i];
    uint64_t nb = (uint64_t)t->numel * tg__dtype_size(t->dtype);
    cJSON *e = cJSON_CreateObject();
    ok = e && cJSON_AddItemToObject(root, names[i], e);
    if (!ok) {
      cJSON_Delete(e);
      break;
    }
    ok = cJSON_AddStringToObject(e, "dtype", dtype_tag(t->dtype)) != NULL;
    cJSON *shape = ok ? cJSON_AddArrayToObject(e, "shape") : NULL;
    cJSON *off = shape ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
    ok = off != NULL;
    for (int d = 0; ok && d < t->ndim; d++)
      ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
    ok = ok && cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at)) &&
         cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(at + nb)));
    at += nb;
  }
  char *s = ok ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  return s;
}

int tg_save(const char *path, const char *const *names,
            tg_tensor *const *tensors, int n, const char *const *meta_kv) {
  const char *fn = "tg_save";
  if (check_args(fn, path, names, tensors, n)) return tg_last_status();
  int pairs = 0;
  int rc = check_names(fn, "names", names, n, true);
  if (rc || (rc = check_meta_kv(fn, meta_kv, &pairs))) return rc;

  uint64_t total = 0;
  XXH3_state_t hst, *hs = &hst;
  XXH3_INITSTATE(hs);
  XXH3_64bits_reset(hs);
  for (int i = 0; i < n; i++) {
    size_t es = tg__dtype_size(tensors[i]->dtype);
    size_t nb = (size_t)tensors[i]->numel * es;
    total += nb;
    if (total > ST_MAX_INT)
      return tg__err(TG_ERANGE, "%s: %s: more than 2^53 bytes of data", fn, path);
    hash_le(hs, tensors[i]->data, nb, es);
  }
  char sum[17];
  snprintf(sum, sizeof sum, "%016llx", (unsigned long long)XXH3_64bits_digest(hs));

  json_hooks();
  char *json = build_header(names, tensors, n, meta_kv, pairs, sum);
  if (!json) return tg__err(TG_ENOMEM, "%s: %s: out of memory", fn, path);
  /* Spaces pad the header so the data starts 8-byte aligned. */
  size_t jlen = strlen(json), pad = (8 - jlen % 8) % 8;
  uint64_t hlen = jlen + pad;
  unsigned char lb[8];
  for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(hlen >> (8 * i));

  tg__afile a;
  if (tg__afile_open(&a, fn, path)) {
    cJSON_free(json);
    return a.rc;
  }
  tg__afile_write(&a, lb, 8);
  tg__afile_write(&a, json, jlen);
  tg__afile_write(&a, "        ", pad);
  cJSON_free(json);
  for (int i = 0; i < n; i++) {
    size_t es = tg__dtype_size(tensors[i]->dtype);
    tg__afile_write_le(&a, tensors[i]->data, (size_t)tensors[i]->numel * es, es);
  }
  return tg__afile_commit(&a);
}
