#include "launcher/build_file.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <set>
#include <sstream>

#include "common/error.h"

namespace cachefs::launcher {
namespace {

using Keys = std::initializer_list<std::string_view>;

std::string join_field(std::string_view field, std::string_view key) {
  if (field.empty()) return std::string(key);
  return fmt::format("{}.{}", field, key);
}

std::string index_field(std::string_view field, std::size_t i) {
  return fmt::format("{}[{}]", field, i);
}

std::string_view kind_of(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Scalar:
      return "a string";
    default:
      return "empty";
  }
}

// Reads one YAML document, knowing its source text so that locations inside
// scalars can be exact.
class Reader {
 public:
  Reader(const std::string& yaml, std::string path) : path_(std::move(path)) {
    std::istringstream in(yaml);
    for (std::string line; std::getline(in, line);) lines_.push_back(line);
    try {
      root_ = YAML::Load(yaml);
    } catch (const YAML::ParserException& e) {
      throw UsageError::make("{}:{}:{}: {}", path_, e.mark.line + 1, e.mark.column + 1, e.msg);
    }
    if (!root_.IsMap()) {
      fail(Location{path_, 1, 1}, "(top level)",
           fmt::format("the file must be a YAML mapping, not {}", kind_of(root_)));
    }
  }

  const YAML::Node& root() const { return root_; }
  const std::string& path() const { return path_; }

  // The location of `n`; a value-less key (`runs:`) has no mark of its own, so
  // callers pass the key's node as a fallback.
  Location loc(const YAML::Node& n, const YAML::Node* fallback = nullptr) const {
    YAML::Mark m = n.Mark();
    if (m.is_null() && fallback != nullptr) m = fallback->Mark();
    if (m.is_null()) return Location{path_, 0, 0};
    return Location{path_, m.line + 1, m.column + 1};
  }

  // Visits a mapping's entries, rejecting duplicate and unknown keys. `known` keys
  // go to `fn`; `ignored` ones are melange fields we accept and skip.
  void entries(const YAML::Node& map, const std::string& field, Keys known, Keys ignored,
               const std::function<void(const std::string&, const YAML::Node&, const YAML::Node&)>&
                   fn) const {
    if (map.IsNull()) return;
    if (!map.IsMap()) fail(loc(map), field, fmt::format("must be a mapping, not {}", kind_of(map)));
    std::set<std::string> seen;
    for (const auto& kv : map) {
      const YAML::Node& k = kv.first;
      if (!k.IsScalar()) fail(loc(k), field, "keys must be strings");
      const std::string key = k.Scalar();
      const std::string sub = join_field(field, key);
      if (!seen.insert(key).second) fail(loc(k), sub, "duplicate key");
      auto is = [&](Keys ks) {
        return std::find(ks.begin(), ks.end(), std::string_view(key)) != ks.end();
      };
      if (is(known)) {
        fn(key, k, kv.second);
      } else if (!is(ignored)) {
        std::vector<std::string_view> all(known);
        fail(loc(k), sub, fmt::format("unknown key (known here: {})", fmt::join(all, ", ")));
      }
    }
  }

  // Visits a mapping whose keys are free-form (vars, environment, with).
  TextMap string_map(const YAML::Node& map, const YAML::Node& key_node,
                     const std::string& field) const {
    TextMap out;
    if (map.IsNull()) return out;
    if (!map.IsMap())
      fail(loc(map, &key_node), field, fmt::format("must be a mapping, not {}", kind_of(map)));
    for (const auto& kv : map) {
      const YAML::Node& k = kv.first;
      if (!k.IsScalar()) fail(loc(k), field, "keys must be strings");
      const std::string key = k.Scalar();
      const std::string sub = join_field(field, key);
      for (const auto& [seen, unused] : out) {
        if (seen == key) fail(loc(k), sub, "duplicate key");
      }
      out.emplace_back(key, text(kv.second, k, sub));
    }
    return out;
  }

  template <typename Fn>
  void list(const YAML::Node& seq, const YAML::Node& key_node, const std::string& field,
            Fn fn) const {
    if (seq.IsNull()) return;
    if (!seq.IsSequence())
      fail(loc(seq, &key_node), field, fmt::format("must be a list, not {}", kind_of(seq)));
    for (std::size_t i = 0; i < seq.size(); ++i) fn(seq[i], index_field(field, i));
  }

  std::vector<Text> string_list(const YAML::Node& seq, const YAML::Node& key_node,
                                const std::string& field) const {
    std::vector<Text> out;
    list(seq, key_node, field,
         [&](const YAML::Node& item, const std::string& f) { out.push_back(text(item, item, f)); });
    return out;
  }

