// OpenSSL's libcrypto, for SHA-256 of ingested files (the catalog's content identity and the
// OC-Checksum sent with uploads). Only the EVP digest calls are used.
#pragma once
#include <openssl/evp.h>
