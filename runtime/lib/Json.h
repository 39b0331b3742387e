// Json.h - the small JSON reader/writer that safetensors headers need.
//
// Strict RFC 8259 parsing with a nesting limit (headers come from untrusted
// files); numbers keep their text so integers are read exactly.
#ifndef SBP_RUNTIME_JSON_H
#define SBP_RUNTIME_JSON_H

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sbp::rt {

class JsonError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

struct JsonValue {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  std::string text; // String: the decoded string; Number: the literal
  std::vector<JsonValue> items;
  std::vector<std::pair<std::string, JsonValue>> members; // in file order

  bool isObject() const { return kind == Kind::Object; }
  bool isArray() const { return kind == Kind::Array; }
  bool isString() const { return kind == Kind::String; }
  // Member `key` of an object, or nullptr.
  const JsonValue *find(std::string_view key) const;
  // The number as an integer, if it is one that fits in int64.
  std::optional<int64_t> asInt() const;
};

// Parses a complete document; throws JsonError with the byte offset.
JsonValue parseJson(std::string_view text);

using JsonMemberVisitor = std::function<void(std::string key, JsonValue value)>;

// Parses a complete document whose root is an object, handing each member to
// visit as soon as it is read: a safetensors header of a million tensors is
// never held as one tree (about 1 KB per tensor). Throws JsonError, also when
// the root is not an object.
void parseJsonObjectMembers(std::string_view text, const JsonMemberVisitor &visit);

// `s` as a JSON string literal, quotes included.
std::string jsonQuote(std::string_view s);

} // namespace sbp::rt

#endif // SBP_RUNTIME_JSON_H
