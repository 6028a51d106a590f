/*
 * test_xmlarena.c — the region for libxml2's allocations of one document
 * (agent/xmlarena.c): which blocks come from it, taking back the newest
 * block, realloc in place and by copy, large blocks, what the end keeps,
 * the pause, and a document freed with it or without it.
 * test_map.c runs the map in it; tests/fuzz/fuzz_map.c the whole worker.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xmlmemory.h>

#include "job.h"
#include "util.h"
#include "xmlarena.h"
#include "xmldoc.h"

/* Blocks come from the region only while the window is open; they are
 * 16-aligned; the newest one, freed, is taken back; the newest grows in
 * place, an older one is copied; a block larger than a chunk is served. */
static void test_blocks(void **state)
{
    (void)state;
    void *before = xmlMalloc(40);
    assert_non_null(before);
    assert_false(rk_xml_arena_owns(before));

    rk_xml_arena_begin();
    char *a = xmlMalloc(10);
    assert_non_null(a);
    assert_true(rk_xml_arena_owns(a));
    assert_int_equal((uintptr_t)a % 16, 0);
    memcpy(a, "abcdefghi", 10);
    char *b = xmlMalloc(33);
    assert_true(b > a);
    xmlFree(b); /* the newest: taken back */
    char *b2 = xmlMalloc(20);
    assert_ptr_equal(b2, b);
    char *grown = xmlRealloc(b2, 5000); /* the newest: in place */
    assert_ptr_equal(grown, b2);
    memset(grown, 'x', 5000);
    char *moved = xmlRealloc(a, 100);  /* not the newest: copied */
    assert_ptr_not_equal(moved, a);
    assert_true(rk_xml_arena_owns(moved));
    assert_string_equal(moved, "abcdefghi");
    char *dup = xmlMemStrdup("zeichenkette");
    assert_true(rk_xml_arena_owns(dup));
    assert_string_equal(dup, "zeichenkette");
    char *huge = xmlMalloc(3u << 20); /* more than the first chunk */
    assert_non_null(huge);
    assert_true(rk_xml_arena_owns(huge));
    memset(huge, 'y', 3u << 20);
    assert_int_equal(grown[4999], 'x'); /* not overwritten */

    /* a block from malloc, freed while the window is open, goes to free */
    xmlFree(before);
    int was = rk_xml_arena_pause();
    assert_true(was);
    void *kept = xmlMalloc(64);
    assert_false(rk_xml_arena_owns(kept));
    rk_xml_arena_resume(was);
    rk_xml_arena_end();

    /* the large chunk is gone, the first is kept for the next document */
    assert_false(rk_xml_arena_owns(huge));
    assert_true(rk_xml_arena_owns(a));
    assert_false(rk_xml_arena_owns(kept));
    void *after = xmlMalloc(10);
    assert_false(rk_xml_arena_owns(after));
    xmlFree(after);
    rk_xml_arena_begin();
    char *again = xmlMalloc(10);
    assert_ptr_equal(again, a);
    rk_xml_arena_end();
    xmlFree(kept);
}

/* A document made in the window lies in it and is freed with it (only
 * its dictionary, which holds a mutex from malloc: LeakSanitizer in
 * `make check-asan` reports it if it is not freed); one made outside is
 * freed by xmlFreeDoc, in the window or not. */
static void test_documents(void **state)
{
    (void)state;
    static const char doc_text[] = "<a xmlns=\"urn:x\"><b>eins</b><c d=\"zwei\"/></a>";
    const char *code = NULL;
    char msg[256];
    xmlDocPtr outside = rk_doc_parse(doc_text, strlen(doc_text), &code, msg, sizeof msg);
    assert_non_null(outside);
    assert_false(rk_xml_arena_owns(outside));
    for (int i = 0; i < 3; i++) {
        rk_xml_arena_begin();
        xmlDocPtr in = rk_doc_parse(doc_text, strlen(doc_text), &code, msg, sizeof msg);
        assert_non_null(in);
        assert_true(rk_xml_arena_owns(in));
        assert_true(rk_xml_arena_owns(xmlDocGetRootElement(in)));
        xmlChar *v = xmlNodeGetContent(xmlDocGetRootElement(in));
        assert_string_equal((const char *)v, "eins");
        xmlFree(v);
        rk_xml_free_doc(in);
        rk_xml_arena_end();
    }
    rk_xml_arena_begin();
    rk_xml_free_doc(outside);
    rk_xml_arena_end();
}

/* Another thread's allocations are its own: a thread that never opened
 * a window allocates from malloc while this one's window is open; one
 * that did gives its region back when it ends. */
static void *other_thread(void *arg)
{
    void **out = arg;
    *out = xmlMalloc(32);
    return NULL;
}

/* A thread that ends gives its region back (LeakSanitizer in `make
 * check-asan` reports the chunk a thread's end would lose). */
static void *window_thread(void *arg)
{
    int *ok = arg;
    rk_xml_arena_begin();
    void *p = xmlMalloc(1000);
    *ok = p && rk_xml_arena_owns(p);
    xmlFree(p);
    rk_xml_arena_end();
    return NULL;
}

static void test_threads_apart(void **state)
{
    (void)state;
    rk_xml_arena_begin();
    void *mine = xmlMalloc(32);
    void *theirs = NULL;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_thread, &theirs), 0);
    pthread_join(t, NULL);
    assert_true(rk_xml_arena_owns(mine));
    assert_non_null(theirs);
    assert_false(rk_xml_arena_owns(theirs));
    xmlFree(mine);
    xmlFree(theirs);
    rk_xml_arena_end();
    int ok = 0;
    assert_int_equal(pthread_create(&t, NULL, window_thread, &ok), 0);
    pthread_join(t, NULL);
    assert_true(ok);
}

int main(void)
{
    rk_xml_init();
    rk_log_set_level(RK_LOG_LVL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_documents),
        cmocka_unit_test(test_threads_apart),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    xmlCleanupParser();
    return failed;
}
