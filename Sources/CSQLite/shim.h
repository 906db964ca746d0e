#include <sqlite3.h>

/// Hardens a connection to a file that is untrusted input (SQLite's "Defense Against The
/// Dark Arts"): defensive mode (no writable schema, no raw page writes), no functions with
/// side effects from the schema, and no triggers or views at all (m3search creates none,
/// so one found in a file can never fire or expand). sqlite3_db_config is variadic, which
/// Swift cannot call. Returns SQLITE_OK or the first failing code.
static inline int m3_sqlite_harden(sqlite3 *db) {
    int rc = sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)0);
    if (rc == SQLITE_OK) rc = sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)0);
    if (rc == SQLITE_OK) rc = sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, (int *)0);
    if (rc == SQLITE_OK) rc = sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_VIEW, 0, (int *)0);
    return rc;
}
