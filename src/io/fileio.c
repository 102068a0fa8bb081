/* src/io/fileio.c: what the checkpoint, .npy and IDX code share: a byte source
 * over a regular file, a gzip'd file or stream, or a memory buffer (for the
 * fuzzers), byte-order helpers, a UTF-8 check, and a writer that replaces a
 * file atomically. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "io.h"

/* The most one inflate call is asked for (it counts in unsigned int), and
 * the compressed bytes read from the file at a time. */
#define GZ_READ_CHUNK ((size_t)1 << 20)
#define GZ_IN ((size_t)1 << 17)

/* A gzip reader: inflate over the source's FILE, with zlib's memory from
 * tg_set_allocator's functions (gzopen's reader would take plain malloc). */
struct tg__gz {
  z_stream z;
  bool eof;    /* the FILE has no more bytes */
  bool member; /* inside a gzip member, which must reach its end */
  unsigned char in[GZ_IN];
};

static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
  (void)opaque;
  return tg__calloc(items, size);
}

static void z_free(voidpf opaque, voidpf p) {
  (void)opaque;
  tg__free(p);
}

const char *tg__errstr(int errnum, char *buf, size_t n) {
  if (strerror_r(errnum, buf, n) != 0) snprintf(buf, n, "error %d", errnum);
  return buf;
}

static int src_io_err(const tg__src *s, const char *what, int errnum) {
  char eb[128];
  return tg__err(TG_EIO, "%s: %s: %s: %s", s->fn, s->path, what,
                 tg__errstr(errnum, eb, sizeof eb));
}

/* Opens path for reading and refuses anything but a regular file. The open
 * does not block: without O_NONBLOCK, opening a FIFO waits for a writer
 * that may never come, and a device may wait for a carrier; the status is
 * then read from the descriptor itself (no race with a rename), and only
 * then is blocking I/O switched back on. */
