// Resolving a build file into a plan: substitutions, var-transforms, working
// directories, environments, `if`, nested pipelines, `uses:`, subpackages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "launcher/cache_env.h"
#include "tests/launcher/helpers.h"

namespace cachefs::launcher::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string with_pipeline(const std::string& steps) {
  return std::string(kHead) + "pipeline:\n" + steps;
}

TEST(Plan, PackageSubstitutions) {
  const Plan p = plan_of(
      with_pipeline("  - runs: |\n"
                    "      echo ${{package.name}} ${{package.version}} ${{package.epoch}}\n"
                    "      echo ${{package.full-version}} '${{package.description}}'\n"
                    "      echo ${{targets.destdir}} ${{targets.contextdir}} ${{targets.outdir}}\n"
                    "      echo ${{build.arch}} ${{context.name}}\n"));
  EXPECT_EQ(p.package.name, "hello");
  EXPECT_EQ(p.package.full_version, "1.2.3-r4");
  ASSERT_EQ(p.builds.size(), 1u);
  ASSERT_EQ(p.builds[0].steps.size(), 1u);
  EXPECT_EQ(p.builds[0].steps[0].script,
            "echo hello 1.2.3 4\n"
            "echo 1.2.3-r4 'says hello'\n"
            "echo /home/build/melange-out/hello /home/build/melange-out/hello "
            "/home/build/melange-out\n"
            "echo x86_64 hello\n");
  EXPECT_EQ(p.builds[0].steps[0].name, "pipeline[0]");
  EXPECT_EQ(p.builds[0].steps[0].working_directory, "/home/build");
  EXPECT_EQ(p.builds[0].contextdir, "/home/build/melange-out/hello");
}

TEST(Plan, HostArchIsMelangeNaming) {
  const std::string a = host_arch();
  EXPECT_TRUE(a == "x86_64" || a == "aarch64" || !a.empty()) << a;
  PlanOptions o = default_options();
  o.arch = "";
  const Plan p = plan_of(with_pipeline("  - runs: echo ${{build.arch}}\n"), o);
  EXPECT_EQ(p.builds[0].steps[0].script, "echo " + host_arch());
}

TEST(Plan, UndefinedSubstitutionsNameFileLineField) {
  EXPECT_THAT(plan_error(with_pipeline("  - runs: cp x ${{targets.subpkgdir}}\n")),
              StartsWith("pkg.yaml:7:16: pipeline[0].runs: undefined substitution "
                         "'${{targets.subpkgdir}}'"));
  EXPECT_THAT(plan_error(with_pipeline("  - runs: echo ${{inputs.uri}}\n")),
              StartsWith("pkg.yaml:7:16: pipeline[0].runs: undefined substitution "
                         "'${{inputs.uri}}'"));
  EXPECT_THAT(plan_error(with_pipeline("  - name: x\n    working-directory: ${{vars.dir}}\n"
                                       "    runs: x\n")),
              StartsWith("pkg.yaml:8:24: pipeline[0].working-directory: undefined"));
  EXPECT_THAT(plan_error(with_pipeline("  - runs: x\n    environment:\n      A: ${{nope}}\n")),
              StartsWith("pkg.yaml:9:10: pipeline[0].environment.A: undefined"));
  EXPECT_THAT(plan_error(with_pipeline("  - name: ${{nope}}\n    runs: x\n")),
              StartsWith("pkg.yaml:7:11: pipeline[0].name: undefined"));
  EXPECT_THAT(plan_error(with_pipeline("  - runs: x\n    if: ${{nope}} == a\n")),
              StartsWith("pkg.yaml:8:9: pipeline[0].if: in condition"));
}

TEST(Plan, VarsMayUseEarlierVarsAndPackage) {
  const Plan p = plan_of(std::string(kHead) +
                         "vars:\n"
                         "  base: https://example.org/${{package.name}}\n"
                         "  url: ${{vars.base}}/v${{package.version}}.tar.gz\n"
                         "pipeline:\n"
                         "  - runs: echo ${{vars.url}}\n");
  EXPECT_EQ(p.builds[0].steps[0].script, "echo https://example.org/hello/v1.2.3.tar.gz");
  EXPECT_THAT(plan_error(std::string(kHead) + "vars:\n  a: ${{vars.b}}\n  b: x\n"),
              StartsWith("pkg.yaml:7:6: vars.a: undefined substitution '${{vars.b}}'"));
}

