/* tapegrad/checkpoint.h: saving and loading named tensors as safetensors
 * files (checksummed), and single tensors as NumPy .npy files.
 *
 *   const char *names[] = {"W", "b"};
 *   tg_tensor *params[] = {W, b};
 *   tg_save("model.safetensors", names, params, 2,
 *           (const char *[]){"epoch", "3", NULL});
 *   ...
 *   tg_load_into("model.safetensors", names, params, 2);  // all or nothing
 *
 * Saving never damages an existing file: the new one is written beside it,
 * flushed to disk and renamed over it, so a crash or a full disk leaves the
 * old file whole (and at worst a stray "<path>.tg-tmp.<pid>.XXXXXX"
 * temporary file, which the next save of the same path removes; one that a
 * live save is writing, in any process or thread, is never removed).
 * Loading treats the file as hostile: every size, offset, shape and dtype is
 * checked against what the file really holds before anything is allocated
 * or written to the caller's tensors.
 *
 * The safetensors layout: an 8-byte little-endian header length N, N bytes
 * of a JSON object {"name": {"dtype": "F32"|"F64"|"I32", "shape": [...],
 * "data_offsets": [begin, end]}, ..., "__metadata__": {string: string}},
 * then the tensors' raw little-endian bytes. tapegrad's metadata holds
 * "format": "tapegrad", "format_version": "1" and "xxh3": the XXH3-64 of the
 * data section as 16 lowercase hex digits, next to the caller's own keys.
 * Files from other tools (no "xxh3") load without the checksum check. */
#ifndef TAPEGRAD_CHECKPOINT_H
#define TAPEGRAD_CHECKPOINT_H

#include <stdbool.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes n tensors (any dtype; caller-owned or a tape's) under the given
 * names to path, replacing it atomically. Names must be non-empty, distinct,
 * valid UTF-8 and not "__metadata__". meta_kv is NULL or a NULL-terminated
 * list of key, value, key, value, ... strings (UTF-8) stored in
 * __metadata__; the keys "format", "format_version" and "xxh3" are
 * reserved. Nothing is kept: the caller still owns every argument.
 * A replaced file keeps its permission bits; a new one gets 0644.
 * Returns TG_OK, TG_EINVAL for bad arguments, TG_ENOMEM, or TG_EIO when the
 * file cannot be written completely (full disk, quota, no permission): the
 * temporary file is then removed and the old file at path is untouched.
 * TG_EIO too, with path untouched, when path exists and is not a regular
 * file (a FIFO, a device, a link to one) or its mode gives its owner no
 * write permission (such as 0444), even for root. The status tells what is
 * on disk: TG_OK only when the new file is in place, and an error after the
 * rename only when its folder could not be synced (the message says so). */
TG_API int tg_save(const char *path, const char *const *names,
                   tg_tensor *const *tensors, int n,
                   const char *const *meta_kv);

/* Reads the tensors named names[0..n-1] from path into the existing
 * tensors[0..n-1] (a model's parameters), each of which must have exactly
 * the stored dtype and shape. The whole file is read and verified (checksum
 * included) and every name, dtype and shape is checked before the first
 * tensor is written, so on any error no tensor has changed. Tensors in the
 * file that are not asked for are ignored. Only data is written: grads and
 * requires_grad are left as they are.
 * Returns TG_OK; TG_EINVAL for bad arguments (a NULL, a name asked for
 * twice); TG_EIO when the file cannot be read or is not a regular file (a
 * FIFO, a device or a socket is refused unread: it could block forever);
 * TG_EFORMAT when it is
 * malformed or lacks a requested name; TG_ECHECKSUM when its data does not
 * match its checksum; TG_EDTYPE or TG_ESHAPE when a stored tensor does not
 * fit its target; TG_ENOMEM. */
TG_API int tg_load_into(const char *path, const char *const *names,
                        tg_tensor *const *tensors, int n);

/* --- reading any safetensors file of F32, F64 and I32 tensors of 0 to 4
 * dimensions (other dtypes and shapes are refused with a message). */
typedef struct tg_checkpoint tg_checkpoint;

/* Reads and verifies the whole file (as tg_load_into). The caller owns the
 * result and frees it with tg_checkpoint_close. On error: NULL, with
 * tg_last_status() and tg_last_error() as for tg_load_into. */
TG_API tg_checkpoint *tg_checkpoint_open(const char *path);
/* Frees the checkpoint and every tensor it owns. NULL is a no-op. */
TG_API void tg_checkpoint_close(tg_checkpoint *ck);

/* The number of tensors, and the name of tensor i in file order (the order
 * of their data; for a file tg_save wrote, the order they were given in).
 * The name belongs to the checkpoint. NULL when i is out of range. */
TG_API int tg_checkpoint_count(const tg_checkpoint *ck);
TG_API const char *tg_checkpoint_name(const tg_checkpoint *ck, int i);
/* The tensor stored under name. It belongs to the checkpoint and lives until
 * tg_checkpoint_close: do not tg_tensor_free it (that is refused); use
 * tg_tensor_clone for a copy of your own. It may be an op's input. NULL with
 * TG_EINVAL when there is no such name. */
TG_API tg_tensor *tg_checkpoint_get(const tg_checkpoint *ck, const char *name);
/* The __metadata__ value under key (the checkpoint owns it), or NULL when
 * the key is absent (no error is recorded). */
TG_API const char *tg_checkpoint_meta(const tg_checkpoint *ck, const char *key);
/* Metadata entries for listing: count, and key i (NULL if out of range). */
TG_API int tg_checkpoint_meta_count(const tg_checkpoint *ck);
TG_API const char *tg_checkpoint_meta_key(const tg_checkpoint *ck, int i);
/* True when the file carried an "xxh3" checksum and the data matched it;
 * false for a file from another tool, which loaded unchecked. */
TG_API bool tg_checkpoint_verified(const tg_checkpoint *ck);

/* --- NumPy .npy files: one array each.
 * Writes t as a format 1.0 .npy file ('<f4', '<f8' or '<i4', C order),
 * replacing path atomically as tg_save does (and refusing the same
 * targets). Returns TG_OK, TG_EINVAL, TG_ENOMEM or TG_EIO. */
TG_API int tg_npy_save(const char *path, const tg_tensor *t);
/* Reads a .npy file (format 1.0, 2.0 or 3.0) holding a float32, float64 or
 * int32 array ('<f4', '>f4', '<f8', '>f8', '<i4', '>i4') of 0 to 4
 * dimensions (shape () is a 0-d tensor; dimensions of size 0 are allowed),
 * in C or Fortran order: the tensor is always in the host's byte order and
 * row-major (C) order, converted as needed. Other dtypes, a malformed
 * header, and data shorter or longer than the header promises are errors.
 * The caller owns the result (tg_tensor_free). On error: NULL, with TG_EIO
 * (cannot read, or not a regular file, as for tg_load_into), TG_EFORMAT
 * (malformed or unsupported) or TG_ENOMEM. */
TG_API tg_tensor *tg_npy_load(const char *path);

#ifdef __cplusplus
}
#endif
#endif
