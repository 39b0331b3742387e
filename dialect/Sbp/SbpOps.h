//===- SbpOps.h - ops of the sbp dialect ------------------------*- C++ -*-===//
#ifndef SBP_SBPOPS_H
#define SBP_SBPOPS_H

#include "Sbp/SbpDialect.h"

#include <array>

#define GET_OP_CLASSES
#include "Sbp/SbpOps.h.inc"

#endif // SBP_SBPOPS_H
