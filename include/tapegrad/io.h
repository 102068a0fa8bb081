/* tapegrad/io.h: loading data sets: IDX files (the MNIST format), plain or
 * gzip'd; and replacing a file atomically. */
#ifndef TAPEGRAD_IO_H
#define TAPEGRAD_IO_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads an IDX file of unsigned bytes, plain or gzip'd (recognised by its
 * first two bytes, not by its name):
 *  - IDX1 (magic 0x00000801, labels [N]): an int32 [N] tensor; dtype must be
 *    TG_I32.
 *  - IDX3 (magic 0x00000803, images [N, rows, cols]): a float [N, rows*cols]
 *    tensor, one flattened image per row, each byte divided by 255 so values
 *    lie in [0, 1]; dtype is TG_F32 or TG_F64.
 * The file is not trusted: a bad magic number or data type, a zero or
 * overflowing dimension, a header that promises more data than the file
 * holds, and bytes after the promised data are all errors, found before any
 * allocation the header asks for.
 * The caller owns the result (tg_tensor_free). On error: NULL, and
 * tg_last_error() names the path and what was wrong; TG_EIO when the file
 * cannot be opened or read, or is not a regular file (a FIFO, a device or a
 * socket is refused without being read, as reading it could block
 * forever), TG_EFORMAT when its content is malformed, TG_EDTYPE when dtype
 * does not fit the kind of file. */
TG_API tg_tensor *tg_idx_load(const char *path, tg_dtype dtype);

/* Loads one split of MNIST (or a data set in its layout, such as
 * Fashion-MNIST) from dir: split "train" or "t10k" reads
 * <split>-images-idx3-ubyte and <split>-labels-idx1-ubyte, each with or
 * without a ".gz" suffix (the plain file is preferred when both exist).
 * Checks that both hold the same number of items and that every label is
 * 0..9. On success *images is float32 [N, rows*cols] in [0, 1] and *labels
 * is int32 [N], both owned by the caller. On error both are set to NULL,
 * nothing is left allocated, and the status is returned (messages as for
 * tg_idx_load). */
TG_API int tg_mnist_load(const char *dir, const char *split,
                         tg_tensor **images, tg_tensor **labels);

/* Replaces path with the n bytes at data, atomically: they go to a
 * temporary file beside path (path.XXXXXX), which is flushed to disk and
 * renamed over path, and the folder is synced; a reader sees the old file
 * or the new one, never a part. The same code saves checkpoints. A path that
 * exists and is not a regular file, or that its owner may not write, is
 * left alone. data may be NULL when n is 0. Allocates nothing that
 * outlives the call. Returns TG_OK, or TG_EINVAL (path NULL or empty, data
 * NULL with n > 0), TG_ENOMEM, or TG_EIO with a message naming the path and
 * the step that failed; on error path is untouched and no temporary file is
 * left behind. */
TG_API int tg_write_file_atomic(const char *path, const void *data, size_t n);

#ifdef __cplusplus
}
#endif
#endif
