#include "launcher/plan.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <re2/re2.h>
#include <sys/utsname.h>

#include <algorithm>
#include <optional>

#include "common/error.h"
#include "launcher/cache_env.h"
#include "launcher/pipeline_library.h"
#include "launcher/substitute.h"

namespace cachefs::launcher {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxNesting = 32;

std::string goarch(std::string_view arch) {
  if (arch == "x86_64") return "amd64";
  if (arch == "aarch64") return "arm64";
  if (arch == "armv7") return "arm";
  if (arch == "x86") return "386";
  return std::string(arch);
}

bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  });
}

// ---- var-transforms: Go's Regexp.ReplaceAllString, on RE2 ----

std::size_t utf8_width(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xe) return 3;
  if ((c >> 3) == 0x1e) return 4;
  return 1;
}

// Appends Go's expansion of `tmpl` ($1, ${1}, $name, ${name}, $$) for one match.
void expand(std::string& out, std::string_view tmpl, const RE2& re,
            const std::vector<re2::StringPiece>& groups) {
  const auto& named = re.NamedCapturingGroups();
  auto is_name_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  std::size_t i = 0;
  while (i < tmpl.size()) {
    const char c = tmpl[i];
    if (c != '$' || i + 1 >= tmpl.size()) {
      out += c;
      ++i;
      continue;
    }
    if (tmpl[i + 1] == '$') {
      out += '$';
      i += 2;
      continue;
    }
    std::string_view name;
    std::size_t next;
    if (tmpl[i + 1] == '{') {
      const std::size_t close = tmpl.find('}', i + 2);
      name =
          close == std::string_view::npos ? std::string_view() : tmpl.substr(i + 2, close - i - 2);
      next = close + 1;
    } else {
      std::size_t j = i + 1;
      while (j < tmpl.size() && is_name_char(tmpl[j])) ++j;
      name = tmpl.substr(i + 1, j - i - 1);
      next = j;
    }
    if (name.empty() || !std::all_of(name.begin(), name.end(), is_name_char)) {
      out += '$';  // not a reference: Go copies the '$'
      ++i;
      continue;
    }
    int index = -1;
    if (std::all_of(name.begin(), name.end(), [](char d) { return d >= '0' && d <= '9'; })) {
      if (name.size() < 6) index = std::stoi(std::string(name));
    } else if (auto it = named.find(std::string(name)); it != named.end()) {
      index = it->second;
    }
    if (index >= 0 && static_cast<std::size_t>(index) < groups.size() &&
        groups[static_cast<std::size_t>(index)].data() != nullptr) {
      const auto& g = groups[static_cast<std::size_t>(index)];
      out.append(g.data(), g.size());
    }
    i = next;
  }
}

std::string replace_all(const RE2& re, std::string_view src, std::string_view tmpl) {
  const int n = re.NumberOfCapturingGroups() + 1;
  std::vector<re2::StringPiece> groups(static_cast<std::size_t>(n));
  const re2::StringPiece text(src.data(), src.size());
  std::string out;
  std::size_t last_end = 0;
  std::size_t search = 0;
  while (search <= src.size()) {
    if (!re.Match(text, search, src.size(), RE2::UNANCHORED, groups.data(), n)) break;
    const auto start = static_cast<std::size_t>(groups[0].data() - src.data());
    const std::size_t end = start + groups[0].size();
    out.append(src.substr(last_end, start - last_end));
    if (end > last_end || start == 0) expand(out, tmpl, re, groups);
    last_end = end;
    const std::size_t width =
        search < src.size() ? utf8_width(static_cast<unsigned char>(src[search])) : 1;
    if (search + width > end) {
      search += width;
    } else if (search + 1 > end) {
      ++search;
    } else {
      search = end;
    }
  }
  out.append(src.substr(std::min(last_end, src.size())));
  return out;
}

// ---- resolving steps ----

