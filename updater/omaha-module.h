/* The Omaha response parser as a module, loaded for each parse and unloaded after it.
 *
 * Parsing is the one part of the Omaha codec that needs libxml2, and libxml2 brings ICU and
 * the C++ runtime with it: about 3 MiB resident once used. Unloading gives back libxml2 and
 * ICU (the C++ runtime cannot be unloaded). The agent parses a few times an hour and waits or
 * installs the rest of the time, so the device programs do not link libxml2: they load
 * lib/omaha-parse.c, built as omaha-parser.so, for the few milliseconds of a parse. The
 * install, whose memory is bounded by a target, runs without it: its peak fell by 1.1 MiB,
 * which pays for one more chunk in flight (install.c). pivot-server links the same parser
 * directly. */
#pragma once

#include <stddef.h>

#include "omaha.h"

/* Where the module is, relative to the directory of the running program: /usr/bin/pivot-agent
 * loads /usr/lib/pivot/omaha-parser.so, out/bin/pivot-agent out/lib/pivot/omaha-parser.so. */
#define OMAHA_PARSER_MODULE "../lib/pivot/omaha-parser.so"

/* omaha_response_parse() through the module. Returns -ELIBACC when the module cannot be
 * loaded and -ELIBBAD when it is not the parser (both logged here, with the loader's reason);
 * otherwise what omaha_response_parse() returns. */
int omaha_module_parse_response(const char *xml, size_t len, struct omaha_response *ret);