static int src_fopen(tg__src *s, const char *fn, const char *path) {
  memset(s, 0, sizeof *s);
  s->fn = fn;
  s->path = path;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return src_io_err(s, "cannot open", errno);
  struct stat st;
  int rc = TG_OK, fl;
  if (fstat(fd, &st) != 0)
    rc = src_io_err(s, "cannot stat", errno);
  else if (S_ISDIR(st.st_mode))
    rc = src_io_err(s, "cannot read", EISDIR);
  else if (!S_ISREG(st.st_mode))
    rc = tg__err(TG_EIO, "%s: %s: not a regular file (%s)", fn, path,
                 S_ISFIFO(st.st_mode)  ? "a FIFO"
                 : S_ISCHR(st.st_mode) ? "a character device"
                 : S_ISBLK(st.st_mode) ? "a block device"
                 : S_ISSOCK(st.st_mode) ? "a socket"
                                        : "not a file");
  else if ((fl = fcntl(fd, F_GETFL)) < 0 ||
           fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
    rc = src_io_err(s, "cannot clear O_NONBLOCK", errno);
  else if (!(s->f = fdopen(fd, "rb")))
    rc = src_io_err(s, "cannot open a stream on it", errno);
  if (rc) {
    close(fd);
    return rc;
  }
  s->size = (uint64_t)st.st_size;
  return TG_OK;
}

int tg__src_open(tg__src *s, const char *fn, const char *path) {
  return src_fopen(s, fn, path);
}

int tg__src_open_stream(tg__src *s, const char *fn, const char *path) {
  int rc = src_fopen(s, fn, path);
  if (rc) return rc;
  unsigned char m[2];
  size_t got = fread(m, 1, 2, s->f);
  if (ferror(s->f)) {
    rc = src_io_err(s, "read failed", errno);
    tg__src_close(s);
    return rc;
  }
  s->gzipped = got == 2 && m[0] == 0x1f && m[1] == 0x8b;
  if (!s->gzipped) {
    rewind(s->f);
    return TG_OK;
  }
  /* A gzip'd file: inflate reads it from byte 0. */
  rewind(s->f);
  struct tg__gz *g = tg__malloc(sizeof *g);
  if (!g) {
    tg__src_close(s);
    return tg__err(TG_ENOMEM, "%s: %s: out of memory for the gzip reader", fn,
                   path);
  }
  memset(&g->z, 0, sizeof g->z);
  g->z.zalloc = z_alloc;
  g->z.zfree = z_free;
  g->eof = g->member = false;
  /* 15 + 16: a gzip wrapper around the largest window */
  int zr = inflateInit2(&g->z, 15 + 16);
  if (zr != Z_OK) {
    tg__free(g);
    tg__src_close(s);
    return tg__err(zr == Z_MEM_ERROR ? TG_ENOMEM : TG_EIO,
                   "%s: %s: cannot start the gzip reader: %s", fn, path,
                   zr == Z_MEM_ERROR ? "out of memory" : zError(zr));
  }
  s->gz = g;
  return TG_OK;
}

void tg__src_mem(tg__src *s, const char *fn, const char *name, const void *buf,
                 size_t len) {
  memset(s, 0, sizeof *s);
  s->fn = fn;
  s->path = name;
  s->mem = buf;
  s->size = len;
}

int tg__src_read(tg__src *s, void *buf, size_t n) {
  if (n > s->size - s->pos)
    return tg__err(TG_EIO, "%s: %s: the file is shorter than when it was opened",
                   s->fn, s->path);
  if (s->mem) {
    memcpy(buf, s->mem + s->pos, n);
  } else if (fread(buf, 1, n, s->f) != n) {
    if (ferror(s->f)) return src_io_err(s, "read failed", errno);
    return tg__err(TG_EIO, "%s: %s: the file shrank while it was being read",
                   s->fn, s->path);
  }
  s->pos += n;
  return TG_OK;
}

/* Makes at least want compressed bytes available to inflate, unless the
 * file ends first (then g->eof). */
static int gz_fill(tg__src *s, size_t want) {
  struct tg__gz *g = s->gz;
  if (g->z.avail_in >= want || g->eof) return TG_OK;
  memmove(g->in, g->z.next_in ? g->z.next_in : g->in, g->z.avail_in);
  g->z.next_in = g->in;
  while (g->z.avail_in < want && !g->eof) {
    size_t r = fread(g->in + g->z.avail_in, 1, GZ_IN - g->z.avail_in, s->f);
    if (r == 0) {
      if (ferror(s->f)) return src_io_err(s, "read failed", errno);
      g->eof = true;
    }
    g->z.avail_in += (uInt)r;
  }
  return TG_OK;
}

/* Up to n decompressed bytes; fewer only at the end of the last member.
 * Members may follow one another, as gzip concatenates them; anything
 * else after a member is an error, not ignored as gzread would. */
static int gz_read(tg__src *s, unsigned char *buf, size_t n, size_t *got) {
  struct tg__gz *g = s->gz;
  size_t done = 0;
  int rc;
  *got = 0;
  while (done < n) {
    if (!g->member) { /* between members: another one, or the end */
      if ((rc = gz_fill(s, 2))) return rc;
      if (g->z.avail_in == 0) break;
      if (g->z.avail_in < 2 || g->z.next_in[0] != 0x1f || g->z.next_in[1] != 0x8b)
        return tg__err(TG_EFORMAT,
                       "%s: %s: corrupt gzip data: bytes after the end of the "
                       "gzip stream (after %llu decompressed bytes)",
                       s->fn, s->path, (unsigned long long)(s->pos + done));
      g->member = true;
    }
    if ((rc = gz_fill(s, 1))) return rc;
    size_t want = n - done;
    if (want > GZ_READ_CHUNK) want = GZ_READ_CHUNK;
    g->z.next_out = buf + done;
    g->z.avail_out = (uInt)want;
    int zr = inflate(&g->z, Z_NO_FLUSH);
    done += want - g->z.avail_out;
    if (zr == Z_STREAM_END) {
      g->member = false;
      if (inflateReset(&g->z) != Z_OK)
        return tg__err(TG_EFORMAT, "%s: %s: corrupt gzip data", s->fn, s->path);
    } else if (zr == Z_BUF_ERROR && g->eof && g->z.avail_in == 0) {
      /* no progress, and no more input: the member was cut short */
      return tg__err(TG_EFORMAT,
                     "%s: %s: the gzip stream is truncated (unexpected end of "
                     "file) after %llu decompressed bytes",
                     s->fn, s->path, (unsigned long long)(s->pos + done));
    } else if (zr == Z_MEM_ERROR) {
      return tg__err(TG_ENOMEM, "%s: %s: out of memory in the gzip reader",
                     s->fn, s->path);
    } else if (zr != Z_OK && zr != Z_BUF_ERROR) {
      return tg__err(TG_EFORMAT, "%s: %s: corrupt gzip data: %s", s->fn,
                     s->path, g->z.msg ? g->z.msg : zError(zr));
    }
  }
  *got = done;
  return TG_OK;
}

int tg__src_read_some(tg__src *s, void *buf, size_t n, size_t *got) {
  size_t done = 0;
  if (s->mem) {
    done = n < s->size - s->pos ? n : (size_t)(s->size - s->pos);
    memcpy(buf, s->mem + s->pos, done);
  } else if (s->gz) {
    int rc = gz_read(s, buf, n, &done);
    if (rc) return rc;
  } else {
    done = fread(buf, 1, n, s->f);
    if (done < n && ferror(s->f)) return src_io_err(s, "read failed", errno);
  }
  s->pos += done;
  *got = done;
  return TG_OK;
}

void tg__src_close(tg__src *s) {
  if (s->f) fclose(s->f);
  if (s->gz) {
    inflateEnd(&s->gz->z);
    tg__free(s->gz);
  }
  s->f = NULL;
  s->gz = NULL;
}

bool tg__host_le(void) {
  const uint16_t one = 1;
  unsigned char b;
  memcpy(&b, &one, 1);
  return b == 1;
}

void tg__bswap(void *p, size_t n_elems, size_t elem) {
  unsigned char *b = p;
  for (size_t i = 0; i < n_elems; i++, b += elem)
    for (size_t j = 0; j < elem / 2; j++) {
      unsigned char c = b[j];
      b[j] = b[elem - 1 - j];
      b[elem - 1 - j] = c;
    }
}

/* Well-formed UTF-8 (no overlong forms, no surrogates, nothing past
 * U+10FFFF) without NUL bytes. Returns the offset of the first bad byte, or
 * n when all is well. */
size_t tg__utf8_check(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c == 0) return i;
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else
      return i;
    if (n - i < len) return i;
    if (s[i + 1] < lo || s[i + 1] > hi) return i;
    for (size_t k = 2; k < len; k++)
      if ((s[i + k] & 0xC0) != 0x80) return i;
    i += len;
  }
  return n;
}

