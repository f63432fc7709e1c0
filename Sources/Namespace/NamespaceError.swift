import SystemPackage

/// Everything that can go wrong creating, entering or removing a network namespace, or using its sysctls.
/// Each case names the operation and carries the kernel's errno.
public enum NamespaceError: Error, Equatable, CustomStringConvertible {
    /// The name cannot be a file in /run/netns (empty, too long, contains '/', '.' or '..').
    case invalidName(String, reason: String)
    /// `create` of a name that is already taken.
    case exists(String)
    /// No namespace of that name (no /run/netns/NAME, or the file is not a namespace mount).
    case notFound(String)
    /// The kernel said EPERM/EACCES: the caller lacks CAP_SYS_ADMIN / CAP_NET_ADMIN.
    case permission(operation: String, errno: Errno)
    /// Any other failing system call.
    case system(operation: String, errno: Errno)
    /// A sysctl key that is malformed, not under net., or unknown in that namespace.
    case invalidSysctl(String, reason: String)

    public var description: String {
        switch self {
        case .invalidName(let name, let reason):
            return "invalid namespace name \"\(name)\": \(reason)"
        case .exists(let name):
            return "namespace \"\(name)\" already exists"
        case .notFound(let name):
            return "namespace \"\(name)\" does not exist"
        case .permission(let operation, let errno):
            return "returnpath needs root or CAP_NET_ADMIN and CAP_SYS_ADMIN: \(operation): \(errno)"
        case .system(let operation, let errno):
            return "\(operation): \(errno)"
        case .invalidSysctl(let key, let reason):
            return "sysctl \(key): \(reason)"
        }
    }

    /// Maps an errno from `operation` to `.permission` or `.system`.
    static func from(_ errno: Errno, _ operation: String) -> NamespaceError {
        if errno == .notPermitted || errno == .permissionDenied {
            return .permission(operation: operation, errno: errno)
        }
        return .system(operation: operation, errno: errno)
    }
}
