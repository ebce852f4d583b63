// The shipped pipelines, and build files in the style of Wolfi's package
// repository resolved into the plans we expect.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/launcher/helpers.h"

namespace cachefs::launcher::testing {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::StartsWith;

const std::vector<std::string> kShipped = {
    "autoconf/configure", "autoconf/make", "autoconf/make-install",  "fetch",
    "git-checkout",       "go/build",      "maven/configure-mirror", "strip"};

Plan testdata_plan(const std::string& name, const std::string& arch = "x86_64") {
  PlanOptions o = default_options();
  o.arch = arch;
  return resolve_plan(fs::path(LAUNCHER_TESTDATA) / name, o);
}

std::vector<std::string> names_of(const PackagePlan& p) {
  std::vector<std::string> out;
  for (const auto& s : p.steps) out.push_back(s.name);
  return out;
}

TEST(ShippedPipelines, SourceTreeCopyIsFound) {
  EXPECT_EQ(fs::path(CACHEFS_PIPELINES_SOURCE_DIR).filename(), "pipelines");
  EXPECT_TRUE(fs::exists(shipped_pipeline_dir() / "fetch.yaml"));
  const std::vector<fs::path> path = pipeline_search_path({"/mine"});
  ASSERT_EQ(path.size(), 2u);
  EXPECT_EQ(path[0], "/mine");
  EXPECT_EQ(path[1], shipped_pipeline_dir());
  EXPECT_THAT(PipelineLibrary({shipped_pipeline_dir()}).known(), IsSupersetOf(kShipped));
}

TEST(ShippedPipelines, EveryFileParses) {
  int count = 0;
  for (const auto& entry : fs::recursive_directory_iterator(shipped_pipeline_dir())) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    const PipelineFile p = parse_pipeline_file(entry.path());
    EXPECT_FALSE(p.name.empty());
    EXPECT_FALSE(p.pipeline.empty());
    for (const auto& [k, in] : p.inputs) EXPECT_FALSE(in.description.empty()) << k;
    ++count;
  }
  EXPECT_GE(count, static_cast<int>(kShipped.size()));
}

// For every shipped pipeline: using it without a required input is an error that
// names the input; with every required input given it resolves.
TEST(ShippedPipelines, RequiredInputsAreEnforced) {
  for (const std::string& name : kShipped) {
    SCOPED_TRACE(name);
    const PipelineFile p = parse_pipeline_file(shipped_pipeline_dir() / (name + ".yaml"));
    std::string all_required;
    std::vector<std::string> required;
    for (const auto& [k, in] : p.inputs) {
      if (!in.required) continue;
      required.push_back(k);
      all_required += "      " + k + ": value\n";
    }
    const std::string head = std::string(kHead) + "pipeline:\n  - uses: " + name + "\n";
    if (!required.empty()) {
      EXPECT_THAT(plan_error(head),
                  HasSubstr("missing required input '" + required[0] + "' of pipeline '" + name));
    }
    const Plan plan = plan_of(head + (all_required.empty() ? "" : "    with:\n" + all_required));
    ASSERT_FALSE(plan.builds[0].steps.empty());
    for (const PlanStep& s : plan.builds[0].steps) {
      EXPECT_THAT(s.name, StartsWith(name));
      EXPECT_EQ(s.script.find("${{"), std::string::npos) << s.script;
    }
  }
  EXPECT_THAT(plan_error(std::string(kHead) +
                         "pipeline:\n  - uses: go/build\n    with:\n      packages: .\n"),
              HasSubstr("missing required input 'output'"));
}

