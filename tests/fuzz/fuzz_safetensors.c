/* tests/fuzz/fuzz_safetensors.c: libFuzzer target for the safetensors
 * reader (tg_checkpoint_open on a buffer). Every input must either load, with
 * consistent contents, or fail with a status and a message. */
#include <stdint.h>
#include <string.h>

#include "io/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tg_clear_error();
  tg_checkpoint *ck = NULL;
  int rc = tg__safetensors_parse(data, size, &ck);
  if (rc != TG_OK) {
    if (ck || rc >= 0 || !tg_last_error()[0]) __builtin_trap();
    return 0;
  }
  uint64_t total = 0;
  for (int i = 0; i < tg_checkpoint_count(ck); i++) {
    const char *name = tg_checkpoint_name(ck, i);
    tg_tensor *t = tg_checkpoint_get(ck, name);
    if (!name || !t) __builtin_trap();
    total += (uint64_t)tg_tensor_numel(t) * (tg_tensor_dtype(t) == TG_F64 ? 8 : 4);
    (void)tg_tensor_hash(t);
  }
  /* The tensors cover the data section exactly. */
  if (total > size) __builtin_trap();
  for (int i = 0; i < tg_checkpoint_meta_count(ck); i++)
    if (!tg_checkpoint_meta(ck, tg_checkpoint_meta_key(ck, i))) __builtin_trap();
  tg_checkpoint_close(ck);
  return 0;
}