  // A scalar as text (an empty value is ""), with its exact location when knowable.
  Text text(const YAML::Node& n, const YAML::Node& key_node, const std::string& field) const {
    Text t;
    t.where = loc(n, &key_node);
    if (n.IsNull()) return t;
    if (!n.IsScalar()) fail(t.where, field, fmt::format("must be a string, not {}", kind_of(n)));
    t.value = n.Scalar();
    const YAML::Mark m = n.Mark();
    if (m.is_null() || m.line < 0 || static_cast<std::size_t>(m.line) >= lines_.size()) return t;
    const std::string& src = lines_[static_cast<std::size_t>(m.line)];
    const auto col = static_cast<std::size_t>(m.column);
    if (col >= src.size()) return t;
    const char c = src[col];
    if (c == '|') {
      // Literal block: content starts on the next line, at the indentation of its
      // first non-blank line (unless an explicit indentation indicator is used).
      if (src.find_first_of("0123456789", col) != std::string::npos &&
          src.find('#', col) == std::string::npos)
        return t;
      for (std::size_t l = static_cast<std::size_t>(m.line) + 1; l < lines_.size(); ++l) {
        const std::size_t indent = lines_[l].find_first_not_of(' ');
        if (indent == std::string::npos) continue;
        t.block = true;
        t.first_line = m.line + 2;
        t.first_column = static_cast<int>(indent) + 1;
        break;
      }
    } else if (c == '"' || c == '\'') {
      t.first_line = m.line + 1;
      t.first_column = m.column + 2;
    } else if (c != '>') {
      t.first_line = m.line + 1;
      t.first_column = m.column + 1;
    }
    return t;
  }

  bool boolean(const YAML::Node& n, const YAML::Node& key_node, const std::string& field) const {
    const Text t = text(n, key_node, field);
    if (t.value == "true") return true;
    if (t.value == "false" || t.value.empty()) return false;
    fail(t.where, field, fmt::format("must be true or false, not '{}'", t.value));
  }

  Step step(const YAML::Node& n, const std::string& field) const {
    Step s;
    s.where = loc(n);
    s.field = field;
    if (!n.IsMap())
      fail(s.where, field, fmt::format("a step must be a mapping, not {}", kind_of(n)));
    std::optional<Location> with_at;
    entries(n, field,
            {"name", "runs", "uses", "with", "if", "working-directory", "environment", "pipeline"},
            {"assertions", "needs", "label"},
            [&](const std::string& key, const YAML::Node& k, const YAML::Node& v) {
              const std::string f = join_field(field, key);
              if (key == "name") {
                s.name = text(v, k, f);
              } else if (key == "runs") {
                s.runs = text(v, k, f);
              } else if (key == "uses") {
                s.uses = text(v, k, f);
                if (s.uses->value.empty()) fail(s.uses->where, f, "names no pipeline");
              } else if (key == "with") {
                s.with = string_map(v, k, f);
                with_at = loc(k);
              } else if (key == "if") {
                s.if_ = text(v, k, f);
              } else if (key == "working-directory") {
                s.working_directory = text(v, k, f);
              } else if (key == "environment") {
                s.environment = string_map(v, k, f);
              } else if (key == "pipeline") {
                s.pipeline = steps(v, k, f);
              }
            });
    if (s.runs && s.uses) fail(s.where, field, "a step has either 'runs' or 'uses', not both");
    if (s.uses && !s.pipeline.empty())
      fail(s.where, field, "a step has either 'uses' or a nested 'pipeline', not both");
    if (!s.runs && !s.uses && s.pipeline.empty())
      fail(s.where, field, "a step needs 'runs', 'uses' or a nested 'pipeline'");
    if (with_at && !s.uses) fail(*with_at, join_field(field, "with"), "'with' needs 'uses'");
    return s;
  }

  std::vector<Step> steps(const YAML::Node& seq, const YAML::Node& key_node,
                          const std::string& field) const {
    std::vector<Step> out;
    list(seq, key_node, field,
         [&](const YAML::Node& item, const std::string& f) { out.push_back(step(item, f)); });
    return out;
  }

