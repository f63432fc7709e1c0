/// Why a reconcile ran: the `trigger` label of `returnpath_reconciles_total`.
public enum Trigger: String, Sendable, CaseIterable, Comparable {
    /// The first apply when the agent starts.
    case start
    /// A policy interface (or a servicesFrom interface) went down or up, appeared or went away.
    case link
    /// An address changed on a policy interface, or a servicesFrom address came or went.
    case address
    /// A route in the owned tables was deleted, replaced or added by someone else.
    case route
    /// A rule in the owned band was deleted or added by someone else.
    case rule
    /// The `inet returnpath` table was changed, flushed or deleted by someone else.
    case nftables
    /// A router of an interface with several (gateways: [A, B]) stopped or started answering (RouterProber).
    case gateway
    /// The policy file changed (inotify) and is valid.
    case policy
    /// SIGHUP: the policy was reloaded and everything checked.
    case sighup
    /// The periodic full reconcile (`--resync-interval`).
    case resync
    /// The event socket lost events (ENOBUFS) or failed: reopened, and everything checked.
    case overflow

    /// When several triggers are pending, the label names the most specific one (the lowest here).
    public static func < (a: Trigger, b: Trigger) -> Bool {
        (allCases.firstIndex(of: a) ?? 0) < (allCases.firstIndex(of: b) ?? 0)
    }
}

/// Why the event sockets were reopened: the `reason` label of `returnpath_event_resyncs_total`.
public enum ResyncReason: String, Sendable, CaseIterable {
    /// ENOBUFS: the receive buffer overflowed and the kernel dropped events.
    case enobufs
    /// Any other receive error (truncated datagram, malformed message, socket error).
    case error
}
