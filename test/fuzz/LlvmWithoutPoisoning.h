/* LlvmWithoutPoisoning.h - force-included in the fuzzer build (-include).
 *
 * Debian's LLVM and MLIR libraries are built without ASan. Under ASan,
 * llvm/Support/Allocator.h poisons the unused part of each allocator slab
 * in every inline copy compiled here, while the copies inside the libraries
 * hand out that memory unpoisoned: the linker mixes the two (an ODR split)
 * and ASan reports use-after-poison inside MLIRContext's constructor. Making
 * the poisoning calls no-ops here keeps every copy alike; ASan still checks
 * every other access.
 */
#ifndef SBP_TEST_FUZZ_LLVMWITHOUTPOISONING_H
#define SBP_TEST_FUZZ_LLVMWITHOUTPOISONING_H
#if defined(__has_include)
#if __has_include(<sanitizer/asan_interface.h>)
#include <sanitizer/asan_interface.h>
#undef __asan_poison_memory_region
#undef __asan_unpoison_memory_region
#define __asan_poison_memory_region(p, size) ((void)(p), (void)(size))
#define __asan_unpoison_memory_region(p, size) ((void)(p), (void)(size))
#endif
#endif
#endif