TEST(Plan, CallerVarsOverride) {
  PlanOptions o = default_options();
  o.vars = {{"a", "from-caller"}, {"extra", "e"}};
  const Plan p = plan_of(std::string(kHead) +
                             "vars:\n  a: from-file\n  b: ${{vars.extra}}-b\n"
                             "pipeline:\n  - runs: echo ${{vars.a}} ${{vars.extra}} ${{vars.b}}\n",
                         o);
  EXPECT_EQ(p.builds[0].steps[0].script, "echo from-caller e e-b");
}

TEST(Plan, VarTransforms) {
  const Plan p = plan_of(std::string(kHead) +
                         "vars:\n"
                         "  tag: 2.4.1_rc7\n"
                         "var-transforms:\n"
                         "  - from: ${{vars.tag}}\n"
                         "    match: ^(\\d+)\\.(\\d+)\\.(\\d+)_rc(\\d+)$\n"
                         "    replace: $1.$2.${3}-rc.$4\n"
                         "    to: mangled\n"
                         "  - from: ${{vars.mangled}}\n"
                         "    match: ^(?P<maj>\\d+)\\.(?P<min>\\d+)\\..*\n"
                         "    replace: ${maj}_${min} costs $$5\n"
                         "    to: majmin\n"
                         "  - from: ${{package.version}}\n"
                         "    match: \\.\n"
                         "    replace: ''\n"
                         "    to: nodots\n"
                         "  - from: abc\n"
                         "    match: x*\n"
                         "    replace: '-'\n"
                         "    to: empties\n"
                         "  - from: a.b\n"
                         "    match: (\\w)\n"
                         "    replace: $1x $9 $nope\n"
                         "    to: missing-groups\n"
                         "pipeline:\n"
                         "  - runs: echo ${{vars.mangled}} ${{vars.majmin}} ${{vars.nodots}}\n"
                         "  - runs: echo ${{vars.empties}} ${{vars.missing-groups}}\n");
  EXPECT_EQ(p.builds[0].steps[0].script, "echo 2.4.1-rc.7 2_4 costs $5 123");
  // Go's ReplaceAllString: "$1x" is the group named "1x" (none: empty).
  EXPECT_EQ(p.builds[0].steps[1].script, "echo -a-b-c-   .  ");
}

TEST(Plan, VarTransformErrors) {
  EXPECT_THAT(plan_error(std::string(kHead) +
                         "var-transforms:\n  - from: x\n    match: (unclosed\n    replace: y\n"
                         "    to: z\n"),
              StartsWith("pkg.yaml:8:12: var-transforms[0].match: invalid regular expression"));
  EXPECT_THAT(plan_error(std::string(kHead) +
                         "var-transforms:\n  - from: ${{vars.none}}\n    match: x\n    to: z\n"),
              StartsWith("pkg.yaml:7:11: var-transforms[0].from: undefined"));
}

TEST(Plan, WorkingDirectories) {
  const Plan p =
      plan_of(with_pipeline("  - name: abs\n"
                            "    working-directory: /tmp/x/\n"
                            "    runs: a\n"
                            "  - name: rel\n"
                            "    working-directory: src/../build\n"
                            "    runs: b\n"
                            "  - name: outer\n"
                            "    working-directory: src\n"
                            "    pipeline:\n"
                            "      - name: inherit\n"
                            "        runs: c\n"
                            "      - name: inner\n"
                            "        working-directory: lib\n"
                            "        runs: d\n"
                            "      - name: inner-abs\n"
                            "        working-directory: ${{targets.destdir}}\n"
                            "        runs: e\n"));
  const PackagePlan& b = p.builds[0];
  ASSERT_EQ(b.steps.size(), 5u);
  EXPECT_EQ(find_step(b, "abs")->working_directory, "/tmp/x");
  EXPECT_EQ(find_step(b, "rel")->working_directory, "/home/build/build");
  EXPECT_EQ(find_step(b, "outer/inherit")->working_directory, "/home/build/src");
  EXPECT_EQ(find_step(b, "outer/inner")->working_directory, "/home/build/src/lib");
  EXPECT_EQ(find_step(b, "outer/inner-abs")->working_directory, "/home/build/melange-out/hello");
}

