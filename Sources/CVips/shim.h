// libvips for image derivatives (ingest layer). vips_thumbnail and friends are variadic
// (NULL-terminated option lists), so each call shape Swift needs gets a fixed-arity wrapper
// here when the ingest layer lands.
#pragma once
#include <vips/vips.h>

/// VIPS_INIT is a macro; this wrapper lets Swift start libvips once per process.
static inline int ncfs_vips_init(const char *argv0) { return VIPS_INIT(argv0); }
