/* tapegrad/report.h: what a training program shows and writes about a run:
 * line charts as SVG, a progress bar on a terminal, text files replaced
 * atomically, a check that an output path can be written, and one hash
 * over a list of tensors. */
#ifndef TAPEGRAD_REPORT_H
#define TAPEGRAD_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- output paths */

/* Whether a file can be written at path, checked before a long run so that
 * a mistyped folder fails at once rather than after the first epoch: the
 * path must name a file (not be empty nor end in '/'), its folder must
 * exist, be a folder, and be writable and searchable, and path itself must
 * not be a folder. An existing path must be a regular file with its
 * owner's write bit set (the rule of the atomic replace, which leaves a
 * device, a FIFO or a read-only file as it is). Nothing is created. Returns
 * TG_OK; TG_EINVAL when path is NULL or names no file; TG_EIO otherwise,
 * with a message of the form "tg_output_check: cannot write into the folder
 * 'DIR': REASON" or "tg_output_check: 'PATH' is not a regular file ...". */
TG_API int tg_output_check(const char *path);

/* --- text files replaced atomically: write with stdio, then commit.
 *
 *   tg_textfile *tf = tg_textfile_open("log.csv");
 *   if (!tf) ...tg_last_error()...
 *   fprintf(tg_textfile_stream(tf), "epoch,loss\n");
 *   if (tg_textfile_commit(tf)) ...
 *
 * The text gathers in memory and commit hands it to tg_write_file_atomic
 * (tapegrad/io.h): a reader of the path sees the old file or the whole new
 * one, and a failed write leaves the old file and no temporary file. */
typedef struct tg_textfile tg_textfile;

/* Checks path with tg_output_check, then opens an in-memory stream for it.
 * The caller owns the result and ends it with exactly one of commit or
 * abort. NULL with a message (TG_EINVAL, TG_EIO, TG_ENOMEM) on error. */
TG_API tg_textfile *tg_textfile_open(const char *path);
/* The stream to write to; valid until commit or abort. NULL for NULL. */
TG_API FILE *tg_textfile_stream(tg_textfile *tf);
/* Writes what the stream holds to the path atomically and frees tf (also
 * on error). TG_OK; TG_EIO when a write to the stream failed or the file
 * could not be replaced (the path is then untouched); TG_EINVAL for NULL. */
TG_API int tg_textfile_commit(tg_textfile *tf);
/* Frees tf and forgets its text; the path is untouched. NULL is a no-op. */
TG_API void tg_textfile_abort(tg_textfile *tf);

/* --- SVG line charts
 *
 * One or more panels side by side under a title; each panel has its own
 * axes, labels and any number of named series, drawn as polylines in a
 * fixed palette with a legend. Axis ranges come from the finite points,
 * widened to round ticks. A point whose x or y is NaN or infinite is left
 * out and breaks its line (the points before and after it are separate
 * polylines), so a series with no gaps is exactly one <polyline>, and a
 * series with no finite point draws nothing. Every text (titles, labels,
 * names) is escaped for XML. */
typedef struct {
  const char *name;    /* the legend's text; NULL or "" for none */
  const double *x;     /* NULL: the points are at x = 1, 2, ..., n */
  const double *y;     /* n values; may be NULL when n is 0 */
  int64_t n;           /* >= 0 */
  int64_t stride;      /* elements between consecutive points of x and y;
                          0 means 1 (a stride lets a series read one field
                          of an array of structs of doubles) */
} tg_series;

typedef struct {
  const char *title, *xlabel, *ylabel; /* each NULL or "" for none */
  const tg_series *series;
  int n_series;     /* 1..8 */
  bool y_from_zero; /* the y axis includes 0 (losses); else it fits the data */
} tg_chart;

/* Writes the whole SVG document (title may be NULL) to f, n_charts >= 1
 * panels (at most 8). Allocates nothing. TG_OK; TG_EINVAL (and nothing
 * written) for NULL pointers, counts out of range, or a series with y NULL
 * and n > 0; TG_EIO when the stream reports a write error. */
TG_API int tg_chart_svg(FILE *f, const char *title, const tg_chart *charts,
                        int n_charts);
/* tg_chart_svg into path through a tg_textfile: replaced atomically. */
TG_API int tg_chart_svg_save(const char *path, const char *title,
                             const tg_chart *charts, int n_charts);

/* --- progress bar */

/* True when f is a terminal: the progress bar draws only there, so a run
 * whose stderr is a file or a pipe logs no carriage returns. */
TG_API bool tg_progress_visible(FILE *f);
/* Formats one progress line,
 *   "\r<label> [#########.....................]  30%  <rate> <unit>/s  ETA <eta>s "
 * into buf (at most cap bytes, NUL-terminated, cut short if need be):
 * done of total fills the 30-wide bar; rate and eta (seconds) are the
 * caller's, printed as given (negative or non-finite ones as 0); done is
 * clamped to [0, total]. Returns the length it wrote, or -1 (TG_EINVAL
 * recorded) for a NULL buf or label, cap 0, or total <= 0. */
TG_API int tg_progress_format(char *buf, size_t cap, const char *label,
                              int64_t done, int64_t total, double rate,
                              const char *unit, double eta);
/* Draws that line on f and flushes it, when f is a terminal; else writes
 * nothing. Returns 1 when drawn, 0 when not a terminal, a negative status
 * for bad arguments (as tg_progress_format, or f NULL). */
TG_API int tg_progress(FILE *f, const char *label, int64_t done, int64_t total,
                       double rate, const char *unit, double eta);
/* Blanks the line a progress bar drew, on a terminal only. */
TG_API void tg_progress_clear(FILE *f);

/* --- hashing parameters */

/* One 64-bit hash of n tensors in order: h = 31 h + tg_tensor_hash(t[i])
 * from h = 0, where tg_tensor_hash is XXH3_64bits over the dtype, shape and
 * data. The same values, shapes and dtypes in the same order give the same
 * hash on every run, thread count and build of this version (the bytes are
 * hashed as stored: equal across machines of one byte order); a changed
 * bit in any one tensor always changes it. Two runs that print equal
 * hashes have, with overwhelming odds, equal parameters. Returns 0 with
 * TG_EINVAL recorded when ts is NULL with n > 0, n < 0, or a tensor is
 * NULL; 0 for n == 0. */
TG_API uint64_t tg_tensors_hash(tg_tensor *const *ts, int n);

#ifdef __cplusplus
}
#endif
#endif
