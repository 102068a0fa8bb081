/* src/train/report.c: a training run's outputs (tapegrad/report.h): SVG line
 * charts, the terminal progress bar, atomically replaced text files, the
 * output-path check, and the hash over a list of tensors. Files are written
 * through the public tg_write_file_atomic, the checkpoints' own code. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train.h"

static const char *errtext(int e, char *buf, size_t n) {
  if (strerror_r(e, buf, n) != 0) snprintf(buf, n, "error %d", e);
  return buf;
}

/* --- output paths */

int tg_output_check(const char *path) {
  static const char fn[] = "tg_output_check";
  if (!path) return tg__err(TG_EINVAL, "%s: the path is NULL", fn);
  const char *slash = strrchr(path, '/');
  if (!*path || (slash && !slash[1]))
    return tg__err(TG_EINVAL, "%s: '%s' names no file (it is empty or ends in '/')", fn, path);
  size_t n = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
  char *dir = tg__malloc(n + 1);
  if (!dir) return tg__err(TG_ENOMEM, "%s: out of memory", fn);
  if (!slash) strcpy(dir, ".");
  else memcpy(dir, path, n), dir[n] = '\0';
  struct stat st;
  char eb[128];
  const char *why = NULL;
  if (stat(dir, &st) != 0) why = errtext(errno, eb, sizeof eb);
  else if (!S_ISDIR(st.st_mode)) why = "it is not a folder";
  else if (access(dir, W_OK | X_OK) != 0) why = errtext(errno, eb, sizeof eb);
  else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) why = "the path is a folder";
  int rc = TG_OK;
  if (why)
    rc = tg__err(TG_EIO, "%s: cannot write into the folder '%s': %s", fn, dir, why);
  /* The same rule as the atomic replace at the end of a run (a device, a
   * FIFO or a read-only file is never replaced), checked now so that the
   * run does not train first and fail then. */
  else if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
    rc = tg__err(TG_EIO, "%s: '%s' is not a regular file; it would be left as it is", fn, path);
  else if (stat(path, &st) == 0 && !(st.st_mode & S_IWUSR))
    rc = tg__err(TG_EIO, "%s: '%s' is read-only (mode %04o); it would be left as it is", fn,
                 path, (unsigned)(st.st_mode & 07777));
  tg__free(dir);
  return rc;
}

/* --- text files replaced atomically */

struct tg_textfile {
  FILE *f;
  char *buf; /* open_memstream's, so the C library's malloc */
  size_t len;
  char *path;
};

tg_textfile *tg_textfile_open(const char *path) {
  if (tg_output_check(path)) return NULL;
  tg_textfile *tf = tg__malloc(sizeof *tf);
  char *p = tg__malloc(strlen(path) + 1);
  if (!tf || !p) {
    tg__free(tf);
    tg__free(p);
    tg__err(TG_ENOMEM, "tg_textfile_open: %s: out of memory", path);
    return NULL;
  }
  *tf = (tg_textfile){.path = strcpy(p, path)};
  if (!(tf->f = open_memstream(&tf->buf, &tf->len))) {
    tg__free(p);
    tg__free(tf);
    tg__err(TG_ENOMEM, "tg_textfile_open: %s: cannot open a memory stream", path);
    return NULL;
  }
  return tf;
}

FILE *tg_textfile_stream(tg_textfile *tf) { return tf ? tf->f : NULL; }

static void textfile_free(tg_textfile *tf) {
  free(tf->buf);
  tg__free(tf->path);
  tg__free(tf);
}

int tg_textfile_commit(tg_textfile *tf) {
  if (!tf) return tg__err(TG_EINVAL, "tg_textfile_commit: the file is NULL");
  int bad = ferror(tf->f);
  /* fclose makes buf and len final */
  if (fclose(tf->f) != 0 || bad) {
    int rc = tg__err(TG_EIO, "tg_textfile_commit: %s: writing the text failed; "
                     "the file was not replaced", tf->path);
    textfile_free(tf);
    return rc;
  }
  int rc = tg_write_file_atomic(tf->path, tf->buf, tf->len);
  textfile_free(tf);
  return rc;
}

