import Glibc
import Netlink
import Testing

/// IPv4 addresses are parsed in place (policy files carry tens of thousands): the result must be inet_pton's.
struct AddressParsingTests {
    static func pton(_ text: String) -> UInt32? {
        var raw = in_addr()
        return inet_pton(AF_INET, text, &raw) == 1 ? UInt32(bigEndian: raw.s_addr) : nil
    }

    @Test func dottedQuadsAgreeWithInetPton() {
        var cases = ["0.0.0.0", "255.255.255.255", "10.111.221.21", "1.2.3.4", "01.2.3.4", "1.2.3.04", "256.1.1.1",
                     "1.2.3", "1.2.3.4.5", "1..2.3", ".1.2.3", "1.2.3.", "1.2.3.4 ", " 1.2.3.4", "1.2.3.-4", "1.2.3.a",
                     "1000.1.1.1", "", "0.0.0.00", "192.168.001.1", "1.2.3.4/32", "::1", "::ffff:1.2.3.4"]
        // Random strings over the alphabet of dotted quads.
        var seed: UInt64 = 0x9e37_79b9_7f4a_7c15
        let alphabet = Array("0123456789....:/x")
        for _ in 0..<20_000 {
            var text = ""
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            let length = Int(seed >> 60) + 1
            for i in 0..<length {
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                text.append(alphabet[Int((seed >> 33) % UInt64(alphabet.count))])
                if i > 14 { break }
            }
            cases.append(text)
        }
        for text in cases {
            let ours: UInt32? = { if case .v4(let v)? = IPAddress(text) { return v } else { return nil } }()
            #expect(ours == Self.pton(text), "\"\(text)\"")
        }
    }

    @Test func prefixesParseAsBefore() throws {
        #expect(try IPPrefix(parsing: "10.0.0.0/8").cidr == "10.0.0.0/8")
        #expect(try IPPrefix(parsing: "192.168.1.1").cidr == "192.168.1.1/32")
        #expect(try IPPrefix(parsing: "10.0.0.0/08").length == 8)
        for bad in ["10.0.0.0/", "10.0.0.0/33", "10.0.0.0/+8", "10.0.0.0/8/8", "10.0.0.256/8", "10.0.0.0/123"] {
            #expect(throws: PrefixError.self, "\(bad)") { try IPPrefix(parsing: bad) }
        }
        #expect(try IPPrefix(parsing: "10.0.0.0/8", family: .inet).length == 8)
        #expect(throws: PrefixError.self) { try IPPrefix(parsing: "10.0.0.0/8", family: .inet6) }
    }
}