/* --- atomic replacement: a temporary file beside the target, written,
 * flushed to disk, then renamed over it; the folder is synced so the rename
 * itself survives a power cut.
 *
 * A save killed before its rename leaves its temporary file behind, so each
 * save first removes those of the same target whose writer is gone. The
 * temporary file is "<target>.tg-tmp.<pid>.XXXXXX" and its writer holds an
 * exclusive flock on it until the rename is done. A dead writer's lock is
 * gone with it; a live one's is held, whether it is another process or
 * another thread of this one (flock belongs to the open file, not to the
 * process, unlike fcntl's locks). So a file is removed only when its lock
 * can be taken: whoever wrote it cannot rename it any more. The pid in the
 * name is for the person who finds such a file. */

#define AFILE_BUF ((size_t)1 << 16)
#define TMP_MARK ".tg-tmp."

static int afile_fail(tg__afile *a, const char *what, int errnum) {
  if (a->rc) return a->rc;
  char eb[128];
  a->rc = tg__err(TG_EIO, "%s: %s: %s: %s; the file was not replaced", a->fn,
                  a->path, what, tg__errstr(errnum, eb, sizeof eb));
  return a->rc;
}

/* The folder holding path, in a new buffer: what the rename's entry lives
 * in and must be synced. */
static char *folder_of(const char *path) {
  char *dir = tg__malloc(strlen(path) + 2);
  if (!dir) return NULL;
  strcpy(dir, path);
  char *slash = strrchr(dir, '/');
  if (!slash) strcpy(dir, ".");
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';
  return dir;
}

static void afile_free(tg__afile *a) {
  tg__free(a->tmp);
  tg__free(a->buf);
  tg__free(a->dir);
  a->tmp = NULL;
  a->buf = NULL;
  a->dir = NULL;
}

/* name is base TMP_MARK <digits> "." and six letters or digits (what
 * mkstemp puts in place of XXXXXX), and nothing more: a temporary file of
 * this target, not of another whose name merely starts the same way. */
static bool is_tmp_of(const char *name, const char *base, size_t blen) {
  if (strncmp(name, base, blen) != 0) return false;
  name += blen;
  if (strncmp(name, TMP_MARK, sizeof TMP_MARK - 1) != 0) return false;
  name += sizeof TMP_MARK - 1;
  size_t d = 0;
  while (name[d] >= '0' && name[d] <= '9') d++;
  if (d == 0 || name[d] != '.') return false;
  name += d + 1;
  for (int i = 0; i < 6; i++) {
    char c = name[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
          (c >= 'A' && c <= 'Z')))
      return false;
  }
  return name[6] == '\0';
}

