import CLinux
import Namespace
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Opening a netlink socket inside a namespace: the one place both `NetlinkSocket` (requests) and `EventSocket`
/// (notifications) make, size and bind theirs.
enum NetlinkDescriptor {
    /// A socket option to set, and whether the socket is useless without it.
    struct Option {
        var level: Int32
        var name: Int32
        var value: Int32
        /// What the socket cannot do without the option (an error names it); nil: kernels without it still work.
        var requiredFor: String?
    }

    /// Opens a netlink socket of `family` inside `namespace` (created on the namespace's thread; the caller is never
    /// moved), sets `options`, sizes its buffers (SO_RCVBUFFORCE/SO_SNDBUFFORCE, which need CAP_NET_ADMIN, else the
    /// plain options, which the kernel caps at rmem_max/wmem_max), sets a receive timeout when given, binds it with
    /// port id 0 (the kernel assigns one: binding to getpid() fails once another netlink socket took it), joins
    /// `groups`, and returns the descriptor and its port id. On any failure the descriptor is closed.
    static func open(_ namespace: NetworkNamespace, family: Int32, options: [Option] = [], receiveBuffer: Int32,
                     sendBuffer: Int32? = nil, receiveTimeoutSeconds: Int? = nil,
                     groups: [UInt32] = []) throws(NetlinkError) -> (fd: Int32, portID: UInt32) {
        let fd: Int32
        do {
            fd = try namespace.socket(domain: AF_NETLINK, type: Int32(SOCK_RAW.rawValue), protocol: family)
        } catch {
            throw .namespace(error)
        }
        do throws(NetlinkError) {
            func set(_ level: Int32, _ name: Int32, _ value: Int32) -> Result<Int32, Errno> {
                var v = value
                return syscall { setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) }
            }
            for option in options {
                if case .failure(let e) = set(option.level, option.name, option.value), let needed = option.requiredFor {
                    throw NetlinkError.system(operation: "set netlink socket option \(option.name) (\(needed)) in \(namespace)", errno: e)
                }
            }
            for (force, plain, size) in [(SO_RCVBUFFORCE, SO_RCVBUF, Optional(receiveBuffer)), (SO_SNDBUFFORCE, SO_SNDBUF, sendBuffer)] {
                guard let size, case .failure = set(SOL_SOCKET, force, size) else { continue }
                // Without CAP_NET_ADMIN the kernel caps the plain option at its maximum: smaller, still working.
                if case .failure(let e) = set(SOL_SOCKET, plain, size) {
                    throw NetlinkError.system(operation: "size the netlink socket's buffer in \(namespace)", errno: e)
                }
            }
            if let receiveTimeoutSeconds {
                var timeout = timeval(tv_sec: receiveTimeoutSeconds, tv_usec: 0)
                if case .failure(let e) = syscall({ setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) }) {
                    throw NetlinkError.system(operation: "set the netlink socket's receive timeout in \(namespace)", errno: e)
                }
            }
            var address = sockaddr_nl()
            address.nl_family = sa_family_t(AF_NETLINK)
            var length = socklen_t(MemoryLayout<sockaddr_nl>.size)
            let bound = withUnsafeMutablePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    syscall { bind(fd, sa, length) }.flatMap { _ in syscall { getsockname(fd, sa, &length) } }
                }
            }
            if case .failure(let e) = bound {
                throw NetlinkError.system(operation: "bind netlink socket in \(namespace)", errno: e)
            }
            for group in groups {
                if case .failure(let e) = set(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, Int32(bitPattern: group)) {
                    throw NetlinkError.system(operation: "join netlink group \(group) in \(namespace)", errno: e)
                }
            }
            return (fd, address.nl_pid)
        } catch {
            close(fd)
            throw error
        }
    }
}
