// JsonTest.cpp - the JSON reader behind safetensors headers.
#include "Json.h"

#include <gtest/gtest.h>

using namespace sbp::rt;

TEST(Json, ParsesObjectsArraysAndScalars) {
  JsonValue v = parseJson(R"( {"a": [1, -2, 3.5e2], "b": {"c": "d"}, "t": true, "f": false,
                              "n": null} )");
  ASSERT_TRUE(v.isObject());
  const JsonValue *a = v.find("a");
  ASSERT_TRUE(a && a->isArray());
  EXPECT_EQ(a->items[0].asInt(), 1);
  EXPECT_EQ(a->items[1].asInt(), -2);
  EXPECT_FALSE(a->items[2].asInt().has_value());
  EXPECT_EQ(v.find("b")->find("c")->text, "d");
  EXPECT_TRUE(v.find("t")->boolean);
  EXPECT_FALSE(v.find("f")->boolean);
  EXPECT_EQ(v.find("n")->kind, JsonValue::Kind::Null);
  EXPECT_EQ(v.find("missing"), nullptr);
}

TEST(Json, DecodesEscapesAndUnicode) {
  JsonValue v = parseJson(R"("q\"b\\s\/n\nt\tu\u00e9\ud83d\ude00")");
  EXPECT_EQ(v.text, "q\"b\\s/n\nt\tu\xc3\xa9\xf0\x9f\x98\x80");
}

TEST(Json, QuoteRoundTrips) {
  std::string s = "a\"b\\c\nd\x01";
  EXPECT_EQ(parseJson(jsonQuote(s)).text, s);
}

TEST(Json, IntegersOutOfRangeAreNotIntegers) {
  EXPECT_EQ(parseJson("9223372036854775807").asInt(), INT64_MAX);
  EXPECT_FALSE(parseJson("9223372036854775808").asInt().has_value());
}

TEST(Json, RejectsMalformedDocuments) {
  for (const char *bad :
       {"", "{", "{\"a\":1,}", "[1 2]", "{\"a\" 1}", "\"open", "01", "1.", "-", "tru", "{} x",
        "{\"a\":1,\"a\":2}", "\"\\x\"", "\"\\ud800\"", "\"a\nb\"", "{1:2}"})
    EXPECT_THROW(parseJson(bad), JsonError) << bad;
}

TEST(Json, LimitsNesting) {
  EXPECT_THROW(parseJson(std::string(1000, '[') + std::string(1000, ']')), JsonError);
  EXPECT_NO_THROW(parseJson(std::string(20, '[') + std::string(20, ']')));
}

TEST(Json, ObjectMembersAreVisitedInFileOrder) {
  std::vector<std::string> keys;
  parseJsonObjectMembers(R"( {"b": [1], "a": {"c": 2}} )", [&](std::string key, JsonValue value) {
    keys.push_back(key);
    EXPECT_TRUE(value.isArray() || value.isObject());
  });
  EXPECT_EQ(keys, (std::vector<std::string>{"b", "a"}));
  auto ignore = [](std::string, JsonValue) {};
  EXPECT_THROW(parseJsonObjectMembers("[1]", ignore), JsonError);
  EXPECT_THROW(parseJsonObjectMembers(R"({"a":1,"a":2})", ignore), JsonError);
  EXPECT_THROW(parseJsonObjectMembers(R"({"a":1} x)", ignore), JsonError);
}
