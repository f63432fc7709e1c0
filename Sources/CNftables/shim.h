// libnftables (Debian: libnftables-dev), for apply's nftables table, in one atomic transaction per change.
#include <nftables/libnftables.h>