struct Frame {
  const Scope* scope;
  std::string prefix;   // display name of the enclosing step ("" at the top)
  std::string workdir;  // absolute
  std::map<std::string, std::string> env;
  std::string context;  // appended to messages: where the enclosing pipeline was used
  bool emit;            // false below an `if` that is false: checked, not planned
  int depth;
};

class Resolver {
 public:
  Resolver(const PlanOptions& options, Plan& plan) : library_(options.pipeline_dirs), plan_(plan) {}

  void steps(const std::vector<Step>& list, const Frame& frame, PackagePlan& out) {
    for (const Step& s : list) step(s, frame, out);
  }

  void add_package(const std::string& name) {
    if (name.empty()) return;
    if (std::find(plan_.packages.begin(), plan_.packages.end(), name) == plan_.packages.end())
      plan_.packages.push_back(name);
  }

 private:
  void step(const Step& s, const Frame& parent, PackagePlan& out) {
    const Scope& scope = *parent.scope;
    const std::string& ctx = parent.context;
    if (parent.depth > kMaxNesting) {
      fail(s.where, s.field,
           fmt::format("steps nest more than {} deep (does a pipeline use itself?){}", kMaxNesting,
                       ctx));
    }

    std::string own_name;
    if (s.name)
      own_name = substitute(*s.name, scope, s.field + ".name", ctx);
    else if (s.uses)
      own_name = s.uses->value;
    std::string display;
    if (parent.prefix.empty())
      display = own_name.empty() ? s.field : own_name;
    else
      display = own_name.empty() ? parent.prefix : parent.prefix + "/" + own_name;

    bool emit = parent.emit;
    if (s.if_ && !s.if_->value.empty()) {
      const bool holds = evaluate_condition(*s.if_, scope, s.field + ".if", ctx);
      if (!holds && emit) {
        out.skipped.push_back(SkippedStep{display, s.if_->value, out.steps.size(), s.where});
      }
      emit = emit && holds;
    }

    std::string workdir = parent.workdir;
    if (s.working_directory && !s.working_directory->value.empty()) {
      const fs::path wd(
          substitute(*s.working_directory, scope, s.field + ".working-directory", ctx));
      fs::path joined = wd.is_absolute() ? wd : fs::path(parent.workdir) / wd;
      workdir = joined.lexically_normal().string();
      while (workdir.size() > 1 && workdir.back() == '/') workdir.pop_back();
    }

    std::map<std::string, std::string> env = parent.env;
    for (const auto& [k, v] : s.environment) {
      env[k] = substitute(v, scope, s.field + ".environment." + k, ctx);
    }

    if (s.uses) {
      uses(s, parent, display, emit, std::move(workdir), std::move(env), out);
      return;
    }
    if (s.runs && emit) {
      out.steps.push_back(PlanStep{display, substitute(*s.runs, scope, s.field + ".runs", ctx),
                                   workdir, env, s.runs->at(0)});
    } else if (s.runs) {
      substitute(*s.runs, scope, s.field + ".runs", ctx);  // checked even when skipped
    }
    Frame child{&scope, display, workdir, std::move(env), ctx, emit, parent.depth + 1};
    steps(s.pipeline, child, out);
  }

