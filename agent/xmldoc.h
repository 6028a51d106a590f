/*
 * xmldoc.h — parsing submitted documents safely and validating them.
 *
 * Submissions are parsed from memory with the network off, no entity
 * substitution, no DTD loading and libxml2's default depth and size
 * limits; a document that carries a DOCTYPE at all is refused, since no
 * application type needs one and it is the door for entity attacks.
 *
 * Ownership: rk_doc_parse returns a new xmlDoc the caller frees with
 * xmlFreeDoc (rk_xml_free_doc in a worker's region, xmlarena.h).
 */
#ifndef RK_XMLDOC_H
#define RK_XMLDOC_H

#include <stddef.h>
#include <libxml/tree.h>
#include "record.h"

/* Parses data.  On failure returns NULL, sets *code to a short anomaly
 * code (XML_MALFORMED, XML_DOCTYPE, XML_EMPTY) and writes a German
 * message naming the line into msg. */
xmlDocPtr rk_doc_parse(const char *data, size_t len, const char **code,
                       char *msg, size_t msglen);

/* Namespace URI ("" when none) and local name of the root element;
 * borrowed from doc. */
void rk_doc_root(xmlDocPtr doc, const char **ns, const char **local);

/* Validates doc against the job's compiled schema; each violation (up to
 * a cap) becomes a blocking SCHEMA anomaly naming line and element.
 * Returns the number of violations. Thread-safe for one doc per thread. */
int rk_doc_validate(const rk_job *job, xmlDocPtr doc, rk_result *r);

#endif /* RK_XMLDOC_H */