TEST(Plan, EnvironmentLayers) {
  PlanOptions o = default_options();
  o.environment = {{"FROM_CALLER", "c"}, {"OVERRIDDEN", "caller"}};
  const Plan p = plan_of(std::string(kHead) +
                             "environment:\n"
                             "  environment:\n"
                             "    FROM_FILE: ${{package.name}}\n"
                             "    OVERRIDDEN: file\n"
                             "pipeline:\n"
                             "  - name: outer\n"
                             "    environment:\n"
                             "      STEP: outer\n"
                             "      FROM_FILE: outer\n"
                             "    pipeline:\n"
                             "      - name: inner\n"
                             "        environment:\n"
                             "          STEP: inner-${{build.arch}}\n"
                             "        runs: env\n"
                             "  - name: plain\n"
                             "    runs: env\n",
                         o);
  EXPECT_EQ(p.environment.at("FROM_FILE"), "hello");
  EXPECT_EQ(p.environment.at("OVERRIDDEN"), "caller");
  EXPECT_EQ(p.environment.at("FROM_CALLER"), "c");
  const PlanStep* inner = find_step(p.builds[0], "outer/inner");
  ASSERT_NE(inner, nullptr);
  EXPECT_EQ(inner->environment.at("STEP"), "inner-x86_64");
  EXPECT_EQ(inner->environment.at("FROM_FILE"), "outer");
  EXPECT_EQ(inner->environment.at("FROM_CALLER"), "c");
  EXPECT_EQ(inner->environment.at("HOME"), "/home/build");
  const PlanStep* plain = find_step(p.builds[0], "plain");
  EXPECT_EQ(plain->environment.count("STEP"), 0u);
  EXPECT_EQ(plain->environment, p.environment);
}

TEST(Plan, CacheEnvironmentDefaults) {
  const Plan p = plan_of(with_pipeline("  - runs: x\n"));
  EXPECT_EQ(p.environment.at("GOMODCACHE"), "/var/cache/melange/gomodcache");
  EXPECT_EQ(p.environment.at("UV_CACHE_DIR"), "/var/cache/melange/uv");
  EXPECT_EQ(p.environment.at("PIP_CACHE_DIR"), "/var/cache/melange/pip");
  EXPECT_EQ(p.environment.at("COMPOSER_CACHE_DIR"), "/var/cache/melange/composer");
  EXPECT_EQ(p.environment.at("npm_config_cache"), "/var/cache/melange/npm");
  EXPECT_EQ(p.environment.at("HOME"), "/home/build");
  EXPECT_EQ(p.environment.at("SOURCE_DATE_EPOCH"), "0");
  EXPECT_EQ(p.environment.size(), kCacheEnvironment.size() + 1);
}

TEST(Plan, UserCacheEnvironmentWins) {
  PlanOptions o = default_options();
  o.environment = {{"UV_CACHE_DIR", "/caller/uv"}, {"PIP_CACHE_DIR", ""}};
  o.source_date_epoch = "1700000000";
  const Plan p = plan_of(std::string(kHead) +
                             "environment:\n"
                             "  environment:\n"
                             "    GOMODCACHE: /mine/go\n"
                             "    npm_config_cache: ''\n"
                             "    SOURCE_DATE_EPOCH: '42'\n",
                         o);
  EXPECT_EQ(p.environment.at("GOMODCACHE"), "/mine/go");
  EXPECT_EQ(p.environment.at("UV_CACHE_DIR"), "/caller/uv");
  // Empty counts as unset.
  EXPECT_EQ(p.environment.at("PIP_CACHE_DIR"), "/var/cache/melange/pip");
  EXPECT_EQ(p.environment.at("npm_config_cache"), "/var/cache/melange/npm");
  EXPECT_EQ(p.environment.at("SOURCE_DATE_EPOCH"), "42");
  PlanOptions only_caller = default_options();
  only_caller.source_date_epoch = "1700000000";
  EXPECT_EQ(plan_of(std::string(kHead), only_caller).environment.at("SOURCE_DATE_EPOCH"),
            "1700000000");
}