  void uses(const Step& s, const Frame& parent, const std::string& display, bool emit,
            std::string workdir, std::map<std::string, std::string> env, PackagePlan& out) {
    const Scope& scope = *parent.scope;
    const std::string& ctx = parent.context;
    const std::string name = s.uses->value;
    const std::string uses_field = s.field + ".uses";
    if (!valid_uses(name)) {
      fail(s.uses->where, uses_field,
           fmt::format("invalid pipeline name '{}' (a relative name like 'autoconf/make', no "
                       "'..'){}",
                       name, ctx));
    }
    const std::string used_at = fmt::format(" (in pipeline '{}', used at {}: {}){}", name,
                                            s.uses->where.str(), uses_field, ctx);
    const PipelineFile* pf = nullptr;
    try {
      pf = library_.find(name);
    } catch (const UsageError& e) {
      throw UsageError(std::string(e.what()) + used_at);
    }
    if (pf == nullptr) {
      std::vector<std::string> known = library_.known();
      fail(s.uses->where, uses_field,
           fmt::format("unknown pipeline '{}' (known: {}){}", name, fmt::join(known, ", "), ctx));
    }

    std::vector<std::string> input_names;
    for (const auto& [k, unused] : pf->inputs) input_names.push_back(k);
    Scope child_scope = scope;
    for (const auto& [k, v] : s.with) {
      if (pf->input(k) == nullptr) {
        fail(v.where, s.field + ".with." + k,
             fmt::format("pipeline '{}' has no input '{}' (inputs: {}){}", name, k,
                         fmt::join(input_names, ", "), ctx));
      }
    }
    for (const auto& [k, in] : pf->inputs) {
      std::string value;
      const Text* given = nullptr;
      for (const auto& [wk, wv] : s.with) {
        if (wk == k) given = &wv;
      }
      if (given != nullptr) value = substitute(*given, scope, s.field + ".with." + k, ctx);
      if (value.empty() && in.default_value) {
        value = substitute(*in.default_value, scope, "inputs." + k + ".default", used_at);
      }
      if (value.empty() && in.required) {
        fail(s.where, s.field + ".with",
             fmt::format("missing required input '{}' of pipeline '{}' (declared at {}){}", k, name,
                         in.where.str(), ctx));
      }
      check_digest(k, value, given, s, ctx);
      child_scope.set("inputs." + k, value);
    }

    for (const Text& need : pf->needs_packages) {
      const std::string pkg = substitute(need, child_scope, "needs.packages", used_at);
      if (emit) add_package(pkg);
    }

    Frame child{&child_scope, display, std::move(workdir), std::move(env),
                used_at,      emit,    parent.depth + 1};
    steps(pf->pipeline, child, out);
  }

  // melange checks digests by input name, whatever the pipeline.
  static void check_digest(const std::string& key, const std::string& value, const Text* given,
                           const Step& s, const std::string& ctx) {
    std::size_t want = 0;
    if (key == "expected-sha256") want = 64;
    if (key == "expected-sha512") want = 128;
    if (key == "expected-commit") want = 40;
    if (want == 0 || value.empty()) return;
    if (value.size() != want || !is_hex(value)) {
      fail(given != nullptr ? given->where : s.where, s.field + ".with." + key,
           fmt::format("must be {} hex digits, not '{}'{}", want, value, ctx));
    }
  }

  PipelineLibrary library_;
  Plan& plan_;
};

void set_package_scope(Scope& scope, const BuildFile& file, const std::string& arch) {
  const Package& p = file.package;
  scope.set("package.name", p.name.value);
  scope.set("package.version", p.version.value);
  scope.set("package.epoch", std::to_string(p.epoch));
  scope.set("package.description", p.description.value);
  scope.set("package.full-version", fmt::format("{}-r{}", p.version.value, p.epoch));
  scope.set("package.srcdir", std::string(kBuildHome));
  scope.set("targets.outdir", std::string(kOutDir));
  scope.set("targets.destdir", fmt::format("{}/{}", kOutDir, p.name.value));
  scope.set("targets.contextdir", fmt::format("{}/{}", kOutDir, p.name.value));
  scope.set("context.name", p.name.value);
  scope.set("build.arch", arch);
  scope.set("build.goarch", goarch(arch));
  scope.set("host.triplet.gnu", arch + "-pc-linux-gnu");
  scope.set("host.triplet.rust", arch + "-unknown-linux-gnu");
  for (const std::string& o : file.options) scope.set("options." + o + ".enabled", "false");
}