/* Removes the temporary files of path that a killed save left in dir.
 * Best effort: a folder that cannot be listed, a file that cannot be
 * opened or is locked, is left as it is, and the save goes on. */
static void remove_stale_tmps(const char *dir, const char *path) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  size_t blen = strlen(base);
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;
  int lfd = dup(dfd); /* closedir closes the one fdopendir takes */
  DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
  if (!d) {
    if (lfd >= 0) close(lfd);
    close(dfd);
    return;
  }
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!is_tmp_of(e->d_name, base, blen)) continue;
    int fd = openat(dfd, e->d_name,
                    O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st, now;
    /* Locked: the lock holder then either renames or removes the file, or
     * dies, which frees the lock for the next save. Once locked here, the
     * name must still be this file: a writer may have renamed it into
     * place between the listing and the open. */
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        flock(fd, LOCK_EX | LOCK_NB) == 0 &&
        fstatat(dfd, e->d_name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
        now.st_dev == st.st_dev && now.st_ino == st.st_ino)
      unlinkat(dfd, e->d_name, 0);
    close(fd);
  }
  closedir(d);
  close(dfd);
}

/* Creates a->tmp (a template ending in XXXXXX) and locks it. A cleaner may
 * take the lock between the creation and our flock and remove the file;
 * then our lock comes on an unlinked file, which is noticed and the file
 * made again under a new name. Returns the descriptor, or -1 with errno. */
static int create_locked(char *tmp, size_t xpos) {
  for (int tries = 0; tries < 100; tries++) {
    memcpy(tmp + xpos, "XXXXXX", 6);
    int fd = mkstemp(tmp);
    if (fd < 0) return -1;
    /* A program this process starts meanwhile would hold the lock too, and
     * keep a dead save's file from being removed while it runs. */
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    int rc;
    while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR) {
    }
    /* A file system without flock: no cleaner can lock it either, so
     * nobody removes it under us. */
    if (rc != 0) return fd;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_nlink > 0) return fd;
    close(fd);
  }
  errno = EAGAIN;
  return -1;
}

int tg__afile_open(tg__afile *a, const char *fn, const char *path) {
  memset(a, 0, sizeof *a);
  a->fn = fn;
  a->path = path;
  a->fd = a->lock_fd = -1;
  /* Only a regular file is replaced: renaming over a FIFO, a device or a
   * socket would silently turn it into a file. And a file whose owner may
   * not write it is left alone even by root, whom the rename would not
   * stop. */
  struct stat st;
  mode_t mode = 0644; /* a new file's; a replaced one keeps its own */
  if (stat(path, &st) == 0) {
    /* (a folder is left to the rename, which refuses it) */
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
      return a->rc = tg__err(TG_EIO, "%s: %s: is not a regular file; it was "
                             "left as it is", fn, path);
    if (!(st.st_mode & S_IWUSR))
      return a->rc = tg__err(TG_EIO, "%s: %s: is read-only (mode %04o); it "
                             "was left as it is", fn, path,
                             (unsigned)(st.st_mode & 07777));
    if (S_ISREG(st.st_mode)) mode = st.st_mode & 07777;
  }
  /* Every allocation happens here, before anything is written: once the
   * rename has put the new file in place, commit must not fail for want
   * of memory. */
  size_t n = strlen(path);
  char pid[24];
  int pn = snprintf(pid, sizeof pid, "%ld.", (long)getpid());
  size_t tn = n + sizeof TMP_MARK - 1 + (size_t)pn + 7;
  a->tmp = tg__malloc(tn);
  a->buf = tg__malloc(AFILE_BUF);
  a->dir = folder_of(path);
  if (!a->tmp || !a->buf || !a->dir) {
    afile_free(a);
    return a->rc = tg__err(TG_ENOMEM, "%s: %s: out of memory", fn, path);
  }
  snprintf(a->tmp, tn, "%s" TMP_MARK "%sXXXXXX", path, pid);
  /* Before making our own, so that a save killed at any moment leaves at
   * most one temporary file of this target. */
  remove_stale_tmps(a->dir, path);
  a->fd = create_locked(a->tmp, tn - 7);
  if (a->fd < 0) {
    int e = errno;
    char eb[128];
    a->rc = tg__err(TG_EIO, "%s: %s: cannot create a temporary file %s: %s", fn,
                    path, a->tmp, tg__errstr(e, eb, sizeof eb));
    afile_free(a);
    return a->rc;
  }
  /* The lock must outlast the close that commit checks for errors before
   * the rename: a second descriptor on the same open file keeps it. */
  a->lock_fd = fcntl(a->fd, F_DUPFD_CLOEXEC, 0);
  if (a->lock_fd < 0) afile_fail(a, "cannot duplicate a descriptor", errno);
  /* mkstemp makes the file private (0600). */
  else if (fchmod(a->fd, mode) != 0)
    afile_fail(a, "cannot set the file mode", errno);
  /* The callers give up when open fails: nothing may stay behind. */
  if (a->rc) tg__afile_abort(a);
  return a->rc;
}

