// libfuse3, low-level (inode based) API. FUSE_USE_VERSION must be set before the header.
#pragma once
#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
