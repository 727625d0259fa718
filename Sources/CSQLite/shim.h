// SQLite for the durable journal and ingest catalog (used from later layers).
// SQLITE_TRANSIENT is a cast of -1 to a function pointer, a macro Swift cannot import.
#pragma once
#include <sqlite3.h>

static inline sqlite3_destructor_type ncfs_sqlite_transient(void) { return SQLITE_TRANSIENT; }
