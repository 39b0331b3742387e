// Philox.h - Philox4x32-10 counter-based RNG (Salmon et al., "Parallel random
// numbers: as easy as 1, 2, 3", SC 2011), and the streams the runtime draws from.
//
// Counter-based means every random number is a pure function of (key, counter):
// a mask for step 1000 or the init of parameter 7 is computed directly, without
// replaying history, which is what makes resumed runs bit-identical.
#ifndef SBP_RUNTIME_PHILOX_H
#define SBP_RUNTIME_PHILOX_H

#include <array>
#include <cstdint>

namespace sbp::rt {

using PhiloxCounter = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

// The block function: 10 rounds of Philox4x32.
PhiloxCounter philox4x32_10(PhiloxCounter counter, PhiloxKey key);

// What a stream of random numbers is for; keeps the streams of different
// purposes disjoint under the same seed.
enum class Purpose : uint32_t { ParamInit = 1, Mask = 2, Shuffle = 3 };

// A sequence of random numbers identified by (seed, purpose, a, b): the key is
// the seed, the counter is (block, lo(a), hi(a), purpose << 24 | b).
class PhiloxStream {
public:
  PhiloxStream(uint64_t seed, Purpose purpose, uint64_t a, uint32_t b = 0);

  uint32_t nextU32();
  // Uniform in [0, 1) with 24 random bits.
  float uniform();
  // Uniform in (0, 1), never 0 (for logs).
  double uniformOpen();
  // Uniform integer in [0, n), n >= 1 (multiply-shift; bias below n / 2^32).
  uint32_t below(uint32_t n);
  // Standard normal by Box-Muller; the second value of each pair is kept.
  float normal();

private:
  PhiloxKey key_;
  PhiloxCounter counter_;
  PhiloxCounter block_{};
  int used_ = 4;
  bool has_spare_ = false;
  float spare_ = 0.0f;
};

} // namespace sbp::rt

#endif // SBP_RUNTIME_PHILOX_H
