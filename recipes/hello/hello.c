#include <stdio.h>

int main(void) {
    puts("Hello from imgforge!");
    return 0;
}
