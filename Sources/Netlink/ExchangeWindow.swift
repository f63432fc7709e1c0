/// The sequence numbers of one exchange: its requests first … first+count-1, and the two around them, which an
/// nfnetlink batch's begin and end carry.
struct ExchangeWindow: Sendable, Equatable {
    var first: UInt32
    var count: UInt32

    var begin: UInt32 { first &- 1 }
    var end: UInt32 { first &+ count }

    /// What a reply with `sequence` is to this exchange.
    enum Reply: Equatable {
        /// The answer to request number `slot`.
        case request(Int)
        /// To the batch's begin or end.
        case framing
        /// A late answer to an earlier exchange that ended before reading it: skipped.
        case stale
        /// To nothing this socket asked and did not give up on: a protocol violation.
        case unexpected
    }

    func classify(_ sequence: UInt32, framed: Bool, abandoned: AbandonedExchanges) -> Reply {
        let slot = sequence &- first
        if slot < count { return .request(Int(slot)) }
        if framed && (sequence == begin || sequence == end) { return .framing }
        if abandoned.contains(sequence) { return .stale }
        return .unexpected
    }
}

/// The sequence numbers of the last exchanges that ended before all their answers were read (and of replies
/// already reported as unexpected). Bounded: an answer so late that a hundred exchanges ended early since is
/// treated as unexpected.
struct AbandonedExchanges: Sendable {
    static let limit = 100
    /// Ranges of sequence numbers: first, and how many (wrapping around UInt32).
    private(set) var ranges: [(first: UInt32, count: UInt32)] = []

    /// Every number of the window, the framing's begin and end included.
    mutating func add(_ window: ExchangeWindow) { add(first: window.begin, count: window.count &+ 2) }

    mutating func add(sequence: UInt32) { add(first: sequence, count: 1) }

    private mutating func add(first: UInt32, count: UInt32) {
        ranges.append((first, count))
        if ranges.count > Self.limit { ranges.removeFirst(ranges.count - Self.limit) }
    }

    func contains(_ sequence: UInt32) -> Bool { ranges.contains { sequence &- $0.first < $0.count } }
}
