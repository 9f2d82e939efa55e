#pragma once
/* Loading a YAML document for PEAK's configuration parsers (libyaml), with errors as
 * "NAME:LINE: reason" like every configuration error. */
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

/* Parses buf[0..len) into *doc and sets *root to its root node. Returns 0 (the caller then
 * owns *doc and frees it with yaml_document_delete), -EINVAL with the reason in err (a
 * syntax error with its line, or an empty file; nothing to free), or -ENOMEM. */
int yaml_doc_load(const char *name, const uint8_t *buf, size_t len, yaml_document_t *doc,
                  yaml_node_t **root, char *err, size_t errlen);
