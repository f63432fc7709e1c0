// libyaml (Debian: libyaml-dev), for the YAML reader (Sources/YAMLFile).
#include <yaml.h>
