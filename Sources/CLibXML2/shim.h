// libxml2, used as a SAX2 push parser for PROPFIND/SEARCH multistatus bodies (streamed while
// they download, never built into a DOM).
#pragma once
#include <libxml/xmlversion.h>
// Debian's libxml2 is built with ICU, so its encoding.h would pull the system's ICU headers into
// this module. Foundation ships its own ICU copy (_FoundationICU) whose `UErrorCode` has more
// members, and a clean build then fails on the clashing enum. Dropping the macro keeps ICU out;
// it only changes the layout of xmlCharEncodingHandler, which ncfs never touches.
#undef LIBXML_ICU_ENABLED
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlerror.h>

/// `xmlFree` is a global *variable* holding a function pointer; Swift 6 treats reading a
/// global var as a data race, so the call goes through this wrapper.
static inline void ncfs_xml_free(void *p) { xmlFree(p); }
