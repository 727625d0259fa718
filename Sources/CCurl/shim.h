// libcurl shims. curl_easy_setopt and curl_easy_getinfo are variadic C functions, which Swift
// cannot call; each wrapper fixes one argument type so the compiler checks what we pass.
// A few option values are macros with casts (CURLAUTH_*), exported here as functions.
#pragma once
#include <curl/curl.h>

static inline CURLcode ncfs_curl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ncfs_curl_setopt_offset(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ncfs_curl_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ncfs_curl_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ncfs_curl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }

typedef size_t (*ncfs_curl_data_cb)(char *ptr, size_t size, size_t nmemb, void *userdata);
typedef int (*ncfs_curl_xferinfo_cb)(void *userdata, curl_off_t dltotal, curl_off_t dlnow,
                                     curl_off_t ultotal, curl_off_t ulnow);
typedef int (*ncfs_curl_seek_cb)(void *userdata, curl_off_t offset, int origin);

/// For CURLOPT_WRITEFUNCTION, CURLOPT_READFUNCTION and CURLOPT_HEADERFUNCTION.
static inline CURLcode ncfs_curl_setopt_data_cb(CURL *h, CURLoption o, ncfs_curl_data_cb cb) { return curl_easy_setopt(h, o, cb); }
static inline CURLcode ncfs_curl_setopt_xferinfo_cb(CURL *h, ncfs_curl_xferinfo_cb cb) { return curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, cb); }
static inline CURLcode ncfs_curl_setopt_seek_cb(CURL *h, ncfs_curl_seek_cb cb) { return curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, cb); }

static inline CURLcode ncfs_curl_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode ncfs_curl_getinfo_offset(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode ncfs_curl_getinfo_double(CURL *h, CURLINFO i, double *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode ncfs_curl_getinfo_string(CURL *h, CURLINFO i, char **v) { return curl_easy_getinfo(h, i, v); }

static inline long ncfs_curlauth_basic(void) { return (long)CURLAUTH_BASIC; }
/// Returned from a read callback to abort the transfer (CURL_READFUNC_ABORT is a macro).
static inline size_t ncfs_curl_readfunc_abort(void) { return CURL_READFUNC_ABORT; }
static inline int ncfs_curl_seekfunc_ok(void) { return CURL_SEEKFUNC_OK; }
static inline int ncfs_curl_seekfunc_fail(void) { return CURL_SEEKFUNC_FAIL; }
