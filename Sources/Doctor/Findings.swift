/// One thing doctor found: a stable id, how bad it is, what it is about, and the command that fixes it.
public struct Finding: Sendable, Hashable, Encodable {
    public enum Severity: String, Sendable, Hashable, Encodable, Comparable {
        case error, warning, info
        var rank: Int { self == .error ? 0 : self == .warning ? 1 : 2 }
        public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
    }

    /// Stable: scripts and the agent key on it (see docs/doctor.md for the list).
    public var id: String
    public var severity: Severity
    public var message: String
    /// The objects involved, each as the tool that shows it writes it ("rule pref 1001 from 192.168.2.1 lookup 200",
    /// "route default via 10.111.221.11 dev eth1 table 200", "sysctl net.ipv4.conf.eth1.src_valid_mark=0").
    public var objects: [String]
    /// The command that fixes it (commands joined with " && "), nil when only a person can (a policy file to edit).
    @Nullable public var fix: String?
    /// What the fix needs that doctor cannot give (a policy file, a choice).
    @Nullable public var hint: String?

    public init(id: String, severity: Severity, message: String, objects: [String] = [], fix: String? = nil, hint: String? = nil) {
        self.id = id
        self.severity = severity
        self.message = message
        self.objects = objects
        self.fix = fix
        self.hint = hint
    }
}

/// Every finding id doctor emits, with its usual severity (docs/doctor.md lists them with their fixes).
public enum FindingID {
    /// A service's replies to clients behind an interface leave by another one.
    public static let replyAsymmetric = "reply-asymmetric"
    /// No route for the replies (or one the kernel refuses).
    public static let replyUnreachable = "reply-unreachable"
    /// The requests never get in: the reverse-path check (rp_filter) drops them.
    public static let requestDropped = "request-dropped-by-rp-filter"
    /// fwmark rules while src_valid_mark=0 and rp_filter is strict on the interface.
    public static let fwmarkWithoutSrcValidMark = "fwmark-without-src-valid-mark"
    /// A route whose gateway is an address of the node itself (the POC's `via 10.111.221.11`), or such a policy.
    public static let gatewayIsLocal = "gateway-is-local"
    /// A policy gateway on no subnet connected to its interface (IPv6 flushes an interface's global addresses when
    /// its link goes down).
    public static let gatewayOffLink = "gateway-off-link"
    /// A source rule sends a service to the table of another interface than the one it is announced on.
    public static let ruleWrongInterface = "rule-wrong-interface"
    /// A rule looks up a table that is empty or has no default route (what a link flap leaves).
    public static let tableWithoutDefault = "table-without-default"
    /// The same rule more than once.
    public static let duplicateRule = "duplicate-rule"
    /// A foreign rule at a higher priority catches the replies before returnpath's.
    public static let foreignRuleFirst = "foreign-rule-first"
    /// returnpath's mark bits overlap marks other rules or chains use.
    public static let markBitsOverlap = "mark-bits-overlap"
    /// The kernel differs from what returnpath's last apply installed (or would install for this policy).
    public static let drift = "drift"
    /// Something not returnpath's inside its priority band or table range.
    public static let foreignInBand = "foreign-in-band"
    /// systemd-networkd deletes rules it did not make.
    public static let networkdForeignRules = "networkd-manages-foreign-rules"
    /// doctor's model and the kernel answer differently.
    public static let kernelDisagrees = "kernel-disagrees"
    /// The record of the last apply exists but cannot be read.
    public static let recordUnreadable = "record-unreadable"
    /// A rule in a chain on the path could not be evaluated (unknown expression or extension).
    public static let nftRuleNotEvaluated = "nft-rule-not-evaluated"
    /// A filter-type output chain changes the mark: no re-route follows.
    public static let markInFilterChain = "mark-set-in-filter-chain"
    /// Services or their interfaces are unknown: the checks are partial.
    public static let servicesUnknown = "services-unknown"
}