void tg_textfile_abort(tg_textfile *tf) {
  if (!tf) return;
  fclose(tf->f);
  textfile_free(tf);
}

/* --- SVG line charts */

enum { MAX_CHARTS = 8, MAX_SERIES = 8, TICKS = 4 };
static const char *const palette[MAX_SERIES] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                                "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

/* Text as XML character data or an attribute value; control characters
 * XML 1.0 forbids become '?'. */
static void xml_text(FILE *f, const char *s) {
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    switch (c) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '\'': fputs("&apos;", f); break;
    case '"': fputs("&quot;", f); break;
    default: fputc(c < 0x20 && c != '\t' && c != '\n' && c != '\r' ? '?' : c, f);
    }
  }
}

static bool has_text(const char *s) { return s && *s; }

static double px(const tg_series *s, int64_t i) {
  int64_t k = i * (s->stride > 0 ? s->stride : 1);
  return s->x ? s->x[k] : (double)(i + 1);
}
static double py(const tg_series *s, int64_t i) {
  return s->y[i * (s->stride > 0 ? s->stride : 1)];
}

/* A round step (1, 2 or 5 times a power of ten) near span / TICKS: 3 to 8
 * ticks. */
static double nice_step(double span) {
  double raw = span / TICKS, p = pow(10, floor(log10(raw))), m = raw / p;
  return (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10) * p;
}

/* [lo, hi] widened to multiples of a round step (a whole one when the
 * values are whole numbers, such as epochs); a single value, or no finite
 * one, gets a span of its own. */
static void axis_range(double *lo, double *hi, double *step, bool whole) {
  if (!(*lo <= *hi)) *lo = 0, *hi = 1;
  if (*hi - *lo < 1e-12 * fmax(1, fabs(*hi))) {
    double d = whole ? 1 : fabs(*hi) > 0 ? fabs(*hi) / 10 : 1;
    *lo -= d, *hi += d;
  }
  *step = nice_step(*hi - *lo);
  if (whole && *step < 1) *step = 1;
  *lo = floor(*lo / *step + 1e-9) * *step;
  *hi = ceil(*hi / *step - 1e-9) * *step;
}

/* Decimals that show a tick step exactly (to a point). */
static int decimals(double step) {
  int d = (int)ceil(-log10(step) - 1e-9);
  return d < 0 ? 0 : d > 9 ? 9 : d;
}

static int check_charts(const char *fn, const tg_chart *c, int n) {
  if (!c || n < 1 || n > MAX_CHARTS)
    return tg__err(TG_EINVAL, "%s: %d charts%s; give 1 to %d", fn, n,
                   c ? "" : " at NULL", MAX_CHARTS);
  for (int p = 0; p < n; p++) {
    if (!c[p].series || c[p].n_series < 1 || c[p].n_series > MAX_SERIES)
      return tg__err(TG_EINVAL, "%s: chart %d has %d series%s; give 1 to %d", fn, p,
                     c[p].n_series, c[p].series ? "" : " at NULL", MAX_SERIES);
    for (int s = 0; s < c[p].n_series; s++) {
      const tg_series *se = &c[p].series[s];
      if (se->n < 0 || se->stride < 0 || (se->n > 0 && !se->y))
        return tg__err(TG_EINVAL, "%s: chart %d, series %d: n %lld, stride %lld, y %s", fn,
                       p, s, (long long)se->n, (long long)se->stride,
                       se->y ? "given" : "NULL");
    }
  }
  return TG_OK;
}

