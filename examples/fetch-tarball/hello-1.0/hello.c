/* The program inside hello-1.0.tar.gz, the archive examples/fetch-tarball
   fetches. */
#include <stdio.h>

int main(void) {
  puts("hello from a fetched tarball");
  return 0;
}
