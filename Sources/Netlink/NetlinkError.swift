import Namespace
import SystemPackage

/// Every failure of the rtnetlink layer names the operation in iproute2's words ("add rule pref 1000 from
/// 192.168.1.1 lookup 200") and, when the kernel refused it, the kernel's own explanation (extended ack).
public enum NetlinkError: Error, CustomStringConvertible, Sendable {
    /// The kernel answered with an error. `message` is its extended-ack text, when it gave one.
    case kernel(operation: String, errno: Errno, message: String?)
    /// Rejected before anything was sent: malformed prefix, unknown device, table 0, …
    case invalidRequest(operation: String, reason: String)
    /// A system call on the socket failed (socket, bind, send, recv).
    case system(operation: String, errno: Errno)
    /// The kernel's reply broke the protocol (truncated, malformed, wrong sequence) or did not come.
    case protocolViolation(operation: String, reason: String)
    /// Opening the socket inside a network namespace failed.
    case namespace(NamespaceError)

    /// The errno behind the error, when there is one.
    public var errno: Errno? {
        switch self {
        case .kernel(_, let errno, _), .system(_, let errno): return errno
        case .namespace(.system(_, let errno)), .namespace(.permission(_, let errno)): return errno
        default: return nil
        }
    }

    public var operation: String {
        switch self {
        case .kernel(let op, _, _), .invalidRequest(let op, _), .system(let op, _), .protocolViolation(let op, _):
            return op
        case .namespace: return "enter namespace"
        }
    }

    public var description: String {
        switch self {
        case .kernel(let operation, let errno, let message):
            let prefix = errno == .notPermitted || errno == .permissionDenied
                ? "returnpath needs root or CAP_NET_ADMIN: " : ""
            if let message, !message.isEmpty {
                return "\(prefix)\(operation): \(message) (\(errno))"
            }
            return "\(prefix)\(operation): \(errno)"
        case .invalidRequest(let operation, let reason):
            return "\(operation): \(reason)"
        case .system(let operation, let errno):
            let prefix = errno == .notPermitted || errno == .permissionDenied
                ? "returnpath needs root or CAP_NET_ADMIN: " : ""
            return "\(prefix)\(operation): \(errno)"
        case .protocolViolation(let operation, let reason):
            return "\(operation): \(reason)"
        case .namespace(let error):
            return error.description
        }
    }
}

extension Errno {
    /// ENODEV, "No such device", what the kernel answers for a link that is not there (swift-system names it
    /// `operationNotSupportedByDevice`, after BSD's text).
    public static var noSuchDevice: Errno { .operationNotSupportedByDevice }
}