 private:
  std::string path_;
  std::vector<std::string> lines_;
  YAML::Node root_;
};

std::string read_file(const std::filesystem::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError::make("{} '{}': {}", what, path.string(), std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Package parse_package(const Reader& r, const YAML::Node& n, const YAML::Node& key) {
  Package p;
  bool have_name = false, have_version = false;
  r.entries(n, "package", {"name", "version", "epoch", "description", "resources"},
            {"annotations", "url", "commit", "target-architecture", "copyright", "dependencies",
             "options", "scriptlets", "checks", "cpe", "setcap", "timeout", "test-resources"},
            [&](const std::string& k, const YAML::Node& kn, const YAML::Node& v) {
              const std::string f = "package." + k;
              if (k == "name") {
                p.name = r.text(v, kn, f);
                have_name = !p.name.value.empty();
              } else if (k == "version") {
                p.version = r.text(v, kn, f);
                have_version = !p.version.value.empty();
              } else if (k == "epoch") {
                const Text t = r.text(v, kn, f);
                const bool digits = !t.value.empty() && t.value.size() <= 19 &&
                                    std::all_of(t.value.begin(), t.value.end(),
                                                [](char c) { return c >= '0' && c <= '9'; });
                if (!digits)
                  fail(t.where, f,
                       fmt::format("must be a non-negative integer, not '{}'", t.value));
                p.epoch = std::stoull(t.value);
              } else if (k == "description") {
                p.description = r.text(v, kn, f);
              } else if (k == "resources") {
                r.entries(v, f, {"cpu", "memory"}, {"cpumodel", "disk"},
                          [&](const std::string& rk, const YAML::Node& rkn, const YAML::Node& rv) {
                            const std::string rf = join_field(f, rk);
                            (rk == "cpu" ? p.resources.cpu : p.resources.memory) =
                                r.text(rv, rkn, rf).value;
                          });
              }
            });
  if (!have_name) fail(r.loc(n, &key), "package.name", "is required");
  if (!have_version) fail(r.loc(n, &key), "package.version", "is required");
  return p;
}

void parse_environment(const Reader& r, const YAML::Node& n, BuildFile& b) {
  r.entries(n, "environment", {"contents", "environment"},
            {"accounts", "archs", "entrypoint", "cmd", "stop-signal", "work-dir", "paths",
             "include", "volumes", "annotations", "vcs-url", "layering", "certificates"},
            [&](const std::string& k, const YAML::Node& kn, const YAML::Node& v) {
              const std::string f = "environment." + k;
              if (k == "environment") {
                b.environment = r.string_map(v, kn, f);
                return;
              }
              r.entries(v, f, {"packages"},
                        {"repositories", "build_repositories", "runtime_repositories", "keyring",
                         "baseimage"},
                        [&](const std::string&, const YAML::Node& pkn, const YAML::Node& pv) {
                          b.packages = r.string_list(pv, pkn, f + ".packages");
                        });
            });
}

Subpackage parse_subpackage(const Reader& r, const YAML::Node& n, const std::string& field) {
  Subpackage s;
  s.where = r.loc(n);
  s.field = field;
  if (!n.IsMap())
    fail(s.where, field, fmt::format("a subpackage must be a mapping, not {}", kind_of(n)));
  bool have_name = false;
  r.entries(n, field, {"name", "description", "if", "pipeline", "range"},
            {"dependencies", "options", "scriptlets", "checks", "test", "setcap", "annotations",
             "url", "commit"},
            [&](const std::string& k, const YAML::Node& kn, const YAML::Node& v) {
              const std::string f = join_field(field, k);
              if (k == "name") {
                s.name = r.text(v, kn, f);
                have_name = !s.name.value.empty();
              } else if (k == "description") {
                s.description = r.text(v, kn, f);
              } else if (k == "if") {
                s.if_ = r.text(v, kn, f);
              } else if (k == "pipeline") {
                s.pipeline = r.steps(v, kn, f);
              } else if (k == "range") {
                fail(r.loc(kn), f,
                     "subpackage ranges are not supported; write one subpackage per item");
              }
            });
  if (!have_name) fail(s.where, join_field(field, "name"), "is required");
  return s;
}

VarTransform parse_var_transform(const Reader& r, const YAML::Node& n, const std::string& field) {
  VarTransform t;
  t.where = r.loc(n);
  t.field = field;
  bool from = false, match = false, to = false;
  if (!n.IsMap()) fail(t.where, field, fmt::format("must be a mapping, not {}", kind_of(n)));
  r.entries(n, field, {"from", "match", "replace", "to"}, {},
            [&](const std::string& k, const YAML::Node& kn, const YAML::Node& v) {
              const std::string f = join_field(field, k);
              Text value = r.text(v, kn, f);
              if (k == "from") {
                t.from = std::move(value);
                from = true;
              } else if (k == "match") {
                t.match = std::move(value);
                match = !t.match.value.empty();
              } else if (k == "replace") {
                t.replace = std::move(value);
              } else {
                t.to = std::move(value);
                to = !t.to.value.empty();
              }
            });
  if (!from) fail(t.where, join_field(field, "from"), "is required");
  if (!match) fail(t.where, join_field(field, "match"), "is required");
  if (!to) fail(t.where, join_field(field, "to"), "is required");
  return t;
}

}  // namespace

const PipelineInput* PipelineFile::input(std::string_view key) const {
  for (const auto& [k, v] : inputs) {
    if (k == key) return &v;
  }
  return nullptr;
}

BuildFile parse_build_yaml(const std::string& yaml, const std::string& display_path) {
  const Reader r(yaml, display_path);
  BuildFile b;
  b.path = display_path;
  bool have_package = false;
  r.entries(
      r.root(), "",
      {"package", "environment", "pipeline", "subpackages", "vars", "var-transforms", "options"},
      {"capabilities", "data", "update", "test"},
      [&](const std::string& k, const YAML::Node& kn, const YAML::Node& v) {
        if (k == "package") {
          b.package = parse_package(r, v, kn);
          have_package = true;
        } else if (k == "environment") {
          parse_environment(r, v, b);
        } else if (k == "pipeline") {
          b.pipeline = r.steps(v, kn, "pipeline");
        } else if (k == "subpackages") {
          r.list(v, kn, "subpackages", [&](const YAML::Node& item, const std::string& f) {
            b.subpackages.push_back(parse_subpackage(r, item, f));
          });
        } else if (k == "vars") {
          b.vars = r.string_map(v, kn, "vars");
        } else if (k == "var-transforms") {
          r.list(v, kn, "var-transforms", [&](const YAML::Node& item, const std::string& f) {
            b.var_transforms.push_back(parse_var_transform(r, item, f));
          });
        } else if (k == "options") {
          if (!v.IsNull() && !v.IsMap())
            fail(r.loc(v, &kn), "options", fmt::format("must be a mapping, not {}", kind_of(v)));
          for (const auto& o : v) b.options.push_back(o.first.Scalar());
        }
      });
  if (!have_package) fail(Location{display_path, 1, 1}, "package", "is required");
  return b;
}

BuildFile parse_build_file(const std::filesystem::path& path) {
  return parse_build_yaml(read_file(path, "build file"), path.string());
}

PipelineFile parse_pipeline_yaml(const std::string& yaml, const std::string& display_path) {
  const Reader r(yaml, display_path);
  PipelineFile p;
  p.path = display_path;
  bool have_pipeline = false;
  r.entries(
      r.root(), "", {"name", "needs", "inputs", "pipeline"}, {"label"},
      [&](const std::string& k, const YAML::Node& kn, const YAML::Node& v) {
        if (k == "name") {
          p.name = r.text(v, kn, "name").value;
        } else if (k == "needs") {
          r.entries(v, "needs", {"packages"}, {},
                    [&](const std::string&, const YAML::Node& pkn, const YAML::Node& pv) {
                      p.needs_packages = r.string_list(pv, pkn, "needs.packages");
                    });
        } else if (k == "inputs") {
          if (!v.IsNull() && !v.IsMap())
            fail(r.loc(v, &kn), "inputs", fmt::format("must be a mapping, not {}", kind_of(v)));
          for (const auto& kv : v) {
            const std::string name = kv.first.Scalar();
            const std::string f = "inputs." + name;
            if (p.input(name) != nullptr) fail(r.loc(kv.first), f, "duplicate key");
            PipelineInput in;
            in.where = r.loc(kv.first);
            r.entries(kv.second, f, {"description", "default", "required"}, {},
                      [&](const std::string& ik, const YAML::Node& ikn, const YAML::Node& iv) {
                        const std::string inf = join_field(f, ik);
                        if (ik == "description") {
                          in.description = r.text(iv, ikn, inf).value;
                        } else if (ik == "default") {
                          if (!iv.IsNull()) in.default_value = r.text(iv, ikn, inf);
                        } else {
                          in.required = r.boolean(iv, ikn, inf);
                        }
                      });
            p.inputs.emplace_back(name, std::move(in));
          }
        } else if (k == "pipeline") {
          p.pipeline = r.steps(v, kn, "pipeline");
          have_pipeline = !p.pipeline.empty();
        }
      });
  if (!have_pipeline) fail(Location{display_path, 1, 1}, "pipeline", "a pipeline file needs steps");
  return p;
}

PipelineFile parse_pipeline_file(const std::filesystem::path& path) {
  return parse_pipeline_yaml(read_file(path, "pipeline file"), path.string());
}

}  // namespace cachefs::launcher