/* One panel, its plot area at (x0, y0) of pw by ph. */
static void panel(FILE *f, const tg_chart *c, double x0, double y0, double pw, double ph) {
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  double last_sum = 0;
  int n_last = 0;
  bool whole = true;
  for (int s = 0; s < c->n_series; s++) {
    double last = NAN;
    for (int64_t i = 0; i < c->series[s].n; i++) {
      double x = px(&c->series[s], i), y = py(&c->series[s], i);
      if (!isfinite(x) || !isfinite(y)) continue;
      xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, y), yhi = fmax(yhi, y);
      whole = whole && x == floor(x) && fabs(x) < 1e15;
      last = y;
    }
    if (isfinite(last)) last_sum += last, n_last++;
  }
  if (c->y_from_zero && ylo <= yhi) ylo = fmin(ylo, 0), yhi = fmax(yhi, 0);
  double xs, ys;
  axis_range(&xlo, &xhi, &xs, whole);
  axis_range(&ylo, &yhi, &ys, false);
  /* the legend goes in the right-hand corner the lines end away from */
  bool legend_low = n_last && (last_sum / n_last - ylo) / (yhi - ylo) > 0.5;
  int n_names = 0;
  for (int s = 0; s < c->n_series; s++) n_names += has_text(c->series[s].name);
  fprintf(f, "<rect x='%g' y='%g' width='%g' height='%g' fill='none' stroke='#444'/>\n",
          x0, y0, pw, ph);
  if (has_text(c->title)) {
    fprintf(f, "<text x='%g' y='%g' text-anchor='middle'>", x0 + pw / 2, y0 - 8);
    xml_text(f, c->title);
    fputs("</text>\n", f);
  }
  if (has_text(c->xlabel)) {
    fprintf(f, "<text x='%g' y='%g' text-anchor='middle'>", x0 + pw / 2, y0 + ph + 36);
    xml_text(f, c->xlabel);
    fputs("</text>\n", f);
  }
  if (has_text(c->ylabel)) {
    double lx = x0 - 52, ly = y0 + ph / 2;
    fprintf(f, "<text x='%g' y='%g' transform='rotate(-90 %g %g)' text-anchor='middle'>",
            lx, ly, lx, ly);
    xml_text(f, c->ylabel);
    fputs("</text>\n", f);
  }
  int yd = decimals(ys), xd = decimals(xs);
  long ny = lround((yhi - ylo) / ys), nx = lround((xhi - xlo) / xs);
  for (long k = 0; k <= ny; k++) {
    double v = ylo + (double)k * ys, y = y0 + ph - ph * (v - ylo) / (yhi - ylo);
    fprintf(f, "<line x1='%g' x2='%g' y1='%.1f' y2='%.1f' stroke='#ddd'/>"
               "<text x='%g' y='%.1f' text-anchor='end'>%.*f</text>\n",
            x0, x0 + pw, y, y, x0 - 6, y + 4, yd, v == 0 ? 0.0 : v);
  }
  for (long k = 0; k <= nx; k++) {
    double v = xlo + (double)k * xs, x = x0 + pw * (v - xlo) / (xhi - xlo);
    fprintf(f, "<text x='%.1f' y='%g' text-anchor='middle'>%.*f</text>\n", x, y0 + ph + 18,
            xd, v == 0 ? 0.0 : v);
  }
  int legend = 0;
  for (int s = 0; s < c->n_series; s++) {
    const tg_series *se = &c->series[s];
    bool open = false;
    for (int64_t i = 0; i < se->n; i++) {
      double x = px(se, i), y = py(se, i);
      if (!isfinite(x) || !isfinite(y)) { /* a gap */
        if (open) fputs("'/>\n", f);
        open = false;
        continue;
      }
      if (!open)
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='",
                palette[s]);
      open = true;
      fprintf(f, "%.1f,%.1f ", x0 + pw * (x - xlo) / (xhi - xlo),
              y0 + ph - ph * (y - ylo) / (yhi - ylo));
    }
    if (open) fputs("'/>\n", f);
    if (has_text(se->name)) {
      double ly = legend_low ? y0 + ph - 12 - 16 * (n_names - 1 - legend) : y0 + 20 + 16 * legend;
      legend++;
      fprintf(f, "<text x='%g' y='%g' text-anchor='end' fill='%s'>", x0 + pw - 10, ly,
              palette[s]);
      xml_text(f, se->name);
      fputs("</text>\n", f);
    }
  }
}

