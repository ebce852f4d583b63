#include "runners/packages.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>

namespace cachefs::runners {
namespace {

bool exists(const std::string& p, bool executable) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return false;
  return !executable || (S_ISREG(st.st_mode) && (st.st_mode & 0111));
}

std::set<std::string> dpkg_installed(const std::string& root) {
  std::set<std::string> out;
  std::ifstream in(root + "/var/lib/dpkg/status");
  std::string line, pkg;
  while (std::getline(in, line)) {
    if (line.rfind("Package: ", 0) == 0) pkg = line.substr(9);
    if (line.rfind("Status: ", 0) == 0 && line.find(" installed") != std::string::npos &&
        line.find("not-installed") == std::string::npos) {
      out.insert(pkg);
    }
  }
  return out;
}

std::set<std::string> apk_installed(const std::string& root) {
  std::set<std::string> out;
  std::ifstream in(root + "/lib/apk/db/installed");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("P:", 0) == 0) out.insert(line.substr(2));
  }
  return out;
}

}  // namespace

std::vector<std::string> missing_packages(const std::string& root_in,
                                          const std::vector<std::string>& wanted) {
  const std::string root = root_in == "/" ? "" : root_in;
  const auto dpkg = dpkg_installed(root);
  const auto apk = apk_installed(root);
  // Wolfi meta-packages a Debian-style root provides under other names.
  static const std::map<std::string, std::vector<std::vector<std::string>>> kProvides = {
      {"build-base", {{"/usr/bin/cc", "/usr/bin/gcc"}, {"/usr/bin/make"}}},
      {"busybox", {{"/bin/sh"}}},
      {"ca-certificates-bundle",
       {{"/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/cert.pem"}}},
      {"wolfi-baselayout", {{"/etc/passwd"}}},
  };
  std::vector<std::string> missing;
  for (const std::string& w : wanted) {
    // "name=version" or "name>version": the name is what is checked.
    const std::string name = w.substr(0, w.find_first_of("=<>~"));
    if (dpkg.count(name) || apk.count(name)) continue;
    if (auto it = kProvides.find(name); it != kProvides.end()) {
      bool all = true;
      for (const auto& any_of : it->second) {
        bool one = false;
        for (const auto& p : any_of) one = one || exists(root + p, false);
        all = all && one;
      }
      if (all) continue;
    }
    bool found = false;
    for (const char* dir : {"/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/"}) {
      found = found || exists(root + dir + name, true);
    }
    if (!found) missing.push_back(w);
  }
  return missing;
}

}  // namespace cachefs::runners
