// Parsing build and pipeline files: shape, types, known keys — and where each
// mistake is reported.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/launcher/helpers.h"

namespace cachefs::launcher::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(BuildFile, PackageFields) {
  const BuildFile b = parse_build_yaml(std::string(kHead) +
                                           "  resources:\n"
                                           "    cpu: 8\n"
                                           "    memory: 16Gi\n",
                                       "pkg.yaml");
  EXPECT_EQ(b.package.name.value, "hello");
  EXPECT_EQ(b.package.version.value, "1.2.3");
  EXPECT_EQ(b.package.epoch, 4u);
  EXPECT_EQ(b.package.description.value, "says hello");
  EXPECT_EQ(b.package.resources.cpu, "8");
  EXPECT_EQ(b.package.resources.memory, "16Gi");
  EXPECT_EQ(b.package.name.where.str(), "pkg.yaml:2:9");
}

TEST(BuildFile, MelangeFieldsWeDoNotUseAreAccepted) {
  const BuildFile b = parse_build_yaml(R"yaml(
package:
  name: hello
  version: "1"
  epoch: 0
  copyright:
    - license: MIT
  dependencies:
    runtime: [busybox]
    provides: [hi=1]
  options:
    no-provides: true
  scriptlets:
    post-install: echo hi
  checks:
    disabled: [empty]
  target-architecture: [x86_64]
  timeout: 1h
  url: https://example.org
capabilities:
  add: [CAP_NET_ADMIN]
environment:
  contents:
    repositories: [https://example.org/os]
    keyring: [https://example.org/key.pub]
    packages: [busybox, make]
  environment:
    A: b
  accounts:
    run-as: build
options:
  fast:
    environment: {}
update:
  enabled: false
test:
  pipeline:
    - runs: hello
pipeline:
  - runs: make
    label: build
    assertions:
      required-steps: 1
    needs:
      packages: [x]
)yaml",
                                       "pkg.yaml");
  ASSERT_EQ(b.packages.size(), 2u);
  EXPECT_EQ(b.packages[1].value, "make");
  ASSERT_EQ(b.environment.size(), 1u);
  EXPECT_EQ(b.environment[0].first, "A");
  EXPECT_EQ(b.options, std::vector<std::string>{"fast"});
  ASSERT_EQ(b.pipeline.size(), 1u);
  EXPECT_EQ(b.pipeline[0].runs->value, "make");
}

TEST(BuildFile, UnknownTopLevelKey) {
  const std::string e = parse_error(std::string(kHead) + "pipelines:\n  - runs: x\n");
  EXPECT_THAT(e, StartsWith("pkg.yaml:6:1: pipelines: unknown key"));
  EXPECT_THAT(e, HasSubstr("pipeline"));
}

TEST(BuildFile, UnknownPackageKey) {
  EXPECT_THAT(parse_error("package:\n  name: a\n  version: 1\n  nmae: b\n"),
              StartsWith("pkg.yaml:4:3: package.nmae: unknown key"));
}

TEST(BuildFile, UnknownStepKey) {
  EXPECT_THAT(parse_error(std::string(kHead) + "pipeline:\n  - runs: x\n  - run: y\n"),
              StartsWith("pkg.yaml:8:5: pipeline[1].run: unknown key"));
}

TEST(BuildFile, UnknownNestedStepKey) {
  EXPECT_THAT(parse_error(std::string(kHead) +
                          "pipeline:\n  - name: a\n    pipeline:\n      - runs: x\n        "
                          "workdir: y\n"),
              StartsWith("pkg.yaml:10:9: pipeline[0].pipeline[0].workdir: unknown key"));
}

TEST(BuildFile, PackageNameAndVersionRequired) {
  EXPECT_THAT(parse_error("package:\n  version: 1\n"), HasSubstr("package.name: is required"));
  EXPECT_THAT(parse_error("package:\n  name: a\n"), HasSubstr("package.version: is required"));
  EXPECT_THAT(parse_error("pipeline: []\n"), StartsWith("pkg.yaml:1:1: package: is required"));
}

TEST(BuildFile, EpochMustBeAnInteger) {
  EXPECT_THAT(parse_error("package:\n  name: a\n  version: 1\n  epoch: one\n"),
              StartsWith("pkg.yaml:4:10: package.epoch: must be a non-negative integer"));
  EXPECT_THAT(parse_error("package:\n  name: a\n  version: 1\n  epoch: -1\n"),
              HasSubstr("package.epoch"));
}

TEST(BuildFile, RunsMustBeAString) {
  EXPECT_THAT(parse_error(std::string(kHead) + "pipeline:\n  - runs:\n      a: b\n"),
              StartsWith("pkg.yaml:8:7: pipeline[0].runs: must be a string, not a mapping"));
}

TEST(BuildFile, PipelineMustBeAList) {
  EXPECT_THAT(parse_error(std::string(kHead) + "pipeline:\n  runs: x\n"),
              StartsWith("pkg.yaml:7:3: pipeline: must be a list, not a mapping"));
}

TEST(BuildFile, StepMustBeAMapping) {
  EXPECT_THAT(parse_error(std::string(kHead) + "pipeline:\n  - make\n"),
              StartsWith("pkg.yaml:7:5: pipeline[0]: a step must be a mapping"));
}

TEST(BuildFile, StepWithBothRunsAndUses) {
  EXPECT_THAT(parse_error(std::string(kHead) + "pipeline:\n  - runs: x\n    uses: fetch\n"),
              StartsWith("pkg.yaml:7:5: pipeline[0]: a step has either 'runs' or 'uses'"));
}

TEST(BuildFile, StepWithNothingToDo) {
  EXPECT_THAT(parse_error(std::string(kHead) + "pipeline:\n  - name: nothing\n"),
              StartsWith("pkg.yaml:7:5: pipeline[0]: a step needs 'runs', 'uses' or a nested"));
  EXPECT_THAT(parse_error(std::string(kHead) + "pipeline:\n  - name: x\n    pipeline: []\n"),
              HasSubstr("pipeline[0]: a step needs"));
}

TEST(BuildFile, StepWithUsesAndNestedPipeline) {
  EXPECT_THAT(parse_error(std::string(kHead) +
                          "pipeline:\n  - uses: strip\n    pipeline:\n      - runs: x\n"),
              HasSubstr("pkg.yaml:7:5: pipeline[0]: a step has either 'uses' or a nested"));
}

TEST(BuildFile, WithNeedsUses) {
  EXPECT_THAT(parse_error(std::string(kHead) + "pipeline:\n  - runs: x\n    with:\n      a: b\n"),
              StartsWith("pkg.yaml:8:5: pipeline[0].with: 'with' needs 'uses'"));
}

TEST(BuildFile, WithValuesMustBeStrings) {
  EXPECT_THAT(
      parse_error(std::string(kHead) + "pipeline:\n  - uses: fetch\n    with:\n      uri: [a]\n"),
      StartsWith("pkg.yaml:9:12: pipeline[0].with.uri: must be a string, not a list"));
}

TEST(BuildFile, DuplicateKey) {
  EXPECT_THAT(parse_error(std::string(kHead) + "pipeline:\n  - runs: x\n    runs: y\n"),
              StartsWith("pkg.yaml:8:5: pipeline[0].runs: duplicate key"));
  EXPECT_THAT(parse_error(std::string(kHead) + "vars:\n  a: 1\n  a: 2\n"),
              StartsWith("pkg.yaml:8:3: vars.a: duplicate key"));
}

TEST(BuildFile, YamlSyntaxErrorHasALocation) {
  EXPECT_THAT(parse_error(std::string(kHead) + "pipeline:\n  - runs: a\n  b: c\n"),
              StartsWith("pkg.yaml:8:3: "));
  EXPECT_THAT(parse_error("package: [a\n"), StartsWith("pkg.yaml:"));
}

TEST(BuildFile, TopLevelMustBeAMapping) {
  EXPECT_THAT(parse_error("- a\n- b\n"), StartsWith("pkg.yaml:1:1:"));
}

TEST(BuildFile, VarsMustBeStrings) {
  EXPECT_THAT(parse_error(std::string(kHead) + "vars:\n  a:\n    - 1\n"),
              StartsWith("pkg.yaml:8:5: vars.a: must be a string, not a list"));
  EXPECT_THAT(parse_error(std::string(kHead) + "vars: [a]\n"),
              StartsWith("pkg.yaml:6:7: vars: must be a mapping, not a list"));
}

TEST(BuildFile, EnvironmentShape) {
  EXPECT_THAT(
      parse_error(std::string(kHead) + "environment:\n  contents:\n    packages: busybox\n"),
      StartsWith("pkg.yaml:8:15: environment.contents.packages: must be a list"));
  EXPECT_THAT(parse_error(std::string(kHead) + "environment:\n  contents:\n    pkgs: [a]\n"),
              StartsWith("pkg.yaml:8:5: environment.contents.pkgs: unknown key"));
  EXPECT_THAT(
      parse_error(std::string(kHead) + "environment:\n  environment:\n    A:\n      B: c\n"),
      StartsWith("pkg.yaml:9:7: environment.environment.A: must be a string"));
  EXPECT_THAT(parse_error(std::string(kHead) + "environment:\n  envirnoment: {}\n"),
              StartsWith("pkg.yaml:7:3: environment.envirnoment: unknown key"));
}

TEST(BuildFile, StepEnvironmentMustBeAMapping) {
  EXPECT_THAT(parse_error(std::string(kHead) + "pipeline:\n  - runs: x\n    environment: [A=b]\n"),
              StartsWith("pkg.yaml:8:18: pipeline[0].environment: must be a mapping, not a list"));
}

TEST(BuildFile, Subpackages) {
  const BuildFile b = parse_build_yaml(std::string(kHead) +
                                           "subpackages:\n"
                                           "  - name: hello-dev\n"
                                           "    description: headers\n"
                                           "    if: a == a\n"
                                           "    dependencies:\n"
                                           "      runtime: [hello]\n"
                                           "    pipeline:\n"
                                           "      - runs: mv x y\n",
                                       "pkg.yaml");
  ASSERT_EQ(b.subpackages.size(), 1u);
  EXPECT_EQ(b.subpackages[0].name.value, "hello-dev");
  EXPECT_EQ(b.subpackages[0].if_->value, "a == a");
  ASSERT_EQ(b.subpackages[0].pipeline.size(), 1u);
  EXPECT_EQ(b.subpackages[0].pipeline[0].field, "subpackages[0].pipeline[0]");
}

TEST(BuildFile, SubpackageRangeIsNotSupported) {
  EXPECT_THAT(
      parse_error(std::string(kHead) +
                  "subpackages:\n  - range: modules\n    name: ${{range.key}}\n"),
      StartsWith("pkg.yaml:7:5: subpackages[0].range: subpackage ranges are not supported"));
}

TEST(BuildFile, SubpackageNeedsAName) {
  EXPECT_THAT(parse_error(std::string(kHead) + "subpackages:\n  - description: x\n"),
              StartsWith("pkg.yaml:7:5: subpackages[0].name: is required"));
}

TEST(BuildFile, SubpackageUnknownKey) {
  EXPECT_THAT(parse_error(std::string(kHead) + "subpackages:\n  - name: a\n    pipelines: []\n"),
              StartsWith("pkg.yaml:8:5: subpackages[0].pipelines: unknown key"));
}

TEST(BuildFile, VarTransformFieldsRequired) {
  EXPECT_THAT(parse_error(std::string(kHead) +
                          "var-transforms:\n  - from: x\n    match: y\n    replace: z\n"),
              StartsWith("pkg.yaml:7:5: var-transforms[0].to: is required"));
  EXPECT_THAT(parse_error(std::string(kHead) +
                          "var-transforms:\n  - from: x\n    match: y\n    to: z\n    with: 1\n"),
              StartsWith("pkg.yaml:10:5: var-transforms[0].with: unknown key"));
}

TEST(BuildFile, MissingFileIsAUsageError) {
  EXPECT_THAT(error_of([] { parse_build_file("/nonexistent/pkg.yaml"); }),
              HasSubstr("/nonexistent/pkg.yaml"));
}

TEST(PipelineFile, Parses) {
  const PipelineFile p = parse_pipeline_yaml(R"yaml(name: Greet
needs:
  packages:
    - busybox
inputs:
  who:
    description: whom to greet
    required: true
  times:
    default: 1
  loud:
    default: false
  empty:
    description: no default
pipeline:
  - runs: echo ${{inputs.who}}
)yaml",
                                             "greet.yaml");
  EXPECT_EQ(p.name, "Greet");
  ASSERT_EQ(p.needs_packages.size(), 1u);
  EXPECT_EQ(p.needs_packages[0].value, "busybox");
  ASSERT_EQ(p.inputs.size(), 4u);
  EXPECT_EQ(p.inputs[0].first, "who");
  EXPECT_TRUE(p.input("who")->required);
  EXPECT_EQ(p.input("times")->default_value->value, "1");
  EXPECT_EQ(p.input("loud")->default_value->value, "false");
  EXPECT_FALSE(p.input("empty")->default_value.has_value());
  EXPECT_EQ(p.input("who")->where.str(), "greet.yaml:6:3");
}

