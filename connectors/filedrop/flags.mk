# The filedrop connector hashes idempotency keys (file names, markers)
# with SHA-256 from OpenSSL's libcrypto; iconv comes with glibc.
CONNECTOR_CFLAGS_filedrop := $(shell pkg-config --cflags libcrypto)
CONNECTOR_LIBS_filedrop   := $(shell pkg-config --libs libcrypto)
