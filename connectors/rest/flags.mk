# The rest connector sends each record over HTTP(S) with libcurl (easy
# interface: deliver() is blocking) and builds JSON bodies and reads JSON
# answers with jansson.
CONNECTOR_CFLAGS_rest := $(shell pkg-config --cflags libcurl jansson)
CONNECTOR_LIBS_rest   := $(shell pkg-config --libs libcurl jansson) -lpthread