TEST(Plan, ApplyCacheEnvironmentDirectly) {
  std::map<std::string, std::string> env{{"HOME", "/root"}, {"GOMODCACHE", ""}};
  apply_cache_environment(env, "");
  EXPECT_EQ(env.at("HOME"), "/root");
  EXPECT_EQ(env.at("GOMODCACHE"), "/var/cache/melange/gomodcache");
  EXPECT_EQ(env.at("SOURCE_DATE_EPOCH"), "0");
}

TEST(Plan, FalseConditionsSkipStepsAndTheirChildren) {
  const Plan p =
      plan_of(with_pipeline("  - name: first\n"
                            "    runs: a\n"
                            "  - name: arm-only\n"
                            "    if: ${{build.arch}} == 'aarch64'\n"
                            "    runs: b\n"
                            "  - name: group\n"
                            "    if: ${{build.arch}} != x86_64\n"
                            "    pipeline:\n"
                            "      - name: child\n"
                            "        runs: c\n"
                            "  - name: x86-only\n"
                            "    if: ${{build.arch}} == 'x86_64' && (a == b || c == c)\n"
                            "    runs: d\n"
                            "  - name: empty-if\n"
                            "    if: ''\n"
                            "    runs: e\n"));
  const PackagePlan& b = p.builds[0];
  std::vector<std::string> names;
  for (const auto& s : b.steps) names.push_back(s.name);
  EXPECT_THAT(names, ElementsAre("first", "x86-only", "empty-if"));
  ASSERT_EQ(b.skipped.size(), 2u);
  EXPECT_EQ(b.skipped[0].name, "arm-only");
  EXPECT_EQ(b.skipped[0].condition, "${{build.arch}} == 'aarch64'");
  EXPECT_EQ(b.skipped[0].before, 1u);
  EXPECT_EQ(b.skipped[1].name, "group");
  EXPECT_EQ(b.skipped[1].before, 1u);
}

TEST(Plan, SkippedStepsAreStillChecked) {
  EXPECT_THAT(plan_error(with_pipeline("  - if: a == b\n    runs: echo ${{vars.typo}}\n")),
              StartsWith("pkg.yaml:8:16: pipeline[0].runs: undefined"));
  EXPECT_THAT(plan_error(with_pipeline("  - if: a == b\n    uses: no-such-pipeline\n")),
              HasSubstr("unknown pipeline 'no-such-pipeline'"));
}

TEST(Plan, MalformedCondition) {
  EXPECT_THAT(plan_error(with_pipeline("  - runs: x\n    if: ${{build.arch}} = 'x86_64'\n")),
              StartsWith("pkg.yaml:8:25: pipeline[0].if: in condition"));
  EXPECT_THAT(plan_error(with_pipeline("  - runs: x\n    if: (a == b\n")),
              HasSubstr("pipeline[0].if: in condition \"(a == b\": '(' is never closed"));
}

TEST(Plan, NestedStepNames) {
  const Plan p =
      plan_of(with_pipeline("  - name: outer\n"
                            "    runs: o\n"
                            "    pipeline:\n"
                            "      - name: mid\n"
                            "        pipeline:\n"
                            "          - name: leaf\n"
                            "            runs: l\n"
                            "          - runs: unnamed\n"
                            "  - runs: top\n"));
  std::vector<std::string> names;
  for (const auto& s : p.builds[0].steps) names.push_back(s.name);
  EXPECT_THAT(names, ElementsAre("outer", "outer/mid/leaf", "outer/mid", "pipeline[1]"));
}

