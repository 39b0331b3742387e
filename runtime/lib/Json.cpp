// Json.cpp - recursive-descent JSON parser and string quoting.
#include "Json.h"

#include <cerrno>
#include <cstdlib>
#include <fmt/format.h>
#include <unordered_set>

namespace sbp::rt {
namespace {

constexpr int kMaxDepth = 64;

class Parser {
public:
  explicit Parser(std::string_view text) : s_(text) {}

  JsonValue document() {
    JsonValue v = value(0);
    end();
    return v;
  }

  // The root object's members, each handed to visit as soon as it is read.
  void documentMembers(const JsonMemberVisitor &visit) {
    if (peek() != '{')
      error("the document is not a JSON object");
    members(0, [&](std::string key, JsonValue value) { visit(std::move(key), std::move(value)); });
    end();
  }

private:
  [[noreturn]] void error(const std::string &what) const {
    throw JsonError(fmt::format("{} at byte {}", what, pos_));
  }

  void end() {
    skipSpace();
    if (pos_ != s_.size())
      error("unexpected text after the JSON value");
  }

  void skipSpace() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }

  char peek() {
    skipSpace();
    if (pos_ >= s_.size())
      error("unexpected end of JSON");
    return s_[pos_];
  }

  void expect(char c) {
    if (peek() != c)
      error(fmt::format("expected '{}'", c));
    ++pos_;
  }

  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word)
      return false;
    pos_ += word.size();
    return true;
  }

  JsonValue value(int depth) {
    if (depth > kMaxDepth)
      error("JSON nested too deeply");
    JsonValue v;
    char c = peek();
    if (c == '{')
      return object(depth);
    if (c == '[')
      return array(depth);
    if (c == '"') {
      v.kind = JsonValue::Kind::String;
      v.text = string();
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = JsonValue::Kind::Number;
      v.text = number();
    } else if (literal("true")) {
      v.kind = JsonValue::Kind::Bool;
      v.boolean = true;
    } else if (literal("false")) {
      v.kind = JsonValue::Kind::Bool;
    } else if (literal("null")) {
      v.kind = JsonValue::Kind::Null;
    } else {
      error("invalid JSON value");
    }
    return v;
  }

  JsonValue object(int depth) {
    JsonValue v;
    v.kind = JsonValue::Kind::Object;
    members(depth, [&](std::string key, JsonValue value) {
      v.members.emplace_back(std::move(key), std::move(value));
    });
    return v;
  }

  // Reads "{...}", calling add(key, value) per member in file order.
  template <typename Add> void members(int depth, Add &&add) {
    expect('{');
    if (peek() == '}') {
      ++pos_;
      return;
    }
    // A hash set, not a search of the members so far: a header of n tensors
    // must parse in O(n), not O(n^2).
    std::unordered_set<std::string> keys;
    for (;;) {
      if (peek() != '"')
        error("expected a string key");
      std::string key = string();
      if (!keys.insert(key).second)
        error(fmt::format("duplicate key \"{}\"", key));
      expect(':');
      add(std::move(key), value(depth + 1));
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect('}');
      return;
    }
  }

  JsonValue array(int depth) {
    JsonValue v;
    v.kind = JsonValue::Kind::Array;
    expect('[');
    if (peek() == ']') {
      ++pos_;
      return v;
    }
    for (;;) {
      v.items.push_back(value(depth + 1));
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect(']');
      return v;
    }
  }

  std::string number() {
    size_t start = pos_;
    auto digits = [&] {
      size_t from = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9')
        ++pos_;
      if (pos_ == from)
        error("malformed number");
    };
    if (s_[pos_] == '-')
      ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '0')
      ++pos_;
    else
      digits();
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      digits();
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-'))
        ++pos_;
      digits();
    }
    return std::string(s_.substr(start, pos_ - start));
  }

  unsigned hex4() {
    if (pos_ + 4 > s_.size())
      error("truncated \\u escape");
    unsigned code = 0;
    for (int k = 0; k < 4; ++k) {
      char h = s_[pos_++];
      code <<= 4;
      if (h >= '0' && h <= '9')
        code |= unsigned(h - '0');
      else if (h >= 'a' && h <= 'f')
        code |= unsigned(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        code |= unsigned(h - 'A' + 10);
      else
        error("bad hex digit in \\u escape");
    }
    return code;
  }

  static void appendUtf8(std::string &out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  void escape(std::string &out) {
    if (pos_ >= s_.size())
      error("unterminated string");
    char e = s_[pos_++];
    switch (e) {
    case '"': out += '"'; return;
    case '\\': out += '\\'; return;
    case '/': out += '/'; return;
    case 'b': out += '\b'; return;
    case 'f': out += '\f'; return;
    case 'n': out += '\n'; return;
    case 'r': out += '\r'; return;
    case 't': out += '\t'; return;
    case 'u': break;
    default: error("bad escape in string");
    }
    unsigned cp = hex4();
    if (cp >= 0xD800 && cp < 0xDC00) { // a surrogate pair encodes one code point
      if (!literal("\\u"))
        error("unpaired surrogate in string");
      unsigned low = hex4();
      if (low < 0xDC00 || low > 0xDFFF)
        error("unpaired surrogate in string");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    } else if (cp >= 0xDC00 && cp < 0xE000) {
      error("unpaired surrogate in string");
    }
    appendUtf8(out, cp);
  }

  std::string string() {
    ++pos_; // opening quote
    std::string out;
    for (;;) {
      if (pos_ >= s_.size())
        error("unterminated string");
      char c = s_[pos_++];
      if (c == '"')
        return out;
      if (static_cast<unsigned char>(c) < 0x20)
        error("control character in string");
      if (c == '\\')
        escape(out);
      else
        out += c;
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

} // namespace

const JsonValue *JsonValue::find(std::string_view key) const {
  for (const auto &[name, value] : members)
    if (name == key)
      return &value;
  return nullptr;
}

std::optional<int64_t> JsonValue::asInt() const {
  if (kind != Kind::Number || text.find_first_of(".eE") != std::string::npos)
    return std::nullopt;
  errno = 0;
  char *end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno == ERANGE || end != text.c_str() + text.size())
    return std::nullopt;
  return int64_t(v);
}

JsonValue parseJson(std::string_view text) { return Parser(text).document(); }

void parseJsonObjectMembers(std::string_view text, const JsonMemberVisitor &visit) {
  Parser(text).documentMembers(visit);
}

std::string jsonQuote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
    case '"': out += "\\\""; break;
    case '\\': out += "\\\\"; break;
    case '\n': out += "\\n"; break;
    case '\r': out += "\\r"; break;
    case '\t': out += "\\t"; break;
    default:
      if (static_cast<unsigned char>(c) < 0x20)
        out += fmt::format("\\u{:04x}", unsigned(c));
      else
        out += c;
    }
  }
  return out + "\"";
}

} // namespace sbp::rt