void apply_vars(Scope& scope, const BuildFile& file, const PlanOptions& options) {
  // The caller's vars come first and win, so the file's own vars may use them.
  for (const auto& [k, v] : options.vars) scope.set("vars." + k, v);
  for (const auto& [k, v] : file.vars) {
    if (options.vars.count(k) == 0) scope.set("vars." + k, substitute(v, scope, "vars." + k));
  }
  for (const VarTransform& t : file.var_transforms) {
    const std::string from = substitute(t.from, scope, t.field + ".from");
    RE2::Options re_options;
    re_options.set_log_errors(false);
    const RE2 re(t.match.value, re_options);
    if (!re.ok()) {
      fail(t.match.where, t.field + ".match",
           fmt::format("invalid regular expression '{}': {}", t.match.value, re.error()));
    }
    scope.set("vars." + t.to.value, replace_all(re, from, t.replace.value));
  }
}

}  // namespace

std::string host_arch() {
  struct utsname u {};
  if (::uname(&u) != 0) return "x86_64";
  const std::string_view m = u.machine;
  if (m == "arm64" || m == "aarch64") return "aarch64";
  if (m == "armv7l") return "armv7";
  if (m == "i386" || m == "i686") return "x86";
  return std::string(m);
}

Plan resolve_plan(const fs::path& build_file, const PlanOptions& options) {
  return resolve_plan(parse_build_file(build_file), options);
}

Plan resolve_plan(const BuildFile& file, const PlanOptions& options) {
  Plan plan;
  plan.arch = options.arch.empty() ? host_arch() : options.arch;
  const Package& p = file.package;
  plan.package = PackageInfo{p.name.value,
                             p.version.value,
                             p.epoch,
                             p.description.value,
                             fmt::format("{}-r{}", p.version.value, p.epoch),
                             p.resources};

  Scope base;
  set_package_scope(base, file, plan.arch);
  apply_vars(base, file, options);
  base.set("package.description", substitute(p.description, base, "package.description"));
  plan.package.description = *base.find("package.description");

  std::vector<std::string> sub_names;
  for (const Subpackage& sp : file.subpackages) {
    sub_names.push_back(substitute(sp.name, base, sp.field + ".name"));
  }
  base.set("targets.package." + p.name.value, fmt::format("{}/{}", kOutDir, p.name.value));
  for (const std::string& n : sub_names) {
    base.set("targets.package." + n, fmt::format("{}/{}", kOutDir, n));
  }

  for (const auto& [k, v] : file.environment) {
    plan.environment[k] = substitute(v, base, "environment.environment." + k);
  }
  for (const auto& [k, v] : options.environment) plan.environment[k] = v;
  apply_cache_environment(plan.environment, options.source_date_epoch);

  Resolver resolver(options, plan);
  for (const Text& pkg : file.packages) {
    resolver.add_package(substitute(pkg, base, "environment.contents.packages"));
  }

  const std::string home(kBuildHome);
  PackagePlan main;
  main.name = p.name.value;
  main.description = plan.package.description;
  main.contextdir = fmt::format("{}/{}", kOutDir, p.name.value);
  resolver.steps(file.pipeline, Frame{&base, "", home, plan.environment, "", true, 0}, main);
  plan.builds.push_back(std::move(main));

  for (std::size_t i = 0; i < file.subpackages.size(); ++i) {
    const Subpackage& sp = file.subpackages[i];
    const std::string& name = sub_names[i];
    Scope scope = base;
    const std::string dir = fmt::format("{}/{}", kOutDir, name);
    scope.set("subpkg.name", name);
    scope.set("context.name", name);
    scope.set("targets.subpkgdir", dir);
    scope.set("targets.contextdir", dir);
    bool emit = true;
    if (sp.if_ && !sp.if_->value.empty()) {
      emit = evaluate_condition(*sp.if_, scope, sp.field + ".if");
      if (!emit) plan.skipped_subpackages.push_back({name, sp.if_->value, sp.where});
    }
    PackagePlan pp;
    pp.name = name;
    pp.description = substitute(sp.description, scope, sp.field + ".description");
    pp.subpackage = true;
    pp.contextdir = dir;
    resolver.steps(sp.pipeline, Frame{&scope, "", home, plan.environment, "", emit, 0}, pp);
    if (emit) plan.builds.push_back(std::move(pp));
  }
  return plan;
}

}  // namespace cachefs::launcher
