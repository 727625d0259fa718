// libxml2, used as a SAX2 push parser for PROPFIND/SEARCH multistatus bodies (streamed while
// they download, never built into a DOM).
#pragma once
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlerror.h>

/// `xmlFree` is a global *variable* holding a function pointer; Swift 6 treats reading a
/// global var as a data race, so the call goes through this wrapper.
static inline void ncfs_xml_free(void *p) { xmlFree(p); }
