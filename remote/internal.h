// The backends behind open_backend(); not for use outside remote/.
#pragma once

#include <memory>
#include <string>

#include "remote/remote.h"

namespace cachefs::remote::detail {

std::unique_ptr<Backend> make_dir_backend(const std::string& path);

struct HttpConfig {
  std::string base;     // scheme://host[:port]/path/ (no userinfo), ends with '/'
  std::string display;  // what messages call the remote (password masked)
  std::string user, password;  // basic auth when user is set
  std::string bearer;          // Authorization: Bearer, when set (and no user)
  bool s3 = false;             // sign with SigV4 (user/password = access key/secret)
  std::string region, session_token;
  double timeout = 30;
  int retries = 3;
};
std::unique_ptr<Backend> make_http_backend(const HttpConfig& cfg);

}  // namespace cachefs::remote::detail
