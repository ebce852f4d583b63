// Does a sandbox root provide the packages a build file asks for
// (environment.contents.packages)? launch does not install packages: it checks
// and says what is missing and the ways out.
#pragma once

#include <string>
#include <vector>

namespace cachefs::runners {

// The packages of `wanted` that `root` ("" or "/": the host) does not provide.
// A package is provided when the root's package database (dpkg's status file, or
// apk's installed database for Wolfi/Alpine roots) lists it installed, when a
// well-known Wolfi meta-package's contents are there (build-base: a C compiler
// and make; busybox: a shell; ca-certificates-bundle: the CA bundle), or when
// the root has an executable of that name in /usr/bin, /bin, /usr/sbin or /sbin.
std::vector<std::string> missing_packages(const std::string& root,
                                          const std::vector<std::string>& wanted);

}  // namespace cachefs::runners
