@testable import Netlink
import Testing

/// Which replies the receive loop takes as answers, skips as stale, or refuses (NetlinkSocket.exchange).
struct ExchangeWindowTests {
    @Test func repliesAreSortedByTheirSequenceNumber() {
        let window = ExchangeWindow(first: 1000, count: 3)
        var abandoned = AbandonedExchanges()
        #expect(window.classify(1000, framed: false, abandoned: abandoned) == .request(0))
        #expect(window.classify(1002, framed: false, abandoned: abandoned) == .request(2))
        // Begin and end of an nfnetlink batch belong to the exchange only when it is framed.
        #expect(window.classify(999, framed: true, abandoned: abandoned) == .framing)
        #expect(window.classify(1003, framed: true, abandoned: abandoned) == .framing)
        #expect(window.classify(999, framed: false, abandoned: abandoned) == .unexpected)
        #expect(window.classify(1003, framed: false, abandoned: abandoned) == .unexpected)
        // Anything else is a reply to nothing this socket asked…
        #expect(window.classify(990, framed: false, abandoned: abandoned) == .unexpected)
        #expect(window.classify(5000, framed: false, abandoned: abandoned) == .unexpected)
        // …unless it belongs to an earlier exchange that ended before reading all its answers (timed out).
        abandoned.add(ExchangeWindow(first: 990, count: 2))
        #expect(window.classify(989, framed: false, abandoned: abandoned) == .stale)
        #expect(window.classify(991, framed: false, abandoned: abandoned) == .stale)
        #expect(window.classify(992, framed: false, abandoned: abandoned) == .stale)
        #expect(window.classify(993, framed: false, abandoned: abandoned) == .unexpected)
        abandoned.add(sequence: 5000)
        #expect(window.classify(5000, framed: false, abandoned: abandoned) == .stale)
        #expect(window.classify(5001, framed: false, abandoned: abandoned) == .unexpected)
    }

    @Test func sequenceNumbersWrapAround() {
        let window = ExchangeWindow(first: UInt32.max, count: 2)
        let none = AbandonedExchanges()
        #expect(window.classify(UInt32.max, framed: false, abandoned: none) == .request(0))
        #expect(window.classify(0, framed: false, abandoned: none) == .request(1))
        #expect(window.classify(1, framed: true, abandoned: none) == .framing)
        #expect(window.classify(UInt32.max - 1, framed: true, abandoned: none) == .framing)
        var abandoned = AbandonedExchanges()
        abandoned.add(ExchangeWindow(first: 0, count: 1))
        #expect(abandoned.contains(UInt32.max))
        #expect(abandoned.contains(1))
        #expect(!abandoned.contains(2))
    }

    @Test func onlyTheLastAbandonedExchangesAreRemembered() {
        var abandoned = AbandonedExchanges()
        for i in 0..<(AbandonedExchanges.limit + 5) { abandoned.add(sequence: UInt32(i * 10)) }
        #expect(abandoned.ranges.count == AbandonedExchanges.limit)
        #expect(!abandoned.contains(0))
        #expect(abandoned.contains(UInt32((AbandonedExchanges.limit + 4) * 10)))
    }
}
