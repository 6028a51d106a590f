/*
 * xmlarena.h — libxml2's allocations for one document from a region of
 * the worker thread's own.
 *
 * Parsing, validating and mapping a 2 KB submission makes about a
 * thousand small allocations in libxml2 (nodes, names, the validation's
 * state, XPath node sets), each freed again before the document is
 * done.  Between rk_xml_arena_begin and rk_xml_arena_end libxml2 takes
 * them from a region that only grows; freeing a block is a no-op (the
 * newest block is taken back), and the end takes the whole region back
 * at once.  A document tree made in the region is not walked to be
 * freed (rk_xml_free_doc).
 *
 * Per thread: rk_xml_arena_begin installs the region's functions with
 * xmlMemSetup (Debian builds libxml2 with LIBXML_THREAD_ALLOC_ENABLED,
 * so they are this thread's; where they would be process-wide they
 * still serve every other thread from malloc, and a block from malloc
 * is always freed to malloc).
 *
 * The rule for code running inside the window: nothing libxml2 makes
 * there may be kept after rk_xml_arena_end.  What is kept between
 * documents (the thread's XPath context) is made with the region paused
 * (rk_xml_arena_pause), and error records that libxml2 keeps (the
 * thread's last error, a kept XPath context's last error) are reset
 * before the end.  Results are copied into malloc'd memory (the map
 * does, for every value).
 *
 * Under AddressSanitizer the free parts of the region are poisoned, so a
 * block used after it was freed or after the end is reported.
 */
#ifndef RK_XMLARENA_H
#define RK_XMLARENA_H

#include <libxml/tree.h>

/* Starts the window on this thread: libxml2's allocations come from the
 * region until rk_xml_arena_end.  Not nested. */
void rk_xml_arena_begin(void);

/* Ends the window: resets the thread's libxml2 last error, takes the
 * region back whole and keeps its first part for the next document
 * (larger parts, made for a large document, are freed; the kept part
 * when the thread ends). */
void rk_xml_arena_end(void);

/* Allocations from malloc until rk_xml_arena_resume: for what must
 * outlive the window.  Returns whether the window was open. */
int rk_xml_arena_pause(void);
void rk_xml_arena_resume(int was_open);

/* Frees a document.  One made in this thread's open window is not
 * walked: only its dictionary is freed (it holds a mutex from malloc),
 * the rest goes with the region.  Any other is given to xmlFreeDoc. */
void rk_xml_free_doc(xmlDocPtr doc);

/* Whether p lies in this thread's region (for tests). */
int rk_xml_arena_owns(const void *p);

#endif
