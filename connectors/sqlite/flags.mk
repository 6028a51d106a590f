# The sqlite connector links SQLite itself rather than relying on the
# host's copy, so it also loads into a host that does not use SQLite.
CONNECTOR_CFLAGS_sqlite := $(shell pkg-config --cflags sqlite3)
CONNECTOR_LIBS_sqlite   := $(shell pkg-config --libs sqlite3)
