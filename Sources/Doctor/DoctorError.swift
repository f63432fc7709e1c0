import Namespace
import Netlink
import ReturnRouting

/// Why doctor could not read the node or answer. Every case keeps the operation and the kernel's (or libnftables')
/// own words. `invalid` is bad input (exit 2); everything else exits 1.
public enum DoctorError: Error, CustomStringConvertible, Sendable {
    /// The question cannot be asked: an unknown interface, a source of another family, …
    case invalid(String)
    /// rtnetlink or nfnetlink failed.
    case netlink(NetlinkError)
    /// A namespace or sysctl operation failed.
    case namespace(NamespaceError)
    /// libnftables failed, or said something doctor cannot read.
    case nftables(operation: String, message: String)
    /// The record of the last apply cannot be read.
    case record(ApplyError)
    /// A file of the host doctor must read (systemd-networkd's configuration) exists but cannot be read.
    case file(path: String, message: String)

    public var description: String {
        switch self {
        case .invalid(let message): return message
        case .netlink(let error): return error.description
        case .namespace(let error): return error.description
        case .nftables(let operation, let message): return "\(operation): \(message.isEmpty ? "nft failed" : message)"
        case .record(let error): return error.description
        case .file(let path, let message): return "read \(path): \(message)"
        }
    }

    /// 2 for bad input, else 1.
    public var exitCode: Int32 {
        if case .invalid = self { return 2 }
        return 1
    }
}
