import FoundationEssentials

/// An optional that is encoded as `null` when absent. doctor's JSON writes every key ("Absent values are `null`",
/// docs/doctor.md), and the synthesized `Encodable` leaves a nil optional out: a property marked `@Nullable` is
/// always written, which is what the hand-written `encode(to:)` methods did.
@propertyWrapper
public struct Nullable<Value> {
    public var wrappedValue: Value?

    public init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }
}

extension Nullable: Encodable where Value: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let wrappedValue { try container.encode(wrappedValue) } else { try container.encodeNil() }
    }
}

extension Nullable: Sendable where Value: Sendable {}
extension Nullable: Equatable where Value: Equatable {}
extension Nullable: Hashable where Value: Hashable {}

/// One line of JSON, keys sorted.
func encodeJSON<T: Encodable>(_ value: T) throws(DoctorError) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    do { return String(decoding: try encoder.encode(value), as: UTF8.self) } catch {
        throw .invalid("encode JSON: \(error)")
    }
}
