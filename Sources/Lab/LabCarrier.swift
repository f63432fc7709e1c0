import Namespace
import Netlink
#if canImport(Glibc)
import Glibc
#endif

/// Carrier: the kernel brings a veth's carrier up asynchronously after both ends are up. `lab up` waits for it on
/// every declared interface, so that the lab does not change after up returns.
extension LabBuild {
    /// How long `up` waits for carrier on every declared interface.
    static let carrierTimeoutMilliseconds: Int64 = 3000
    /// Between two looks at the links (a dump per host), while some are still without carrier.
    static let carrierPollMicroseconds: useconds_t = 1000

    /// Waits until every declared interface is operationally up.
    func waitForCarrier() throws(LabError) {
        let deadline = monotonicMilliseconds() + Self.carrierTimeoutMilliseconds
        for host in topology.hosts {
            let socket = try socket(.host(host.name))
            let wanted = Set(host.interfaces.filter { !$0.isLoopback }.map(\.name))
            while true {
                let down: [String]
                do {
                    down = try socket.links().filter { wanted.contains($0.name) && !$0.isOperationallyUp }.map(\.name)
                } catch { throw fail("wait for carrier", .host(host.name), error) }
                if down.isEmpty { break }
                guard monotonicMilliseconds() < deadline else {
                    throw LabError(lab: lab, step: "wait for carrier", host: host.name,
                                   reason: "\(down.joined(separator: ", ")) still without carrier after \(Self.carrierTimeoutMilliseconds / 1000) s")
                }
                usleep(Self.carrierPollMicroseconds)
            }
        }
    }

    /// Waits until the kernel routes every IPv6 address of the lab as local. An IPv6 address gets its local route
    /// from addrconf's work queue, a moment after it is added (even without duplicate address detection): until
    /// then a packet to it is not delivered, and tools that read the local table do not see it.
    func waitForIPv6Addresses() throws(LabError) {
        let deadline = monotonicMilliseconds() + Self.carrierTimeoutMilliseconds
        for host in topology.hosts {
            let addresses = host.interfaces.flatMap { $0.addresses.map(\.address) }.filter { $0.family == .inet6 }
            guard !addresses.isEmpty else { continue }
            let socket = try socket(.host(host.name))
            for address in addresses {
                while true {
                    let local: Bool
                    do { local = try socket.lookup(RouteQuery(destination: address)).type == .local } catch {
                        local = false   // not routable at all yet
                    }
                    if local { break }
                    guard monotonicMilliseconds() < deadline else {
                        throw LabError(lab: lab, step: "wait for IPv6 addresses", host: host.name,
                                       reason: "\(address) is not local after \(Self.carrierTimeoutMilliseconds / 1000) s")
                    }
                    usleep(Self.carrierPollMicroseconds)
                }
            }
        }
    }
}
