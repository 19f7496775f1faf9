// The one reader every system in bench/run is measured with, so that a
// difference in numbers is a difference between filesystems, not tools.
//
//   reader read  [-j N] LIST   open, read to EOF (1 MiB buffer), close every path in LIST
//                              (one per line); N threads take paths in order (default 1)
//   reader stat  LIST          stat() every path in LIST
//   reader ttfb  FILE          seconds from open() to the first read() returning data
//   reader mmap  FILE N        map FILE (MAP_SHARED, read only) and copy N 4 KB pages
//                              at pseudo-random page offsets (the same ones every run)
//
// Paths in LIST are used as written (relative ones against the working
// directory). Prints nothing on success except for ttfb; any error is
// reported on stderr and makes the exit status 1.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char** paths;
static size_t npaths;
static atomic_size_t next_path;
static atomic_int failed;
static atomic_ullong total_bytes;

static void load_list(const char* file) {
  FILE* f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
  if (!f) {
    fprintf(stderr, "reader: %s: %s\n", file, strerror(errno));
    exit(2);
  }
  size_t cap = 1024;
  paths = malloc(cap * sizeof *paths);
  char* line = NULL;
  size_t len = 0;
  ssize_t n;
  while ((n = getline(&line, &len, f)) > 0) {
    if (line[n - 1] == '\n') line[--n] = 0;
    if (n == 0) continue;
    if (npaths == cap) paths = realloc(paths, (cap *= 2) * sizeof *paths);
    paths[npaths++] = strdup(line);
  }
  free(line);
  if (f != stdin) fclose(f);
}

static void* read_worker(void* arg) {
  (void)arg;
  const size_t bufsize = 1 << 20;
  char* buf = malloc(bufsize);
  for (;;) {
    size_t i = atomic_fetch_add(&next_path, 1);
    if (i >= npaths) break;
    int fd = open(paths[i], O_RDONLY);
    if (fd < 0) {
      fprintf(stderr, "reader: open %s: %s\n", paths[i], strerror(errno));
      atomic_store(&failed, 1);
      continue;
    }
    unsigned long long got = 0;
    for (;;) {
      ssize_t r = read(fd, buf, bufsize);
      if (r < 0) {
        if (errno == EINTR) continue;
        fprintf(stderr, "reader: read %s: %s\n", paths[i], strerror(errno));
        atomic_store(&failed, 1);
        break;
      }
      if (r == 0) break;
      got += (unsigned long long)r;
    }
    atomic_fetch_add(&total_bytes, got);
    close(fd);
  }
  free(buf);
  return NULL;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: reader read [-j N] LIST | reader stat LIST | reader ttfb FILE\n");
    return 2;
  }
  const char* mode = argv[1];
  if (strcmp(mode, "ttfb") == 0) {
    char buf[4096];
    double t0 = now();
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) {
      fprintf(stderr, "reader: open %s: %s\n", argv[2], strerror(errno));
      return 1;
    }
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) < 0 && errno == EINTR) {
    }
    double t1 = now();
    if (r <= 0) {
      fprintf(stderr, "reader: read %s: %s\n", argv[2], r < 0 ? strerror(errno) : "empty file");
      return 1;
    }
    close(fd);
    printf("%.6f\n", t1 - t0);
    return 0;
  }
  if (strcmp(mode, "mmap") == 0 && argc >= 4) {
    int fd = open(argv[2], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 4096) {
      fprintf(stderr, "reader: mmap %s: %s\n", argv[2], fd < 0 ? strerror(errno) : "too small");
      return 1;
    }
    size_t pages = (size_t)st.st_size / 4096;
    const unsigned char* p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      fprintf(stderr, "reader: mmap %s: %s\n", argv[2], strerror(errno));
      return 1;
    }
    long n = atol(argv[3]);
    unsigned long long x = 88172645463325252ull, sum = 0;  // xorshift64
    char page[4096];
    for (long i = 0; i < n; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      memcpy(page, p + (x % pages) * 4096, sizeof page);
      sum += (unsigned char)page[(size_t)i % sizeof page];
    }
    munmap((void*)p, (size_t)st.st_size);
    close(fd);
    if (getenv("READER_BYTES")) fprintf(stderr, "reader: checksum %llu\n", sum);
    return 0;
  }
  if (strcmp(mode, "stat") == 0) {
    load_list(argv[2]);
    struct stat st;
    int rc = 0;
    for (size_t i = 0; i < npaths; ++i) {
      if (stat(paths[i], &st) != 0) {
        fprintf(stderr, "reader: stat %s: %s\n", paths[i], strerror(errno));
        rc = 1;
      }
    }
    return rc;
  }
  if (strcmp(mode, "read") == 0) {
    int threads = 1;
    int a = 2;
    if (strcmp(argv[a], "-j") == 0 && argc > a + 2) {
      threads = atoi(argv[a + 1]);
      a += 2;
    }
    if (threads < 1 || a >= argc) {
      fprintf(stderr, "reader: bad arguments\n");
      return 2;
    }
    load_list(argv[a]);
    pthread_t* tids = calloc((size_t)threads, sizeof *tids);
    for (int t = 0; t < threads; ++t) pthread_create(&tids[t], NULL, read_worker, NULL);
    for (int t = 0; t < threads; ++t) pthread_join(tids[t], NULL);
    if (getenv("READER_BYTES")) fprintf(stderr, "reader: %llu bytes\n", (unsigned long long)total_bytes);
    return atomic_load(&failed) ? 1 : 0;
  }
  fprintf(stderr, "reader: unknown mode %s\n", mode);
  return 2;
}
