/* tests/test_report.c: tapegrad/report.h: SVG charts (well-formed XML, their
 * points, escaping, gaps at NaN, bad arguments), the output-path check,
 * atomically replaced text files (no temporary file left, a read-only
 * folder refused), the progress bar on a terminal and off one, and the
 * tensor-list hash. */
#define _XOPEN_SOURCE 700 /* posix_openpt, for a terminal to draw on */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* --- helpers */

/* What f holds, as a new NUL-terminated string. */
static char *contents(FILE *f) {
  fflush(f);
  long n = ftell(f);
  ck_assert_int_ge(n, 0);
  char *b = malloc((size_t)n + 1);
  rewind(f);
  ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
  b[n] = '\0';
  return b;
}

static char *file_text(const char *path) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  char *b = contents(f);
  fclose(f);
  return b;
}

/* Entries of a folder, "." and ".." aside. */
static int entries(const char *dir) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

static int count(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

/* A strict enough XML check for what the charts write: one root element,
 * every tag closed in order, attributes quoted, '<' and '&' only as markup
 * or one of the five predefined entities, no control characters. NULL when
 * well-formed, else what is wrong. */
static const char *xml_error(const char *s) {
  static char why[160];
  const char *stack[64];
  size_t len[64];
  int depth = 0, roots = 0;
  const char *p = s;
  while (*p) {
    if ((unsigned char)*p < 0x20 && *p != '\n' && *p != '\t' && *p != '\r')
      return "a control character";
    if (*p == '&') {
      static const char *const ents[] = {"&amp;", "&lt;", "&gt;", "&apos;", "&quot;"};
      int ok = 0;
      for (int k = 0; k < 5; k++) ok |= !strncmp(p, ents[k], strlen(ents[k]));
      if (!ok) return "a bare '&'";
      p++;
      continue;
    }
    if (*p == '>') return "a '>' outside a tag";
    if (*p != '<') {
      if (!depth && *p != '\n' && *p != ' ') return "text outside the root element";
      p++;
      continue;
    }
    bool closing = p[1] == '/';
    const char *name = p + 1 + closing;
    size_t n = strcspn(name, " \t\n/>");
    if (!n) return "a tag without a name";
    const char *q = name + n;
    if (closing) {
      if (*q != '>') return "junk in a closing tag";
      if (!depth || len[depth - 1] != n || strncmp(stack[depth - 1], name, n)) {
        snprintf(why, sizeof why, "</%.*s> closes nothing open", (int)n, name);
        return why;
      }
      depth--;
      p = q + 1;
      continue;
    }
    /* attributes: name='value' or name="value", values without '<' */
    for (;;) {
      while (*q == ' ' || *q == '\n' || *q == '\t') q++;
      if (*q == '>' || (q[0] == '/' && q[1] == '>')) break;
      size_t an = strcspn(q, "= \t\n/>");
      if (!an || q[an] != '=' || (q[an + 1] != '\'' && q[an + 1] != '"'))
        return "an attribute without a quoted value";
      char quote = q[an + 1];
      const char *v = q + an + 2, *end = strchr(v, quote);
      if (!end) return "an unterminated attribute";
      for (const char *c = v; c < end; c++) {
        if (*c == '<') return "a '<' in an attribute";
        if (*c == '&' && strncmp(c, "&amp;", 5) && strncmp(c, "&lt;", 4) &&
            strncmp(c, "&gt;", 4) && strncmp(c, "&apos;", 6) && strncmp(c, "&quot;", 6))
          return "a bare '&' in an attribute";
      }
      q = end + 1;
    }
    if (!depth) roots++;
    if (*q == '/') {
      p = q + 2;
      continue;
    }
    if (depth == 64) return "too deep";
    stack[depth] = name, len[depth] = n, depth++;
    p = q + 1;
  }
  if (depth) return "an element left open";
  if (roots != 1) return "not exactly one root element";
  return NULL;
}

/* Coordinate pairs over every points='...' attribute. */
static int points(const char *svg) {
  int n = 0;
  for (const char *p = svg; (p = strstr(p, "points='")); ) {
    p += 8;
    const char *end = strchr(p, '\'');
    for (const char *c = p; c < end; c++) n += *c == ',';
    p = end;
  }
  return n;
}

static char *chart_text(const char *title, const tg_chart *c, int n, int *rc) {
  FILE *f = tmpfile();
  ck_assert_ptr_nonnull(f);
  *rc = tg_chart_svg(f, title, c, n);
  char *s = contents(f);
  fclose(f);
  return s;
}

/* --- SVG charts */

START_TEST(svg_points_and_well_formed) {
  /* 1, 7 and 50 points, one and two panels */
  const int sizes[] = {1, 7, 50};
  for (int k = 0; k < 3; k++) {
    int n = sizes[k];
    double *y = malloc(3 * (size_t)n * sizeof *y);
    for (int i = 0; i < 3 * n; i++) y[i] = 1.0 / (1 + i % n) + (i >= n) * 50;
    const tg_series a[] = {{"loss", NULL, y, n, 0}};
    const tg_series b[] = {{"train", NULL, y + n, n, 0}, {"test", NULL, y + 2 * n, n, 1}};
    const tg_chart charts[] = {{"loss", "epoch", "nats", a, 1, true},
                               {"accuracy", "epoch", NULL, b, 2, false}};
    for (int panels = 1; panels <= 2; panels++) {
      int rc;
      char *s = chart_text("a run", charts, panels, &rc);
      ck_assert_int_eq(rc, TG_OK);
      const char *why = xml_error(s);
      ck_assert_msg(!why, "%d points, %d panels: %s", n, panels, why ? why : "");
      ck_assert(!strncmp(s, "<svg xmlns='http://www.w3.org/2000/svg'", 39));
      ck_assert_int_eq(count(s, "<polyline"), panels == 1 ? 1 : 3);
      ck_assert_int_eq(points(s), panels == 1 ? n : 3 * n);
      ck_assert_ptr_nonnull(strstr(s, ">a run</text>"));
      ck_assert_ptr_nonnull(strstr(s, ">epoch</text>"));
      ck_assert_int_eq(count(s, ">train</text>"), panels == 2);
      free(s);
    }
    free(y);
  }
}
END_TEST

START_TEST(svg_strided_and_explicit_x) {
  /* rows of {step, loss}: the stride reads one field of each */
  const double rows[4][2] = {{10, 3}, {20, 2}, {30, 1.5}, {40, 1}};
  const tg_series s[] = {{"loss", &rows[0][0], &rows[0][1], 4, 2}};
  const tg_chart c = {NULL, "step", "loss", s, 1, true};
  int rc;
  char *svg = chart_text(NULL, &c, 1, &rc);
  ck_assert_int_eq(rc, TG_OK);
  ck_assert_int_eq(points(svg), 4);
  /* x from 10 to 40 spans the plot's width: first and last x 70 and 610 */
  ck_assert_ptr_nonnull(strstr(svg, "points='70.0,"));
  ck_assert_ptr_nonnull(strstr(svg, " 610.0,"));
  /* the y axis starts at 0 and its ticks are round numbers */
  ck_assert_ptr_nonnull(strstr(svg, ">0</text>"));
  ck_assert_ptr_nonnull(strstr(svg, ">3</text>"));
  ck_assert_ptr_nonnull(strstr(svg, ">40</text>"));
  free(svg);
}
END_TEST

START_TEST(svg_escapes_text) {
  const double y[2] = {1, 2};
  const tg_series s[] = {{"a<b & \"c\"", NULL, y, 2, 0}};
  const tg_chart c = {"x > 'y'", "e&e", "<none>", s, 1, false};
  int rc;
  char *svg = chart_text("t <&'\"> \x01 end", &c, 1, &rc);
  ck_assert_int_eq(rc, TG_OK);
  const char *why = xml_error(svg);
  ck_assert_msg(!why, "%s", why ? why : "");
  ck_assert_ptr_nonnull(strstr(svg, ">t &lt;&amp;&apos;&quot;&gt; ? end</text>"));
  ck_assert_ptr_nonnull(strstr(svg, ">a&lt;b &amp; &quot;c&quot;</text>"));
  ck_assert_ptr_nonnull(strstr(svg, ">x &gt; &apos;y&apos;</text>"));
  ck_assert_ptr_nonnull(strstr(svg, ">e&amp;e</text>"));
  ck_assert_ptr_nonnull(strstr(svg, ">&lt;none&gt;</text>"));
  free(svg);
}
END_TEST

START_TEST(svg_nan_makes_gaps) {
  const double y[7] = {1, NAN, 3, 4, INFINITY, -INFINITY, 2};
  const double allnan[3] = {NAN, NAN, NAN};
  const tg_series s[] = {{"gappy", NULL, y, 7, 0}, {"empty", NULL, allnan, 3, 0},
                         {"none", NULL, NULL, 0, 0}};
  const tg_chart c = {"gaps", NULL, NULL, s, 3, false};
  int rc;
  char *svg = chart_text("gaps", &c, 1, &rc);
  ck_assert_int_eq(rc, TG_OK);
  const char *why = xml_error(svg);
  ck_assert_msg(!why, "%s", why ? why : "");
  /* {1}, {3,4}, {2}: three lines of four points; the other series none */
  ck_assert_int_eq(count(svg, "<polyline"), 3);
  ck_assert_int_eq(points(svg), 4);
  ck_assert_ptr_null(strstr(svg, "nan"));
  ck_assert_ptr_null(strstr(svg, "inf"));
  free(svg);
  /* nothing finite at all still gives a chart with axes */
  const tg_chart c2 = {NULL, NULL, NULL, s + 1, 2, true};
  svg = chart_text(NULL, &c2, 1, &rc);
  ck_assert_int_eq(rc, TG_OK);
  ck_assert_ptr_null(xml_error(svg));
  ck_assert_int_eq(count(svg, "<polyline"), 0);
  ck_assert_ptr_null(strstr(svg, "nan"));
  free(svg);
}
END_TEST

START_TEST(svg_bad_arguments) {
  const double y[2] = {1, 2};
  const tg_series ok[] = {{"a", NULL, y, 2, 0}};
  const tg_series no_y[] = {{"a", NULL, NULL, 2, 0}};
  const tg_series neg[] = {{"a", NULL, y, -1, 0}};
  const tg_series bad_stride[] = {{"a", NULL, y, 2, -1}};
  tg_series nine[9];
  for (int i = 0; i < 9; i++) nine[i] = ok[0];
  const tg_chart good = {NULL, NULL, NULL, ok, 1, false};
  const tg_chart bad[] = {{NULL, NULL, NULL, NULL, 1, false},
                          {NULL, NULL, NULL, ok, 0, false},
                          {NULL, NULL, NULL, nine, 9, false},
                          {NULL, NULL, NULL, no_y, 1, false},
                          {NULL, NULL, NULL, neg, 1, false},
                          {NULL, NULL, NULL, bad_stride, 1, false}};
  ck_assert_int_eq(tg_chart_svg(NULL, "t", &good, 1), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_chart_svg", "stream is NULL");
  tg_chart many[9];
  for (int i = 0; i < 9; i++) many[i] = good;
  FILE *f = tmpfile();
  ck_assert_int_eq(tg_chart_svg(f, "t", NULL, 1), TG_EINVAL);
  ck_assert_int_eq(tg_chart_svg(f, "t", &good, 0), TG_EINVAL);
  ck_assert_int_eq(tg_chart_svg(f, "t", many, 9), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_chart_svg", "9 charts");
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    ck_assert_int_eq(tg_chart_svg(f, "t", &bad[i], 1), TG_EINVAL);
    ck_assert_int_eq(tg_chart_svg_save(P("bad.svg"), "t", &bad[i], 1), TG_EINVAL);
  }
  ck_assert_error_has(TG_EINVAL, "tg_chart_svg_save", "stride -1");
  ck_assert_int_eq(ftell(f), 0); /* nothing written by a refused call */
  fclose(f);
  ck_assert_int_eq(access(P("bad.svg"), F_OK), -1);
}
END_TEST

START_TEST(svg_save) {
  const double y[3] = {3, 2, 1};
  const tg_series s[] = {{"loss", NULL, y, 3, 0}};
  const tg_chart c = {NULL, "epoch", NULL, s, 1, true};
  ck_assert_int_eq(tg_chart_svg_save(P("c.svg"), "saved", &c, 1), TG_OK);
  char *svg = file_text(P("c.svg"));
  ck_assert_ptr_null(xml_error(svg));
  ck_assert_int_eq(points(svg), 3);
  free(svg);
  ck_assert_int_eq(tg_chart_svg_save(P("missing/c.svg"), "saved", &c, 1), TG_EIO);
  ck_assert_error_has(TG_EIO, "cannot write into the folder", "missing");
  ck_assert_int_eq(access(P("missing"), F_OK), -1);
}
END_TEST

/* --- output paths */

START_TEST(output_check) {
  ck_assert_int_eq(tg_output_check(P("new.txt")), TG_OK);
  ck_assert_int_eq(access(P("new.txt"), F_OK), -1); /* nothing created */
  ck_assert_int_eq(tg_output_check("plain-name-in-cwd"), TG_OK);
  ck_assert_int_eq(tg_output_check(NULL), TG_EINVAL);
  ck_assert_int_eq(tg_output_check(""), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_output_check", "names no file");
  ck_assert_int_eq(tg_output_check(P("dir/")), TG_EINVAL);
  ck_assert_int_eq(tg_output_check(P("missing/out.csv")), TG_EIO);
  ck_assert_error_has(TG_EIO, "tg_output_check", "cannot write into the folder",
                      P("missing"), "No such file");
  FILE *f = fopen(P("plain"), "w");
  fclose(f);
  ck_assert_int_eq(tg_output_check(P("plain/out.csv")), TG_EIO);
  ck_assert_error_has(TG_EIO, "it is not a folder");
  ck_assert_int_eq(mkdir(P("afolder"), 0755), 0);
  ck_assert_int_eq(tg_output_check(P("afolder")), TG_EIO);
  ck_assert_error_has(TG_EIO, "the path is a folder");
  /* an existing target must be a regular file its owner may write, as the
   * atomic replace requires: a device, a FIFO or a 0444 file fails now */
  ck_assert_int_eq(tg_output_check(P("plain")), TG_OK);
  ck_assert_int_eq(tg_output_check("/dev/null"), TG_EIO);
  ck_assert_error_has(TG_EIO, "tg_output_check", "/dev/null", "not a regular file");
  ck_assert_int_eq(mkfifo(P("fifo"), 0644), 0);
  ck_assert_int_eq(tg_output_check(P("fifo")), TG_EIO);
  ck_assert_error_has(TG_EIO, "not a regular file");
  ck_assert_int_eq(chmod(P("plain"), 0444), 0);
  ck_assert_int_eq(tg_output_check(P("plain")), TG_EIO);
  ck_assert_error_has(TG_EIO, "read-only", "0444");
}
END_TEST

/* --- atomic text files */

START_TEST(textfile_commit_and_abort) {
  ck_assert_int_eq(mkdir(P("tf"), 0755), 0);
  counting_allocator(true);
  tg_textfile *tf = tg_textfile_open(P("tf/log.csv"));
  ck_assert_ptr_nonnull(tf);
  FILE *f = tg_textfile_stream(tf);
  fprintf(f, "epoch,loss\n");
  for (int i = 1; i <= 1000; i++) fprintf(f, "%d,%.3f\n", i, 1.0 / i);
  /* nothing reaches the folder before the commit */
  ck_assert_int_eq(entries(P("tf")), 0);
  ck_assert_int_eq(tg_textfile_commit(tf), TG_OK);
  ck_assert_int_eq(entries(P("tf")), 1); /* the file, no temporary one */
  char *t = file_text(P("tf/log.csv"));
  ck_assert(!strncmp(t, "epoch,loss\n1,1.000\n2,0.500\n", 27));
  ck_assert_int_eq(count(t, "\n"), 1001);
  free(t);
  /* an abort leaves the old file as it was */
  tf = tg_textfile_open(P("tf/log.csv"));
  fprintf(tg_textfile_stream(tf), "other\n");
  tg_textfile_abort(tf);
  tg_textfile_abort(NULL);
  t = file_text(P("tf/log.csv"));
  ck_assert(!strncmp(t, "epoch,loss\n", 11));
  free(t);
  /* a commit replaces it whole */
  tf = tg_textfile_open(P("tf/log.csv"));
  fprintf(tg_textfile_stream(tf), "new\n");
  ck_assert_int_eq(tg_textfile_commit(tf), TG_OK);
  t = file_text(P("tf/log.csv"));
  ck_assert_str_eq(t, "new\n");
  free(t);
  ck_assert_int_eq(entries(P("tf")), 1);
  ck_assert_int_eq(*test_allocs(), *test_frees());
  ck_assert_int_gt(*test_allocs(), 0);
  counting_allocator(false);
  ck_assert_ptr_null(tg_textfile_stream(NULL));
  ck_assert_int_eq(tg_textfile_commit(NULL), TG_EINVAL);
}
END_TEST

START_TEST(textfile_missing_folder) {
  ck_assert_ptr_null(tg_textfile_open(P("nowhere/log.csv")));
  ck_assert_error_has(TG_EIO, "cannot write into the folder", P("nowhere"));
  ck_assert_ptr_null(tg_textfile_open(""));
  ck_assert_int_eq(tg_last_status(), TG_EINVAL);
  ck_assert_int_eq(access(P("nowhere"), F_OK), -1);
}
END_TEST

/* A folder its user may not write: root ignores the mode bits, so as root
 * the writes run in a child that has become an unprivileged user. */
START_TEST(textfile_read_only_folder) {
  ck_assert_int_eq(mkdir(P("ro"), 0755), 0);
  ck_assert_int_eq(tg_write_file_atomic(P("ro/old"), "old\n", 4), TG_OK);
  ck_assert_int_eq(chmod(P("ro"), 0555), 0);
  ck_assert_int_eq(chmod(test_dir(), 0755), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    if (geteuid() == 0 && (setgid(65534) || setuid(65534))) _exit(10);
    int bad = 0;
    if (tg_output_check(P("ro/new")) != TG_EIO) bad |= 1;
    if (!strstr(tg_last_error(), "cannot write into the folder")) bad |= 2;
    if (tg_textfile_open(P("ro/new"))) bad |= 4;
    if (tg_write_file_atomic(P("ro/new"), "x", 1) != TG_EIO) bad |= 8;
    if (tg_write_file_atomic(P("ro/old"), "new\n", 4) != TG_EIO) bad |= 16;
    _exit(bad);
  }
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  chmod(P("ro"), 0755);
  ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d",
                WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  ck_assert_int_eq(entries(P("ro")), 1); /* the old file and no temporary */
  char *t = file_text(P("ro/old"));
  ck_assert_str_eq(t, "old\n");
  free(t);
}
END_TEST

START_TEST(write_file_atomic) {
  ck_assert_int_eq(mkdir(P("wa"), 0755), 0);
  ck_assert_int_eq(tg_write_file_atomic(P("wa/f"), "abc", 3), TG_OK);
  char *t = file_text(P("wa/f"));
  ck_assert_str_eq(t, "abc");
  free(t);
  ck_assert_int_eq(tg_write_file_atomic(P("wa/f"), NULL, 0), TG_OK);
  t = file_text(P("wa/f"));
  ck_assert_str_eq(t, "");
  free(t);
  ck_assert_int_eq(entries(P("wa")), 1);
  ck_assert_int_eq(tg_write_file_atomic(NULL, "a", 1), TG_EINVAL);
  ck_assert_int_eq(tg_write_file_atomic("", "a", 1), TG_EINVAL);
  ck_assert_int_eq(tg_write_file_atomic(P("wa/g"), NULL, 1), TG_EINVAL);
  ck_assert_error_has(TG_EINVAL, "tg_write_file_atomic", "data is NULL");
  ck_assert_int_eq(tg_write_file_atomic(P("wa/none/g"), "a", 1), TG_EIO);
  ck_assert_error_has(TG_EIO, "tg_write_file_atomic", "cannot create a temporary file");
  /* a FIFO is not replaced */
  ck_assert_int_eq(mkfifo(P("wa/fifo"), 0644), 0);
  ck_assert_int_eq(tg_write_file_atomic(P("wa/fifo"), "a", 1), TG_EIO);
  ck_assert_error_has(TG_EIO, "not a regular file");
  ck_assert_int_eq(entries(P("wa")), 2);
}
END_TEST

/* --- progress bar */

START_TEST(progress_format) {
  char b[256];
  int n = tg_progress_format(b, sizeof b, "epoch 2/10", 30, 100, 1234.4, "samples", 5.25);
  const char *want =
      "\repoch 2/10 [#########.....................]  30%      1234 samples/s  ETA    5.2s ";
  ck_assert_str_eq(b, want);
  ck_assert_int_eq(n, (int)strlen(want));
  /* clamped, and a bad rate or ETA shows as 0 */
  tg_progress_format(b, sizeof b, "x", 150, 100, NAN, NULL, -1);
  ck_assert_str_eq(b, "\rx [##############################] 100%         0 items/s  ETA    0.0s ");
  tg_progress_format(b, sizeof b, "x", -5, 100, INFINITY, "t", INFINITY);
  ck_assert_str_eq(b, "\rx [..............................]   0%         0 t/s  ETA    0.0s ");
  /* cut short to fit */
  ck_assert_int_eq(tg_progress_format(b, 8, "label", 1, 2, 1, "u", 1), 7);
  ck_assert_str_eq(b, "\rlabel ");
  ck_assert_int_eq(tg_progress_format(b, sizeof b, "x", 1, 0, 1, "u", 1), -1);
  ck_assert_error_has(TG_EINVAL, "tg_progress_format", "total 0");
  ck_assert_int_eq(tg_progress_format(NULL, 9, "x", 1, 2, 1, "u", 1), -1);
  ck_assert_int_eq(tg_progress_format(b, 0, "x", 1, 2, 1, "u", 1), -1);
  ck_assert_int_eq(tg_progress_format(b, 9, NULL, 1, 2, 1, "u", 1), -1);
}
END_TEST

START_TEST(progress_only_on_a_terminal) {
  FILE *f = tmpfile();
  ck_assert(!tg_progress_visible(f));
  ck_assert(!tg_progress_visible(NULL));
  ck_assert_int_eq(tg_progress(f, "step 1/2", 1, 2, 10, "tokens", 1), 0);
  tg_progress_clear(f);
  ck_assert_int_eq(ftell(f), 0);
  ck_assert_int_eq(tg_progress(f, "step", 1, 0, 10, "tokens", 1), TG_EINVAL);
  ck_assert_int_eq(tg_progress(NULL, "step", 1, 2, 10, "tokens", 1), TG_EINVAL);
  fclose(f);

  /* a pseudo-terminal: the line is drawn */
  int m = posix_openpt(O_RDWR | O_NOCTTY);
  if (m < 0 || grantpt(m) || unlockpt(m)) {
    fprintf(stderr, "test_report: no pseudo-terminal here; the drawn bar is not checked\n");
    return;
  }
  int s = open(ptsname(m), O_RDWR | O_NOCTTY);
  ck_assert_int_ge(s, 0);
  FILE *tty = fdopen(s, "w");
  ck_assert(tg_progress_visible(tty));
  ck_assert_int_eq(tg_progress(tty, "step 1/2", 1, 2, 10, "tokens", 1), 1);
  char b[256] = {0}, want[256];
  tg_progress_format(want, sizeof want, "step 1/2", 1, 2, 10, "tokens", 1);
  size_t got = 0;
  while (got < strlen(want)) {
    ssize_t r = read(m, b + got, sizeof b - 1 - got);
    ck_assert_int_gt(r, 0);
    got += (size_t)r;
  }
  ck_assert_str_eq(b, want);
  fclose(tty);
  close(m);
}
END_TEST

/* --- hashing */

START_TEST(tensors_hash) {
  const double a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {0.5, -0.25};
  tg_tensor *t[2] = {f64_from(TG_SHAPE(2, 3), a), f64_from(TG_SHAPE(2), b)};
  tg_tensor *u[2] = {tg_tensor_clone(t[0]), tg_tensor_clone(t[1])};
  uint64_t h = tg_tensors_hash(t, 2);
  ck_assert_uint_ne(h, 0);
  ck_assert_uint_eq(tg_tensors_hash(u, 2), h); /* equal values, equal hash */
  ck_assert_uint_eq(h, 31 * tg_tensor_hash(t[0]) + tg_tensor_hash(t[1]));
  /* one bit of any tensor, anywhere */
  for (int k = 0; k < 2; k++)
    for (int64_t byte = 0; byte < tg_tensor_numel(u[k]) * 8; byte += 3) {
      unsigned char *d = tg_tensor_data(u[k]);
      d[byte] ^= 0x10;
      ck_assert_uint_ne(tg_tensors_hash(u, 2), h);
      d[byte] ^= 0x10;
    }
  ck_assert_uint_eq(tg_tensors_hash(u, 2), h);
  /* order, shape and dtype count */
  tg_tensor *rev[2] = {t[1], t[0]};
  ck_assert_uint_ne(tg_tensors_hash(rev, 2), h);
  tg_tensor *r[2] = {f64_from(TG_SHAPE(3, 2), a), t[1]};
  ck_assert_uint_ne(tg_tensors_hash(r, 2), h);
  float af[6] = {1, 2, 3, 4, 5, 6};
  tg_tensor *fl = tg_tensor_from(TG_F32, TG_SHAPE(2, 3), af);
  tg_tensor *g[2] = {fl, t[1]};
  ck_assert_uint_ne(tg_tensors_hash(g, 2), h);
  ck_assert_uint_eq(tg_tensors_hash(t, 1), tg_tensor_hash(t[0]));
  ck_assert_uint_eq(tg_tensors_hash(NULL, 0), 0);
  ck_assert_uint_eq(tg_tensors_hash(NULL, 2), 0);
  ck_assert_error_has(TG_EINVAL, "tg_tensors_hash");
  ck_assert_uint_eq(tg_tensors_hash(t, -1), 0);
  tg_tensor *withnull[2] = {t[0], NULL};
  ck_assert_uint_eq(tg_tensors_hash(withnull, 2), 0);
  ck_assert_error_has(TG_EINVAL, "tensor 1 of 2 is NULL");
  for (int k = 0; k < 2; k++) tg_tensor_free(t[k]), tg_tensor_free(u[k]);
  tg_tensor_free(r[0]);
  tg_tensor_free(fl);
}
END_TEST

int main(void) {
  make_dir("test_report");
  Suite *s = suite_create("report");
  TCase *svg = tcase_create("svg");
  tcase_add_test(svg, svg_points_and_well_formed);
  tcase_add_test(svg, svg_strided_and_explicit_x);
  tcase_add_test(svg, svg_escapes_text);
  tcase_add_test(svg, svg_nan_makes_gaps);
  tcase_add_test(svg, svg_bad_arguments);
  tcase_add_test(svg, svg_save);
  suite_add_tcase(s, svg);
  TCase *files = tcase_create("files");
  tcase_add_test(files, output_check);
  tcase_add_test(files, textfile_commit_and_abort);
  tcase_add_test(files, textfile_missing_folder);
  tcase_add_test(files, textfile_read_only_folder);
  tcase_add_test(files, write_file_atomic);
  suite_add_tcase(s, files);
  TCase *misc = tcase_create("progress and hash");
  tcase_add_test(misc, progress_format);
  tcase_add_test(misc, progress_only_on_a_terminal);
  tcase_add_test(misc, tensors_hash);
  suite_add_tcase(s, misc);
  int rc = run_suite(s);
  remove_tree(test_dir());
  return rc;
}
