// Daemon threads take no signals: SIGTERM/SIGINT must reach the one thread that
// waits for them (RequestLoop::run), or a handler may run late or nowhere the
// loop looks (sanitizer builds defer a handler in a thread blocked outside an
// intercepted call).
#pragma once

#include <signal.h>

namespace cachefs {

// Blocks every signal in this thread while it lives: threads started meanwhile
// inherit the mask, and a signal sent meanwhile stays pending until then.
class SignalsBlocked {
 public:
  SignalsBlocked() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old_);
  }
  ~SignalsBlocked() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  SignalsBlocked(const SignalsBlocked&) = delete;
  SignalsBlocked& operator=(const SignalsBlocked&) = delete;

 private:
  sigset_t old_;
};

}  // namespace cachefs
