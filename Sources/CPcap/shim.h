// libpcap (Debian: libpcap-dev), for probe's packet capture.
#include <pcap/pcap.h>
#include <pcap/dlt.h>
