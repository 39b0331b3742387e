// Philox.cpp - Philox4x32-10 and the streams built on it.
#include "Philox.h"

#include <cmath>
#include <stdexcept>

namespace sbp::rt {
namespace {

constexpr uint32_t kMul0 = 0xD2511F53u;
constexpr uint32_t kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u; // golden ratio
constexpr uint32_t kWeyl1 = 0xBB67AE85u; // sqrt(3) - 1

PhiloxCounter round(const PhiloxCounter &c, const PhiloxKey &k) {
  uint64_t p0 = uint64_t(kMul0) * c[0];
  uint64_t p1 = uint64_t(kMul1) * c[2];
  uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
  uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
  return {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
}

} // namespace

PhiloxCounter philox4x32_10(PhiloxCounter counter, PhiloxKey key) {
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      key[0] += kWeyl0;
      key[1] += kWeyl1;
    }
    counter = round(counter, key);
  }
  return counter;
}

PhiloxStream::PhiloxStream(uint64_t seed, Purpose purpose, uint64_t a, uint32_t b)
    : key_{uint32_t(seed), uint32_t(seed >> 32)},
      counter_{0, uint32_t(a), uint32_t(a >> 32), (uint32_t(purpose) << 24) | (b & 0xFFFFFFu)} {
  if (b > 0xFFFFFFu)
    throw std::invalid_argument("PhiloxStream: sub-stream index above 2^24");
}

uint32_t PhiloxStream::nextU32() {
  if (used_ == 4) {
    block_ = philox4x32_10(counter_, key_);
    ++counter_[0];
    used_ = 0;
  }
  return block_[used_++];
}

float PhiloxStream::uniform() { return float(nextU32() >> 8) * 0x1.0p-24f; }

double PhiloxStream::uniformOpen() { return (double(nextU32() >> 8) + 0.5) * 0x1.0p-24; }

uint32_t PhiloxStream::below(uint32_t n) { return uint32_t((uint64_t(nextU32()) * n) >> 32); }

float PhiloxStream::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double radius = std::sqrt(-2.0 * std::log(uniformOpen()));
  double angle = 2.0 * M_PI * uniformOpen();
  spare_ = float(radius * std::sin(angle));
  has_spare_ = true;
  return float(radius * std::cos(angle));
}

} // namespace sbp::rt
