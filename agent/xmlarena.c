/*
 * xmlarena.c — libxml2's allocations for one document from a region.
 * See xmlarena.h for why and for the rules.
 *
 * The region is a list of chunks from malloc, the newest first, each
 * twice the size of the one before (a large document needs few chunks,
 * so finding a block's chunk stays cheap).  A block is 16-aligned, as
 * malloc's are, and carries its size in the 16 bytes before it (for
 * realloc).
 */
#include "xmlarena.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/dict.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlmemory.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define ALIGN ((size_t)16)
#define HEAD ALIGN                             /* a block's size, before it */
#define CHUNK_FIRST ((size_t)128 * 1024)       /* kept between documents */
#define CHUNK_MAX ((size_t)64 * 1024 * 1024)   /* larger only for one block */

struct chunk {
    struct chunk *next;                        /* the one before */
    size_t size;
    char *lo, *hi;                             /* its blocks */
    char *top;                                 /* its first free byte */
};

struct arena {
    struct chunk *chunks;                      /* the newest first */
    char *last;                                /* the newest block */
    int open;
    int installed;
};

static _Thread_local struct arena ar;

static struct chunk *owner(const void *p)
{
    for (struct chunk *c = ar.chunks; c; c = c->next)
        if ((const char *)p >= c->lo && (const char *)p < c->hi)
            return c;
    return NULL;
}

int rk_xml_arena_owns(const void *p) { return p && owner(p) != NULL; }

static size_t block_size(const char *p)
{
    size_t n;
    memcpy(&n, p - HEAD, sizeof n);
    return n;
}

static size_t round_up(size_t n)
{
    size_t r = (n + ALIGN - 1) & ~(ALIGN - 1);
    return r < n ? 0 : r;
}

static struct chunk *chunk_new(size_t need)
{
    size_t size = ar.chunks ? ar.chunks->size * 2 : CHUNK_FIRST;
    if (size > CHUNK_MAX)
        size = CHUNK_MAX;
    if (need > SIZE_MAX / 2 - HEAD - ALIGN)
        return NULL;
    while (size < need + HEAD)
        size *= 2;
    struct chunk *c = malloc(sizeof *c + size + ALIGN);
    if (!c)
        return NULL;
    uintptr_t lo = ((uintptr_t)(c + 1) + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1);
    c->size = size;
    c->lo = c->top = (char *)lo;
    c->hi = c->lo + size;
    POISON(c->lo, size);
    c->next = ar.chunks;
    ar.chunks = c;
    return c;
}

static void *region_alloc(size_t n)
{
    size_t r = round_up(n ? n : 1);
    if (!r)
        return NULL;
    struct chunk *c = ar.chunks;
    if (!c || (size_t)(c->hi - c->top) < r + HEAD) {
        if (!(c = chunk_new(r)))
            return NULL;
    }
    char *p = c->top + HEAD;
    c->top = p + r;
    UNPOISON(p - HEAD, HEAD + n);
    memcpy(p - HEAD, &n, sizeof n);
    POISON(p - HEAD, HEAD); /* the size is ours, not the caller's */
    ar.last = p;
    return p;
}

/* Reads a block's size (its head is poisoned between calls). */
static size_t size_of(const char *p)
{
    UNPOISON(p - HEAD, HEAD);
    size_t n = block_size(p);
    POISON(p - HEAD, HEAD);
    return n;
}

static void *xa_malloc(size_t n) { return ar.open ? region_alloc(n) : malloc(n); }

static void xa_free(void *p)
{
    if (!p)
        return;
    struct chunk *c = ar.chunks ? owner(p) : NULL;
    if (!c) {
        free(p);
        return;
    }
    size_t n = size_of(p);
    if (p == ar.last && c == ar.chunks) {
        c->top = (char *)p - HEAD; /* the newest block: taken back */
        ar.last = NULL;
    }
    POISON(p, n);
}

static void *xa_realloc(void *p, size_t n)
{
    if (!p)
        return xa_malloc(n);
    struct chunk *c = ar.chunks ? owner(p) : NULL;
    if (!c)
        return realloc(p, n);
    if (!ar.open) /* a region block outlived its window: a bug */
        return NULL;
    size_t old = size_of(p);
    size_t r = round_up(n ? n : 1);
    if (p == ar.last && c == ar.chunks && r && (size_t)(c->hi - (char *)p) >= r) {
        /* the newest block grows or shrinks where it is (buffers do) */
        c->top = (char *)p + r;
        UNPOISON((char *)p - HEAD, HEAD);
        memcpy((char *)p - HEAD, &n, sizeof n);
        POISON((char *)p - HEAD, HEAD);
        UNPOISON(p, n);
        if (n < old)
            POISON((char *)p + n, old - n);
        return p;
    }
    void *q = region_alloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    POISON(p, old);
    return q;
}

static char *xa_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xa_malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* A thread that ends gives its kept chunk back (libuv joins its pool
 * threads when the process exits). */
static pthread_key_t chunk_key;
static pthread_once_t chunk_once = PTHREAD_ONCE_INIT;
static int chunk_key_ok;

static void chunks_free(void *arg)
{
    struct arena *a = arg;
    for (struct chunk *c = a->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->chunks = NULL;
}

static void chunk_key_make(void) { chunk_key_ok = pthread_key_create(&chunk_key, chunks_free) == 0; }

void rk_xml_arena_begin(void)
{
    if (!ar.installed) {
        xmlMemSetup(xa_free, xa_malloc, xa_realloc, xa_strdup);
        pthread_once(&chunk_once, chunk_key_make);
        if (chunk_key_ok)
            pthread_setspecific(chunk_key, &ar);
        ar.installed = 1;
    }
    ar.open = 1;
}

void rk_xml_arena_end(void)
{
    xmlResetLastError(); /* its strings may be in the region */
    ar.open = 0;
    ar.last = NULL;
    struct chunk *c = ar.chunks;
    while (c && c->next) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    if (c && c->size != CHUNK_FIRST) {
        free(c); /* the first document was a large one */
        c = NULL;
    }
    ar.chunks = c;
    if (c) {
        c->top = c->lo;
        POISON(c->lo, c->size);
    }
}

int rk_xml_arena_pause(void)
{
    int was = ar.open;
    ar.open = 0;
    return was;
}

void rk_xml_arena_resume(int was_open) { ar.open = was_open; }

void rk_xml_free_doc(xmlDocPtr doc)
{
    if (!doc)
        return;
    if (ar.open && owner(doc)) {
        if (doc->dict)
            xmlDictFree(doc->dict);
        return;
    }
    xmlFreeDoc(doc);
}
