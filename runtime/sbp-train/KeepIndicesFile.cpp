// KeepIndicesFile.cpp - parsing keep-index text files.
#include "KeepIndicesFile.h"

#include "Paths.h"

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace sbp::train {

namespace {

// `word` as it can be shown in a message: control and non-ASCII bytes as \xNN
// (a NUL would end the message), and at most 32 bytes of it.
std::string printable(const std::string &word) {
  std::string out;
  for (size_t k = 0; k < word.size() && k < 32; ++k) {
    unsigned char c = static_cast<unsigned char>(word[k]);
    if (c < 0x20 || c >= 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    } else {
      out += char(c);
    }
  }
  return word.size() > 32 ? out + "..." : out;
}

} // namespace

std::vector<KeepIndexLine> parseKeepIndexLines(const std::string &text,
                                               const std::string &source) {
  std::vector<KeepIndexLine> lines;
  std::istringstream in(text);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    line = line.substr(0, line.find('#'));
    auto where = [&] { return source + ":" + std::to_string(number) + ": "; };
    KeepIndexLine entry;
    entry.line = number;
    // "NAME:" before the indices names the group.
    if (size_t colon = line.find(':'); colon != std::string::npos) {
      std::istringstream label(line.substr(0, colon));
      std::string extra;
      if (!(label >> entry.group) || (label >> extra))
        throw std::runtime_error(where() + "a mask group name must be one word before ':'");
      line = line.substr(colon + 1);
    }
    std::istringstream words(line);
    bool none = false; // '-': this line's list is empty
    for (std::string word; words >> word;) {
      if (word == "-" && !none && entry.indices.empty()) {
        none = true;
        continue;
      }
      if (none || word == "-")
        throw std::runtime_error(where() + "'-' (no indices) must stand alone on its line");
      int32_t value = 0;
      auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), value);
      if (ec != std::errc() || end != word.data() + word.size())
        throw std::runtime_error(where() + "'" + printable(word) + "' is not a token index");
      entry.indices.push_back(value);
    }
    if (entry.indices.empty() && !none && !entry.group.empty())
      throw std::runtime_error(where() + "mask group '" + printable(entry.group) +
                               "' has no indices (write '-' for an empty list)");
    if (!entry.indices.empty() || none) {
      if (!lines.empty() && lines.front().group.empty() != entry.group.empty())
        throw std::runtime_error(where() + "either every line names its mask group ('NAME: "
                                           "indices') or none does");
      lines.push_back(std::move(entry));
    }
  }
  if (lines.empty())
    throw std::runtime_error(source + ": no keep indices in the file");
  return lines;
}

std::vector<std::vector<int32_t>> parseKeepIndices(const std::string &text,
                                                   const std::string &source) {
  std::vector<std::vector<int32_t>> lists;
  for (KeepIndexLine &line : parseKeepIndexLines(text, source))
    lists.push_back(std::move(line.indices));
  return lists;
}

std::vector<KeepIndexLine> readKeepIndicesFile(const std::string &path) {
  // A directory opened as a stream reads as empty ("no keep indices"); a FIFO blocks.
  std::string kind = nonRegularKind(path);
  if (!kind.empty())
    throw std::runtime_error("keep-index file '" + path + "' is " + kind +
                             ", not a regular file");
  std::ifstream file(path);
  if (!file)
    throw std::runtime_error("cannot read keep-index file '" + path + "': " +
                             std::strerror(errno));
  std::ostringstream text;
  text << file.rdbuf();
  return parseKeepIndexLines(text.str(), path);
}

} // namespace sbp::train
