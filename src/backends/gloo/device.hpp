// Which network devices (addresses) gloo listens on and connects from.
#pragma once

#include <gloo/transport/device.h>

#include <memory>
#include <string>
#include <vector>

namespace tutti::gloo_backend {

// One gloo TCP device per selected interface or address:
//   - TUTTI_SOCKET_IFNAME (else GLOO_SOCKET_IFNAME): a comma list of
//     interface names ("eth0,eth1"), or exclusions ("^docker,lo"): every
//     interface that is up, has an address and matches no excluded prefix;
//   - else TUTTI_SOCKET_HOSTNAME: that hostname or address;
//   - else the local address that routes to MASTER_ADDR, so a hostname that
//     resolves to 127.0.0.1 does not break multi-host jobs;
//   - else 127.0.0.1.
// Throws InvalidArgument naming the variable when nothing matches.
std::vector<std::shared_ptr<::gloo::transport::Device>> default_devices();

// The local address the kernel would use to reach host (no packet is sent);
// empty if host does not resolve or is unreachable.
std::string local_address_towards(const std::string& host);

// Interface names selected by an IFNAME-style spec ("a,b" or "^a,b"), among
// the interfaces that are up and have an IPv4 or IPv6 address.
std::vector<std::string> select_interfaces(const std::string& spec);

}  // namespace tutti::gloo_backend