TEST(Plan, Subpackages) {
  const Plan p =
      plan_of(std::string(kHead) +
              "pipeline:\n"
              "  - runs: make install DESTDIR=${{targets.destdir}}\n"
              "subpackages:\n"
              "  - name: ${{package.name}}-dev\n"
              "    description: headers for ${{package.name}}\n"
              "    pipeline:\n"
              "      - runs: |\n"
              "          mv ${{targets.destdir}}/usr/include ${{targets.subpkgdir}}/usr/\n"
              "          echo ${{targets.contextdir}} ${{context.name}} ${{subpkg.name}}\n"
              "  - name: hello-arm\n"
              "    if: ${{build.arch}} == aarch64\n"
              "    pipeline:\n"
              "      - runs: x\n"
              "  - name: hello-doc\n"
              "    pipeline:\n"
              "      - uses: autoconf/make-install\n");
  ASSERT_EQ(p.builds.size(), 3u);
  EXPECT_EQ(p.builds[1].name, "hello-dev");
  EXPECT_TRUE(p.builds[1].subpackage);
  EXPECT_EQ(p.builds[1].description, "headers for hello");
  EXPECT_EQ(p.builds[1].contextdir, "/home/build/melange-out/hello-dev");
  EXPECT_EQ(p.builds[1].steps[0].script,
            "mv /home/build/melange-out/hello/usr/include /home/build/melange-out/hello-dev/usr/\n"
            "echo /home/build/melange-out/hello-dev hello-dev hello-dev\n");
  ASSERT_EQ(p.skipped_subpackages.size(), 1u);
  EXPECT_EQ(p.skipped_subpackages[0].name, "hello-arm");
  EXPECT_EQ(p.builds[2].name, "hello-doc");
  // A pipeline used by a subpackage installs into the subpackage.
  EXPECT_THAT(p.builds[2].steps[0].script,
              HasSubstr("DESTDIR='/home/build/melange-out/hello-doc'"));
}

TEST(Plan, SubpackageErrors) {
  EXPECT_THAT(
      plan_error(std::string(kHead) +
                 "subpackages:\n  - name: x\n    if: a ==\n    pipeline:\n      - runs: y\n"),
      StartsWith("pkg.yaml:8:13: subpackages[0].if: in condition"));
  EXPECT_THAT(plan_error(std::string(kHead) +
                         "subpackages:\n  - name: x\n    pipeline:\n      - runs: ${{inputs.a}}\n"),
              StartsWith("pkg.yaml:9:15: subpackages[0].pipeline[0].runs: undefined"));
}

TEST(Location, ExactInSingleLineAndLiteralBlocks) {
  // runs: on line 8 starts at column 11; the literal block's lines at column 7.
  const std::string yaml = std::string(kHead) +
                           "pipeline:\n"
                           "  - name: a\n"
                           "    runs: echo ${{vars.nope}}\n"
                           "  - runs: |\n"
                           "      echo one\n"
                           "\n"
                           "      echo two ${{vars.missing}}\n";
  EXPECT_THAT(plan_error(yaml), StartsWith("pkg.yaml:8:16: pipeline[0].runs: undefined"));
  const std::string second = std::string(kHead) +
                             "pipeline:\n"
                             "  - runs: |\n"
                             "      echo one\n"
                             "\n"
                             "      echo two ${{vars.missing}}\n";
  EXPECT_THAT(plan_error(second),
              StartsWith("pkg.yaml:10:16: pipeline[0].runs: undefined substitution "
                         "'${{vars.missing}}'"));
}

TEST(Location, QuotedScalarsAndConditions) {
  EXPECT_THAT(plan_error(std::string(kHead) + "pipeline:\n  - runs: \"x ${{nope}}\"\n"),
              StartsWith("pkg.yaml:7:14: pipeline[0].runs: undefined substitution '${{nope}}'"));
  EXPECT_THAT(plan_error(std::string(kHead) + "pipeline:\n  - runs: x\n    if: a == 'b\n"),
              StartsWith("pkg.yaml:8:14: pipeline[0].if: in condition \"a == 'b\""));
}

// ---- uses: ----

TEST(Uses, ExpandsPipelineWithInputsAndDefaults) {
  TempDir dir;
  dir.write("greet.yaml",
            "name: greet\n"
            "needs:\n"
            "  packages:\n"
            "    - greeter\n"
            "    - ${{inputs.shell}}\n"
            "inputs:\n"
            "  who:\n"
            "    required: true\n"
            "  shell:\n"
            "    default: busybox\n"
            "  how:\n"
            "    default: hello-${{package.version}}\n"
            "pipeline:\n"
            "  - runs: echo ${{inputs.how}} ${{inputs.who}}\n"
            "  - name: twice\n"
            "    runs: echo again ${{inputs.who}}\n");
  PlanOptions o = default_options();
  o.pipeline_dirs.insert(o.pipeline_dirs.begin(), dir.path());
  const Plan p = plan_of(std::string(kHead) +
                             "environment:\n  contents:\n    packages: [busybox, make]\n"
                             "pipeline:\n"
                             "  - uses: greet\n"
                             "    with:\n"
                             "      who: ${{package.name}}\n"
                             "  - name: loud\n"
                             "    uses: greet\n"
                             "    with:\n"
                             "      who: everyone\n"
                             "      how: HI\n"
                             "      shell: bash\n",
                         o);
  const auto& steps = p.builds[0].steps;
  ASSERT_EQ(steps.size(), 4u);
  EXPECT_EQ(steps[0].name, "greet");
  EXPECT_EQ(steps[0].script, "echo hello-1.2.3 hello");
  EXPECT_EQ(steps[1].name, "greet/twice");
  EXPECT_EQ(steps[2].name, "loud");
  EXPECT_EQ(steps[2].script, "echo HI everyone");
  EXPECT_EQ(steps[3].name, "loud/twice");
  EXPECT_THAT(p.packages, ElementsAre("busybox", "make", "greeter", "bash"));
}

