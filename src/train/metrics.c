/* src/train/metrics.c: classification accuracy and the confusion matrix, from a
 * model's scores and the true labels. */
#include <math.h>

#include "train.h"

/* scores float [N,C], labels int32 [N] with values in [0, C). */
static int check_scores(const char *fn, const tg_tensor *s, const tg_tensor *l) {
  char ss[96], sl[96];
  if (!s || !l) return tg__err(TG_EINVAL, "%s: NULL argument", fn);
  int rc = tg__check_alive(fn, s, "scores");
  if (rc) return rc;
  if (s->ndim != 2 || !tg__is_float(s->dtype))
    return tg__err(s->ndim != 2 ? TG_ESHAPE : TG_EDTYPE,
                   "%s: scores is %s %s; it must be a 2-D [N,C] float tensor",
                   fn, tg_dtype_name(s->dtype), tg__shape_str(s, ss));
  if (l->dtype != TG_I32 || l->ndim != 1 || l->shape[0] != s->shape[0])
    return tg__err(l->dtype != TG_I32 ? TG_EDTYPE : TG_ESHAPE,
                   "%s: labels is %s %s; for scores %s it must be int32 [%lld]",
                   fn, tg_dtype_name(l->dtype), tg__shape_str(l, sl),
                   tg__shape_str(s, ss), (long long)s->shape[0]);
  const int32_t *y = l->data;
  for (int64_t i = 0; i < l->numel; i++)
    if (y[i] < 0 || y[i] >= s->shape[1])
      return tg__err(TG_ERANGE,
                     "%s: labels[%lld] is %d; classes must be in [0, %lld)", fn,
                     (long long)i, (int)y[i], (long long)s->shape[1]);
  return TG_OK;
}

/* The first index of the largest value; NaN loses to any number. */
#define ARGMAX(T, S)                                                         \
  static int64_t argmax_##S(const T *r, int64_t n) {                         \
    int64_t best = 0;                                                        \
    for (int64_t j = 1; j < n; j++)                                          \
      if (r[j] > r[best] || (isnan(r[best]) && !isnan(r[j]))) best = j;      \
    return best;                                                             \
  }
TG__BOTH(ARGMAX)

static int64_t predict(const tg_tensor *s, int64_t row) {
  int64_t c = s->shape[1];
  return s->dtype == TG_F32
             ? argmax_f32((const float *)s->data + row * c, c)
             : argmax_f64((const double *)s->data + row * c, c);
}

double tg_accuracy(const tg_tensor *scores, const tg_tensor *labels) {
  int rc = check_scores("tg_accuracy", scores, labels);
  if (rc) return rc;
  const int32_t *y = labels->data;
  int64_t right = 0, n = scores->shape[0];
  for (int64_t i = 0; i < n; i++) right += predict(scores, i) == y[i];
  return (double)right / (double)n;
}

int tg_confusion(const tg_tensor *scores, const tg_tensor *labels,
                 int64_t *matrix) {
  int rc = check_scores("tg_confusion", scores, labels);
  if (rc) return rc;
  if (!matrix) return tg__err(TG_EINVAL, "tg_confusion: matrix is NULL");
  const int32_t *y = labels->data;
  int64_t c = scores->shape[1];
  for (int64_t i = 0; i < scores->shape[0]; i++)
    matrix[y[i] * c + predict(scores, i)]++;
  return TG_OK;
}

int tg_confusion_print(FILE *f, const int64_t *m, int C) {
  if (!f || !m) return tg__err(TG_EINVAL, "tg_confusion_print: NULL argument");
  if (C < 1)
    return tg__err(TG_EINVAL, "tg_confusion_print: C is %d; it must be >= 1", C);
  /* One width for every column: the widest count or class number. */
  int64_t big = C - 1, total = 0, right = 0;
  for (int64_t i = 0; i < (int64_t)C * C; i++) {
    if (m[i] < 0)
      return tg__err(TG_EINVAL,
                     "tg_confusion_print: entry %lld is %lld; counts are >= 0",
                     (long long)i, (long long)m[i]);
    if (m[i] > big) big = m[i];
    total += m[i];
  }
  int w = 1;
  for (int64_t v = big; v >= 10; v /= 10) w++;
  fprintf(f, "true\\pred");
  for (int j = 0; j < C; j++) fprintf(f, " %*d", w, j);
  fputc('\n', f);
  for (int i = 0; i < C; i++) {
    fprintf(f, "%9d", i);
    for (int j = 0; j < C; j++)
      fprintf(f, " %*lld", w, (long long)m[(int64_t)i * C + j]);
    fputc('\n', f);
    right += m[(int64_t)i * C + i];
  }
  if (total > 0)
    fprintf(f, "accuracy %.4f (%lld of %lld)\n", (double)right / (double)total,
            (long long)right, (long long)total);
  else
    fprintf(f, "accuracy - (0 samples)\n");
  return ferror(f) ? tg__err(TG_EIO, "tg_confusion_print: write failed") : TG_OK;
}
