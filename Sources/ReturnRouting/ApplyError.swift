import Namespace
import Netlink
import SystemPackage

/// Why apply or remove refused or failed. `invalid` means nothing was changed (exit 2); everything else exits 1.
/// Kernel failures keep the kernel's own error (errno and extended-ack text) and the operation.
public enum ApplyError: Error, CustomStringConvertible, Sendable {
    /// The policy or the request cannot be applied here; nothing was changed.
    case invalid(String)
    /// Something not ours sits where we own things; nothing was changed.
    case conflict(String)
    /// The kernel lacks what a strategy needs (nf_tables).
    case unsupported(String)
    /// rtnetlink or nfnetlink refused or failed.
    case netlink(NetlinkError)
    /// A namespace or sysctl operation failed.
    case namespace(NamespaceError)
    /// libnftables refused a script (its message, and the script).
    case nft(NftError)
    /// The record of what apply changed cannot be read or written.
    case record(path: String, reason: String)
    /// Another returnpath holds the namespace's lock.
    case busy(namespace: String, holder: String?, waited: Double)

    public var description: String {
        switch self {
        case .invalid(let m): return m
        case .conflict(let m): return "conflict: \(m)"
        case .unsupported(let m): return m
        case .netlink(let e): return e.description
        case .namespace(let e): return e.description
        case .nft(let e): return "nft: \(e.message)\nscript:\n\(e.script)"
        case .record(let path, let reason): return "record \(path): \(reason)"
        case .busy(let namespace, let holder, let waited):
            let who = holder.map { "returnpath (\($0))" } ?? "another returnpath"
            return "\(who) is changing \(namespace); gave up after waiting \(waited) s (--wait SECONDS to wait longer)"
        }
    }

    public var isInvalid: Bool { if case .invalid = self { return true } else { return false } }

    /// The exit status the CLI uses: 2 for an invalid policy or request (nothing changed), else 1.
    public var exitCode: Int32 { isInvalid ? 2 : 1 }
}

/// libnftables' refusal: its message and the script it refused.
public struct NftError: Error, CustomStringConvertible, Sendable {
    public var script: String
    public var message: String
    public var description: String { message.isEmpty ? "nft failed" : message }
}
