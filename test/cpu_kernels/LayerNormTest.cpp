//===- LayerNormTest.cpp - LayerNorm forward and backward -----------------===//

#include "TestSupport.h"
#include "sbp/cpu_kernels.h"

namespace sbp::cpu::test {
namespace {

constexpr float kEps = 1e-5f;

/// Double LayerNorm over the last dim n (biased variance).
DVec layerNormRef(const DVec &x, const DVec &g, const DVec &b, int64_t rows,
                  int64_t n, double eps) {
  DVec y(rows * n);
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0.0, var = 0.0;
    for (int64_t j = 0; j < n; ++j)
      mean += x[r * n + j];
    mean /= n;
    for (int64_t j = 0; j < n; ++j)
      var += (x[r * n + j] - mean) * (x[r * n + j] - mean);
    var /= n;
    const double rstd = 1.0 / std::sqrt(var + eps);
    for (int64_t j = 0; j < n; ++j)
      y[r * n + j] = (x[r * n + j] - mean) * rstd * g[j] + b[j];
  }
  return y;
}

struct LNData {
  int64_t rows, n;
  Vec x, gamma, beta, dy;
  LNData(int64_t rows, int64_t n, uint32_t seed, float offset = 0.0f)
      : rows(rows), n(n),
        x(randomVec(rows * n, seed, offset - 2.0f, offset + 2.0f)),
        gamma(randomVec(n, seed + 1, 0.5f, 1.5f)), beta(randomVec(n, seed + 2)),
        dy(randomVec(rows * n, seed + 3)) {}
};

TEST(LayerNorm, ForwardMatchesReference) {
  // Awkward, parallel-sized, and a large mean (|mean| >> std: a one-pass
  // E[x^2] - E[x]^2 variance would lose most digits here).
  for (auto [rows, n, offset] :
       {std::tuple<int64_t, int64_t, float>{37, 19, 0.0f},
        std::tuple<int64_t, int64_t, float>{1031, 192, 0.0f},
        std::tuple<int64_t, int64_t, float>{37, 19, 300.0f}}) {
    LNData d(rows, n, 10, offset);
    const DVec ref = layerNormRef(toDouble(d.x), toDouble(d.gamma),
                                  toDouble(d.beta), rows, n, kEps);
    Vec y(rows * n);
    forEachTeamSize([&] {
      layer_norm(d.x.data(), d.gamma.data(), d.beta.data(), y.data(), rows, n,
                 kEps);
      EXPECT_TRUE(allClose(y, ref, 1e-5, offset == 0.0f ? 2e-6 : 2e-5));
    });
  }
}

TEST(LayerNorm, GradFiniteDifferences) {
  const int64_t rows = 37, n = 19;
  LNData d(rows, n, 20);
  Vec dx(rows * n), dgamma(n, 99.0f), dbeta(n, 99.0f);
  layer_norm_grad(d.x.data(), d.gamma.data(), d.dy.data(), dx.data(),
                  dgamma.data(), dbeta.data(), rows, n, kEps);
  const DVec w = toDouble(d.dy), x = toDouble(d.x), g = toDouble(d.gamma),
             b = toDouble(d.beta);
  const DVec fdX = numericGrad(
      [&](const DVec &p) {
        return dotD(w, layerNormRef(p, g, b, rows, n, kEps));
      },
      x);
  const DVec fdG = numericGrad(
      [&](const DVec &p) {
        return dotD(w, layerNormRef(x, p, b, rows, n, kEps));
      },
      g);
  const DVec fdB = numericGrad(
      [&](const DVec &p) {
        return dotD(w, layerNormRef(x, g, p, rows, n, kEps));
      },
      b);
  EXPECT_TRUE(gradClose(dx, fdX));
  EXPECT_TRUE(gradClose(dgamma, fdG));
  EXPECT_TRUE(gradClose(dbeta, fdB));
  // Tighter, elementwise: the kernel is float, the reference exact.
  EXPECT_TRUE(allClose(dx, fdX, 1e-4, 1e-5));
  EXPECT_TRUE(allClose(dgamma, fdG, 1e-4, 1e-5));
  EXPECT_TRUE(allClose(dbeta, fdB, 1e-4, 1e-5));
}

/// Analytic double backward, for sizes where finite differences are too slow.
void layerNormGradRef(const LNData &d, DVec &dx, DVec &dg, DVec &db) {
  const int64_t rows = d.rows, n = d.n;
  dx.assign(rows * n, 0.0);
  dg.assign(n, 0.0);
  db.assign(n, 0.0);
  DVec xhat(n), gr(n);
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0.0, var = 0.0;
    for (int64_t j = 0; j < n; ++j)
      mean += d.x[r * n + j];
    mean /= n;
    for (int64_t j = 0; j < n; ++j)
      var += (d.x[r * n + j] - mean) * (d.x[r * n + j] - mean);
    const double rstd = 1.0 / std::sqrt(var / n + kEps);
    double mg = 0.0, mgx = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      xhat[j] = (d.x[r * n + j] - mean) * rstd;
      gr[j] = double(d.dy[r * n + j]) * d.gamma[j];
      mg += gr[j] / n;
      mgx += gr[j] * xhat[j] / n;
      dg[j] += double(d.dy[r * n + j]) * xhat[j];
      db[j] += d.dy[r * n + j];
    }
    for (int64_t j = 0; j < n; ++j)
      dx[r * n + j] = rstd * (gr[j] - mg - xhat[j] * mgx);
  }
}

TEST(LayerNorm, GradParallelAndManyRows) {
  // 10^5 rows: dgamma / dbeta sums must stay ~1e-6 relative.
  for (auto [rows, n] : {std::pair<int64_t, int64_t>{1031, 192},
                         std::pair<int64_t, int64_t>{100003, 8}}) {
    LNData d(rows, n, 30);
    for (float &v : d.dy)
      v += 0.5f; // non-zero mean: dbeta is not a cancellation
    DVec rdx, rdg, rdb;
    layerNormGradRef(d, rdx, rdg, rdb);
    Vec dx(rows * n), dg(n), db(n);
    forEachTeamSize([&] {
      layer_norm_grad(d.x.data(), d.gamma.data(), d.dy.data(), dx.data(),
                      dg.data(), db.data(), rows, n, kEps);
      EXPECT_TRUE(allClose(dx, rdx, 1e-4, 1e-5));
      EXPECT_TRUE(allClose(db, rdb, 1e-6, 0.0));
      // dgamma sums terms of both signs: compare to its natural scale.
      double scale = 0.0;
      for (int64_t r = 0; r < rows; ++r)
        scale += std::fabs(d.dy[r * n]);
      EXPECT_TRUE(
          allClose(dg, rdg, 1e-6, 1e-6 * scale / std::sqrt(double(rows))));
    });
  }
}

} // namespace
} // namespace sbp::cpu::test
