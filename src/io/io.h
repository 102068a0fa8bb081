/* src/io/io.h: the file formats' shared pieces: byte sources read as
 * hostile, atomic replacement, and the parsers from memory the fuzzers
 * drive. */
#ifndef TAPEGRAD_PRIV_IO_H
#define TAPEGRAD_PRIV_IO_H

#include "../engine/tensor.h"

/* fileio.c: reading files treated as hostile, and replacing files
 * atomically. Messages name fn and the path. */
const char *tg__errstr(int errnum, char *buf, size_t n);
/* A byte source: a regular file of known size, a memory buffer (the
 * fuzzers' way in), or, opened with tg__src_open_stream, a gzip'd regular
 * file inflated by zlib with tapegrad's allocator; gz is set then, and size is that of the
 * compressed file. pos counts the (decompressed) bytes consumed. Nothing
 * else is opened: a FIFO, a device or a socket could block the caller
 * forever, and none of the loaders documents reading a stream. */
struct tg__gz;
typedef struct {
  const char *fn, *path;
  FILE *f;          /* also under gz, which inflates what it reads */
  struct tg__gz *gz;
  const unsigned char *mem;
  bool gzipped; /* gz decompresses (rather than passing a stream through) */
  uint64_t size, pos;
} tg__src;
/* A regular file; anything else is TG_EIO ("not a regular file"), found
 * without blocking. */
int tg__src_open(tg__src *s, const char *fn, const char *path);
/* A regular file as tg__src_open; a gzip'd one (found by its magic bytes,
 * whatever its name) is read through zlib. */
int tg__src_open_stream(tg__src *s, const char *fn, const char *path);
void tg__src_mem(tg__src *s, const char *fn, const char *name, const void *buf,
                 size_t len);
/* Exactly n bytes, from a source without gz; callers check sizes against
 * s->size first, so a short read means the file changed under us (TG_EIO). */
int tg__src_read(tg__src *s, void *buf, size_t n);
/* Up to n bytes; *got < n only at a clean end of file. A read error is
 * TG_EIO; corrupt gzip data or a gzip stream cut short is TG_EFORMAT. */
int tg__src_read_some(tg__src *s, void *buf, size_t n, size_t *got);
void tg__src_close(tg__src *s);
bool tg__host_le(void);
void tg__bswap(void *p, size_t n_elems, size_t elem);
/* Offset of the first byte that is not well-formed UTF-8 (or is NUL); n
 * when there is none. */
size_t tg__utf8_check(const unsigned char *s, size_t n);

/* Writes path.tg-tmp.<pid>.XXXXXX beside path, holding an flock on it,
 * after removing the ones of path whose writer died (their lock could be
 * taken; fileio.c says why that is safe); then commit: flush, fsync, close, rename
 * over path, fsync the folder. open refuses a path that exists and is not
 * a regular file, or whose mode gives its owner no write permission (TG_EIO,
 * path untouched), and makes every allocation commit needs. The first error
 * sticks (TG_EIO with a message); commit then removes the temporary file
 * and returns it, leaving path untouched. After the rename commit fails
 * only if the folder cannot be synced, and says the file is in place.
 * abort removes the temporary file; open does so itself when it fails. */
typedef struct {
  const char *fn, *path;
  char *tmp, *dir; /* the temporary file; the folder to sync */
  int fd, lock_fd; /* lock_fd: the same open file, holding the flock */
  unsigned char *buf;
  size_t used;
  int rc;
} tg__afile;
int tg__afile_open(tg__afile *a, const char *fn, const char *path);
int tg__afile_write(tg__afile *a, const void *p, size_t n);
/* Elements of elem bytes, written little-endian whatever the host. */
int tg__afile_write_le(tg__afile *a, const void *p, size_t n, size_t elem);
int tg__afile_commit(tg__afile *a);
void tg__afile_abort(tg__afile *a);

/* Parsers from memory, for the fuzzers: as the public loaders, on a buffer
 * instead of a file. */
int tg__safetensors_parse(const void *buf, size_t len, tg_checkpoint **out);
tg_tensor *tg__npy_parse(const void *buf, size_t len);
tg_tensor *tg__idx_parse(const void *buf, size_t len, tg_dtype dtype);

#endif
