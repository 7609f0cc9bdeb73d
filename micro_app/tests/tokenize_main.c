/* Test helper (host only): tokenizes lines from stdin and prints ids.
 *   T <hex>          -> raw ids (at most argv[2], default 4096)
 *   S <hex>          -> token ids then segment ids of the packed text (L = argv[1])
 *   P <hexA> <hexB>  -> the same for a pair
 * Text is hex-encoded so that any byte (newline, NUL, invalid UTF-8) passes. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embbert_tokenizer.h"

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* decodes hex in place from *p up to a space or end; returns length */
static size_t unhex(char **p, unsigned char *out) {
  size_t n = 0;
  char *s = *p;
  while (hexval(s[0]) >= 0 && hexval(s[1]) >= 0) {
    out[n++] = (unsigned char)(hexval(s[0]) * 16 + hexval(s[1]));
    s += 2;
  }
  while (*s == ' ') s++;
  *p = s;
  return n;
}

static void print_ids(const int *ids, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) printf(i ? " %d" : "%d", ids[i]);
}

int main(int argc, char **argv) {
  size_t L = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 128;
  size_t cap = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 4096;
  char *line = NULL;
  size_t line_cap = 0;
  ssize_t got;
  int32_t *ids = malloc(sizeof(int32_t) * (cap > L ? cap : L));
  int32_t *seg = malloc(sizeof(int32_t) * L);
  if (!ids || !seg || L < 3) return 2;
  while ((got = getline(&line, &line_cap, stdin)) >= 0) {
    char *p = line + 2;
    unsigned char *a, *b;
    size_t na, nb, n;
    if (got < 2) continue;
    a = malloc((size_t)got + 1);
    b = malloc((size_t)got + 1);
    if (!a || !b) return 2;
    na = unhex(&p, a);
    if (line[0] == 'T') {
      n = embbert_tokenize(a, na, ids, cap);
      print_ids(ids, n);
    } else if (line[0] == 'S') {
      embbert_encode_single(a, na, ids, seg, L);
      print_ids(ids, L);
      printf(" |");
      print_ids(seg, L);
    } else {
      nb = unhex(&p, b);
      embbert_encode_pair(a, na, b, nb, ids, seg, L);
      print_ids(ids, L);
      printf(" |");
      print_ids(seg, L);
    }
    printf("\n");
    free(a);
    free(b);
  }
  free(line);
  free(ids);
  free(seg);
  return 0;
}
