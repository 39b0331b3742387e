/* CHeaderTest.c - sbp/trainer.h, sbp/model_abi.h and sbp/mask_rules.h compile
 * as C99 and their basics work from C. */
#include "sbp/mask_rules.h"
#include "sbp/model_abi.h"
#include "sbp/trainer.h"

#include <stdio.h>
#include <string.h>

int main(void) {
  sbp_trainer_options options;
  sbp_trainer *trainer = NULL;
  sbp_status status;
  sbp_trainer_options_init(&options);
  if (options.struct_size != sizeof(options) || options.lr >= 0.0f || options.nesterov != -1) {
    fprintf(stderr, "sbp_trainer_options_init left unexpected defaults\n");
    return 1;
  }
  status = sbp_trainer_create("/nonexistent/train.so", &options, &trainer);
  if (status != SBP_ERROR_NOT_FOUND || trainer != NULL ||
      strstr(sbp_last_error(), "/nonexistent/train.so") == NULL) {
    fprintf(stderr, "create: %s: %s\n", sbp_status_string(status), sbp_last_error());
    return 1;
  }
  sbp_trainer_release(NULL);
  if (sbp_runtime_abi_version() != SBP_ABI_VERSION || SBP_MASK_HEADS != 2 ||
      sbp_heads_capacity(12) != 12 || sbp_heads_keep_threshold(0.5f) != (1u << 23) ||
      sbp_heads_keep_threshold(1.0f) != (1u << 24) || sbp_grid_stride(0.25f) != 4) {
    fprintf(stderr, "sbp/model_abi.h or sbp/mask_rules.h disagrees from C\n");
    return 1;
  }
  printf("runtime ABI %u: %s\n", (unsigned)sbp_runtime_abi_version(), sbp_status_string(status));
  return 0;
}