static int write_all(tg__afile *a, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(a->fd, p, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return afile_fail(a, "write failed", errno);
    }
    if (w == 0) return afile_fail(a, "write failed", EIO);
    p += w;
    n -= (size_t)w;
  }
  return TG_OK;
}

static int afile_flush(tg__afile *a) {
  if (a->rc) return a->rc;
  int rc = write_all(a, a->buf, a->used);
  a->used = 0;
  return rc;
}

int tg__afile_write(tg__afile *a, const void *p, size_t n) {
  if (a->rc) return a->rc;
  const unsigned char *b = p;
  if (n >= AFILE_BUF) {
    if (afile_flush(a)) return a->rc;
    return write_all(a, b, n);
  }
  if (a->used + n > AFILE_BUF && afile_flush(a)) return a->rc;
  memcpy(a->buf + a->used, b, n);
  a->used += n;
  return TG_OK;
}

int tg__afile_write_le(tg__afile *a, const void *p, size_t n, size_t elem) {
  if (tg__host_le() || elem == 1) return tg__afile_write(a, p, n);
  const unsigned char *b = p;
  while (n > 0 && !a->rc) {
    if (a->used + elem > AFILE_BUF && afile_flush(a)) break;
    size_t k = (AFILE_BUF - a->used) / elem * elem;
    if (k > n) k = n;
    memcpy(a->buf + a->used, b, k);
    tg__bswap(a->buf + a->used, k / elem, elem);
    a->used += k;
    b += k;
    n -= k;
  }
  return a->rc;
}

void tg__afile_abort(tg__afile *a) {
  if (a->fd >= 0) close(a->fd);
  /* removed while still locked, so no cleaner can meanwhile take it for a
   * dead save's and remove another file of the same name */
  if (a->tmp) unlink(a->tmp);
  if (a->lock_fd >= 0) close(a->lock_fd);
  a->fd = a->lock_fd = -1;
  afile_free(a);
}

int tg__afile_commit(tg__afile *a) {
  if (!a->rc) afile_flush(a);
  if (!a->rc && fsync(a->fd) != 0) afile_fail(a, "fsync failed", errno);
  if (!a->rc) {
    int rc = close(a->fd);
    a->fd = -1;
    if (rc != 0) afile_fail(a, "close failed", errno);
  }
  if (!a->rc && rename(a->tmp, a->path) != 0)
    afile_fail(a, "cannot rename the temporary file over it", errno);
  if (a->rc) {
    int rc = a->rc;
    tg__afile_abort(a);
    return rc;
  }
  close(a->lock_fd); /* the file is in place: nothing left to guard */
  a->lock_fd = -1;

  /* The folder's entry must reach the disk too. */
  int rc = TG_OK;
  int fd = open(a->dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)) {
    int e = errno;
    char eb[128];
    rc = tg__err(TG_EIO,
                 "%s: %s: the file was written and renamed into place, but its "
                 "folder %s could not be synced: %s",
                 a->fn, a->path, a->dir, tg__errstr(e, eb, sizeof eb));
  }
  if (fd >= 0) close(fd);
  afile_free(a);
  return rc;
}

int tg_write_file_atomic(const char *path, const void *data, size_t n) {
  static const char fn[] = "tg_write_file_atomic";
  if (!path || !*path)
    return tg__err(TG_EINVAL, "%s: the path is %s", fn, path ? "empty" : "NULL");
  if (!data && n > 0)
    return tg__err(TG_EINVAL, "%s: %s: data is NULL for %zu bytes", fn, path, n);
  tg__afile a;
  int rc = tg__afile_open(&a, fn, path);
  if (rc) {
    tg__afile_abort(&a);
    return rc;
  }
  if (n) tg__afile_write(&a, data, n);
  return tg__afile_commit(&a);
}