TEST(Uses, StepEnvironmentAndWorkingDirectoryReachThePipeline) {
  const Plan p =
      plan_of(with_pipeline("  - uses: autoconf/make\n"
                            "    working-directory: src\n"
                            "    environment:\n"
                            "      CFLAGS: -O2\n"));
  const PlanStep& s = p.builds[0].steps.at(0);
  EXPECT_EQ(s.name, "autoconf/make");
  EXPECT_EQ(s.working_directory, "/home/build/src");
  EXPECT_EQ(s.environment.at("CFLAGS"), "-O2");
  EXPECT_THAT(s.where.file, HasSubstr("autoconf/make.yaml"));
}

TEST(Uses, UnknownPipeline) {
  const std::string e = plan_error(with_pipeline("  - uses: autoconf/confgure\n"));
  EXPECT_THAT(e, StartsWith("pkg.yaml:7:11: pipeline[0].uses: unknown pipeline "
                            "'autoconf/confgure' (known: "));
  EXPECT_THAT(e, HasSubstr("autoconf/configure"));
  EXPECT_THAT(e, HasSubstr("fetch"));
}

TEST(Uses, InvalidName) {
  EXPECT_THAT(plan_error(with_pipeline("  - uses: ../../etc/passwd\n")),
              StartsWith("pkg.yaml:7:11: pipeline[0].uses: invalid pipeline name"));
  EXPECT_THAT(plan_error(with_pipeline("  - uses: /abs\n")), HasSubstr("invalid pipeline name"));
}

TEST(Uses, UnknownInput) {
  EXPECT_THAT(plan_error(with_pipeline("  - uses: autoconf/make\n    with:\n      optz: -k\n")),
              StartsWith("pkg.yaml:9:13: pipeline[0].with.optz: pipeline 'autoconf/make' has no "
                         "input 'optz' (inputs: dir, opts)"));
}

TEST(Uses, MissingRequiredInput) {
  const std::string e =
      plan_error(with_pipeline("  - uses: fetch\n    with:\n      extract: false\n"));
  EXPECT_THAT(e, StartsWith("pkg.yaml:7:5: pipeline[0].with: missing required input 'uri' of "
                            "pipeline 'fetch'"));
  EXPECT_THAT(e, HasSubstr("fetch.yaml:"));
  // An empty value counts as missing.
  EXPECT_THAT(plan_error(with_pipeline("  - uses: fetch\n    with:\n      uri: ''\n")),
              HasSubstr("missing required input 'uri'"));
}

TEST(Uses, DigestsAreChecked) {
  EXPECT_THAT(
      plan_error(with_pipeline("  - uses: fetch\n    with:\n      uri: x\n"
                               "      expected-sha256: abc\n")),
      StartsWith("pkg.yaml:10:24: pipeline[0].with.expected-sha256: must be 64 hex digits"));
  EXPECT_THAT(plan_error(with_pipeline("  - uses: git-checkout\n    with:\n      repository: x\n"
                                       "      expected-commit: zzzz\n")),
              HasSubstr("pipeline[0].with.expected-commit: must be 40 hex digits"));
}