int tg_chart_svg(FILE *f, const char *title, const tg_chart *charts, int n_charts) {
  if (!f) return tg__err(TG_EINVAL, "tg_chart_svg: the stream is NULL");
  int rc = check_charts("tg_chart_svg", charts, n_charts);
  if (rc) return rc;
  /* one panel 540 wide; more, 360 each, side by side */
  const double left = 70, gap = 80, top = 60, ph = 260;
  const double pw = n_charts == 1 ? 540 : 360;
  const double W = left + n_charts * (pw + gap) - gap + 30, H = top + ph + 60;
  fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%g' height='%g' "
             "font-family='sans-serif' font-size='12'>\n"
             "<rect width='100%%' height='100%%' fill='white'/>\n", W, H);
  if (has_text(title)) {
    /* a long title gets a smaller font rather than running off the edges
     * (a sans-serif letter is about 0.55 of the font size wide) */
    double size = fmax(8, fmin(15, (W - 20) / (0.55 * (double)strlen(title))));
    fprintf(f, "<text x='%g' y='24' font-size='%.1f' text-anchor='middle'>", W / 2, size);
    xml_text(f, title);
    fputs("</text>\n", f);
  }
  for (int p = 0; p < n_charts; p++)
    panel(f, &charts[p], left + p * (pw + gap), top, pw, ph);
  fputs("</svg>\n", f);
  if (ferror(f)) return tg__err(TG_EIO, "tg_chart_svg: writing to the stream failed");
  return TG_OK;
}

int tg_chart_svg_save(const char *path, const char *title, const tg_chart *charts,
                      int n_charts) {
  /* arguments first, so a bad call leaves no file */
  int rc = check_charts("tg_chart_svg_save", charts, n_charts);
  if (rc) return rc;
  tg_textfile *tf = tg_textfile_open(path);
  if (!tf) return tg_last_status();
  if ((rc = tg_chart_svg(tg_textfile_stream(tf), title, charts, n_charts))) {
    tg_textfile_abort(tf);
    return rc;
  }
  return tg_textfile_commit(tf);
}

/* --- progress bar */

bool tg_progress_visible(FILE *f) {
  int fd = f ? fileno(f) : -1;
  return fd >= 0 && isatty(fd);
}

int tg_progress_format(char *buf, size_t cap, const char *label, int64_t done,
                       int64_t total, double rate, const char *unit, double eta) {
  enum { WIDTH = 30 };
  if (!buf || !cap || !label || total <= 0) {
    tg__err(TG_EINVAL, "tg_progress_format: buf %s, cap %zu, label %s, total %lld",
            buf ? "given" : "NULL", cap, label ? "given" : "NULL", (long long)total);
    return -1;
  }
  if (done < 0) done = 0;
  if (done > total) done = total;
  if (!(rate >= 0) || !isfinite(rate)) rate = 0;
  if (!(eta >= 0) || !isfinite(eta)) eta = 0;
  char bar[WIDTH + 1];
  int filled = (int)((double)done / (double)total * WIDTH);
  for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '.';
  bar[WIDTH] = '\0';
  int n = snprintf(buf, cap, "\r%s [%s] %3d%%  %8.0f %s/s  ETA %6.1fs ", label, bar,
                   (int)((double)done / (double)total * 100), rate, unit ? unit : "items",
                   eta);
  return n < 0 ? -1 : (size_t)n >= cap ? (int)cap - 1 : n;
}

int tg_progress(FILE *f, const char *label, int64_t done, int64_t total, double rate,
                const char *unit, double eta) {
  char line[512];
  if (!f) return tg__err(TG_EINVAL, "tg_progress: the stream is NULL");
  if (tg_progress_format(line, sizeof line, label, done, total, rate, unit, eta) < 0)
    return tg_last_status();
  if (!tg_progress_visible(f)) return 0;
  fputs(line, f);
  fflush(f);
  return 1;
}

void tg_progress_clear(FILE *f) {
  if (!tg_progress_visible(f)) return;
  fprintf(f, "\r%*s\r", 110, "");
  fflush(f);
}

/* --- hashing parameters */

uint64_t tg_tensors_hash(tg_tensor *const *ts, int n) {
  if (n < 0 || (!ts && n > 0)) {
    tg__err(TG_EINVAL, "tg_tensors_hash: %d tensors at %s", n, ts ? "a list" : "NULL");
    return 0;
  }
  uint64_t h = 0;
  for (int i = 0; i < n; i++) {
    if (!ts[i]) {
      tg__err(TG_EINVAL, "tg_tensors_hash: tensor %d of %d is NULL", i, n);
      return 0;
    }
    h = h * 31 + tg_tensor_hash(ts[i]);
  }
  return h;
}
