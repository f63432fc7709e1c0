import Netlink

/// The `inet returnpath` table a strategy needs: its sets (with their elements) and chains (with their rules).
/// Every rule carries the comment `returnpath <hash of the structure>`, so that the structure in the kernel is
/// recognised over nfnetlink — without parsing rules back, and whatever its size — and a flushed or edited chain
/// is seen as a different structure.
public struct NftTable: Sendable, Equatable {
    public static let family = "inet"
    /// NFPROTO_INET, for nfnetlink.
    public static let inetFamily: UInt8 = 1
    public static let name = "returnpath"
    /// "inet returnpath", as nft commands name it.
    public static let qualifiedName = "\(family) \(name)"

    public struct Set: Sendable, Equatable {
        public var name: String
        public var interface: String
        public var elements: [IPPrefix]
        /// Addresses only make a hash set (fast to update over nfnetlink); prefixes need intervals. The two
        /// kinds have different names (svc_N, svcnet_N): a change of kind is a new set, never a set redefined.
        public var interval: Bool

        public var family: AddressFamily

        /// svc_SLOT / svcnet_SLOT for IPv4, svc6_SLOT / svcnet6_SLOT for IPv6.
        public init(slot: Int, interface: String, elements: [IPPrefix], family: AddressFamily = .inet) {
            interval = elements.contains { !$0.isHost }
            name = (interval ? "svcnet" : "svc") + (family == .inet6 ? "6_" : "_") + String(slot)
            self.interface = interface
            self.elements = elements
            self.family = family
        }

        /// `ip` or `ip6`, as rules match the set's addresses.
        public var match: String { family == .inet6 ? "ip6" : "ip" }

        /// `{ type ipv4_addr; … }`
        var body: String {
            "{ type \(family == .inet6 ? "ipv6_addr" : "ipv4_addr"); " + (interval ? "flags interval; " : "")
                + "comment \"services answered via \(interface)\"; }"
        }
    }

    public struct Chain: Sendable, Equatable {
        public var name: String
        /// `type route hook output priority mangle; policy accept;`
        public var hook: String
        public var rules: [String]
    }

    public var sets: [Set]
    public var chains: [Chain]

    /// The structure without elements, in nft syntax: what the hash covers.
    public var structure: String {
        sets.map { "set \($0.name) \($0.body)\n" }.joined()
            + chains.map { "chain \($0.name) { \($0.hook) }\n" + $0.rules.map { "\t\($0)\n" }.joined() }.joined()
    }

    /// FNV-1a of the structure.
    public var structureHash: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in structure.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return String(hash, radix: 16)
    }

    /// The comment on every rule.
    public var ruleComment: String { "returnpath \(structureHash)" }

    public static let tableComment = "owned by returnpath: changed by apply and remove only"

    /// Objects for counting: each set, chain and rule.
    public var objectCount: Int { sets.count + chains.count + chains.reduce(0) { $0 + $1.rules.count } }

    /// `add rule inet returnpath CHAIN RULE comment "…"` lines of one chain.
    func ruleCommands(_ chain: Chain) -> String {
        chain.rules.map { "add rule \(Self.qualifiedName) \(chain.name) \($0) comment \"\(ruleComment)\"\n" }.joined()
    }

    func addSet(_ set: Set) -> String { "add set \(Self.qualifiedName) \(set.name) \(set.body)\n" }

    func addChain(_ chain: Chain) -> String { "add chain \(Self.qualifiedName) \(chain.name) { \(chain.hook) }\n" }

    func elementCommand(_ verb: String, _ set: String, _ elements: [String]) -> String {
        "\(verb) element \(Self.qualifiedName) \(set) { \(elements.joined(separator: ", ")) }\n"
    }

    /// The whole table from nothing, in one transaction. Without `elements`, the elements of every set (hash and
    /// interval) are left to nfnetlink (faster at 10k): apply adds them before any rule points at the table.
    public func creationScript(elements: Bool = true) -> String {
        var text = "add table \(Self.qualifiedName) { comment \"\(Self.tableComment)\"; }\n"
        for set in sets { text += addSet(set) }
        for set in sets where !set.elements.isEmpty && elements {
            text += elementCommand("add", set.name, set.elements.map(\.description))
        }
        for chain in chains { text += addChain(chain) + ruleCommands(chain) }
        return text
    }
}
