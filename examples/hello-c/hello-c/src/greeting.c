#include "hello.h"

const char* greeting(void) { return GREETING; }