TEST(ShippedPipelines, ScriptsUseTheCacheAndContext) {
  const Plan p = plan_of(std::string(kHead) +
                         "pipeline:\n"
                         "  - uses: go/build\n"
                         "    with:\n"
                         "      packages: ./cmd/hello\n"
                         "      output: hello\n"
                         "  - uses: maven/configure-mirror\n"
                         "  - uses: autoconf/configure\n"
                         "    with:\n"
                         "      opts: --disable-nls\n"
                         "  - uses: strip\n");
  const auto& steps = p.builds[0].steps;
  EXPECT_THAT(steps[0].script, HasSubstr("GOMODCACHE=\"${GOMODCACHE:-"));
  EXPECT_THAT(steps[0].script, HasSubstr("out='/home/build/melange-out/hello/usr/bin/hello'"));
  EXPECT_THAT(steps[1].script, HasSubstr("m2repository"));
  EXPECT_THAT(steps[2].script, HasSubstr("--prefix=/usr"));
  EXPECT_THAT(steps[2].script, HasSubstr("--host='x86_64-pc-linux-gnu'"));
  EXPECT_THAT(steps[2].script, HasSubstr("--disable-nls"));
  EXPECT_EQ(steps[3].working_directory, "/home/build/melange-out/hello");
  EXPECT_THAT(p.packages, IsSupersetOf({"go", "busybox", "autoconf", "binutils"}));
}

TEST(Testdata, CLibraryWithSubpackages) {
  const Plan p = testdata_plan("libpng.yaml");
  EXPECT_EQ(p.package.full_version, "1.6.43-r2");
  EXPECT_EQ(p.package.resources.cpu, "4");
  EXPECT_EQ(p.package.resources.memory, "8Gi");
  ASSERT_EQ(p.builds.size(), 3u);
  EXPECT_THAT(names_of(p.builds[0]), ElementsAre("fetch", "autoconf/configure", "autoconf/make",
                                                 "autoconf/make-install", "strip"));
  const PlanStep& fetch = p.builds[0].steps[0];
  EXPECT_THAT(fetch.script,
              HasSubstr("uri='https://downloads.example.org/libpng/libpng-1.6.43.tar.xz'"));
  EXPECT_THAT(fetch.script, HasSubstr("sha256='6a5ca065"));
  EXPECT_THAT(p.builds[0].steps[1].script, HasSubstr("--enable-static=no \\\n--enable-hardware"));
  EXPECT_THAT(p.builds[0].steps[3].script, HasSubstr("DESTDIR='/home/build/melange-out/libpng'"));
  EXPECT_EQ(p.builds[1].name, "libpng-dev");
  EXPECT_THAT(p.builds[1].steps[0].script,
              HasSubstr("mv /home/build/melange-out/libpng/usr/include "
                        "/home/build/melange-out/libpng-dev/usr/"));
  EXPECT_EQ(p.builds[2].name, "libpng-doc");
  EXPECT_THAT(p.builds[2].steps[0].script,
              HasSubstr("/home/build/melange-out/libpng-doc/usr/share"));
  EXPECT_THAT(p.packages,
              IsSupersetOf({"build-base", "busybox", "zlib-dev", "autoconf", "make", "binutils"}));
  EXPECT_EQ(p.environment.at("GOMODCACHE"), "/var/cache/melange/gomodcache");
}

TEST(Testdata, GoToolWithVarTransforms) {
  const Plan p = testdata_plan("regctl.yaml");
  ASSERT_EQ(p.builds.size(), 1u);
  EXPECT_THAT(names_of(p.builds[0]), ElementsAre("git-checkout", "go/build", "completions"));
  const auto& steps = p.builds[0].steps;
  EXPECT_THAT(steps[0].script, HasSubstr("tag='v0.7.1-rc.3'"));
  EXPECT_THAT(steps[0].script, HasSubstr("repository='https://github.com/regclient/regclient'"));
  EXPECT_THAT(steps[1].script,
              HasSubstr("-X github.com/regclient/regclient/internal/version.vcsTag=v0.7.1-rc.3"));
  EXPECT_THAT(steps[1].script, HasSubstr("./cmd/regctl"));
  EXPECT_EQ(steps[1].environment.at("CGO_ENABLED"), "0");
  EXPECT_EQ(steps[2].working_directory, "/home/build/completions");
  EXPECT_EQ(steps[2].environment.at("GOFLAGS"), "-mod=mod");
  EXPECT_THAT(p.packages, IsSupersetOf({"go", "git", "ca-certificates-bundle"}));
}