TEST(Uses, ErrorsInsidePipelineFilesNameThatFileAndTheUse) {
  TempDir dir;
  const std::string bad = dir.write("bad.yaml",
                                    "inputs:\n"
                                    "  a:\n"
                                    "    default: x\n"
                                    "pipeline:\n"
                                    "  - runs: |\n"
                                    "      echo ${{inputs.b}}\n")
                              .string();
  dir.write("broken.yaml", "pipeline:\n  - runz: x\n");
  dir.write("outer.yaml", "pipeline:\n  - uses: bad\n");
  PlanOptions o = default_options();
  o.pipeline_dirs.insert(o.pipeline_dirs.begin(), dir.path());
  EXPECT_EQ(plan_error(with_pipeline("  - uses: bad\n"), o),
            bad +
                ":6:12: pipeline[0].runs: undefined substitution '${{inputs.b}}' (defined: a) "
                "(in pipeline 'bad', used at pkg.yaml:7:11: pipeline[0].uses)");
  EXPECT_THAT(
      plan_error(with_pipeline("  - uses: broken\n"), o),
      StartsWith((dir.path() / "broken.yaml").string() + ":2:5: pipeline[0].runz: unknown key"));
  EXPECT_THAT(plan_error(with_pipeline("  - uses: broken\n"), o),
              HasSubstr("(in pipeline 'broken', used at pkg.yaml:7:11: pipeline[0].uses)"));
  // Two levels: both uses are named, innermost first.
  EXPECT_THAT(plan_error(with_pipeline("  - uses: outer\n"), o),
              HasSubstr("(in pipeline 'bad', used at " + (dir.path() / "outer.yaml").string() +
                        ":2:11: pipeline[0].uses) (in pipeline 'outer', used at pkg.yaml:7:11: "
                        "pipeline[0].uses)"));
}

TEST(Uses, NestedPipelinesSeeTheirOwnInputs) {
  TempDir dir;
  dir.write("lang/outer.yaml",
            "needs:\n  packages: [outer-need]\n"
            "inputs:\n  flavor:\n    default: plain\n"
            "pipeline:\n"
            "  - name: prepare\n"
            "    runs: echo outer ${{inputs.flavor}}\n"
            "  - uses: lang/inner\n"
            "    with:\n"
            "      what: ${{inputs.flavor}}-x\n");
  dir.write("lang/inner.yaml",
            "needs:\n  packages: [inner-need]\n"
            "inputs:\n  what:\n    required: true\n"
            "pipeline:\n"
            "  - runs: echo inner ${{inputs.what}} ${{inputs.flavor}}\n");
  PlanOptions o = default_options();
  o.pipeline_dirs.insert(o.pipeline_dirs.begin(), dir.path());
  const Plan p =
      plan_of(with_pipeline("  - uses: lang/outer\n    with:\n      flavor: spicy\n"), o);
  const auto& steps = p.builds[0].steps;
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].name, "lang/outer/prepare");
  EXPECT_EQ(steps[0].script, "echo outer spicy");
  EXPECT_EQ(steps[1].name, "lang/outer/lang/inner");
  // Inputs of enclosing pipelines stay visible, as in melange.
  EXPECT_EQ(steps[1].script, "echo inner spicy-x spicy");
  EXPECT_THAT(p.packages, ElementsAre("outer-need", "inner-need"));
}

TEST(Uses, UserDirectoriesComeFirst) {
  TempDir dir;
  dir.write("strip.yaml", "pipeline:\n  - runs: echo my own strip\n");
  PlanOptions o = default_options();
  o.pipeline_dirs.insert(o.pipeline_dirs.begin(), dir.path());
  EXPECT_EQ(plan_of(with_pipeline("  - uses: strip\n"), o).builds[0].steps[0].script,
            "echo my own strip");
  EXPECT_NE(plan_of(with_pipeline("  - uses: strip\n")).builds[0].steps[0].script,
            "echo my own strip");
}

TEST(Uses, CyclesAreCaught) {
  TempDir dir;
  dir.write("loop.yaml", "pipeline:\n  - uses: loop\n");
  PlanOptions o = default_options();
  o.pipeline_dirs = {dir.path()};
  EXPECT_THAT(plan_error(with_pipeline("  - uses: loop\n"), o), HasSubstr("nest more than"));
}

TEST(Uses, SkippedUsesContributeNoPackages) {
  const Plan p =
      plan_of(with_pipeline("  - uses: git-checkout\n    if: a == b\n"
                            "    with:\n      repository: x\n"));
  EXPECT_TRUE(p.packages.empty());
  EXPECT_EQ(p.builds[0].skipped.at(0).name, "git-checkout");
}

}  // namespace
}  // namespace cachefs::launcher::testing
