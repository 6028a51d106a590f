# The postgres connector talks to PostgreSQL through libpq.
CONNECTOR_CFLAGS_postgres := $(shell pkg-config --cflags libpq)
CONNECTOR_LIBS_postgres   := $(shell pkg-config --libs libpq)