TEST(Testdata, PythonWithNestedPipelinesAndArchConditions) {
  const Plan x86 = testdata_plan("py3-pyyaml.yaml", "x86_64");
  EXPECT_THAT(names_of(x86.builds[0]), ElementsAre("git-checkout", "python/wheel", "python/install",
                                                   "python/x86-extensions", "strip"));
  const PlanStep* install = find_step(x86.builds[0], "python/install");
  ASSERT_NE(install, nullptr);
  EXPECT_EQ(install->working_directory, "/home/build/dist");
  EXPECT_EQ(install->script,
            "python3.12 -m installer -d \"/home/build/melange-out/py3-pyyaml\" *.whl\n");
  EXPECT_EQ(install->environment.at("PYTHONHASHSEED"), "0");
  EXPECT_EQ(find_step(x86.builds[0], "python/x86-extensions")->environment.at("CFLAGS"),
            "-O2 -march=x86-64-v2");
  ASSERT_EQ(x86.builds[0].skipped.size(), 1u);
  EXPECT_EQ(x86.builds[0].skipped[0].name, "python/arm-extensions");
  // The build file's PIP_CACHE_DIR wins over the cache default.
  EXPECT_EQ(x86.environment.at("PIP_CACHE_DIR"), "/home/build/.pip-own");
  EXPECT_EQ(x86.environment.at("UV_CACHE_DIR"), "/var/cache/melange/uv");
  ASSERT_EQ(x86.builds.size(), 2u);
  EXPECT_EQ(x86.builds[1].name, "py3-pyyaml-tests");
  EXPECT_EQ(x86.builds[1].description, "test suite for pyyaml");
  EXPECT_EQ(x86.builds[1].steps[0].working_directory, "/home/build/tests");
  EXPECT_THAT(x86.builds[1].steps[0].script,
              HasSubstr("/home/build/melange-out/py3-pyyaml-tests/usr/share/py3-pyyaml-tests"));
  ASSERT_EQ(x86.skipped_subpackages.size(), 1u);
  EXPECT_EQ(x86.skipped_subpackages[0].name, "py3-pyyaml-riscv");

  const Plan arm = testdata_plan("py3-pyyaml.yaml", "aarch64");
  EXPECT_THAT(names_of(arm.builds[0]), ElementsAre("git-checkout", "python/wheel", "python/install",
                                                   "python/arm-extensions", "strip"));
  EXPECT_EQ(arm.builds.size(), 2u);

  const Plan riscv = testdata_plan("py3-pyyaml.yaml", "riscv64");
  ASSERT_EQ(riscv.builds.size(), 2u);
  EXPECT_EQ(riscv.builds[1].name, "py3-pyyaml-riscv");
}

TEST(Testdata, MavenWithTheRepositoryInTheCache) {
  const Plan p = testdata_plan("commons-cli.yaml");
  EXPECT_THAT(names_of(p.builds[0]),
              ElementsAre("git-checkout", "maven/configure-mirror", "package", "install"));
  EXPECT_THAT(p.builds[0].steps[0].script, HasSubstr("tag='rel/commons-cli-1.9.0'"));
  EXPECT_THAT(p.builds[0].steps[1].script, HasSubstr("$cache_root/m2repository"));
  EXPECT_THAT(p.builds[0].steps[3].script,
              HasSubstr("/home/build/melange-out/commons-cli/usr/share/java/commons-cli.jar"));
  EXPECT_EQ(p.environment.at("JAVA_HOME"), "/usr/lib/jvm/java-17-openjdk");
  EXPECT_THAT(p.packages, Contains("maven"));
}

TEST(Testdata, AllFilesParseOnBothArchitectures) {
  for (const auto& entry : fs::directory_iterator(LAUNCHER_TESTDATA)) {
    if (entry.path().extension() != ".yaml") continue;
    for (const char* arch : {"x86_64", "aarch64"}) {
      SCOPED_TRACE(entry.path().string() + " " + arch);
      EXPECT_NO_THROW(testdata_plan(entry.path().filename().string(), arch));
    }
  }
}

}  // namespace
}  // namespace cachefs::launcher::testing
