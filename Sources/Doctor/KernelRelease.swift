import Namespace
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// The release of the kernel a node runs (`uname -r`: every namespace shares it), for the few answers of the
/// kernel that changed between the releases users run (docs/kernel-notes.md, "Differences between kernels").
public struct KernelRelease: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var description: String

    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
        description = "\(major).\(minor)"
    }

    /// "6.1.0-57-amd64", "6.12.95+deb12-amd64", "6.18.44-fc-v1147": the first two numbers; nil for anything else.
    public init?(_ text: String) {
        let numbers = text.split(maxSplits: 2, omittingEmptySubsequences: false, whereSeparator: { !$0.isNumber })
        guard numbers.count >= 2, text.first?.isNumber == true, let major = Int(numbers[0]), let minor = Int(numbers[1])
        else { return nil }
        self.major = major
        self.minor = minor
        description = text
    }

    /// The kernel this process runs on; nil when uname(2) fails or names something unexpected.
    public static let running: KernelRelease? = {
        var name = utsname()
        guard case .success = syscall({ uname(&name) }) else { return nil }
        let release = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return KernelRelease(release)
    }()

    public static func < (a: KernelRelease, b: KernelRelease) -> Bool { (a.major, a.minor) < (b.major, b.minor) }

    /// The errno of `RTM_GETROUTE` (`ip route get … iif …`) for a packet that fails rp_filter's reverse-path check
    /// (net/ipv4/fib_frontend.c `__fib_validate_source`, `e_rpf`): EXDEV up to 6.12; since 6.13 the input route
    /// returns drop reasons and `inet_rtm_getroute` answers EINVAL for every one of them ("net: ip: make
    /// ip_route_input_rcu() return drop reasons"). Measured: 6.1 and 6.12 EXDEV, 6.18 EINVAL. A martian source
    /// (`e_inval`) is EINVAL on all of them. An unknown release is taken as a current one.
    public static func reversePathErrno(on kernel: KernelRelease?) -> Errno {
        guard let kernel, kernel < KernelRelease(major: 6, minor: 13) else { return .invalidArgument }
        return .improperLink
    }
}