TEST(PipelineFile, Errors) {
  auto err = [](const std::string& y) {
    return error_of([&] { parse_pipeline_yaml(y, "p.yaml"); });
  };
  EXPECT_THAT(err("name: x\npipline: []\n"), StartsWith("p.yaml:2:1: pipline: unknown key"));
  EXPECT_THAT(err("name: x\n"), HasSubstr("p.yaml:1:1: pipeline: a pipeline file needs steps"));
  EXPECT_THAT(err("inputs:\n  a:\n    required: maybe\npipeline:\n  - runs: x\n"),
              StartsWith("p.yaml:3:15: inputs.a.required: must be true or false"));
  EXPECT_THAT(err("inputs:\n  a:\n    defualt: 1\npipeline:\n  - runs: x\n"),
              StartsWith("p.yaml:3:5: inputs.a.defualt: unknown key"));
  EXPECT_THAT(err("needs:\n  packages: x\npipeline:\n  - runs: x\n"),
              StartsWith("p.yaml:2:13: needs.packages: must be a list"));
  EXPECT_THAT(err("pipeline:\n  - runs: x\n    uses: y\n"),
              StartsWith("p.yaml:2:5: pipeline[0]: a step has either 'runs' or 'uses'"));
}

}  // namespace
}  // namespace cachefs::launcher::testing
