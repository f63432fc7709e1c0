import ReturnRouting
import SystemPackage

/// Why the agent could not start or stopped: exit 2 for an invalid policy or usage (nothing changed), else 1.
public enum AgentError: Error, CustomStringConvertible, Sendable {
    /// The policy file is invalid or unreadable (FILE:LINE: problem).
    case policy(String)
    /// apply or remove failed (the kernel's error, a conflict, a busy namespace, …).
    case apply(ApplyError)
    /// A system call failed.
    case system(String, Errno)
    /// The metrics endpoint could not listen.
    case metrics(String)

    public var description: String {
        switch self {
        case .policy(let m): return m
        case .apply(let e): return e.description
        case .system(let operation, let e): return "\(operation): \(e)"
        case .metrics(let m): return "metrics endpoint: \(m)"
        }
    }

    public var exitCode: Int32 {
        switch self {
        case .policy: return 2
        case .apply(let e): return e.exitCode
        case .system, .metrics: return 1
        }
    }
}
