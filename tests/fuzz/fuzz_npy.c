/* tests/fuzz/fuzz_npy.c: libFuzzer target for the .npy reader
 * (tg_npy_load on a buffer). */
#include <stdint.h>
#include <string.h>

#include "io/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tg_clear_error();
  tg_tensor *t = tg__npy_parse(data, size);
  if (!t) {
    if (tg_last_status() >= 0 || !tg_last_error()[0]) __builtin_trap();
    return 0;
  }
  int64_t n = 1;
  for (int i = 0; i < tg_tensor_ndim(t); i++) n *= tg_tensor_dim(t, i);
  size_t es = tg_tensor_dtype(t) == TG_F64 ? 8 : 4;
  if (n != tg_tensor_numel(t) || (uint64_t)n * es > size) __builtin_trap();
  (void)tg_tensor_hash(t);
  tg_tensor_free(t);
  return 0;
}
