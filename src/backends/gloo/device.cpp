#include "backends/gloo/device.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gloo/transport/tcp/device.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "core/logging.hpp"
#include "tutti/errors.hpp"

namespace tutti::gloo_backend {
namespace {

const char* env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string part =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!part.empty()) parts.push_back(part);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return parts;
}

std::shared_ptr<::gloo::transport::Device> tcp_device(::gloo::transport::tcp::attr attr) {
  return ::gloo::transport::tcp::CreateDevice(attr);
}

}  // namespace

std::string local_address_towards(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* list = nullptr;
  if (::getaddrinfo(host.c_str(), "9", &hints, &list) != 0) return {};
  std::string result;
  for (addrinfo* ai = list; ai != nullptr && result.empty(); ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    // connect() on a UDP socket only picks the route and source address.
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      sockaddr_storage local{};
      socklen_t len = sizeof local;
      char text[INET6_ADDRSTRLEN] = {};
      if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0 &&
          ::getnameinfo(reinterpret_cast<sockaddr*>(&local), len, text, sizeof text, nullptr, 0,
                        NI_NUMERICHOST) == 0) {
        result = text;
      }
    }
    ::close(fd);
  }
  ::freeaddrinfo(list);
  return result;
}

std::vector<std::string> select_interfaces(const std::string& spec) {
  const bool exclude = !spec.empty() && spec[0] == '^';
  const auto names = split(exclude ? spec.substr(1) : spec);
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return {};
  std::vector<std::string> available;
  for (ifaddrs* ifa = list; ifa != nullptr; ifa = ifa->ifa_next) {
    if (ifa->ifa_addr == nullptr || !(ifa->ifa_flags & IFF_UP)) continue;
    const int family = ifa->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) continue;
    if (std::find(available.begin(), available.end(), ifa->ifa_name) == available.end()) {
      available.push_back(ifa->ifa_name);
    }
  }
  ::freeifaddrs(list);
  std::vector<std::string> selected;
  if (exclude) {
    for (const auto& name : available) {
      bool excluded = std::any_of(names.begin(), names.end(), [&](const std::string& prefix) {
        return name.compare(0, prefix.size(), prefix) == 0;
      });
      if (!excluded) selected.push_back(name);
    }
  } else {
    for (const auto& name : names) {
      if (std::find(available.begin(), available.end(), name) != available.end()) {
        selected.push_back(name);
      }
    }
  }
  return selected;
}

std::vector<std::shared_ptr<::gloo::transport::Device>> default_devices() {
  std::vector<std::shared_ptr<::gloo::transport::Device>> devices;
  const char* ifname_var = env("TUTTI_SOCKET_IFNAME")  ? "TUTTI_SOCKET_IFNAME"
                           : env("GLOO_SOCKET_IFNAME") ? "GLOO_SOCKET_IFNAME"
                                                       : nullptr;
  if (ifname_var != nullptr) {
    const std::string spec = env(ifname_var);
    auto names = select_interfaces(spec);
    if (names.empty()) {
      throw InvalidArgument(fmt::format(
          "{}='{}' selects no network interface that is up with an address; use a comma "
          "list of names (eth0,eth1) or of excluded prefixes (^docker,lo)",
          ifname_var, spec));
    }
    for (const auto& name : names) {
      ::gloo::transport::tcp::attr attr;
      attr.iface = name;
      devices.push_back(tcp_device(attr));
    }
    return devices;
  }
  std::string hostname;
  if (const char* host = env("TUTTI_SOCKET_HOSTNAME")) {
    hostname = host;
  } else if (const char* master = env("MASTER_ADDR")) {
    hostname = local_address_towards(master);
    if (hostname.empty()) {
      TUTTI_LOG(LogLevel::WARNING, -1, "",
                "gloo: no route to MASTER_ADDR={}; listening on 127.0.0.1 (set "
                "TUTTI_SOCKET_IFNAME to choose an interface)",
                master);
    }
  }
  if (hostname.empty()) hostname = "127.0.0.1";
  devices.push_back(tcp_device(::gloo::transport::tcp::attr(hostname.c_str())));
  return devices;
}

}  // namespace tutti::gloo_backend
