// SafeTensorsTest.cpp - round trips and every way a safetensors file can be broken.
#include "Error.h"
#include "SafeTensors.h"
#include "TestFiles.h"

#include <gtest/gtest.h>

#include <cstring>

using namespace sbp::rt;
using sbp::test::readFile;
using sbp::test::TempDir;
using sbp::test::writeFile;

namespace {

std::string withHeader(const std::string &header, const std::string &data = "") {
  std::string bytes(8, '\0');
  for (int k = 0; k < 8; ++k)
    bytes[size_t(k)] = char((uint64_t(header.size()) >> (8 * k)) & 0xFF);
  return bytes + header + data;
}

// Status and message of opening `bytes` as a safetensors file.
std::pair<sbp_status, std::string> openStatus(const TempDir &dir, const std::string &bytes) {
  std::string path = dir.file("x.safetensors");
  writeFile(path, bytes);
  try {
    SafeTensorsReader reader(path);
    return {SBP_OK, ""};
  } catch (const Error &e) {
    return {e.status(), e.what()};
  }
}

void expectCorrupt(const TempDir &dir, const std::string &bytes, const std::string &needle) {
  auto [status, message] = openStatus(dir, bytes);
  EXPECT_EQ(status, SBP_ERROR_CORRUPT_FILE) << message;
  EXPECT_NE(message.find("x.safetensors"), std::string::npos) << message;
  EXPECT_NE(message.find(needle), std::string::npos) << message;
}

const std::string kOneTensor = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

} // namespace

TEST(SafeTensors, RoundTripsF32I32AndMetadata) {
  TempDir dir;
  std::vector<float> w = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f};
  std::vector<int32_t> labels = {3, -1, 7};
  writeSafeTensors(dir.file("t.safetensors"), {{"model", "m\"x"}, {"step", "12"}},
                   {{"blocks.0.w", "F32", {2, 3}, w.data()}, {"labels", "I32", {3}, labels.data()}});
  SafeTensorsReader r(dir.file("t.safetensors"));
  EXPECT_EQ(r.meta("model"), "m\"x");
  EXPECT_EQ(r.meta("step"), "12");
  EXPECT_EQ(r.meta("absent"), "");
  ASSERT_EQ(r.tensors().size(), 2u);
  std::vector<float> w2(6);
  std::vector<int32_t> labels2(3);
  r.read("blocks.0.w", "F32", {2, 3}, w2.data());
  r.read("labels", "I32", {3}, labels2.data());
  EXPECT_EQ(w, w2);
  EXPECT_EQ(labels, labels2);
  // The data section starts 8-byte aligned, as the reference writer does.
  std::string bytes = readFile(dir.file("t.safetensors"));
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  EXPECT_EQ(header % 8, 0u);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"t.safetensors"}); // no temp file left
}

TEST(SafeTensors, ReadsAFileWithoutMetadataAndWithEmptyTensors) {
  TempDir dir;
  writeFile(dir.file("e.safetensors"),
            withHeader(R"({"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}})"));
  SafeTensorsReader r(dir.file("e.safetensors"));
  EXPECT_TRUE(r.metadata().empty());
  EXPECT_NO_THROW(r.read("e", "F32", {0, 3}, nullptr));
}

TEST(SafeTensors, MissingFileIsNotFound) {
  try {
    SafeTensorsReader r("/nonexistent/dir/x.safetensors");
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.status(), SBP_ERROR_NOT_FOUND);
  }
}

TEST(SafeTensors, ShorterThanTheLengthFieldIsTruncated) {
  TempDir dir;
  expectCorrupt(dir, "", "truncated");
  expectCorrupt(dir, "abc", "truncated");
}

TEST(SafeTensors, HeaderLengthBeyondTheFile) {
  TempDir dir;
  std::string bytes = withHeader(kOneTensor, std::string(8, '\0'));
  bytes[0] = char(0xFF); // header length now larger than the file
  expectCorrupt(dir, bytes, "header length");
  expectCorrupt(dir, std::string(8, '\xff'), "header length");
}

TEST(SafeTensors, TruncatedData) {
  TempDir dir;
  expectCorrupt(dir, withHeader(kOneTensor, std::string(5, '\0')), "runs past the end");
}

TEST(SafeTensors, BadJson) {
  TempDir dir;
  expectCorrupt(dir, withHeader("{\"w\":{\"dtype\":\"F32\""), "bad safetensors header");
  expectCorrupt(dir, withHeader("[1,2]"), "not a JSON object");
  expectCorrupt(dir, withHeader("\xff\xfe"), "bad safetensors header");
}

TEST(SafeTensors, BadEntries) {
  TempDir dir;
  const std::string data(8, '\0');
  expectCorrupt(dir, withHeader(R"({"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", data),
                "dtype");
  expectCorrupt(dir, withHeader(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data),
                "dimension");
  expectCorrupt(dir, withHeader(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", data), "shape");
  expectCorrupt(dir, withHeader(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data),
                "data_offsets");
  expectCorrupt(dir, withHeader(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data),
                "data_offsets");
  expectCorrupt(dir, withHeader(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data),
                "span 8 bytes");
  expectCorrupt(dir, withHeader(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                                    "v":{"dtype":"I32","shape":[1],"data_offsets":[4,8]}})",
                                data),
                "overlap");
  expectCorrupt(dir, withHeader(R"({"w":7})", data), "not an object");
  expectCorrupt(dir, withHeader(R"({"__metadata__":{"k":1}})"), "not a string");
  expectCorrupt(dir, withHeader(R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", data),
                "span");
}

TEST(SafeTensors, RequestsThatDoNotFitTheFileAreInvalidArguments) {
  TempDir dir;
  std::vector<float> w = {1, 2};
  writeSafeTensors(dir.file("t.safetensors"), {}, {{"w", "F32", {2}, w.data()}});
  SafeTensorsReader r(dir.file("t.safetensors"));
  float out[2];
  auto status = [&](const std::string &name, const std::string &dtype, const Shape &shape,
                    const std::string &needle) {
    try {
      r.read(name, dtype, shape, out);
      ADD_FAILURE() << "no error for " << name;
    } catch (const Error &e) {
      EXPECT_EQ(e.status(), SBP_ERROR_INVALID_ARGUMENT);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("t.safetensors"), std::string::npos) << e.what();
    }
  };
  status("v", "F32", {2}, "no tensor 'v'");
  status("w", "I32", {2}, "dtype F32, expected I32");
  status("w", "F32", {1, 2}, "shape [2], expected [1, 2]");
}

TEST(SafeTensors, FailedWriteLeavesNoTemporaryFile) {
  TempDir dir;
  std::vector<float> w = {1, 2};
  try {
    writeSafeTensors(dir.file("missing/t.safetensors"), {}, {{"w", "F32", {2}, w.data()}});
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.status(), SBP_ERROR_NOT_FOUND);
  }
  EXPECT_TRUE(dir.entries().empty());
}

TEST(SafeTensors, OverwritingReplacesTheWholeFile) {
  TempDir dir;
  std::vector<float> big(1000, 1.0f), small = {2.0f};
  writeSafeTensors(dir.file("t.safetensors"), {}, {{"w", "F32", {1000}, big.data()}});
  writeSafeTensors(dir.file("t.safetensors"), {}, {{"w", "F32", {1}, small.data()}});
  SafeTensorsReader r(dir.file("t.safetensors"));
  float out = 0;
  r.read("w", "F32", {1}, &out);
  EXPECT_EQ(out, 2.0f);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"t.safetensors"});
}
