#include <stdio.h>

#include "hello.h"

int main(void) {
  printf("%s (%d words)\n", greeting(), count_words(greeting()));
  return 0;
}
