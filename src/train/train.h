/* src/train/train.h: the one private header of the training helpers (nn,
 * optim, metrics): the tensor's fields and the thread door, nothing of the
 * tape. */
#ifndef TAPEGRAD_PRIV_TRAIN_H
#define TAPEGRAD_PRIV_TRAIN_H

#include "../engine/tensor.h"
#include "../kernels/kernels.h"

#endif
